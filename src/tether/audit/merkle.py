"""RFC 9162 §2.1 Merkle tree hashing, inclusion and consistency proofs.

Leaves are hashed as SHA-256(0x00 || data), interior nodes as SHA-256(0x01 || l || r);
a tree of n leaves splits at the largest power of two smaller than n.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
HASH_BYTES = 32


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only tree that keeps the hash of every complete subtree, level by level.

    Any size it has reached has its root and proofs in O(log n) hashes (recomputing them
    from the leaves took O(n): half a second per proof at 200,000 records, on the
    server's event loop), and a record costs 64 bytes: its leaf, and on average one node
    above it, packed in one bytearray per level.

    RFC 9162's recursion only ever asks for ranges that begin at a multiple of their
    left half's size, so each of its power-of-two ranges is a kept node.
    """

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self.extend(list(leaves))

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_BYTES

    def append(self, leaf: bytes) -> None:
        if len(leaf) != HASH_BYTES:
            raise ValueError(f"a leaf hash is {HASH_BYTES} bytes, not {len(leaf)}")
        level, node = 0, leaf
        while True:
            nodes = self._levels[level]
            nodes += node
            if len(nodes) // HASH_BYTES % 2:  # no sibling yet: the subtree above waits
                return
            node = node_hash(bytes(nodes[-2 * HASH_BYTES : -HASH_BYTES]), node)
            level += 1
            if level == len(self._levels):
                self._levels.append(bytearray())

    def extend(self, leaves: Sequence[bytes]) -> None:
        """``append`` each of ``leaves``: the same tree, built with one loop per level
        instead of one climb per leaf (start-up adds a whole segment's records at once)."""
        wrong = next((leaf for leaf in leaves if len(leaf) != HASH_BYTES), None)
        if wrong is not None:
            raise ValueError(f"a leaf hash is {HASH_BYTES} bytes, not {len(wrong)}")
        sha256, pair = hashlib.sha256, 2 * HASH_BYTES
        level, added = 0, b"".join(leaves)
        while added:
            nodes = self._levels[level]
            hashed = len(nodes) // pair  # pairs whose parent is already kept
            nodes += added
            whole = bytes(nodes[hashed * pair : len(nodes) // pair * pair])
            added = b"".join(
                sha256(b"\x01" + whole[i : i + pair]).digest() for i in range(0, len(whole), pair)
            )
            level += 1
            if added and level == len(self._levels):
                self._levels.append(bytearray())

    def leaf(self, index: int) -> bytes:
        return self._node(0, index)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all of them by default)."""
        size = self._checked(size)
        return EMPTY_ROOT if size == 0 else self._hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(m, D[n]) of RFC 9162 §2.1.3.1, for the tree of the first ``size`` leaves."""
        size = self._checked(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is outside a tree of size {size}")
        return self._path(index, 0, size)

    def consistency_proof(self, size1: int, size: int | None = None) -> list[bytes]:
        """PROOF(m, D[n]) of RFC 9162 §2.1.4.1, from ``size1`` leaves to ``size``."""
        size = self._checked(size)
        if not 0 < size1 <= size:
            raise ValueError(f"no consistency proof from size {size1} to size {size}")
        return self._subproof(size1, 0, size, True)

    def _checked(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"the tree has {self.size} leaves, not {size}")
        return size

    def _node(self, level: int, index: int) -> bytes:
        return bytes(self._levels[level][index * HASH_BYTES : (index + 1) * HASH_BYTES])

    def _hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range RFC 9162's recursion reaches."""
        n = end - start
        if n & (n - 1) == 0:  # a complete subtree: kept
            level = n.bit_length() - 1
            return self._node(level, start >> level)
        k = _split(n)
        return node_hash(self._hash(start, start + k), self._hash(start + k, end))

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        middle = start + _split(n)
        if index < middle:
            return [*self._path(index, start, middle), self._hash(middle, end)]
        return [*self._path(index, middle, end), self._hash(start, middle)]

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self._hash(start, end)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, complete), self._hash(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self._hash(start, start + k)]


def subtree_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf *hashes*."""
    return MerkleTree(leaves).root()


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, over leaf hashes."""
    return MerkleTree(leaves).inclusion_proof(index)


def consistency_proof(size1: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1, over leaf hashes."""
    return MerkleTree(leaves).consistency_proof(size1)


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2 steps 1-5; None where the proof cannot fit the tree."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if len(p) != 32 or sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while (fn & 1) == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    return len(leaf) == 32 and root_from_inclusion(index, size, leaf, proof) == root


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """RFC 9162 §2.1.4.2; the trivial cases (equal sizes, empty first tree) need no proof."""
    if size1 > size2 or size1 < 0:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if size1 == 0:
        return not proof
    if not proof or any(len(p) != 32 for p in proof):
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: root1 is the first node
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while (fn & 1) == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == root1 and sr == root2 and sn == 0

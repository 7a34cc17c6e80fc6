"""RFC 9162 hashing against transparency-dev/merkle's vectors, and random trees."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tether.audit import merkle

VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text())
LEAVES = [merkle.leaf_hash(bytes.fromhex(h)) for h in VECTORS["leaves"]]
ROOTS = [bytes.fromhex(h) for h in VECTORS["roots"]]


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert merkle.subtree_root([]).hex().startswith("e3b0c442")
    assert merkle.MerkleTree().root() == merkle.EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_vectors(size: int) -> None:
    assert merkle.subtree_root(LEAVES[:size]) == ROOTS[size - 1]
    tree = merkle.MerkleTree()
    for leaf in LEAVES[:size]:
        tree.append(leaf)
    assert tree.root() == ROOTS[size - 1]
    assert [tree.root(n) for n in range(1, size + 1)] == ROOTS[:size]


@pytest.mark.parametrize("case", VECTORS["inclusion"])
def test_inclusion_vectors(case: dict[str, object]) -> None:
    index, size = int(case["index"]), int(case["size"])  # type: ignore[call-overload]
    proof = [bytes.fromhex(h) for h in case["proof"]]  # type: ignore[attr-defined]
    assert merkle.inclusion_proof(index, LEAVES[:size]) == proof
    assert merkle.verify_inclusion(index, size, LEAVES[index], proof, ROOTS[size - 1])
    assert not merkle.verify_inclusion(index + 1, size, LEAVES[index], proof, ROOTS[size - 1])
    assert not merkle.verify_inclusion(index, size * 2, LEAVES[index], proof, ROOTS[size - 1])


@pytest.mark.parametrize("case", VECTORS["consistency"])
def test_consistency_vectors(case: dict[str, object]) -> None:
    s1, s2 = int(case["size1"]), int(case["size2"])  # type: ignore[call-overload]
    proof = [bytes.fromhex(h) for h in case["proof"]]  # type: ignore[attr-defined]
    assert merkle.consistency_proof(s1, LEAVES[:s2]) == proof
    assert merkle.verify_consistency(s1, s2, proof, ROOTS[s1 - 1], ROOTS[s2 - 1])
    assert not merkle.verify_consistency(s1, s2, proof, ROOTS[s2 - 1], ROOTS[s1 - 1])
    assert not merkle.verify_consistency(s1, s2, proof[:-1], ROOTS[s1 - 1], ROOTS[s2 - 1])


def _flip(proof: list[bytes], i: int) -> list[bytes]:
    out = list(proof)
    out[i] = bytes([out[i][0] ^ 8]) + out[i][1:]
    return out


@pytest.mark.parametrize("seed", range(5))
def test_random_trees_prove_and_reject_tampering(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.randint(1, 70)
    leaves = [merkle.leaf_hash(rng.randbytes(rng.randint(0, 20))) for _ in range(size)]
    roots = [merkle.subtree_root(leaves[:n]) for n in range(size + 1)]
    for index in range(size):
        proof = merkle.inclusion_proof(index, leaves)
        assert merkle.verify_inclusion(index, size, leaves[index], proof, roots[size])
        for i in range(len(proof)):
            assert not merkle.verify_inclusion(
                index, size, leaves[index], _flip(proof, i), roots[size]
            )
        if proof:
            assert not merkle.verify_inclusion(index, size, leaves[index], proof[:-1], roots[size])
    for m in range(1, size + 1):
        proof = merkle.consistency_proof(m, leaves)
        assert merkle.verify_consistency(m, size, proof, roots[m], roots[size])
        for i in range(len(proof)):
            assert not merkle.verify_consistency(m, size, _flip(proof, i), roots[m], roots[size])
        if m < size:
            assert not merkle.verify_consistency(m, size, [*proof, roots[m]], roots[m], roots[size])


def _recursive_root(leaves: list[bytes]) -> bytes:
    """RFC 9162's MTH straight from its definition, to check the kept nodes against."""
    if not leaves:
        return merkle.EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(_recursive_root(leaves[:k]), _recursive_root(leaves[k:]))


def test_one_grown_tree_proves_every_size_it_reached() -> None:
    """The server keeps one tree and proves against the size of its latest checkpoint,
    while records are appended beyond it."""
    rng = random.Random(7)
    leaves = [merkle.leaf_hash(rng.randbytes(8)) for _ in range(133)]
    tree = merkle.MerkleTree(leaves)
    for size in range(1, len(leaves) + 1):
        root = _recursive_root(leaves[:size])
        assert tree.root(size) == root
        for index in {0, size // 2, size - 1}:
            proof = tree.inclusion_proof(index, size)
            assert merkle.verify_inclusion(index, size, leaves[index], proof, root)
        for m in {1, size // 3 or 1, size}:
            proof = tree.consistency_proof(m, size)
            assert merkle.verify_consistency(m, size, proof, _recursive_root(leaves[:m]), root)
    with pytest.raises(ValueError, match="has 133 leaves, not 134"):
        tree.root(134)
    with pytest.raises(ValueError, match="outside a tree of size 5"):
        tree.inclusion_proof(5, 5)
    with pytest.raises(ValueError, match="a leaf hash is 32 bytes"):
        tree.append(b"short")


@pytest.mark.parametrize("seed", range(4))
def test_a_tree_extended_in_runs_is_the_tree_appended_a_leaf_at_a_time(seed: int) -> None:
    """Start-up adds a segment's leaves at once, after records appended one by one."""
    rng = random.Random(seed)
    leaves = [merkle.leaf_hash(rng.randbytes(8)) for _ in range(rng.randrange(300, 700))]
    one_by_one, in_runs = merkle.MerkleTree(), merkle.MerkleTree()
    for leaf in leaves:
        one_by_one.append(leaf)
    done = 0
    while done < len(leaves):
        run = rng.choice([0, 1, 2, 3, 7, 64, 129])
        in_runs.extend(leaves[done : done + run])
        done += run
        assert in_runs.root() == _recursive_root(leaves[: min(done, len(leaves))])
    for size in range(1, len(leaves) + 1, 37):
        assert in_runs.root(size) == one_by_one.root(size)
        assert in_runs.consistency_proof(size) == one_by_one.consistency_proof(size)
        assert in_runs.inclusion_proof(size - 1) == one_by_one.inclusion_proof(size - 1)
    with pytest.raises(ValueError, match="a leaf hash is 32 bytes"):
        in_runs.extend([leaves[0], b"short"])
    assert in_runs.size == len(leaves)  # a refused run adds nothing

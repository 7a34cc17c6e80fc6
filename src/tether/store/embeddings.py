"""Optional embeddings for hybrid search: WordLlama, whose weights ship inside its wheel.

``pip install 'tether[embeddings]'`` adds it; nothing is downloaded (tether reads the
weights and tokenizer from the installed package, never asking its loader, which would
go to the network for a missing file). The model is loaded on first use, so a server
whose store is never searched does not pay its memory.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tether.errors import ConfigError
from tether.rootlog import root_logger_kept

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

WORDLLAMA = "wordllama-l2-supercat-256"


# WordLlama pads each batch to its longest text and looks up every token's vector: a
# batch holds at most this many (padded) characters, about as many tokens, of 1 KB each.
BATCH_CHARS = 65_536


class Embedder(Protocol):
    name: str
    dimensions: int

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """One unit-length row per text."""
        ...

    def count_tokens(self, texts: list[str]) -> int:
        """The tokens the model reads for ``texts``, all together."""
        ...


def installed() -> bool:
    return importlib.util.find_spec("wordllama") is not None


class WordLlamaEmbedder:
    name = WORDLLAMA
    dimensions = 256  # Matryoshka-trained: a prefix of a row, normalised, is an embedding too

    def __init__(self) -> None:
        self._model: object | None = None
        self._lock = threading.Lock()

    def _load(self) -> object:
        with self._lock:
            if self._model is None:
                self._model = _load_wordllama()
            return self._model

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        import numpy as np

        model = self._load()
        rows = [
            np.asarray(model.embed(batch, norm=True, batch_size=len(batch)), dtype=np.float32)  # type: ignore[attr-defined]
            for batch in _batches(texts)
        ]
        if not rows:
            return np.empty((0, self.dimensions), dtype=np.float32)
        return np.concatenate(rows).reshape(len(texts), -1)

    def count_tokens(self, texts: list[str]) -> int:
        model = self._load()
        encodings: list[Any] = model.tokenize(texts)  # type: ignore[attr-defined]
        # Its tokenizer pads a batch to the longest text: the mask marks the real tokens.
        return sum(sum(encoding.attention_mask) for encoding in encodings)


def _batches(texts: list[str]) -> list[list[str]]:
    """``texts`` in order, cut into batches of at most ``BATCH_CHARS`` once padded (a
    longer text alone)."""
    batches: list[list[str]] = []
    batch: list[str] = []
    longest = 0
    for text in texts:
        longest_with = max(longest, len(text))
        if batch and longest_with * (len(batch) + 1) > BATCH_CHARS:
            batches.append(batch)
            batch, longest_with = [], len(text)
        batch.append(text)
        longest = longest_with
    if batch:
        batches.append(batch)
    return batches


def _load_wordllama() -> object:
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "store.embeddings is on but wordllama is not installed: "
            "pip install 'tether[embeddings]', or set store.embeddings = false"
        )
    from safetensors import safe_open
    from tokenizers import Tokenizer

    with root_logger_kept():  # wordllama sets up the root logger for INFO on import
        from wordllama.inference import WordLlamaInference

    root = Path(next(iter(spec.submodule_search_locations)))
    weights = root / "weights" / "l2_supercat_256.safetensors"
    tokenizer = root / "tokenizers" / "l2_supercat_tokenizer_config.json"
    if not weights.is_file() or not tokenizer.is_file():
        raise ConfigError(f"wordllama at {root} lacks its bundled weights; reinstall it")
    with safe_open(str(weights), framework="np") as tensors:
        embedding = tensors.get_tensor("embedding.weight")
    return WordLlamaInference(embedding, Tokenizer.from_file(str(tokenizer)))


def embedder_for(setting: bool | None) -> Embedder | None:
    """The embedder ``store.embeddings`` asks for: on, off, or unset (when installed)."""
    if setting is False or (setting is None and not installed()):
        return None
    if not installed():
        raise ConfigError(
            "store.embeddings = true needs wordllama: pip install 'tether[embeddings]'"
        )
    return WordLlamaEmbedder()

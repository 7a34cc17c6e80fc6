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
from typing import TYPE_CHECKING, Protocol

from tether.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

WORDLLAMA = "wordllama-l2-supercat-256"


class Embedder(Protocol):
    name: str

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """One unit-length row per text."""
        ...


def installed() -> bool:
    return importlib.util.find_spec("wordllama") is not None


class WordLlamaEmbedder:
    name = WORDLLAMA

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
        vectors = np.asarray(model.embed(texts, norm=True), dtype=np.float32)  # type: ignore[attr-defined]
        return vectors.reshape(len(texts), -1)


def _load_wordllama() -> object:
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "store.embeddings is on but wordllama is not installed: "
            "pip install 'tether[embeddings]', or set store.embeddings = false"
        )
    from safetensors import safe_open
    from tokenizers import Tokenizer
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

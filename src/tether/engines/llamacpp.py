"""The embedded engine: llama.cpp in process, N contexts in worker threads.

Each context is a ``llama_cpp.Llama`` over the same memory-mapped GGUF file (the OS
shares its pages), with one worker thread of its own; llama.cpp releases the GIL while
it computes. ``Llama.generate`` keeps the KV cache of the longest common prefix with the
previous prompt, and the slot pool routes each prompt to the context that shares most.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import sys
import threading
from collections.abc import AsyncGenerator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tether.engines.base import (
    EngineInfo,
    EngineStats,
    FimTokens,
    GenerationChunk,
    GenerationRequest,
)
from tether.engines.slots import SlotPool, common_prefix_length
from tether.errors import (
    CancelledGeneration,
    ContextLengthError,
    ModelError,
    RequestError,
)
from tether.models import file_sha256
from tether.settings import EngineSettings

_DONE = object()


@dataclass
class _Slot:
    index: int
    llama: Any  # llama_cpp.Llama; typed loosely because llama_cpp ships no stubs
    executor: ThreadPoolExecutor = field(repr=False)

    def cached_tokens(self) -> Sequence[int]:
        return self.llama._input_ids[: self.llama.n_tokens].tolist()  # type: ignore[no-any-return]


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence what llama.cpp writes straight to file descriptor 2 (its loader chatter)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_llama(model_path: Path, **options: Any) -> Any:
    """A ``llama_cpp.Llama`` over ``model_path``; a ModelError when it is not a usable GGUF."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelError(
            "the embedded engine needs llama-cpp-python: run `make serve` or "
            "`pip install 'tether[embedded]'`, or set engine.kind = 'openai'"
        ) from exc
    try:
        return llama_cpp.Llama(model_path=str(model_path), verbose=False, **options)
    except ValueError as exc:  # llama_cpp reports a bad file as ValueError
        raise ModelError(f"cannot load {model_path}: {exc}; is it a GGUF file?") from exc


def _system_info() -> str:
    """llama.cpp's compute backend and the CPU features it was built to use."""
    import llama_cpp

    info: bytes = llama_cpp.llama_print_system_info()
    return " ".join(info.decode(errors="replace").split()).rstrip(" |")


def read_fim_tokens(llama: Any) -> FimTokens | None:
    import llama_cpp

    vocab = llama._model.vocab
    ids = (
        llama_cpp.llama_vocab_fim_pre(vocab),
        llama_cpp.llama_vocab_fim_suf(vocab),
        llama_cpp.llama_vocab_fim_mid(vocab),
    )
    if any(i < 0 for i in ids):
        return None
    pre, suf, mid = (llama._model.token_get_text(i) for i in ids)
    return FimTokens(prefix=pre, suffix=suf, middle=mid)


class LlamaCppEngine:
    """Engine over a local GGUF file."""

    name = "llamacpp"

    def __init__(self, settings: EngineSettings, model_path: Path, cache_dir: Path) -> None:
        cores = len(os.sched_getaffinity(0))  # respects container CPU sets, unlike cpu_count
        n_threads = settings.n_threads or max(1, cores // settings.n_parallel)
        self._slots: list[_Slot] = []
        for index in range(settings.n_parallel):
            llama = load_llama(
                model_path,
                n_ctx=settings.n_ctx,
                n_batch=settings.n_batch,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                use_mmap=True,
            )
            executor = ThreadPoolExecutor(1, thread_name_prefix=f"tether-llama-{index}")
            self._slots.append(_Slot(index, llama, executor))
        self._prompt_tokens = 0
        self._cached_prompt_tokens = 0
        first = self._slots[0].llama
        metadata: dict[str, str] = dict(first.metadata)
        self._tokenizer = first
        self._pool: SlotPool[_Slot] = SlotPool(self._slots, settings.max_queue, _Slot.cached_tokens)
        self._info = EngineInfo(
            engine=self.name,
            engine_version=f"llama-cpp-python {importlib.metadata.version('llama-cpp-python')}",
            model_id=settings.model_id or model_path.name.removesuffix(".gguf"),
            model_path=str(model_path),
            model_sha256=file_sha256(model_path, cache_dir),
            n_ctx=settings.n_ctx,
            fim_tokens=read_fim_tokens(first),
            chat_template=metadata.get("tokenizer.chat_template"),
            bos_token=first._model.token_get_text(first.token_bos()),
            eos_token=first._model.token_get_text(first.token_eos()),
            build=_system_info(),
        )

    def info(self) -> EngineInfo:
        return self._info

    def tokenize(self, text: str) -> list[int]:
        tokens: list[int] = self._tokenizer.tokenize(
            text.encode("utf-8"), add_bos=True, special=True
        )
        # An empty prompt (a FIM request at the top of an empty file) still needs one
        # token to condition on; models without an automatic BOS give none.
        return tokens or [self._tokenizer.token_bos()]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    async def health(self) -> bool:
        return bool(self._slots)

    def stats(self) -> EngineStats:
        return EngineStats(
            queue_depth=self._pool.queue_depth,
            in_flight=self._pool.in_flight,
            prompt_tokens=self._prompt_tokens,
            cached_prompt_tokens=self._cached_prompt_tokens,
        )

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        if request.prompt is None:
            raise RequestError("the embedded engine needs a rendered prompt")
        tokens = self.tokenize(request.prompt)
        request = _fit_to_context(request, len(tokens), self._info.n_ctx)
        slot = await self._pool.acquire(tokens)
        # What llama.cpp will keep of this context's KV cache instead of evaluating again.
        self._cached_prompt_tokens += common_prefix_length(slot.cached_tokens(), tokens)
        self._prompt_tokens += len(tokens)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        future = loop.run_in_executor(
            slot.executor, _generate_in_thread, slot.llama, tokens, request, cancel, emit
        )
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
            await future
        finally:
            cancel.set()
            # The slot goes back only when its thread is done with the context.
            future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._pool.release, slot))

    async def close(self) -> None:
        for slot in self._slots:
            slot.executor.shutdown(wait=True)
            slot.llama.close()
        self._slots.clear()


def _fit_to_context(
    request: GenerationRequest, prompt_tokens: int, n_ctx: int
) -> GenerationRequest:
    params = request.params
    room = n_ctx - prompt_tokens
    if room >= params.max_tokens:
        return request
    if room > 0 and not params.max_tokens_explicit:
        return replace(request, params=replace(params, max_tokens=room))
    if room <= 0:
        detail = f"the prompt is {prompt_tokens} tokens, the context window {n_ctx}"
    else:
        detail = (
            f"the prompt is {prompt_tokens} tokens and max_tokens is {params.max_tokens}, "
            f"together more than the context window of {n_ctx}"
        )
    raise ContextLengthError(
        f"{detail}; shorten the prompt or lower max_tokens", param="max_tokens"
    )


def _generate_in_thread(
    llama: Any,
    tokens: list[int],
    request: GenerationRequest,
    cancel: threading.Event,
    emit: Any,
) -> None:
    """Run in the slot's worker thread; every outcome reaches the queue through ``emit``."""

    def stop_when_cancelled(_ids: Any, _logits: Any) -> bool:
        return cancel.is_set()

    emitted: list[str] = []

    import llama_cpp

    params = request.params
    try:
        stream = llama.create_completion(
            prompt=tokens,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=list(params.stop) or None,
            stopping_criteria=llama_cpp.StoppingCriteriaList([stop_when_cancelled]),
            stream=True,
        )
        for chunk in stream:
            if cancel.is_set():
                emit(CancelledGeneration("client disconnected"))
                return
            choice = chunk["choices"][0]
            finish = choice.get("finish_reason")
            emitted.append(choice["text"])
            if finish is None:
                emit(GenerationChunk(text=choice["text"]))
            else:
                # Tokens of the text the client receives (stop sequences and EOS excluded).
                completion = "".join(emitted).encode("utf-8")
                emit(
                    GenerationChunk(
                        text=choice["text"],
                        finish_reason=finish,
                        prompt_tokens=len(tokens),
                        completion_tokens=len(llama.tokenize(completion, add_bos=False)),
                    )
                )
    except Exception as exc:  # surfaced to the awaiting request, never lost in the thread
        emit(exc)
    finally:
        emit(_DONE)

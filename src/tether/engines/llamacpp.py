"""The embedded engine: llama.cpp in process, every request a sequence of one context.

The model file is memory-mapped once; one llama.cpp context holds ``engine.n_parallel``
sequences of ``engine.n_ctx`` tokens each, and a scheduler thread decodes all of them
together, step by step (``tether.engines.scheduler``). Requests beyond the sequences wait
in a bounded queue; past ``engine.max_queue`` they get 429. A request goes to the free
sequence whose KV cache shares the longest prefix with its prompt, so an editor that
resends the same file with one more keystroke pays only for the new tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.metadata
import itertools
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from tether.cpus import usable_cores
from tether.engines.base import (
    EngineInfo,
    EngineStats,
    FimTokens,
    GenerationChunk,
    GenerationRequest,
    SequenceFile,
    SequenceState,
    max_context,
    too_many_characters,
)
from tether.engines.decode_probe import check_amx_build
from tether.engines.grammar import json_grammar
from tether.engines.lazy_grammar import lazy_call_grammar, lists_calls
from tether.engines.parsed_grammars import ParsedGrammars
from tether.engines.scheduler import (
    DONE,
    Job,
    Lazy,
    Scheduler,
    parse_grammar,
    spell,
    unreadable_grammar,
)
from tether.engines.slots import SlotPool
from tether.engines.zero_pages import anonymous_regions, release_zero_pages
from tether.errors import ContextLengthError, ModelError, RequestError, ShuttingDownError
from tether.models import file_sha256
from tether.openfiles import RUN_OUT, files_run_out, too_few_files
from tether.settings import EngineSettings

T = TypeVar("T")
# The scheduler's own version: a change in how tokens are chosen changes the fingerprint.
SCHEDULER = "batched 1"
DEFAULT_LOOKUP = 8  # drafted tokens per step: what the q8_0 cache checks at a gain here
_KV_TYPES = {"f16": (1, 2.0), "q8_0": (8, 34 / 32)}  # ggml type, bytes per element


log = logging.getLogger(__name__)
# Held while file descriptor 2 points elsewhere: two threads that each saved and restored
# it around the other would leave it pointing at the other's file.
_STDERR_MOVED = threading.Lock()


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence what llama.cpp writes straight to file descriptor 2 (its loader chatter)."""
    with _STDERR_MOVED:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as devnull:
                os.dup2(devnull.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[bytes]]:
    """What is written to file descriptor 2 in the block, llama.cpp's and any other
    thread's, as the one text the yielded list holds once the block ends; the caller
    writes back what is not llama.cpp's."""
    written: list[bytes] = []
    with _STDERR_MOVED, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            yield written
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            written.append(capture.read())


_PARSE_ERROR = b"error parsing grammar: "


def _write_back(written: bytes, grammar: bytes) -> None:
    """Write back to stderr what ``written`` holds besides llama.cpp's report that it
    cannot read ``grammar`` (``parse: error parsing grammar: REASON``, then the grammar
    whole), which becomes one line of the log, its reason without the text it names."""
    start = written.find(_PARSE_ERROR)
    if start >= 0:
        tail = b"\n\n" + grammar + b"\n"
        end = written.find(tail, start)
        end = len(written) if end < 0 else end + len(tail)
        said = written[start + len(_PARSE_ERROR) : end].decode("utf-8", "replace")
        reason = (said.split(" at ", 1)[0].splitlines() or ["?"])[0][:80]
        log.warning("llama.cpp cannot read the grammar of a JSON schema: %s", reason)
        written = written[: written.rfind(b"\n", 0, start) + 1] + written[end:]
    while written:
        written = written[os.write(2, written) :]


def _llama_cpp() -> Any:
    try:
        import llama_cpp
        from llama_cpp._logger import set_verbose
    except ImportError as exc:
        raise ModelError(
            "the embedded engine needs llama-cpp-python: run `make serve` or "
            "`pip install 'tether[embedded]'`, or set engine.kind = 'openai'"
        ) from exc
    set_verbose(False)  # llama.cpp's log goes to stderr through it; errors only
    return llama_cpp


def load_model(model_path: Path, vocab_only: bool = False) -> Any:
    """The model (``llama_cpp._internals.LlamaModel``), memory-mapped; a ModelError when the
    file is not a usable GGUF."""
    try:
        llama_cpp = _llama_cpp()
        from llama_cpp._internals import LlamaModel

        params = llama_cpp.llama_model_default_params()
        params.use_mmap = True
        params.vocab_only = vocab_only
        with native_stderr_silenced():
            return LlamaModel(path_model=str(model_path), params=params, verbose=False)
    except OSError as exc:  # importing it, or copying stdout and stderr to silence it
        if exc.errno not in RUN_OUT:
            raise
        raise ModelError(_too_few_files(model_path, exc)) from exc
    except ValueError as exc:  # llama_cpp reports a bad file as ValueError
        # ... and a file it could not open too: whether descriptors ran out, ask the system.
        if (short := files_run_out(model_path, _LOAD_FILES)) is not None:
            raise ModelError(_too_few_files(model_path, short)) from exc
        raise ModelError(f"cannot load {model_path}: {exc}; is it a GGUF file?") from exc


# What loading holds open at once: the copy of stderr made here, llama_cpp's copies of
# stdout and stderr, and the model file.
_LOAD_FILES = 4


def _too_few_files(model_path: Path, exc: OSError) -> str:
    """Why ``model_path`` did not load when too few files can be opened, and what to do."""
    fix = too_few_files(exc)
    return f"cannot load {model_path}: too few files can be opened ({exc.strerror}); {fix}"


def read_fim_tokens(model: Any) -> FimTokens | None:
    llama_cpp = _llama_cpp()
    ids = (
        llama_cpp.llama_vocab_fim_pre(model.vocab),
        llama_cpp.llama_vocab_fim_suf(model.vocab),
        llama_cpp.llama_vocab_fim_mid(model.vocab),
    )
    if any(i < 0 for i in ids):
        return None
    pre, suf, mid = (model.token_get_text(i) for i in ids)
    return FimTokens(prefix=pre, suffix=suf, middle=mid)


def kv_cache_bytes(metadata: Mapping[str, str], engine: EngineSettings) -> int:
    """Bytes of the KV cache that ``engine`` allocates for this model, from its shape."""
    arch = metadata.get("general.architecture", "")

    def number(key: str, default: int = 0) -> int:
        return int(metadata.get(f"{arch}.{key}", default) or default)

    layers, embedding = number("block_count"), number("embedding_length")
    heads = number("attention.head_count", 1)
    kv_heads = number("attention.head_count_kv", heads)
    key = number("attention.key_length", embedding // max(heads, 1))
    value = number("attention.value_length", key)
    per_element = _KV_TYPES[engine.kv_type][1]
    cells = engine.n_ctx * engine.n_parallel
    return int(layers * cells * kv_heads * (key + value) * per_element)


def prompt_lookup_of(settings: EngineSettings) -> int:
    """Tokens a suggestion drafts per step: the setting, else 8 where drafting leaves the
    answer's bytes alone (the q8_0 cache) and 0 where it may not (f16)."""
    if settings.prompt_lookup is not None:
        return settings.prompt_lookup
    return DEFAULT_LOOKUP if settings.kv_type == "q8_0" else 0


def scheduler_name(settings: EngineSettings) -> str:
    """The scheduler as fingerprints name it, with what changes an answer's bytes: a KV
    cache of another type than the default (q8_0) holds other numbers, and drafting with
    an f16 cache can flip a near-tie. A manifest made otherwise is then not comparable,
    not a mismatch."""
    name = SCHEDULER
    if settings.kv_type != "q8_0":
        name += f", {settings.kv_type} cache"
    lookup = prompt_lookup_of(settings)
    if lookup and settings.kv_type == "f16":
        name += f", prompt lookup {lookup}"
    return name


def _system_info() -> str:
    """llama.cpp's compute backend and the CPU features it was built to use."""
    info: bytes = _llama_cpp().llama_print_system_info()
    return " ".join(info.decode(errors="replace").split()).rstrip(" |")


class LlamaCppEngine:
    """Engine over a local GGUF file."""

    name = "llamacpp"

    def __init__(self, settings: EngineSettings, model_path: Path, cache_dir: Path) -> None:
        llama_cpp = _llama_cpp()
        cores = usable_cores()
        threads = settings.n_threads or cores
        build = _system_info()
        check_amx_build(model_path, build, cache_dir)  # a crash here, not on a request
        self._model = load_model(model_path)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = settings.n_ctx * settings.n_parallel
        params.n_seq_max = settings.n_parallel
        params.kv_unified = False  # each sequence its own cells: answers never depend on others
        # Every decoding sequence puts a token in each step's batch.
        batch = max(settings.n_batch, settings.n_parallel)
        params.n_batch = params.n_ubatch = batch
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        kv_type, _ = _KV_TYPES[settings.kv_type]
        params.type_k = params.type_v = kv_type
        # llama.cpp quantises the V cache only with flash attention; with an f16 cache, its
        # CPU flash attention decodes about half as fast as plain attention at 1,500
        # tokens of context, and checks batches of drafted tokens three times slower.
        params.flash_attn_type = 0 if settings.kv_type == "f16" else 1
        mapped = anonymous_regions()
        with native_stderr_silenced():
            self._ctx = llama_cpp.llama_init_from_model(self._model.model, params)
        if not self._ctx:
            self._model.close()
            raise ModelError(
                f"llama.cpp could not make a context of {params.n_ctx} tokens for {model_path}; "
                "lower engine.n_ctx or engine.n_parallel"
            )
        release_zero_pages(mapped)  # the cleared KV cache: in memory only once used
        # Parsed off the scheduler's thread, which only clones them.
        self._grammars = ParsedGrammars(llama_cpp)
        self._scheduler = Scheduler(
            llama_cpp,
            self._model,
            self._ctx,
            settings.n_parallel,
            settings.n_ctx,
            batch,
            stream_interval_s=settings.stream_interval_ms / 1000,
            grammars=self._grammars,
        )
        self._prompt_lookup = prompt_lookup_of(settings)
        self._longest: int | None = None  # bytes of the vocabulary's longest token
        self._n_vocab: int = llama_cpp.llama_vocab_n_tokens(self._model.vocab)
        self._pool: SlotPool[int] = SlotPool(
            list(range(settings.n_parallel)),
            settings.max_queue,
            lambda seq: self._scheduler.cached[seq],
            tie_break=lambda seq: -seq,  # the lowest free sequence keeps the batch contiguous
        )
        self._tasks = itertools.count()
        self._held: dict[int, tuple[int, Job]] = {}  # sequence -> (task, its request)
        # Held while a thread parses a grammar with the model's vocabulary, and while the
        # model is freed: a request's schema still converting as the server stops must not
        # read a vocabulary freed under it.
        self._vocabulary_in_use = threading.Lock()
        metadata: dict[str, str] = self._model.metadata()
        version = importlib.metadata.version("llama-cpp-python")
        self._info = EngineInfo(
            engine=self.name,
            engine_version=f"llama-cpp-python {version} ({scheduler_name(settings)})",
            model_id=settings.model_id or model_path.name.removesuffix(".gguf"),
            model_path=str(model_path),
            model_sha256=file_sha256(model_path, cache_dir),
            n_ctx=settings.n_ctx,
            n_seq=settings.n_parallel,
            fim_tokens=read_fim_tokens(self._model),
            chat_template=metadata.get("tokenizer.chat_template"),
            bos_token=self._model.token_get_text(self._model.token_bos()),
            eos_token=self._model.token_get_text(self._model.token_eos()),
            build=build,
            control_tokens=_control_tokens(self._model, self._n_vocab),
            keeps_chosen_calls=True,
        )

    def info(self) -> EngineInfo:
        return self._info

    def tokenize(self, text: str) -> list[int]:
        tokens = self.token_ids(text, add_special=True, parse_special=True)
        # An empty prompt (a FIM request at the top of an empty file) still needs one
        # token to condition on; models without an automatic BOS give none.
        return tokens or [self._model.token_bos()]

    def token_ids(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        if self._beyond_context(text):
            raise ContextLengthError(
                f"the text is {len(text)} characters, more than a context window of "
                f"{self._info.n_ctx} tokens can hold; send it in pieces",
                param="content",
            )
        return _tokenize(self._model.vocab, text.encode("utf-8"), add_special, parse_special)

    def token_bytes(self, token: int) -> bytes:
        n_vocab = self._n_vocab
        if not 0 <= token < n_vocab:  # llama.cpp reads outside its arrays for these
            raise RequestError(
                f"token {token} is not in the model's vocabulary of {n_vocab} tokens "
                f"(0 to {n_vocab - 1}); send ids that /tokenize gave",
                param="tokens",
            )
        return spell(_llama_cpp(), self._model.vocab, token, special=True)

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text``; for text longer than the context could ever hold, a count
        above n_ctx without reading it (every budget is within n_ctx)."""
        if self._beyond_context(text):
            return len(text) // self._longest_piece() + 1
        return len(self.tokenize(text))

    def _beyond_context(self, text: str) -> bool:
        """Whether ``text`` has more characters than n_ctx tokens can spell: tokenizing
        megabytes only to refuse them would hold the event loop for seconds."""
        n_ctx = self._info.n_ctx
        return len(text) > 4 * n_ctx and len(text) > n_ctx * self._longest_piece()

    def _longest_piece(self) -> int:
        """The most bytes one token spells (special tokens too), found once when needed."""
        if self._longest is None:
            llama_cpp = _llama_cpp()
            vocab, buffer = self._model.vocab, ctypes.create_string_buffer(256)
            self._longest = max(
                1,
                *(
                    abs(llama_cpp.llama_token_to_piece(vocab, token, buffer, 256, 0, True))
                    for token in range(self._n_vocab)
                ),
            )
        return self._longest

    async def health(self) -> bool:
        return self._ctx is not None and self._scheduler.alive

    def stop_queueing(self) -> None:
        self._pool.refuse_waiting(_stopping)

    def stats(self) -> EngineStats:
        stats = self._scheduler.stats
        return EngineStats(
            queue_depth=self._pool.queue_depth,
            in_flight=self._pool.in_flight,
            prompt_tokens=stats.prompt_tokens,
            cached_prompt_tokens=stats.cached_prompt_tokens,
            decode_seconds=stats.decode_seconds,
            scheduler_seconds=stats.python_seconds,
            drafted_tokens=stats.drafted_tokens,
            accepted_tokens=stats.accepted_tokens,
        )

    def sequences(self) -> list[SequenceState]:
        states = []
        for seq in range(self._info.n_seq):
            held = self._held.get(seq)
            # A sequence handed to a waiting request is busy before that request runs.
            if held is None:
                busy = not self._pool.is_free(seq)
                states.append(SequenceState(id=seq, n_ctx=self._info.n_ctx, busy=busy))
                continue
            task, job = held
            cached, read, generated = self._scheduler.progress(seq) or (0, 0, 0)
            states.append(
                SequenceState(
                    id=seq,
                    n_ctx=self._info.n_ctx,
                    busy=True,
                    task=task,
                    params=job.params,
                    drafting=job.draft > 0,
                    prompt_tokens=len(job.tokens),
                    cached_tokens=cached,
                    read_tokens=read,
                    generated=generated,
                )
            )
        return states

    async def save_sequence(self, seq: int, path: Path) -> SequenceFile:
        return await self._timed(seq, partial(self._scheduler.save_sequence, seq, path))

    async def restore_sequence(self, seq: int, path: Path) -> SequenceFile:
        return await self._timed(seq, partial(self._scheduler.restore_sequence, seq, path))

    async def erase_sequence(self, seq: int) -> int:
        return await self._on_free_sequence(seq, partial(self._scheduler.erase_sequence, seq))

    async def _timed(self, seq: int, work: Callable[[], tuple[int, int]]) -> SequenceFile:
        def timed() -> SequenceFile:
            started = time.perf_counter()
            tokens, size = work()
            return SequenceFile(tokens, size, time.perf_counter() - started)

        return await self._on_free_sequence(seq, timed)

    async def _on_free_sequence(self, seq: int, work: Callable[[], T]) -> T:
        """``work`` in the scheduler's thread, between steps, once no request holds ``seq``
        (requests waiting for a sequence wait for it, too)."""
        if not 0 <= seq < self._info.n_seq:
            raise RequestError(
                f"there is no sequence {seq}: this engine has sequences 0 to "
                f"{self._info.n_seq - 1} (GET /slots lists them)",
                param="id_slot",
            )
        await self._pool.take(seq)
        try:
            done = asyncio.wrap_future(self._scheduler.between_steps(work))
        except BaseException:
            self._pool.release(seq)
            raise
        # Handed back once the work is done, even if its caller has gone by then.
        done.add_done_callback(lambda _: self._pool.release(seq))
        return await asyncio.shield(done)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        if request.prompt is None:
            raise RequestError("the embedded engine needs a rendered prompt")
        if self._beyond_context(request.prompt):
            raise ContextLengthError(too_many_characters(len(request.prompt), self._info.n_ctx))
        grammar, lazy = None, None
        if request.params.response_format is not None:  # converted off the event loop
            grammar = await asyncio.to_thread(self._grammar, request.params.response_format)
        elif request.params.chosen_call_format is not None:
            call_format = request.params.chosen_call_format
            lazy = Lazy(lists_calls(call_format))
            try:
                grammar = await asyncio.to_thread(self._grammar, call_format, lazy)
            except RequestError as exc:  # the functions too many or too odd for a grammar
                # The model may still choose a call, left free as it was before a grammar
                # kept it: a schema that cannot be followed refuses only a required call.
                log.info("a call the model chooses is left free: %s", exc)
                grammar, lazy = None, None
        tokens = self.tokenize(request.prompt)
        request = _fit_to_context(request, len(tokens), self._info.n_ctx)
        seq = await self._pool.acquire(tokens)
        if request.params.max_tokens <= 0:  # a warm-up: its sequence is back once it is read
            self._pool.returning(seq, holding=tokens)
        released = False

        def release() -> None:  # on this loop, once the scheduler is done with the sequence
            nonlocal released
            if released:  # once only: the sequence may be another request's by now
                return
            released = True
            del self._held[seq]
            self._pool.release(seq)

        job = Job(
            seq=seq,
            tokens=tokens,
            params=request.params,
            loop=asyncio.get_running_loop(),
            inbox=asyncio.Queue(),
            # The sequence goes back only when the scheduler is done with it.
            release=release,
            draft=self._prompt_lookup if request.copies_prompt and grammar is None else 0,
            grammar=grammar,
            lazy=lazy,
        )
        self._held[seq] = (next(self._tasks), job)
        try:
            self._scheduler.submit(job)
        except BaseException:
            del self._held[seq]
            self._pool.release(seq)
            raise
        ended = False
        try:
            while (item := await job.inbox.get()) is not DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
            ended = True
        finally:
            if not ended:  # stopped early: it leaves the batch at the next step
                job.cancel.set()
                if not released:
                    self._pool.returning(seq)

    def _grammar(self, response_format: str | None, lazy: Lazy | None = None) -> str | None:
        """The grammar an answer in ``response_format`` keeps to (where ``lazy``, once it
        starts as a call), parsed by llama.cpp and kept for the scheduler to clone: a
        request it cannot be kept to is refused before it waits for a sequence."""
        if response_format is None:
            return None
        grammar = (
            json_grammar(response_format) if lazy is None else lazy_call_grammar(response_format)
        )
        if self._grammars.has(grammar):
            return grammar
        llama = _llama_cpp()
        with self._vocabulary_in_use:
            if self._ctx is None:
                raise _stopping()
            if self._grammars.has(grammar):  # another request's, parsed as this one waited
                return grammar
            # What llama.cpp cannot read it reports on stderr with the grammar whole, up
            # to 256 KB outside the log: it becomes a line of the log.
            with native_stderr_captured() as written:
                sampler = parse_grammar(llama, self._model.vocab, grammar, lazy)
            _write_back(written[0], grammar.encode())
            if not sampler:
                raise unreadable_grammar()
            self._scheduler.find_unspelled()  # what the answer may not take, found once
            self._grammars.keep(grammar, sampler)
        return grammar

    async def close(self) -> None:
        if self._ctx is None:
            return
        await asyncio.to_thread(self._scheduler.close)
        await asyncio.to_thread(self._vocabulary_in_use.acquire)
        try:
            self._grammars.close()
            with native_stderr_silenced():  # llama.cpp reports its buffers as it frees them
                _llama_cpp().llama_free(self._ctx)
            self._ctx = None
            self._model.close()
        finally:
            self._vocabulary_in_use.release()


def _control_tokens(model: Any, n_vocab: int) -> tuple[str, ...]:
    """The texts of the vocabulary's control tokens (about 30 ms for 49,152 tokens)."""
    llama_cpp = _llama_cpp()
    control = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    return tuple(
        text
        for token in range(n_vocab)
        if llama_cpp.llama_vocab_get_attr(model.vocab, token) & control
        and (text := model.token_get_text(token))
    )


def _tokenize(vocab: Any, data: bytes, add_special: bool, parse_special: bool) -> list[int]:
    """The tokens of ``data``, with the model's automatic BOS/EOS (``add_special``) and
    special tokens written in it read as such (``parse_special``).

    A token nearly always spells at least one byte, so a buffer of the bytes plus the two
    automatic tokens holds them in one call; llama.cpp says when it needs more, and then
    it is asked again. (llama-cpp-python's helper allocates the model's whole training
    context on every call, which doubled the time to tokenize a short prompt.)
    """
    llama_cpp = _llama_cpp()
    room = len(data) + 2
    buffer = (llama_cpp.llama_token * room)()
    count = llama_cpp.llama_tokenize(
        vocab, data, len(data), buffer, room, add_special, parse_special
    )
    if count < 0:
        room = -count
        buffer = (llama_cpp.llama_token * room)()
        count = llama_cpp.llama_tokenize(
            vocab, data, len(data), buffer, room, add_special, parse_special
        )
    tokens: list[int] = buffer[:count]
    return tokens


def _fit_to_context(
    request: GenerationRequest, prompt_tokens: int, n_ctx: int
) -> GenerationRequest:
    params = request.params
    room = n_ctx - prompt_tokens
    if room >= params.max_tokens:
        return request
    if room > 0 and not params.max_tokens_explicit:
        return replace(request, params=replace(params, max_tokens=room))
    if params.max_tokens_explicit and params.max_tokens >= n_ctx:
        # Said of the prompt, the count would be of what is left of the code after it was
        # cut to make room (1 token), not of what the client sent.
        raise ContextLengthError(
            f"max_tokens is {params.max_tokens}, no less than the context window, which "
            f"holds the prompt too: {max_context(n_ctx)}; ask for fewer than {n_ctx} tokens",
            param="max_tokens",
        )
    tokens = f"{prompt_tokens} token{'' if prompt_tokens == 1 else 's'}"
    if room < 0:
        detail = f"the prompt is {tokens}, more than the context window: {max_context(n_ctx)}"
    elif room == 0:  # not more than the window: no room is left for a token of the answer
        detail = (
            f"the prompt is {tokens}, which fills the context window and leaves no room for "
            f"an answer: {max_context(n_ctx)}"
        )
    else:
        detail = (
            f"the prompt is {tokens} and max_tokens is {params.max_tokens}, together more "
            f"than the context window: {max_context(n_ctx)}"
        )
    if room <= 0:
        raise ContextLengthError(f"{detail}; shorten the prompt")
    raise ContextLengthError(
        f"{detail}; shorten the prompt or lower max_tokens", param="max_tokens"
    )


def _stopping() -> ShuttingDownError:
    return ShuttingDownError(
        "the server is stopping and this request had not started; send it again (to "
        "another replica, or once the server is back)",
        retry_after_s=1,
    )

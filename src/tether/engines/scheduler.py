"""Continuous batching on one llama.cpp context, in one thread.

Every in-flight request is a sequence of the context (its own KV cells, ``kv_unified``
off, so a sequence's numbers never depend on what else is in the batch). Each step puts
one token of every decoding sequence, and chunks of the prompts still being read, into
one batch, runs ``llama_decode`` once, and samples each sequence with its own C sampler
chain (its own seed). Requests join and leave between steps; a cancelled one leaves at
the next step. A finished sequence keeps its KV cells, so the next request given that
sequence reuses whatever prompt prefix they share.

A job may ask for drafts from its prompt (``tether.engines.lookup``): its step then feeds
the token to decode and the drafted tokens after it, asks for logits at each, and chooses
the next token at each place in turn (argmax, or its sampler chain), for as long as the
choice is the drafted token that was fed next; the KV cells of the rest are removed.
Every token is chosen from the same logits and the same random state that plain
decoding would have, one choice per emitted token, so the answer is the same bytes,
unless batched arithmetic flips a near-tie (``bench.suggest_lookup`` measures how often).

What goes to the callers' event loops is sent as a step's decode starts, and a sequence's
text at most every ``stream_interval_s``: its text of the steps between is joined into
one chunk. A request's first text goes as soon as its step ends; its end, with the next
step. Each send wakes an event loop thread that takes a core from llama.cpp's compute
threads, and each chunk costs Python on the way to the client; at one stream on 2
cores, sending every other token made decoding about 7% faster. A first text is the
time to first token, so the next step waits (briefly) until the event loops have handed
it to their callers: woken while both cores decode, a loop took 1.9 ms (median) to run.

Two facts shape the batch: llama.cpp splits a batch into sub-batches of consecutive,
increasing sequence ids (a gap costs a forward pass, so the batch is kept sorted and the
pool hands out the lowest free id when no prefix is to be reused), and ``llama_batch``
arrives uninitialised (every field of every entry is written).
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy  # llama-cpp-python's own dependency

from tether.engines.base import GenerationChunk, SamplingParams
from tether.engines.lazy_grammar import LAZY_ROOT, awaited, trigger
from tether.engines.lookup import PromptLookup
from tether.engines.parsed_grammars import ParsedGrammars
from tether.engines.slots import common_prefix_length
from tether.engines.stops import StopMatcher
from tether.errors import CancelledGeneration, EngineUnavailableError, RequestError, TetherError

logger = logging.getLogger(__name__)
DONE = object()  # the last item a job's inbox receives
# How long a step waits for the event loops to take a request's first text: long enough
# for an idle loop, short enough that a busy one cannot hold up decoding.
HANDOVER_WAIT_S = 0.005
TOP_K, MIN_P = 40, 0.05  # llama-cpp-python's defaults for sampled (temperature > 0) text
T = TypeVar("T")


@dataclass(frozen=True)
class Lazy:
    """A grammar kept only from where the answer starts as a call (``lazy_grammar``):
    ``listed``, or as a list of calls."""

    listed: bool


@dataclass
class Job:
    """One request for the scheduler; its inbox gets chunks, or an exception, then DONE."""

    seq: int
    tokens: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop  # where the caller waits on ``inbox``
    inbox: asyncio.Queue[Any]
    release: Callable[[], object]  # run on ``loop`` before DONE: the sequence is free again
    cancel: threading.Event = field(default_factory=threading.Event)
    draft: int = 0  # tokens drafted from the prompt per step; 0: none
    # GBNF the answer keeps to (tether.engines.grammar), parsed in the scheduler's grammars
    grammar: str | None = None
    lazy: Lazy | None = None  # the grammar keeps the answer once it starts as a call


@dataclass
class _Running:
    job: Job
    sampler: Any
    pending: list[int]  # prompt tokens not yet decoded
    n_past: int  # tokens of this sequence in the KV cache
    stops: StopMatcher
    decoder: Any  # incremental UTF-8 decoder: a character may span tokens
    cached: int = 0  # prompt tokens it found in its sequence's cache
    counted: bool = False  # a chunk has carried the prompt's counts
    generated: int = 0
    last: int | None = None  # sampled, to be decoded in the next step
    batch_index: int = -1  # where its logits are in this step's batch
    lookup: PromptLookup | None = None
    drafted: list[int] = field(default_factory=list)  # fed after ``last`` this step
    # With a grammar: ``sampler`` is the chain with it, ``plain`` the chain without it (None
    # for greedy, the argmax), ``grammar`` the chain's grammar, which also checks one token
    # at a time (the chain's, freed with it).
    plain: Any = None
    grammar: Any = None
    # While a lazy grammar awaits the start of a call: the answer so far, as llama.cpp
    # reads it (control tokens spelled), and the token is chosen without the grammar.
    awaiting: bytearray | None = None


@dataclass
class SchedulerStats:
    steps: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    python_seconds: float = 0.0  # per-step work outside llama_decode and sampling
    decode_seconds: float = 0.0
    drafted_tokens: int = 0
    accepted_tokens: int = 0  # drafted tokens the model kept


class Scheduler:
    def __init__(
        self,
        llama: Any,  # the llama_cpp module
        model: Any,  # llama_cpp._internals.LlamaModel
        ctx: Any,
        n_seq: int,
        n_ctx_seq: int,
        n_batch: int,
        stream_interval_s: float = 0.0,
        grammars: ParsedGrammars | None = None,
    ) -> None:
        self._llama = llama
        self._grammars = grammars if grammars is not None else ParsedGrammars(llama)
        self._model = model
        self._ctx = ctx
        self._memory = llama.llama_get_memory(ctx)
        self._vocab = model.vocab
        self._n_vocab = llama.llama_vocab_n_tokens(model.vocab)
        self.n_ctx_seq = n_ctx_seq
        self._n_batch = n_batch
        self._batch = llama.llama_batch_init(n_batch, 0, 1)
        self._piece_buffer = ctypes.create_string_buffer(256)
        # Each token's bytes, or None for an end-of-generation token, as the steps meet
        # them: asking llama.cpp again costs more per token than the rest of the emit.
        self._token_bytes: dict[int, bytes | None] = {}
        # A numpy view of each row of logits met, by its address: llama.cpp keeps its output
        # buffer from step to step, and making the view costs twice the argmax over it.
        self._logit_rows: dict[int, numpy.ndarray[Any, Any]] = {}
        self._logit_row = ctypes.c_float * self._n_vocab
        # The tokens an answer spells as nothing that are not its end (control tokens such
        # as <|im_start|>), once a grammar needs them, and a sampler that refuses them.
        self._unspelled: frozenset[int] | None = None
        self._unspelled_bias: Any = None
        # One candidate, for a grammar to say whether it allows a token.
        self._candidate = llama.llama_token_data(0, 0.0, 0.0)
        self._one_candidate = llama.llama_token_data_array(
            ctypes.pointer(self._candidate), 1, -1, False
        )
        self.cached: list[list[int]] = [[] for _ in range(n_seq)]  # KV contents per sequence
        self.stats = SchedulerStats()
        self._incoming: list[Job] = []
        self._chores: list[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = []
        # What goes to the callers' event loops: one wake-up per loop, not one per token.
        self._outbox: dict[asyncio.AbstractEventLoop, list[Callable[[], object]]] = {}
        self._unsent_text: dict[int, GenerationChunk] = {}  # per sequence, in the outbox
        self._stream_interval_s = stream_interval_s
        self._sent_at = 0.0
        self._urgent = False  # the outbox holds more than text: it goes with the next step
        self._running: dict[int, _Running] = {}
        self._first_text = False  # a request's first text is in the outbox: send it now
        self._wake = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="tether-llama", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._wake:
            if self._closing:
                raise EngineUnavailableError("the engine is shutting down")
            self._incoming.append(job)
            self._wake.notify()

    def between_steps(self, work: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``work`` in the scheduler's thread before the next step: a llama.cpp
        context must not be used from two threads at once."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._wake:
            if self._closing:
                raise EngineUnavailableError("the engine is shutting down")
            self._chores.append((work, done))
            self._wake.notify()
        return done

    def progress(self, seq: int) -> tuple[int, int, int] | None:
        """How far the request on ``seq`` has come: prompt tokens found cached, prompt
        tokens evaluated since, tokens generated; None until the scheduler admits it.

        Read from another thread without a lock: each field is one object, replaced whole,
        so none is torn, though two of them may come from consecutive steps."""
        running = self._running.get(seq)
        if running is None:
            return None
        read = len(running.job.tokens) - running.cached - len(running.pending)
        return running.cached, read, running.generated

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()
        self._llama.llama_batch_free(self._batch)

    # -- the loop, in its own thread ------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self._incoming or self._chores or self._running or self._closing):
                    self._wake.wait()
                chores, self._chores = self._chores, []
                if self._closing:
                    incoming, self._incoming = self._incoming, []
                    break
                incoming, self._incoming = self._incoming, []
            for work, done in chores:  # before the jobs that came after them
                if done.set_running_or_notify_cancel():
                    try:
                        done.set_result(work())
                    except BaseException as exc:  # the caller gets it
                        done.set_exception(exc)
            admitted = 0
            try:
                for job in incoming:
                    self._admit(job)
                    admitted += 1
                if self._running:
                    self._step()
            except Exception as exc:  # a fault here must not leave callers waiting forever
                logger.exception("the scheduler failed a step")
                error = EngineUnavailableError(f"the engine failed ({exc!r}); retry the request")
                # The admitted are running (finished below) or already ended: ending one
                # twice would hand its sequence back twice.
                for job in incoming[admitted:]:
                    self._fail(job, error)
                for running in list(self._running.values()):
                    self._finish(running, error=error)
                for seq in range(len(self.cached)):  # its cache cells are in doubt
                    self._llama.llama_memory_seq_rm(self._memory, seq, -1, -1)
                    self.cached[seq] = []
            if not self._running:
                self._flush()  # else the next step sends it as its decode starts
        for _, done in chores:
            if done.set_running_or_notify_cancel():
                done.set_exception(EngineUnavailableError("the engine is shutting down"))
        for job in incoming:
            self._fail(job, EngineUnavailableError("the engine is shutting down"))
        for running in list(self._running.values()):
            self._finish(running, error=EngineUnavailableError("the engine is shutting down"))
        self._flush()

    # -- a sequence's cache to and from a file: in the loop's thread, between steps ---------

    def save_sequence(self, seq: int, path: Path) -> tuple[int, int]:
        """Write ``seq``'s KV cells and their tokens to ``path`` (replacing it whole):
        tokens and bytes written."""
        tokens = self.cached[seq]
        partial_path = path.with_name(f".{path.name}.partial")
        written = self._llama.llama_state_seq_save_file(
            self._ctx,
            str(partial_path).encode(),
            seq,
            (self._llama.llama_token * len(tokens))(*tokens),
            len(tokens),
        )
        if not written:
            partial_path.unlink(missing_ok=True)
            raise TetherError(
                f"llama.cpp could not write {path.name}; check the space and permissions of "
                "engine.slot_save_path"
            )
        partial_path.chmod(0o600)  # the cells and the tokens are the prompt's text
        partial_path.replace(path)
        return len(tokens), written

    def restore_sequence(self, seq: int, path: Path) -> tuple[int, int]:
        """Replace ``seq``'s KV cells and tokens with those saved in ``path``: tokens and
        bytes read. A file that does not load leaves the sequence empty."""
        self.erase_sequence(seq)
        room = self.n_ctx_seq
        tokens = (self._llama.llama_token * room)()
        count = ctypes.c_size_t(0)
        read = self._llama.llama_state_seq_load_file(
            self._ctx, str(path).encode(), seq, tokens, room, ctypes.byref(count)
        )
        restored = tokens[: count.value]
        if read and not all(0 <= token < self._n_vocab for token in restored):
            read = 0
        if not read:
            self.erase_sequence(seq)
            raise RequestError(
                f"{path.name} is not a sequence saved by this model with these engine settings "
                f"(KV cache type, context), or holds more than a sequence's {room} tokens",
                param="filename",
            )
        self.cached[seq] = restored
        return len(restored), read

    def erase_sequence(self, seq: int) -> int:
        """Drop ``seq``'s KV cells: the tokens it held."""
        erased = len(self.cached[seq])
        self._llama.llama_memory_seq_rm(self._memory, seq, -1, -1)
        self.cached[seq] = []
        return erased

    def _send(self, job: Job, item: Any) -> None:
        """Put ``item`` in ``job``'s outbox; text joins the sequence's text not yet sent."""
        if _is_text(item):
            unsent = self._unsent_text.get(job.seq)
            if unsent is not None:
                unsent.text += item.text
                unsent.completion_tokens = item.completion_tokens
                return
            self._unsent_text[job.seq] = item
        else:
            self._unsent_text.pop(job.seq, None)  # text after it must come after it
            self._urgent = True
        self._outbox.setdefault(job.loop, []).append(partial(job.inbox.put_nowait, item))

    def _flush(self, text_due: bool = False, handed_over: bool = False) -> None:
        """Send the outbox; with ``text_due``, only once text has waited the stream interval
        or something else waits in it; with ``handed_over``, return once the event loops
        have given it to their callers (or after ``HANDOVER_WAIT_S``)."""
        now = time.perf_counter()
        if text_due and not self._urgent and now - self._sent_at < self._stream_interval_s:
            return
        self._sent_at = now
        self._urgent = False
        self._unsent_text.clear()
        outbox, self._outbox = self._outbox, {}
        handovers: list[threading.Event] = []
        for loop, calls in outbox.items():
            handover = threading.Event() if handed_over else None
            if handover is not None:
                # Queued behind the callers' tasks that the calls wake: set once they ran.
                calls.append(partial(loop.call_soon, handover.set))
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_call_all, calls)
                if handover is not None:
                    handovers.append(handover)
        deadline = now + HANDOVER_WAIT_S
        for handover in handovers:
            handover.wait(max(0.0, deadline - time.perf_counter()))

    def _admit(self, job: Job) -> None:
        """Start a job on its sequence, keeping the KV cells of the prefix it shares."""
        cached = self.cached[job.seq]
        keep = common_prefix_length(cached, job.tokens)
        keep = min(keep, len(job.tokens) - 1)  # the last prompt token is decoded for logits
        if not self._llama.llama_memory_seq_rm(self._memory, job.seq, keep, -1):
            self._llama.llama_memory_seq_rm(self._memory, job.seq, -1, -1)
            keep = 0
        self.cached[job.seq] = job.tokens[:keep]
        self.stats.prompt_tokens += len(job.tokens)
        self.stats.cached_prompt_tokens += keep
        # Cloned: parsing a large grammar takes llama.cpp milliseconds, which every running
        # sequence would wait on here; the request's thread parsed it.
        grammar = None
        if job.grammar is not None:
            grammar = self._grammars.clone(job.grammar)
            if grammar is None:  # let go of while the request waited: parsed here
                grammar = grammar_sampler(self._llama, self._vocab, job.grammar, job.lazy)
        sampler = self._sampler(job.params, grammar)
        if grammar is not None:  # the chain's first: one copy, as a copy costs a clone
            grammar = self._llama.llama_sampler_chain_get(sampler, 0)
        self._running[job.seq] = _Running(
            job=job,
            sampler=sampler,
            plain=self._sampler(job.params) if grammar is not None else None,
            grammar=grammar,
            pending=job.tokens[keep:],
            n_past=keep,
            cached=keep,
            # A JSON answer ends where its grammar does: a stop string met inside it (a
            # client's "\n\n" in a value, a name) cut it short as if it had ended.
            # An answer that may be text keeps the client's stops, a call begun in it too, as
            # without the grammar: from the trigger on they would need its text held back.
            stops=StopMatcher(job.params.stop if job.grammar is None or job.lazy else ()),
            awaiting=bytearray() if job.lazy is not None else None,
            decoder=codecs.getincrementaldecoder("utf-8")(errors="replace"),
            lookup=PromptLookup(job.tokens) if job.draft else None,
        )

    def _sampler(self, params: SamplingParams, grammar: Any = None) -> Any:
        """The C sampler chain for sampled text, or text that keeps to ``grammar`` (a
        grammar sampler, which the chain takes and puts first: the others choose among the
        tokens it allows); None for free greedy text, which takes the argmax."""
        if params.temperature <= 0 and grammar is None:
            return None
        llama = self._llama
        chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        samplers = [grammar] if grammar is not None else []
        if grammar is not None and self._unspelled_tokens():
            bias = self._unspelled_bias
            samplers.append(llama.llama_sampler_init_logit_bias(self._n_vocab, len(bias), bias))
        if params.temperature <= 0:
            samplers.append(llama.llama_sampler_init_greedy())
        else:
            samplers += [
                llama.llama_sampler_init_top_k(TOP_K),
                llama.llama_sampler_init_top_p(params.top_p, 1),
                llama.llama_sampler_init_min_p(MIN_P, 1),
                llama.llama_sampler_init_temp(params.temperature),
                llama.llama_sampler_init_dist(params.seed),
            ]
        for sampler in samplers:
            llama.llama_sampler_chain_add(chain, sampler)
        return chain

    def _step(self) -> None:
        started = time.perf_counter()
        for running in [r for r in self._running.values() if r.job.cancel.is_set()]:
            self._finish(running, error=CancelledGeneration("client disconnected"))
        if not self._running:
            return
        batch = self._batch
        order = sorted(self._running)
        decoding = [self._running[seq] for seq in order if not self._running[seq].pending]
        room = self._n_batch - len(decoding)
        for running in decoding:
            running.drafted = self._draft(running, room)
            room -= len(running.drafted)
        prompt_room = max(1, room)
        n = 0
        fed: dict[int, int] = {}
        for seq in order:
            running = self._running[seq]
            if running.pending:
                if prompt_room <= 0:
                    running.batch_index = -1
                    continue
                chunk = running.pending[: min(prompt_room, self._n_batch - n)]
                prompt_room -= len(chunk)
                last = len(chunk) == len(running.pending)
                for offset, token in enumerate(chunk):
                    self._put(
                        n, token, running.n_past + offset, seq, last and offset == len(chunk) - 1
                    )
                    n += 1
                running.batch_index = n - 1 if last else -1
                fed[seq] = len(chunk)
                # Sent before the step runs: a caller that leaves during it is charged
                # for the prompt this step reads, which no cancellation can spare.
                read = GenerationChunk(
                    text="", read_tokens=running.n_past + len(chunk), cached_tokens=running.cached
                )
                self._send(running.job, read)
            else:
                running.batch_index = n
                for offset, fed_token in enumerate([running.last, *running.drafted]):
                    self._put(n, fed_token, running.n_past + offset, seq, True)
                    n += 1
                fed[seq] = 1 + len(running.drafted)
        batch.n_tokens = n
        # The last steps' tokens go out now: the event loops handle them while llama_decode
        # runs without the GIL, instead of taking it while this thread prepares the step.
        self._flush(text_due=True)
        decode_started = time.perf_counter()
        status = self._llama.llama_decode(self._ctx, batch)
        decoded = time.perf_counter()
        self.stats.decode_seconds += decoded - decode_started
        self.stats.steps += 1
        if status != 0:
            error = EngineUnavailableError(
                f"llama.cpp could not decode (status {status}); lower engine.n_parallel or "
                "engine.n_ctx"
            )
            for seq in list(fed):
                self._finish(self._running[seq], error=error)
            return
        for seq, count in fed.items():
            running = self._running[seq]
            if running.pending:
                self.cached[seq].extend(running.pending[:count])
                running.n_past += count
                running.pending = running.pending[count:]
                if running.pending or running.batch_index < 0:
                    continue
                self._next_token(running)
            elif running.drafted:
                self._verify(running)
            else:
                self.cached[seq].append(running.last)  # type: ignore[arg-type]
                running.n_past += 1
                self._next_token(running)
        self.stats.python_seconds += (decode_started - started) + (time.perf_counter() - decoded)
        if self._first_text:  # its wait is the time to first token: not one step more
            self._first_text = False
            self._flush(handed_over=True)

    def _draft(self, running: _Running, room: int) -> list[int]:
        """Tokens to check after ``running.last`` this step: up to its job's draft, within
        the batch's ``room``, its context and its max_tokens."""
        if running.lookup is None:
            return []
        limit = min(
            running.job.draft,
            room,
            self.n_ctx_seq - running.n_past - 2,
            running.job.params.max_tokens - running.generated - 1,
        )
        return running.lookup.draft(limit)

    def _verify(self, running: _Running) -> None:
        """Emit the token chosen after each fed token for as long as it is the next drafted
        one; then drop the KV cells of the drafted tokens the model did not keep."""
        seq = running.job.seq
        drafted = running.drafted
        fed = [running.last, *drafted]
        base, kept = running.n_past, 0
        for offset in range(len(fed)):
            token = self._choose(running, running.batch_index + offset)
            running.n_past = base + offset + 1  # as plain decoding would have it here
            if not self._emit(running, token) or offset == len(drafted):
                break
            if token != drafted[offset]:
                break
            kept += 1
        self.stats.drafted_tokens += len(drafted)
        self.stats.accepted_tokens += kept
        self.cached[seq].extend(fed[: kept + 1])  # type: ignore[arg-type]
        running.n_past = base + kept + 1
        if kept < len(drafted):
            self._llama.llama_memory_seq_rm(self._memory, seq, running.n_past, -1)
        if running.lookup is not None:
            running.lookup.accepted(kept)

    def _put(self, i: int, token: int | None, pos: int, seq: int, logits: bool) -> None:
        batch = self._batch
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = 1 if logits else 0

    def _next_token(self, running: _Running) -> None:
        if running.job.params.max_tokens <= 0:  # the prompt is read (and cached): done
            self._finish(running, reason="length")
            return
        self._emit(running, self._choose(running, running.batch_index))

    def _choose(self, running: _Running, batch_index: int) -> int:
        """The next token from the logits at ``batch_index``: the argmax, or a draw of the
        sequence's sampler chain (which advances its random state once)."""
        if running.awaiting is not None:
            return self._choose_awaiting(running, running.awaiting, batch_index)
        if running.grammar is not None:
            return self._choose_in_grammar(running, batch_index)
        if running.sampler is None:
            return self._argmax(batch_index)
        token: int = self._llama.llama_sampler_sample(running.sampler, self._ctx, batch_index)
        return token

    def _choose_awaiting(self, running: _Running, awaiting: bytearray, batch_index: int) -> int:
        """The next token where a lazy grammar awaits the start of a call: the one chosen
        without it, which the grammar is shown, as it keeps the rest where this one starts
        a call. Where the answer can no longer start one, the grammar is let go of: the
        rest is chosen as it would have been without it."""
        llama = self._llama
        if running.plain is None:
            token = self._argmax(batch_index)
        else:
            token = int(llama.llama_sampler_sample(running.plain, self._ctx, batch_index))
        llama.llama_sampler_accept(running.sampler, token)
        awaiting += spell(llama, self._vocab, token, special=True, buffer=self._piece_buffer)
        state = awaited(bytes(awaiting), running.job.lazy is not None and running.job.lazy.listed)
        if state == "fired":  # llama.cpp's grammar took the call's start: it keeps the rest
            running.awaiting = None
        elif state == "never":
            llama.llama_sampler_free(running.sampler)  # and its grammar
            running.sampler, running.plain = running.plain, None
            running.grammar = running.awaiting = None
        return token

    def _choose_in_grammar(self, running: _Running, batch_index: int) -> int:
        """The next token the grammar allows. Masking the whole vocabulary costs about as
        much as a step of this model, so the token is chosen without the grammar first,
        as llama.cpp's own sampling does, and only one the grammar refuses is chosen again
        with it: the argmax of the allowed is the argmax where the argmax is allowed, and
        a draw refused and drawn again among the allowed is a draw among the allowed."""
        llama = self._llama
        if running.plain is None:
            token = self._argmax(batch_index)
        else:
            token = llama.llama_sampler_sample(running.plain, self._ctx, batch_index)
        if token not in self._unspelled_tokens() and self._allows(running.grammar, token):
            llama.llama_sampler_accept(running.sampler, token)
        else:  # which accepts it, the chain's grammar too
            token = llama.llama_sampler_sample(running.sampler, self._ctx, batch_index)
        return int(token)

    def _unspelled_tokens(self) -> frozenset[int]:
        """The tokens a grammar's answer may not take: llama.cpp's grammar reads a control
        token as its text (``<filename>``), which the answer spells as nothing, so a
        string kept to a pattern, a length or an enum lost what the grammar counted."""
        return self._unspelled if self._unspelled is not None else self.find_unspelled()

    def find_unspelled(self) -> frozenset[int]:
        """Find the tokens of ``_unspelled_tokens``, once: a walk of the vocabulary (55 ms
        for the default model's), which the engine makes in the thread of the first
        request that brings a grammar, so the running sequences do not wait on it. Its
        own buffer: the scheduler's thread spells answers in the other meanwhile."""
        if self._unspelled is None:
            llama, vocab, buffer = self._llama, self._vocab, ctypes.create_string_buffer(256)
            unspelled = frozenset(
                token
                for token in range(self._n_vocab)
                if not spell(llama, vocab, token, special=False, buffer=buffer)
                and not llama.llama_vocab_is_eog(vocab, token)
            )
            refused = [(token, float("-inf")) for token in sorted(unspelled)]
            self._unspelled_bias = (llama.llama_logit_bias * len(refused))(*refused)
            self._unspelled = unspelled  # last: the bias is there once this is
        return self._unspelled

    def _allows(self, grammar: Any, token: int) -> bool:
        """Whether ``grammar``, where the answer has taken it so far, allows ``token``."""
        self._candidate.id, self._candidate.logit = token, 0.0
        self._one_candidate.size, self._one_candidate.selected = 1, -1
        self._llama.llama_sampler_apply(grammar, ctypes.byref(self._one_candidate))
        return bool(self._candidate.logit != float("-inf"))

    def _emit(self, running: _Running, token: int) -> bool:
        """Send ``token``'s text; False when it ends the sequence (which is then finished)."""
        params = running.job.params
        spelled = self._spelled(token)
        if spelled is None:
            self._finish(running, reason="stop")
            return False
        running.generated += 1
        piece = running.decoder.decode(spelled)
        text = running.stops.feed(piece)
        if text:
            chunk = GenerationChunk(text=text, completion_tokens=running.generated)
            if not running.counted:  # for an answer the pipeline ends before the engine does
                chunk.prompt_tokens, chunk.cached_tokens = len(running.job.tokens), running.cached
                running.counted = True
                self._first_text = True
            self._send(running.job, chunk)
        if running.stops.stopped:
            self._finish(running, reason="stop")
        elif running.generated >= params.max_tokens or running.n_past + 1 >= self.n_ctx_seq:
            self._finish(running, reason="length")
        else:
            running.last = token
            if running.lookup is not None:
                running.lookup.append(token)
            return True
        return False

    def _argmax(self, batch_index: int) -> int:
        """The most likely token, the first of equals as llama.cpp's greedy sampler picks it,
        at a sixth of its cost (it builds a candidate array over the whole vocabulary)."""
        logits = self._llama.llama_get_logits_ith(self._ctx, batch_index)
        address = ctypes.addressof(logits.contents)
        row = self._logit_rows.get(address)
        if row is None:
            if len(self._logit_rows) >= 2 * self._n_batch:  # rows of buffers since freed
                self._logit_rows.clear()
            row = numpy.frombuffer(self._logit_row.from_address(address), dtype=numpy.float32)
            self._logit_rows[address] = row
        return int(row.argmax())

    def _spelled(self, token: int) -> bytes | None:
        """The bytes ``token`` spells; None if it ends generation."""
        try:
            return self._token_bytes[token]
        except KeyError:
            pass
        spelled = (
            None
            if self._llama.llama_vocab_is_eog(self._vocab, token)
            else spell(self._llama, self._vocab, token, special=False, buffer=self._piece_buffer)
        )
        self._token_bytes[token] = spelled
        return spelled

    def _finish(
        self, running: _Running, reason: str = "stop", error: BaseException | None = None
    ) -> None:
        job = running.job
        del self._running[job.seq]
        for sampler in (running.sampler, running.plain):  # the chain frees its grammar
            if sampler is not None:
                self._llama.llama_sampler_free(sampler)
        try:
            if error is not None:
                self._send(job, error)
                return
            # Bytes still in the decoder are a character cut off by the token limit: it can
            # never be completed, so it is dropped rather than sent as U+FFFD.
            tail = running.stops.flush()
            self._send(
                job,
                GenerationChunk(
                    text=tail,
                    finish_reason=reason,  # type: ignore[arg-type]
                    prompt_tokens=len(job.tokens),
                    completion_tokens=running.generated,
                    cached_tokens=running.cached,
                    stop_word=running.stops.matched,
                    held_tokens=running.n_past,
                ),
            )
        finally:
            self._end(job)

    def _fail(self, job: Job, error: BaseException) -> None:
        self._send(job, error)
        self._end(job)

    def _end(self, job: Job) -> None:
        # The sequence goes back before the caller hears DONE, so a client that sends its
        # next request at once finds it free.
        self._outbox.setdefault(job.loop, []).append(job.release)
        self._send(job, DONE)


def grammar_sampler(llama: Any, vocab: Any, grammar: str, lazy: Lazy | None = None) -> Any:
    """llama.cpp's sampler of text that keeps to ``grammar`` (GBNF; where ``lazy``, once
    the answer starts as a call)."""
    sampler = parse_grammar(llama, vocab, grammar, lazy)
    if not sampler:
        raise unreadable_grammar()
    return sampler


def parse_grammar(llama: Any, vocab: Any, grammar: str, lazy: Lazy | None) -> Any:
    """llama.cpp's sampler of ``grammar``, from its rule ``root``, or where ``lazy`` a lazy
    one, from ``LAZY_ROOT`` once the answer matches the trigger; NULL where it cannot read
    it."""
    if lazy is None:
        return llama.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    patterns = (ctypes.c_char_p * 1)(trigger(lazy.listed).encode())
    return llama.llama_sampler_init_grammar_lazy_patterns(
        vocab, grammar.encode(), LAZY_ROOT.encode(), patterns, 1, None, 0
    )


def unreadable_grammar() -> RequestError:
    return RequestError(
        "the JSON schema cannot be followed: llama.cpp cannot read the grammar made of "
        "it (an empty enum, anyOf or oneOf, for one, allows no answer; the server's log "
        "may say what else it could not read)",
        param="response_format",
    )


def spell(llama: Any, vocab: Any, token: int, *, special: bool, buffer: Any = None) -> bytes:
    """The bytes ``token`` spells, special tokens as their text only if ``special``
    (llama-cpp-python's own helper returns its whole buffer); ``buffer`` (256 bytes) is
    reused when given."""
    buffer = buffer if buffer is not None else ctypes.create_string_buffer(256)
    size = llama.llama_token_to_piece(vocab, token, buffer, 256, 0, special)
    if size < 0:  # longer than the buffer: ask again with room for it
        buffer = ctypes.create_string_buffer(-size)
        size = llama.llama_token_to_piece(vocab, token, buffer, -size, 0, special)
    return bytes(buffer.raw[:size])


def _is_text(item: object) -> bool:
    """Whether ``item`` is only text, which may be joined to the text before it. Word of
    how much of the prompt a step reads is not: joined, it kept an earlier step's count,
    and held for the stream interval, it did not reach a caller who left during the step."""
    return (
        isinstance(item, GenerationChunk)
        and item.finish_reason is None
        and item.prompt_tokens is None
        and item.read_tokens is None
    )


def _call_all(calls: list[Callable[[], object]]) -> None:
    for call in calls:
        call()

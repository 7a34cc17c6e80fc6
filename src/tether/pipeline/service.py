"""The request pipeline shared by the server and the CLI, in DESIGN's nine steps.

``prepare`` takes a task from any entry point to the exact request an engine receives
(steps 1 to 5), ``stream`` generates, checks and records it (6 to 8), and the caller
responds in the shape of its API (9). Plugins do the governance work; the plugin manager
is built by the server app or the CLI command and handed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import pluggy

from tether.engines.base import (
    Engine,
    Estimating,
    EstimatingPrompts,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    PromptTokensBound,
    Tokenizer,
)
from tether.engines.stops import StopMatcher
from tether.errors import ConfigError, ContextLengthError, PolicyBlockedError, UnknownModelError
from tether.findings import Finding
from tether.languages import comment_marker, guess_language
from tether.pipeline import governance
from tether.pipeline.chat import KNOWN_CONTROL_TOKENS, as_plain_text, render_chat
from tether.pipeline.fim import (
    ContextSnippet,
    FimInput,
    asks_in_chat,
    edits_answers,
    infill_request,
    render_fim,
    resolve_template,
)
from tether.pipeline.holdback import SecretHoldback, SecretKeywords
from tether.pipeline.indent import IndentLimit
from tether.pipeline.infill import EditorFilter, primer
from tether.pipeline.result import AnswerChunk, Completion, Findings, Retrieved
from tether.pipeline.reviews import PromptReview
from tether.pipeline.task import ChatTask, CompletionTask, FimTask, Task
from tether.pipeline.window import fit_window
from tether.policy import builtin_rules
from tether.settings import Settings
from tether.templates import PromptTemplates
from tether.tokens import Principal

# Tokens a FIM prompt may add beyond its rendered text: BOS, special tokens, a primer.
TEMPLATE_TOKENS = 16
BARE_PROMPTS_KEPT = 64
# Threads for steps that call third-party hooks: such a hook may wait on a remote service,
# so there are more than cores, as in asyncio's own pool at its largest.
PLUGIN_THREADS = 32

_T = TypeVar("_T")


@dataclass(frozen=True)
class Prepared:
    """A governed, rendered request, ready for the engine."""

    id: str  # the answer's id, e.g. "cmpl-<request_id>"; traces are filed under it
    request_id: str
    created: int
    model: str
    system_fingerprint: str
    template: str
    generation: GenerationRequest
    task: Task  # after governance: what the engine is actually shown
    review: PromptReview
    principal: Principal | None = None
    endpoint: str = ""
    started: float = 0.0  # perf_counter() when preparation began
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    snippets: tuple[Retrieved, ...] = ()  # what step 3 found, in the prompt or not
    # The code around the cursor was cut to fit the context window (llama.cpp's
    # "truncated", which editors show as a full context).
    truncated: bool = False
    # Fingerprints of the values the policy pseudonymized in what the client sent, which
    # come back to it in the answer; not those of a snippet or of context tether added.
    given_back: frozenset[str] = frozenset()

    @property
    def snippets_used(self) -> tuple[dict[str, Any], ...]:
        return tuple(s.reference for s in self.snippets if s.fitted)

    @property
    def seed(self) -> int:
        return self.generation.params.seed


class SnippetRetriever(Protocol):
    """Step 3: vetted snippets from the function store for a task (``tether.store``)."""

    def for_task(self, task: Task, count_tokens: Callable[[str], int]) -> tuple[Retrieved, ...]: ...


class Recorder(Protocol):
    """Keeps a record of each finished request: the audit log, the trace store."""

    def record(self, prepared: Prepared, completion: Completion) -> None: ...


@dataclass(frozen=True)
class _Rendered:
    generation: GenerationRequest
    template: str


class Pipeline:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        plugins: pluggy.PluginManager,
        recorders: Sequence[Recorder] = (),
        retriever: SnippetRetriever | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.plugins = plugins
        self.recorders = list(recorders)
        self.retriever = retriever
        # Asked once: a runtime-checkable Protocol's isinstance costs tens of microseconds.
        self._bound = engine.prompt_tokens_bound if isinstance(engine, PromptTokensBound) else None
        # The built-in compressor only cuts what the policy read; another may write anew.
        self._writes_context = any(
            impl.plugin_name != "tether.context"
            for impl in plugins.hook.compress_context.get_hookimpls()
        )
        # A third-party plugin's hooks may take any time: a server runs the steps that call
        # them off its event loop, whatever the request's size, so one slow plugin does not
        # hold up every other request (and /health) meanwhile; and in a pool of their own,
        # so slow calls filling it do not hold up the dashboard, traces or audit flushes.
        hooks = (plugins.hook.govern_prompt, plugins.hook.check_completion)
        runs_foreign_hooks = self._writes_context or any(
            not impl.plugin_name.startswith("tether.")
            for hook in hooks
            for impl in hook.get_hookimpls()
        )
        self._hook_pool = (
            ThreadPoolExecutor(PLUGIN_THREADS, thread_name_prefix="tether-plugin")
            if runs_foreign_hooks
            else None
        )
        info = engine.info()
        self.model_id = info.model_id
        self._keeps_chosen_calls = info.keeps_chosen_calls
        identity = (
            f"{info.model_sha256 or info.model_id}|{info.engine}|{info.engine_version}|{info.build}"
        )
        self.system_fingerprint = "fp_" + hashlib.sha256(identity.encode()).hexdigest()[:12]
        self.fim_template_name, self.fim_template = resolve_template(
            settings.engine.fim_template, info.fim_tokens
        )
        self.templates = PromptTemplates(settings.templates.dir)
        self.templates.load_all()
        self._bare_prompts: dict[str, str] = {}  # language -> a FIM prompt without code
        self.holds_streams = holds_streams(settings)
        # Otherwise streams go out live, but a line that may hold a secret waits.
        live = not self.holds_streams
        self.secret_keywords = SecretKeywords.from_settings(settings) if live else None

    def describe(self) -> dict[str, Any]:
        """Who answers: what a manifest records so an answer can be made again."""
        info = self.engine.info()
        return {
            "model": info.model_id,
            "model_sha256": info.model_sha256,
            "engine": info.engine,
            "engine_version": info.engine_version,
            "build": info.build,
            "n_ctx": info.n_ctx,
            "fim_template": self.fim_template_name,
            "system_fingerprint": self.system_fingerprint,
            "templates": {t.name: t.sha256 for t in self.templates.info()},
        }

    async def run_step(self, step: Callable[[], _T], *, large: bool) -> _T:
        """``step``'s result, from a step that governs or checks text (a prompt's review,
        an answer's check): in the plugin pool where a third-party hook may run, in
        asyncio's pool for ``large`` text, else on the loop (a thread hop costs more than
        such a step)."""
        if self._hook_pool is not None:
            context = contextvars.copy_context()  # as asyncio.to_thread keeps it
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._hook_pool, context.run, step)
        return await asyncio.to_thread(step) if large else step()

    # -- steps 1 to 5 ------------------------------------------------------------------

    def prepare(
        self,
        task: Task,
        *,
        principal: Principal | None = None,
        endpoint: str = "",
        request_id: str | None = None,
        stream: bool = True,
    ) -> Prepared:
        # 1. authenticate: the caller has turned its credentials into ``principal`` (a
        #    scoped bearer token on HTTP, the local user on the command line).
        self.check_model(task.model)
        task = _without_byte_order_marks(_with_lf_line_ends(task))
        if task.params.chosen_call_format and not self._keeps_chosen_calls:
            # Nothing the engine uses: not governed, traced, audited or pinned for a replay.
            task = replace(task, params=replace(task.params, chosen_call_format=None))
        started = time.perf_counter()
        # 2. govern the prompt, before anything is tokenized; a block raises here.
        task, review = governance.govern(self.plugins, task, principal.name if principal else None)
        given_back = frozenset(
            f.fingerprint for f in review.findings if f.action == "pseudonymize" and f.fingerprint
        )
        governed = time.perf_counter()
        # 3. gather context: vetted snippets from the function store; what the client
        #    sent beside the cursor travels in the task.
        snippets = self.retriever.for_task(task, self.count_tokens) if self.retriever else ()
        snippets = self._govern_snippets(snippets, task, review, principal)
        retrieved = time.perf_counter()
        # 4. compress the context to the token budget (``compress_context``).
        governed_task = task
        fitted = tuple(s for s in snippets if s.fitted)
        task, truncated = self._compress(task, sum(s.tokens for s in fitted))
        task = self._govern_added_context(governed_task, task, review, principal, fitted)
        # Values pseudonymized anywhere (the prompt, a snippet, the context) come back in
        # the answer: the client's stops are then matched there, not on placeholders.
        task = _stops_after_restoring(task) if review.restorers else task
        compressed = time.perf_counter()
        # 5. render the prompt from the templates. An answer the pipeline may end early
        #    comes from the engine in pieces, whatever the client asked, so it can stop it:
        #    at a limit of the request's, or where the editor's filter finds the hole filled.
        pieces = stream or task.params.pipeline_may_end or self._editor(task) is not None
        rendered = self._render(task, pieces, tuple(s for s in snippets if s.fitted))
        request_id = request_id or uuid.uuid4().hex
        return Prepared(
            id=f"{'chatcmpl' if task.kind == 'chat' else 'cmpl'}-{request_id}",
            request_id=request_id,
            created=int(time.time()),
            model=self.model_id,
            system_fingerprint=self.system_fingerprint,
            template=rendered.template,
            generation=rendered.generation,
            task=task,
            review=review,
            principal=principal,
            endpoint=endpoint,
            started=started,
            timings={
                "govern": governed - started,
                "retrieve": retrieved - governed,
                "compress": compressed - retrieved,
                "render": time.perf_counter() - compressed,
            },
            snippets=snippets,
            truncated=truncated,
            given_back=given_back,
        )

    def check_model(self, requested: str | None) -> None:
        if requested and requested != self.model_id:
            raise UnknownModelError(
                f"model {requested!r} is not served here; use {self.model_id!r} "
                "(GET /v1/models lists the models)",
                param="model",
            )

    def prompt_tokens_bound(self, generation: GenerationRequest) -> int:
        """At most how many tokens ``generation``'s prompt takes: counted by the engine's
        tokenizer, or, where it only estimates (a gateway), the estimate's bound."""
        if self._bound is not None:
            return self._bound(generation)
        return self.count_tokens(generation.shown_text())

    def count_tokens(self, text: str) -> int:
        counted = self.engine.count_tokens(text)
        # Engines without a local tokenizer get an estimate: about four characters a token.
        return counted if counted is not None else len(text) // 4 + 1

    def _text_tokens(self, text: str) -> int:
        """Tokens of ``text`` as a part of a prompt or an answer: without the BOS that a
        count of a whole prompt holds, which llama.cpp gives even an empty one."""
        if isinstance(self.engine, Tokenizer):
            with contextlib.suppress(ContextLengthError):  # beyond any window: estimated
                return len(self.engine.token_ids(text, add_special=False, parse_special=True))
        return max(0, self.count_tokens(text) - self.count_tokens(""))

    def _compress(self, task: Task, retrieved_tokens: int = 0) -> tuple[Task, bool]:
        """Cut the code around the cursor to the context window (less what the store's
        snippets take), then let ``compress_context`` fit the client's context snippets
        into what is left. Also whether the code was cut."""
        n_ctx = self.engine.info().n_ctx
        if not isinstance(task, FimTask) or not n_ctx:
            return task, False
        fim = task.fim
        # A bound the engine may lower (a default, llama.cpp's n_predict) keeps at most half
        # the window from the code: the engine cuts the answer to what is left.
        reserved = task.params.max_tokens
        if not task.params.max_tokens_explicit:
            reserved = min(reserved, n_ctx // 2)
        room = n_ctx - reserved - self._overhead_tokens(task) - retrieved_tokens
        code_tokens = self.count_tokens(fim.prefix + fim.suffix)
        cut = False
        if code_tokens > room:
            prefix, suffix = fit_window(fim.prefix, fim.suffix, room, self.count_tokens)
            cut = (prefix, suffix) != (fim.prefix, fim.suffix)
            fim = replace(fim, prefix=prefix, suffix=suffix)
            task = replace(task, fim=fim)
            code_tokens = self.count_tokens(prefix + suffix)
        if not fim.context:
            return task, cut
        used = n_ctx - room + code_tokens
        budget = max(0, n_ctx - used)
        kept = self.plugins.hook.compress_context(
            snippets=list(fim.context),
            budget_tokens=budget,
            count_tokens=self.count_tokens,
        )
        if not isinstance(kept, list) or not all(isinstance(s, ContextSnippet) for s in kept):
            raise ConfigError(
                f"a compress_context plugin returned {type(kept).__name__} "
                f"{str(kept)[:80]!r}, not a list of ContextSnippet; fix or disable it"
            )
        if self._writes_context:  # a plugin's: past the budget, the client would be blamed
            spent = sum(self.count_tokens(s.text) for s in kept)
            if spent > budget:
                raise ConfigError(
                    f"a compress_context plugin returned {spent} tokens of context for a "
                    f"budget of {budget}; fix or disable it"
                )
        kept = self._framed_to_fit(kept, budget, fim)
        return replace(task, fim=replace(fim, context=tuple(kept))), cut

    def _framed_to_fit(
        self, kept: list[ContextSnippet], budget: int, fim: FimInput
    ) -> list[ContextSnippet]:
        """``kept``, less those that do not fit ``budget`` once the FIM template writes
        them (each under a comment naming its file): a compressor counts their texts
        alone, and the framing of twenty small files took the answer's room, or more."""
        comment = comment_marker(
            guess_language(fim.language, fim.prefix, (s.filename for s in fim.context))
        )

        def rendered(snippets: list[ContextSnippet]) -> int:
            entries = [{"filename": s.filename, "text": s.text} for s in snippets]
            text = self.templates.render(
                "fim", snippets=entries, language=fim.language, comment=comment
            )
            return self._text_tokens(text)

        bare = rendered([])  # the template's own text, counted with the code around it
        fitted, used = [], 0
        for snippet in kept:  # in order; a smaller one further down may still fit
            # One more: written after another, a file's first token can split in two.
            cost = rendered([snippet]) - bare + 1
            if used + cost <= budget:
                fitted.append(snippet)
                used += cost
        return fitted

    def _govern_snippets(
        self,
        snippets: tuple[Retrieved, ...],
        task: Task,
        review: PromptReview,
        principal: Principal | None,
    ) -> tuple[Retrieved, ...]:
        """The snippets as the policy in force lets the model read them: one vetted before
        a rule was added may hold what the rule now redacts (redacted here) or blocks
        (left out of the prompt, with the rule's finding noted, not a refusal: the client
        sent nothing blocked). Pseudonyms in the request's texts are taken. One that holds,
        as text, a placeholder the prompt's values already took is left out too: the
        answer's copy of it would come back as that value."""
        if not any(s.fitted for s in snippets):
            return snippets
        reserved = list(governance.parts_of(task).values())
        governed = []
        for snippet in snippets:
            if not snippet.fitted:
                governed.append(snippet)
                continue
            at = f"snippets[{snippet.reference.get('id')}]"
            parts = {at: snippet.text, f"{at}.name": snippet.name, f"{at}.label": snippet.label}
            taken = [p for p in review.placeholders if any(p in text for text in parts.values())]
            if taken:
                review.findings.append(_placeholder_clash(at, taken[0]))
                governed.append(replace(snippet, fitted=False))
                continue
            who = principal.name if principal else None
            try:
                checked = governance.govern_texts(
                    self.plugins, task.kind, parts, who, tuple(reserved)
                )
            except PolicyBlockedError as exc:
                review.findings.extend(
                    replace(f, action="annotate", message=f"left out of the prompt: {f.message}")
                    for f in exc.findings
                    if f.action == "block"
                )
                governed.append(replace(snippet, fitted=False))
                continue
            review.findings.extend(checked.findings)
            review.take_undoing(checked)
            reserved.extend(checked.parts.values())  # its placeholders are taken now
            text = checked.parts[at]
            governed.append(
                replace(
                    snippet,
                    text=text,
                    name=checked.parts[f"{at}.name"],
                    label=checked.parts[f"{at}.label"],
                    tokens=snippet.tokens if text == snippet.text else self.count_tokens(text),
                )
            )
        return tuple(governed)

    def _govern_added_context(
        self,
        before: Task,
        task: Task,
        review: PromptReview,
        principal: Principal | None,
        snippets: tuple[Retrieved, ...] = (),
    ) -> Task:
        """Govern what ``compress_context`` made of the context that the client did not
        send as it is (a summary, another file, a file name, a file with its comments cut):
        the prompt policy read only what was sent, and the model must see nothing it has
        not read; a cut can join the text on either side into a value. A block raises;
        findings and restorers join the request's, and the pseudonyms in the texts
        governed before are taken, so that none is given twice."""
        if not isinstance(task, FimTask):
            return task
        assert isinstance(before, FimTask)
        sent = {(s.text, s.filename) for s in before.fim.context}
        added = [i for i, s in enumerate(task.fim.context) if (s.text, s.filename) not in sent]
        if not added:
            return task
        context = task.fim.context
        parts = {f"context[{i}]": context[i].text for i in added}
        parts.update({f"context[{i}].filename": context[i].filename for i in added})
        checked = governance.govern_texts(
            self.plugins,
            task.kind,
            parts,
            principal.name if principal else None,
            reserved=(
                *(t for n, t in governance.parts_of(task).items() if n not in parts),
                *(text for s in snippets for text in (s.text, s.name, s.label)),
            ),
        )
        review.findings.extend(checked.findings)
        review.take_undoing(checked)
        governed = [
            replace(
                s,
                text=checked.parts[f"context[{i}]"],
                filename=checked.parts[f"context[{i}].filename"],
            )
            if i in added
            else s
            for i, s in enumerate(context)
        ]
        return replace(task, fim=replace(task.fim, context=tuple(governed)))

    def _overhead_tokens(self, task: FimTask) -> int:
        """Tokens of the prompt besides the code: the FIM template's, or for a model asked
        in chat, the instruction, the house rules and the chat around them."""
        language = task.fim.language
        around = self._bare_prompts.get(language)
        if around is None:  # rendered once per language: it is the same for every request
            bare = replace(task, fim=replace(task.fim, prefix="", suffix="", context=()))
            around = self._render(bare, stream=False).generation.shown_text()
            if len(self._bare_prompts) >= BARE_PROMPTS_KEPT:  # languages are the client's
                self._bare_prompts.clear()
            self._bare_prompts[language] = around
        # Counted each time: a gateway's count changes as it learns its upstream's tokens.
        return self.count_tokens(around) + TEMPLATE_TOKENS

    def _render(self, task: Task, stream: bool, snippets: tuple[Retrieved, ...] = ()) -> _Rendered:
        info = self.engine.info()
        match task:
            case ChatTask(messages=messages, params=params, purpose=purpose, tools=tools):
                chat = self._with_preamble(messages, snippets, tools)
                copies = purpose == "suggest"
                if info.accepts_messages:
                    # The upstream's tokenizer is unknown: the usual templates' markers.
                    chat = as_plain_text(chat, info.control_tokens or KNOWN_CONTROL_TOKENS)
                    request = GenerationRequest(
                        params, messages=chat, stream=stream, copies_prompt=copies
                    )
                    return _Rendered(request, "upstream")
                # The messages' text is text: only the template writes control tokens.
                prompt = render_chat(
                    as_plain_text(chat, info.control_tokens),
                    info.chat_template,
                    bos_token=info.bos_token,
                    eos_token=info.eos_token,
                )
                template = "model-chat" if info.chat_template else "chatml"
                request = GenerationRequest(
                    params, prompt=prompt, stream=stream, copies_prompt=copies
                )
                return _Rendered(request, template)
            case FimTask(fim=fim, params=params):
                stored = [ContextSnippet(s.text, s.label) for s in snippets]
                context = self.templates.render(
                    "fim",
                    snippets=[
                        {"filename": s.filename, "text": s.text} for s in (*stored, *fim.context)
                    ],
                    language=fim.language,
                    # Each file's name goes in a comment of the file being written, whose
                    # language a client (llama.vim's /infill) may leave unsaid.
                    comment=comment_marker(
                        guess_language(fim.language, fim.prefix, (s.filename for s in fim.context))
                    ),
                )
                if asks_in_chat(self.fim_template_name):
                    ask = [{"role": "user", "content": infill_request(fim, context)}]
                    asked = self._render(ChatTask(params, ask), stream)
                    return _Rendered(asked.generation, f"fim:{self.fim_template_name}")
                if edits_answers(self.fim_template_name):
                    fim = replace(fim, prefix=fim.prefix + primer(fim.prefix, fim.suffix))
                fim_prompt = render_fim(fim, self.fim_template_name, self.fim_template, context)
                params = replace(params, stop=(*params.stop, *fim_prompt.stop))
                request = GenerationRequest(params, prompt=fim_prompt.prompt, stream=stream)
                return _Rendered(request, f"fim:{fim_prompt.template}")
            case CompletionTask(prompt=prompt, params=params):
                return _Rendered(GenerationRequest(params, prompt=prompt, stream=stream), "raw")

    def _with_preamble(
        self, messages: list[dict[str, str]], snippets: tuple[Retrieved, ...] = (), tools: str = ""
    ) -> list[dict[str, str]]:
        """Put the ``chat.j2`` house rules (and the store's snippets), then the functions
        the answer must call, in front, in the system message."""
        shown = [
            {"name": s.name, "language": s.language, "code": s.text, "label": s.label}
            for s in snippets
        ]
        preamble = self.templates.render("chat", messages=messages, snippets=shown).strip()
        preamble = "\n\n".join(part for part in (preamble, tools) if part)
        if not preamble:
            return messages
        if messages[0]["role"] == "system":
            first = {**messages[0], "content": preamble + "\n\n" + messages[0]["content"]}
            return [first, *messages[1:]]
        return [{"role": "system", "content": preamble}, *messages]

    # -- steps 6 to 8 ------------------------------------------------------------------

    async def stream(
        self,
        prepared: Prepared,
        on_unfinished: Callable[[Completion], None] | None = None,
    ) -> AsyncGenerator[AnswerChunk, None]:
        """Text as it is generated; the last chunk carries the checked, recorded answer.

        Closing this iterator stops the engine at once (a client that went away). What
        was generated until then is still recorded (charged, traced, audited) as an answer
        that ends early with ``finish_reason`` "cancelled", and given to ``on_unfinished``;
        so is an answer the engine fails midway, with "error", before the error goes on.

        An editor's code the engine finds past its window is cut again, once, with the
        count the refusal taught it (a gateway only estimates its upstream's tokens).
        """
        answered = False
        try:
            async with aclosing(self._stream(prepared, on_unfinished)) as chunks:
                async for chunk in chunks:
                    answered = True
                    yield chunk
            return
        except ContextLengthError:
            refit = None if answered else self._refit(prepared)
            if refit is None:
                raise
        async with aclosing(self._stream(refit, on_unfinished)) as chunks:
            async for chunk in chunks:
                yield chunk

    def _refit(self, prepared: Prepared) -> Prepared | None:
        """``prepared`` with its code cut again to the window as the engine counts now;
        None when the cut would not change it."""
        fitted = tuple(s for s in prepared.snippets if s.fitted)
        task, cut = self._compress(prepared.task, sum(s.tokens for s in fitted))
        # A plugin's compressor may write anew as it cuts again: governed as the first time.
        task = self._govern_added_context(
            prepared.task, task, prepared.review, prepared.principal, fitted
        )
        task = _stops_after_restoring(task) if prepared.review.restorers else task
        if task == prepared.task:
            return None
        rendered = self._render(task, prepared.generation.stream, fitted)
        return replace(
            prepared,
            task=task,
            generation=rendered.generation,
            template=rendered.template,
            truncated=prepared.truncated or cut,
        )

    async def _stream(
        self,
        prepared: Prepared,
        on_unfinished: Callable[[Completion], None] | None = None,
    ) -> AsyncGenerator[AnswerChunk, None]:
        restorer = (
            governance.StreamRestorer(
                prepared.review.restore,
                prepared.review.placeholders if prepared.review.placeholders_known else (),
            )
            if prepared.review.restorers
            else None
        )
        editor = self._editor(prepared.task)
        stops = _restored_stops(prepared)
        # Only a stream shows its text before the checks; an answer sent whole waits anyway.
        live = self.secret_keywords if prepared.generation.stream else None
        holdback = SecretHoldback(live) if live else None
        started = time.perf_counter()
        first: float | None = None
        written: list[str] = []  # what the engine wrote
        sent: list[str] = []  # what the client got: pseudonyms restored
        fed: list[str] = []  # what the editor's filter was given of it
        last = GenerationChunk(text="", finish_reason="stop")
        ended_early = False
        deadline = prepared.generation.params.line_deadline_s
        minimum = prepared.generation.params.min_indent
        indent = IndentLimit(minimum) if minimum else None
        # The prompt's counts and the tokens generated so far, as the engine sends them.
        counted = GenerationChunk(text="")
        # 6. generate with the engine, streaming.
        try:
            async with aclosing(self.engine.generate(prepared.generation)) as chunks:
                async for chunk in chunks:
                    if chunk.read_tokens is not None:  # the prompt is being read: no text yet
                        counted.read_tokens = chunk.read_tokens
                        counted.cached_tokens = chunk.cached_tokens
                        continue
                    first = first or time.perf_counter()
                    if chunk.prompt_tokens is not None:
                        counted.prompt_tokens = chunk.prompt_tokens
                        counted.cached_tokens = chunk.cached_tokens
                    if chunk.completion_tokens is not None:
                        counted.completion_tokens = chunk.completion_tokens
                    written.append(chunk.text)
                    piece = chunk.text if indent is None else indent.feed(chunk.text)
                    dedented = indent is not None and indent.ended
                    done = chunk.finish_reason is not None and not dedented
                    out_of_time = not done and _ends_line_late(piece, first, deadline)
                    if out_of_time:  # a piece may hold several tokens: end with the line's end
                        piece = piece[: piece.index("\n") + 1]
                    cut = dedented or out_of_time  # the pipeline ends the answer here
                    ending = done or cut
                    text = restorer.feed(piece, last=ending) if restorer else piece
                    if stops is not None:
                        text = stops.feed(text) + (stops.flush() if ending else "")
                    stopped = stops is not None and stops.stopped
                    if editor is not None:
                        fed.append(text)
                        text = editor.feed(text)
                        if editor.done and not (done or stopped):  # the hole is filled
                            sent.append(text + editor.finish())
                            last = self._cut_short(prepared, "".join(written), counted)
                            # What was generated up to where it showed, the lines the
                            # editor dropped too: the same whatever the pieces' sizes.
                            read = "".join(fed)[: max(0, editor.read)]
                            last.completion_tokens = self._likely_tokens(read)
                            ended_early = True
                            break
                        if ending or stopped:
                            text += editor.finish()
                    sent.append(text)
                    if stopped and stops is not None:  # a client's stop string, restored
                        last = self._cut_short(prepared, "".join(written), counted)
                        last.stop_word = stops.matched
                        last.completion_tokens = self._kept_tokens(sent)
                        ended_early = not done
                        break
                    if done:
                        last = self._with_counts(prepared, chunk, counted, "".join(written))
                    elif cut:  # a line left the block, or the time is up: stop the engine
                        last = self._cut_short(prepared, "".join(written), counted, "length")
                        last.completion_tokens = self._kept_tokens(sent)
                        ended_early = True
                        break
                    elif text and not self.holds_streams:
                        ready = holdback.feed(text) if holdback else text
                        if ready:
                            yield AnswerChunk(ready)
        except (GeneratorExit, asyncio.CancelledError):  # the caller stopped reading
            self._record_unfinished(
                prepared, "cancelled", written, sent, counted, (started, first), on_unfinished
            )
            raise
        except Exception:
            if first is None:  # nothing was generated: the request failed as a whole
                raise
            # The engine failed midway (a gateway's upstream broke off): what it wrote,
            # some of which the client may have seen, is charged and audited all the same.
            self._record_unfinished(
                prepared, "error", written, sent, counted, (started, first), on_unfinished
            )
            raise
        generated = time.perf_counter()
        # 7. check the answer; the plugins' actions may redact or block it.
        answer = "".join(sent)
        check = functools.partial(
            governance.check,
            self.plugins,
            prepared.task,
            answer,
            cut_short=last.finish_reason == "length",
            given_back=prepared.given_back,
        )
        try:
            review = await self.run_step(check, large=governance.is_large(prepared.task))
        except (GeneratorExit, asyncio.CancelledError):  # the caller left while it was checked
            self._record_unfinished(
                prepared, "cancelled", written, sent, counted, (started, first), on_unfinished
            )
            raise
        except Exception:
            # A check that fails (a plugin's error) leaves an answer generated, and in a
            # stream mostly sent, that no check passed: it is recorded as failed, not lost.
            self._record_unfinished(
                prepared, "error", written, sent, counted, (started, first), on_unfinished
            )
            raise
        checked = time.perf_counter()
        completion = Completion(
            id=prepared.id,
            created=prepared.created,
            model=prepared.model,
            system_fingerprint=prepared.system_fingerprint,
            seed=prepared.seed,
            text="" if review.blocked else review.text,
            finish_reason="content_filter" if review.blocked else last.finish_reason or "stop",
            prompt_tokens=last.prompt_tokens or 0,
            completion_tokens=last.completion_tokens or 0,
            cached_tokens=last.cached_tokens,
            stop_word=None if review.blocked else last.stop_word,
            held_tokens=last.held_tokens,
            timings={
                **prepared.timings,
                "ttft": (first or generated) - started,
                "generate": generated - started,
                "check": checked - generated,
                "total": checked - prepared.started,
            },
            findings=Findings(tuple(prepared.review.findings), tuple(review.findings)),
            blocked=review.blocked,
            engine_text="".join(written),
            ended_early=ended_early,
            snippets=prepared.snippets_used,
            truncated=prepared.truncated,
            traced=self.settings.traces.enabled,
        )
        # 8. record: a trace and an audit record, before the answer goes out.
        for recorder in self.recorders:
            recorder.record(prepared, completion)
        # A held stream gets the checked answer whole; a live one has had all but its end.
        if self.holds_streams:
            rest = completion.text
        elif holdback:
            rest = holdback.rest(completion.text, blocked=completion.blocked)
        else:
            rest = sent[-1] if sent else ""
        yield AnswerChunk(rest, completion)

    def _record_unfinished(
        self,
        prepared: Prepared,
        reason: str,
        written: list[str],
        sent: list[str],
        counted: GenerationChunk,
        times: tuple[float, float | None],
        on_unfinished: Callable[[Completion], None] | None,
    ) -> None:
        """Record an answer that ended before the engine finished it: its caller stopped
        reading ("cancelled"), or the engine failed ("error")."""
        unfinished = self._unfinished(
            prepared, reason, "".join(written), "".join(sent), counted, times
        )
        for recorder in self.recorders:
            recorder.record(prepared, unfinished)
        if on_unfinished is not None:
            on_unfinished(unfinished)

    def _unfinished(
        self,
        prepared: Prepared,
        reason: str,
        written: str,
        sent: str,
        counted: GenerationChunk,
        times: tuple[float, float | None],
    ) -> Completion:
        """The answer as far as it went (``times``: when generation started, and its first
        text): not checked, as no one waits for it, and ended early, so that a
        regeneration stops there too. Before its first text it counts the prompt's tokens
        the engine read (none while it waited for a sequence): a client that always leaves
        before the first token still spends its budget on the engine's time."""
        started, first = times
        read = counted.read_tokens or 0
        counts = GenerationChunk(
            text="",
            prompt_tokens=read,
            completion_tokens=0,
            cached_tokens=None
            if counted.cached_tokens is None
            else min(read, counted.cached_tokens),
        )
        if first is not None:
            counts = self._cut_short(prepared, written, counted)
        now = time.perf_counter()
        return Completion(
            id=prepared.id,
            created=prepared.created,
            model=prepared.model,
            system_fingerprint=prepared.system_fingerprint,
            seed=prepared.seed,
            text=sent,
            finish_reason=reason,
            prompt_tokens=counts.prompt_tokens or 0,
            completion_tokens=counts.completion_tokens or 0,
            cached_tokens=counts.cached_tokens,
            timings={
                **prepared.timings,
                # No first text came: no time to it, which would read as one in the stats.
                **({} if first is None else {"ttft": first - started}),
                "generate": now - started,
                "total": now - prepared.started,
            },
            findings=Findings(tuple(prepared.review.findings), ()),
            engine_text=written,
            ended_early=True,
            snippets=prepared.snippets_used,
            truncated=prepared.truncated,
        )

    def _editor(self, task: Task) -> EditorFilter | None:
        if isinstance(task, FimTask) and edits_answers(self.fim_template_name):
            primed = not asks_in_chat(self.fim_template_name)
            return EditorFilter.around(task.fim.prefix, task.fim.suffix, primed)
        return None

    def _kept_tokens(self, sent: list[str]) -> int:
        """The tokens of an answer the pipeline cut, counted from the text kept: the
        engine's own count at the cut runs ahead by as many tokens as its last piece
        held, which varies with timing, so one request was charged 22, 23 or 24."""
        return self._likely_tokens("".join(sent))

    def _likely_tokens(self, text: str) -> int:
        """What ``text`` is charged when the engine did not count it: exactly with the
        model's tokenizer; else what the model most likely counted, not the bound windows
        are fitted with (a gateway's, which charged a cut stream 202 tokens for the 121
        its upstream generated)."""
        if isinstance(self.engine, Estimating) and not isinstance(self.engine, Tokenizer):
            return self.engine.likely_tokens(text)
        return self._text_tokens(text)

    def _prompt_tokens(self, prepared: Prepared) -> int:
        """What a prompt the engine did not count is charged, as ``_likely_tokens``, with
        what the engine's upstream adds around it where the engine knows that."""
        text = prepared.generation.shown_text()
        if isinstance(self.engine, EstimatingPrompts) and not isinstance(self.engine, Tokenizer):
            return self.engine.likely_prompt_tokens(prepared.generation)
        if isinstance(self.engine, Estimating) and not isinstance(self.engine, Tokenizer):
            return self.engine.likely_tokens(text)
        return self.count_tokens(text)

    def _cut_short(
        self,
        prepared: Prepared,
        written: str,
        counted: GenerationChunk,
        reason: FinishReason = "stop",
    ) -> GenerationChunk:
        """The last chunk of an answer the pipeline ended before the engine did, with the
        counts as the engine gave them (else counted here)."""
        last = GenerationChunk(text="", finish_reason=reason, cached_tokens=counted.cached_tokens)
        return self._with_counts(prepared, last, counted, written)

    def _with_counts(
        self, prepared: Prepared, last: GenerationChunk, counted: GenerationChunk, written: str
    ) -> GenerationChunk:
        """``last`` with the counts it lacks: as the engine gave them in earlier chunks,
        else estimated here. A gateway's upstream that reports no usage, or reports it
        where it is not looked for, is charged what it most likely read and wrote: charged
        nothing, its answers passed every token budget."""
        if last.prompt_tokens is None:
            last.prompt_tokens = counted.prompt_tokens
            if last.prompt_tokens is None:
                last.prompt_tokens = self._prompt_tokens(prepared)
        if last.completion_tokens is None:
            last.completion_tokens = counted.completion_tokens
            if last.completion_tokens is None:
                last.completion_tokens = self._likely_tokens(written)
        return last

    async def complete(
        self, prepared: Prepared, on_text: Callable[[str], None] | None = None
    ) -> Completion:
        """The whole answer of ``prepared``; ``on_text`` sees the text as it streams."""
        return await collect(self.stream(prepared), on_text)


def holds_streams(settings: Settings) -> bool:
    """Whether a streamed answer is held until it is checked: when the operator has set a
    rule to redact or block answers (a custom rule's pseudonymize redacts them too), or
    changed a built-in rule's own action to one of those. Text once streamed cannot be
    taken back, so a live stream gets the checks' verdict only with its last event; the
    built-in rules' own actions are what its live holdback is made for."""
    compliance = settings.compliance
    own = {rule.id: rule.action for rule in builtin_rules()}
    custom = (str(rule.get("action", "redact")) for rule in settings.policy.rules)
    changed = (a for rule, a in settings.policy.actions.items() if own.get(rule) != a)
    chosen = (*compliance.actions.values(), *changed, *custom)
    return compliance.enabled and any(a in ("block", "redact", "pseudonymize") for a in chosen)


def _ends_line_late(text: str, first: float, deadline: float | None) -> bool:
    """Whether ``text`` ends a line after ``deadline`` seconds of generating (counted from
    the first chunk, as llama.cpp counts t_max_predict_ms)."""
    return deadline is not None and "\n" in text and time.perf_counter() - first > deadline


async def collect(
    chunks: AsyncGenerator[AnswerChunk, None], on_text: Callable[[str], None] | None = None
) -> Completion:
    """Read a pipeline stream to its end and return the finished answer."""
    async with aclosing(chunks):
        async for chunk in chunks:
            if on_text is not None and chunk.text:
                on_text(chunk.text)
            if chunk.completion is not None:
                return chunk.completion
    raise RuntimeError("the pipeline stream ended without a finished answer")


def _with_lf_line_ends(task: Task) -> Task:
    """A hole in a file with CRLF line ends, read with LF ones: the editor's filter and
    the stops that end an answer at a blank line work by ``\n`` alone, so an answer cut
    at its line's end kept a ``\r`` (``\r\r\n`` in the file once accepted), and a
    blank line (``\r\n\r\n``) ended nothing. Editors keep a buffer's lines without
    their ends and write the file's own, so the answer keeps LF line ends. A line that
    ends in a lone ``\r`` (classic Mac OS) ends there too, as in editors and
    ``tether complete``: read as one long line, the hole was filled as if the cursor
    were in the middle of it (an answer indented again, run on past the code after it)."""
    if not isinstance(task, FimTask):
        return task
    fim = task.fim
    texts = (fim.prefix, fim.suffix, *(c.text for c in fim.context))
    if not any("\r" in text for text in texts):
        return task
    context = tuple(replace(c, text=_lf(c.text)) for c in fim.context)
    lf = replace(fim, prefix=_lf(fim.prefix), suffix=_lf(fim.suffix), context=context)
    return replace(task, fim=lf)


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _without_byte_order_marks(task: Task) -> Task:
    """A hole in a file sent as stored, a UTF-8 byte-order mark first (Windows editors
    write one), and files beside it sent so: the mark is no text, and before the code it
    drew the model away (an empty answer where the file without it got one). Only the
    prompt loses it; the answer is what goes between prefix and suffix either way."""
    if not isinstance(task, FimTask):
        return task
    fim = task.fim
    if not any(text.startswith(_BOM) for text in (fim.prefix, *(c.text for c in fim.context))):
        return task
    context = tuple(replace(c, text=c.text.removeprefix(_BOM)) for c in fim.context)
    return replace(task, fim=replace(fim, prefix=fim.prefix.removeprefix(_BOM), context=context))


_BOM = "\ufeff"


def _stops_after_restoring(task: Task) -> Task:
    """``task`` with its client's stop strings for the pipeline to match on the answer
    with pseudonymized values restored, not for the engine to match on placeholders."""
    if not task.params.stop:
        return task
    stops = (*task.params.stop_after_restoring, *task.params.stop)
    params = replace(task.params, stop=(), stop_after_restoring=stops)
    return replace(task, params=params)


def _restored_stops(prepared: Prepared) -> StopMatcher | None:
    governed = prepared.generation.params.stop_after_restoring
    # A JSON answer ends where its JSON does, whoever would match the stops.
    if not governed or prepared.generation.params.response_format:
        return None
    return StopMatcher(tuple(prepared.review.restore(stop) for stop in governed))


def _placeholder_clash(where: str, placeholder: str) -> Finding:
    """The note of a snippet left out for holding a placeholder the prompt's values took."""
    return Finding(
        "policy/placeholder-clash",
        f"{where}: left out of the prompt: it holds {placeholder} as text, which stands for "
        "a value of this request, so the answer's copy would come back as that value",
        "policy",
        "annotate",
    )

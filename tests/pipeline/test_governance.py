from __future__ import annotations

import asyncio
import json
import re
from contextlib import aclosing
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.helpers import ScriptedEngine
from tether import CompletionReview, Finding, PromptReview, hookimpl
from tether.default_plugins.policy import PolicyPlugin
from tether.engines.base import SamplingParams
from tether.pipeline import AnswerChunk, CompletionTask, Pipeline
from tether.pipeline.fim import ContextSnippet, FimInput
from tether.pipeline.governance import StreamRestorer
from tether.pipeline.recording import AuditRecorder
from tether.pipeline.result import STAGES, Completion, Retrieved
from tether.pipeline.service import holds_streams
from tether.pipeline.task import FimTask
from tether.plugins import bare_manager
from tether.policy import Scanner
from tether.settings import Settings

EMAIL = "dana.kowalski@globex-corp.com"


def test_pseudonyms_come_back_even_split_across_chunks() -> None:
    review = PromptReview(kind="chat", parts={"messages[0]": f"mail {EMAIL} and {EMAIL}"})
    PolicyPlugin(Scanner()).govern_prompt(review)
    placeholder = review.parts["messages[0]"].split()[1]
    assert EMAIL not in review.parts["messages[0]"] and placeholder.startswith("<")
    cut = len(placeholder) // 2
    restorer = StreamRestorer(review.restore)
    pieces = ["Write to ", placeholder[:cut], placeholder[cut:] + " today", "."]
    out = [restorer.feed(p, last=i == len(pieces) - 1) for i, p in enumerate(pieces)]
    assert "".join(out) == f"Write to {EMAIL} today."
    assert all(placeholder not in piece for piece in out)
    # An answer cut off inside a placeholder (a token limit) sends none of it.
    cut_off = StreamRestorer(review.restore)
    sent = cut_off.feed("Write to ", last=False) + cut_off.feed(placeholder[:-2], last=True)
    assert sent == "Write to "
    plain = StreamRestorer(review.restore)
    assert plain.feed("if a < b", last=True) == "if a < b"  # not the start of one


def test_with_the_placeholders_known_code_that_looks_like_one_is_text() -> None:
    review = PromptReview(kind="chat", parts={"messages[0]": f"mail {EMAIL}"})
    PolicyPlugin(Scanner()).govern_prompt(review)
    (placeholder,) = review.placeholders
    restorer = StreamRestorer(review.restore, review.placeholders)
    assert restorer.feed("List<T> a; List<T", last=False) == "List<T> a; List<T"
    assert restorer.feed(" to " + placeholder[:4], last=False) == " to "  # "<EMA": may be
    assert restorer.feed(placeholder[4:], last=False) == EMAIL
    ending = StreamRestorer(review.restore, review.placeholders)
    assert ending.feed("List<HTML", last=True) == "List<HTML"  # an answer's last words
    assert ending.feed("mail " + placeholder[:-2], last=True) == "mail "  # cut inside one
    assert ending.feed("a <", last=True) == "a <"


def test_only_what_may_become_a_placeholder_waits_for_the_next_piece() -> None:
    review = PromptReview(kind="chat", parts={"messages[0]": f"mail {EMAIL}"})
    PolicyPlugin(Scanner()).govern_prompt(review)
    placeholder = review.parts["messages[0]"].split()[1]
    restorer = StreamRestorer(review.restore)
    # A whole placeholder and code with "<" in it go on at once.
    assert restorer.feed(f"to {placeholder} if", last=False) == f"to {EMAIL} if"
    assert restorer.feed(" a < b and c <d", last=False) == " a < b and c <d"
    assert restorer.feed(" x <", last=False) == " x "  # may yet be one
    assert restorer.feed("EMA", last=False) == ""
    assert restorer.feed(placeholder[4:] + ".", last=False) == f"{EMAIL}."
    # A "<" followed by more than any placeholder holds is text, not one.
    long = "<" + "A" * 60
    assert restorer.feed(long, last=False) == long


class _Flagger:
    """A policy finding on every prompt, and a blocking check on answers with eval."""

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        review.findings.append(Finding("test/prompt", "prompt", "policy", "annotate"))

    @hookimpl
    def check_completion(self, review: CompletionReview) -> None:
        if "eval" in review.text:
            review.findings.append(Finding("test/eval", "eval", "compliance", "block"))
            review.blocked = True


def _run(pipeline: Pipeline, prompt: str) -> list[AnswerChunk]:
    prepared = pipeline.prepare(CompletionTask(SamplingParams(max_tokens=8), prompt))

    async def run() -> list[AnswerChunk]:
        return [chunk async for chunk in pipeline.stream(prepared)]

    return asyncio.run(run())


def test_findings_and_block_land_on_the_last_chunk_kept_apart(settings: Settings) -> None:
    plugins = bare_manager()
    plugins.register(_Flagger())
    pipeline = Pipeline(ScriptedEngine("x = eval(y)"), settings, plugins)
    chunks = _run(pipeline, "code:")
    assert all(c.completion is None for c in chunks[:-1])
    # What streamed cannot be taken back; what was still held back is withheld.
    assert "x = eval(y)".startswith("".join(c.text for c in chunks)) and chunks[-1].text == ""
    completion = chunks[-1].completion
    assert completion is not None and completion.blocked
    assert completion.text == "" and completion.finish_reason == "content_filter"
    assert [f.rule_id for f in completion.findings.policy] == ["test/prompt"]
    assert [f.rule_id for f in completion.findings.checks] == ["test/eval"]
    assert completion.engine_text == "x = eval(y)"


def test_an_answer_without_findings_is_passed_as_written(settings: Settings) -> None:
    pipeline = Pipeline(ScriptedEngine("return 1"), settings, bare_manager())
    completion = _run(pipeline, "def f():\n    ")[-1].completion
    assert completion is not None and not completion.blocked
    assert completion.text == completion.engine_text == "return 1"
    assert completion.findings.all == ()
    assert set(completion.timings) == set(STAGES)  # what traces and the docs name


def test_a_secret_split_by_the_cursor_is_redacted_on_both_sides() -> None:
    key = "AKIA" + "QZ7RVN2XWLKD5HJT"
    review = PromptReview(
        kind="fim", parts={"prefix": f"k = '{key[:9]}", "suffix": f"{key[9:]}'\n"}
    )
    PolicyPlugin(Scanner()).govern_prompt(review)
    assert review.parts["prefix"] == "k = '[REDACTED:aws-access-key-id]"
    assert review.parts["suffix"] == "[REDACTED:aws-access-key-id]'\n"
    assert [f.message.split(":")[0] for f in review.findings] == ["prefix", "suffix"]


def test_a_split_value_overlapping_another_finding_leaves_nothing_uncovered() -> None:
    # The prefix alone ends in an e-mail address; joined with the suffix it is a longer one.
    review = PromptReview(kind="fim", parts={"prefix": f"to = '{EMAIL}", "suffix": "x.org'\n"})
    PolicyPlugin(Scanner()).govern_prompt(review)
    assert "globex" not in review.parts["prefix"] and "x.org" not in review.parts["suffix"]
    assert review.parts["prefix"] == "to = '[REDACTED:email]"


def test_a_secret_whose_context_the_cursor_splits_is_redacted_on_its_side() -> None:
    # The cursor after the user name: neither side alone reads as a database URL.
    review = PromptReview(
        kind="fim",
        parts={
            "prefix": 'DB = "postgres://admin',
            "suffix": ':Xk9mQ2vL7pR@db.internal/app"\nPW = "x"\n',
        },
    )
    PolicyPlugin(Scanner()).govern_prompt(review)
    assert review.parts["prefix"] == 'DB = "postgres://admin'
    assert review.parts["suffix"].startswith(':[REDACTED:database-url]@db.internal/app"')
    (finding,) = review.findings
    assert finding.message.startswith("suffix:") and (finding.line, finding.column) == (1, 2)


def test_a_pseudonym_is_never_a_placeholder_another_message_holds() -> None:
    review = PromptReview(
        kind="chat",
        parts={"messages[0]": f"mail {EMAIL}", "messages[1]": "keep <EMAIL_1> as written"},
    )
    PolicyPlugin(Scanner()).govern_prompt(review)
    assert review.parts["messages[0]"] == "mail <EMAIL_2>"
    assert review.restore("<EMAIL_1>, <EMAIL_2>") == f"<EMAIL_1>, {EMAIL}"


def test_a_finding_of_another_server_s_plugin_is_read_as_a_note() -> None:
    from tether.pipeline.result import Findings

    records = [
        {"rule_id": "house/x", "message": "m", "stage": "compliance", "action": "BLOCK"},
        {
            "rule_id": "house/y",
            "message": "m",
            "stage": "compliance",
            "action": "block",
            "line": "3",
        },
        {
            "rule_id": "house/z",
            "message": "m",
            "stage": "compliance",
            "action": "block",
            "severity": "warning",
            "source": "a newer server's field",
        },
    ]
    read = Findings.from_records(records)
    assert [(f.rule_id, f.action, f.severity) for f in read.checks] == [
        ("house/x", "annotate", "note"),
        ("house/y", "block", "note"),  # a block still blocks
        ("house/z", "block", "warning"),
    ]
    with pytest.raises(ValueError, match="not a finding"):
        Findings.from_records([{"what": "else"}])


class _SlowCheck:
    @hookimpl
    def check_completion(self, review: CompletionReview) -> None:
        import time

        time.sleep(1.0)  # a plugin asking a licence server


def test_a_client_that_leaves_while_the_answer_is_checked_is_charged_for_it(
    settings: Settings,
) -> None:
    plugins = bare_manager()
    plugins.register(_SlowCheck(), name="slow-check")  # a third party's: run off the loop
    pipeline = Pipeline(ScriptedEngine("x = 1\n"), settings, plugins)
    unfinished: list[str] = []
    prepared = pipeline.prepare(CompletionTask(SamplingParams(max_tokens=8), "code:"))

    async def run() -> None:
        async def consume() -> None:
            note = lambda c: unfinished.append(c.finish_reason)  # noqa: E731
            async for _ in pipeline.stream(prepared, on_unfinished=note):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)  # the text is written; the check runs
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert unfinished == ["cancelled"]


def _pseudonymizing(settings: Settings) -> tuple[Pipeline, ScriptedEngine]:
    plugins = bare_manager()
    plugins.register(PolicyPlugin(Scanner()))
    engine = ScriptedEngine("")
    return Pipeline(engine, settings, plugins), engine


def _answer_with_stops(
    settings: Settings, stops: tuple[str, ...], answer: str, response_format: str | None = None
) -> tuple[Completion, ScriptedEngine]:
    """The answer to a prompt holding ``EMAIL``, the model writing ``answer`` with
    "{placeholder}" where it repeats the prompt's pseudonym for it."""
    pipeline, engine = _pseudonymizing(settings)
    params = SamplingParams(max_tokens=64, stop=stops, response_format=response_format)
    prepared = pipeline.prepare(CompletionTask(params, f"Mail {EMAIL} about it:"))
    placeholder = re.search(r"<EMAIL_\d+>", prepared.generation.prompt or "")
    assert placeholder is not None
    engine.answer = answer.format(placeholder=placeholder.group())

    async def run() -> list[AnswerChunk]:
        return [chunk async for chunk in pipeline.stream(prepared)]

    chunks = asyncio.run(run())
    completion = chunks[-1].completion
    assert completion is not None
    assert "".join(c.text for c in chunks) == completion.text  # the stream says the same
    return completion, engine


def test_a_stop_string_is_matched_on_the_answer_as_the_client_gets_it(
    settings: Settings,
) -> None:
    # The engine writes placeholders: a stop matched there would miss the restored "@"
    # and cut inside "<EMAIL_1>" at a "<" the client never sees.
    completion, engine = _answer_with_stops(
        settings, ("@",), "Dear {placeholder}, see <b>here</b>. " * 3
    )
    assert completion.text == "Dear dana.kowalski"
    assert completion.finish_reason == "stop" and completion.stop_word == "@"
    assert engine.requests[-1].params.stop == ()  # the engine does not match it
    assert engine.stopped_early == 1  # the pipeline ended it at once

    completion, _ = _answer_with_stops(settings, ("<",), "Dear {placeholder}, see <b>here</b>.")
    assert completion.text == f"Dear {EMAIL}, see "
    assert completion.stop_word == "<"


def test_a_stop_string_holding_a_pseudonymized_value_stops_at_that_value(
    settings: Settings,
) -> None:
    completion, engine = _answer_with_stops(settings, (EMAIL,), "Dear {placeholder}, hi.")
    assert completion.text == "Dear " and completion.stop_word == EMAIL
    # Traces and audit records keep the stop as governed: no value put back.
    record = engine.requests[-1].params.as_record()
    assert EMAIL not in str(record)
    assert re.fullmatch(r"<EMAIL_\d+>", record["stop_after_restoring"][0])


def test_a_json_answer_is_not_cut_by_a_stop_string_the_pipeline_matches(
    settings: Settings,
) -> None:
    """A JSON answer ends where its JSON does, as the engine ends it: the stops the
    pipeline matches after putting values back are not applied to it either."""
    answer = '{{"to": "{placeholder}", "note": "hi @ noon"}}'
    json_object = json.dumps({"type": "json_object"})
    completion, _ = _answer_with_stops(settings, ("@",), answer, json_object)
    assert json.loads(completion.text) == {"to": EMAIL, "note": "hi @ noon"}
    assert completion.stop_word is None


def test_an_answer_without_its_stop_string_is_sent_whole(settings: Settings) -> None:
    completion, _ = _answer_with_stops(settings, ("END", "@@"), "Dear {placeholder}, hi @")
    assert completion.text == f"Dear {EMAIL}, hi @"
    assert completion.finish_reason == "stop" and completion.stop_word is None


@pytest.mark.parametrize(
    ("env", "held"),
    [
        ({}, False),
        # Said again, a built-in rule's own action changes nothing: its stream stays live.
        ({"TETHER_POLICY_ACTIONS": '{"email": "pseudonymize", "tether-token": "block"}'}, False),
        ({"TETHER_POLICY_ACTIONS": '{"email": "redact"}'}, True),
        ({"TETHER_POLICY_RULES": '[{"id": "x", "regex": "x+y", "action": "pseudonymize"}]'}, True),
        ({"TETHER_COMPLIANCE_ACTIONS": '{"security/eval": "block"}'}, True),
    ],
)
def test_a_stream_is_held_whole_only_for_an_action_chosen_beyond_the_built_in_ones(
    tmp_path: Path, env: dict[str, str], held: bool
) -> None:
    assert holds_streams(make_settings(tmp_path, **env)) is held


class _Names:
    """A third party's pseudonyms, whose restorer names no placeholders."""

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        for name, text in review.parts.items():
            review.parts[name] = text.replace("Alice Smith", "<PERSON_1>")
        review.restorers.append(lambda answer: answer.replace("<PERSON_1>", "Alice Smith"))


def test_a_plugin_s_placeholders_come_back_beside_the_policy_s(settings: Settings) -> None:
    """The policy's placeholders known, a plugin's unnamed one split across pieces was
    sent as it was."""
    plugins = bare_manager()
    plugins.register(PolicyPlugin(Scanner()))
    plugins.register(_Names())
    engine = ScriptedEngine("Hi <PERSON_1>, done.")
    pipeline = Pipeline(engine, settings, plugins)
    task = CompletionTask(SamplingParams(max_tokens=16), f"Alice Smith, {EMAIL}:")
    prepared = pipeline.prepare(task)

    async def run() -> list[AnswerChunk]:
        return [chunk async for chunk in pipeline.stream(prepared)]

    chunks = asyncio.run(run())
    assert "".join(c.text for c in chunks) == "Hi Alice Smith, done."


class _Appended:
    """An audit log that keeps what it is given."""

    def __init__(self) -> None:
        self.fields: list[dict[str, object]] = []

    def append(self, record_fields: dict[str, object]) -> int:
        self.fields.append(record_fields)
        return len(self.fields) - 1


def test_an_unfinished_answer_keeps_no_text_a_redacted_record_would_show(
    settings: Settings,
) -> None:
    """No check read an answer its caller left: its text (a secret the model wrote, say)
    is not what audit.content = "redacted" may keep; a finished one is, as checked."""
    engine = ScriptedEngine("line one\nline two\nline three\n", delay_s=0.05)
    log = _Appended()
    pipeline = Pipeline(
        engine, settings, bare_manager(), recorders=[AuditRecorder(log, engine.info())]
    )

    async def leave_early() -> None:
        async with aclosing(pipeline.stream(pipeline.prepare(_task()))) as chunks:
            async for _ in chunks:
                return

    asyncio.run(leave_early())
    _run(pipeline, "code:")
    (cancelled, finished) = log.fields
    assert cancelled["completion_redacted"] is None and cancelled["completion"]
    assert finished["completion_redacted"] == "line one\nline two\nline three\n"


def _task() -> CompletionTask:
    return CompletionTask(SamplingParams(max_tokens=8), "code:")


class _Summary:
    """A compressor that writes anew: a line naming the file's owner."""

    @hookimpl
    def compress_context(
        self, snippets: object, budget_tokens: int, count_tokens: object
    ) -> list[ContextSnippet]:
        return [ContextSnippet("# owner: carol@ctx.example.com\n", "notes.py")]


class _LabelledSnippet:
    def for_task(self, task: object, count_tokens: object) -> tuple[Retrieved, ...]:
        label = "contacts/alice@label.example.com.py (vetted snippet 7 v1)"
        code = "def helper():\n    return 1\n"
        return (Retrieved({"id": 7, "version": 1}, "helper", "python", code, label, {}, 8, True),)


def test_context_a_compressor_writes_takes_none_of_a_snippet_label_s_placeholders(
    settings: Settings,
) -> None:
    plugins = bare_manager()
    plugins.register(PolicyPlugin(Scanner()))
    plugins.register(_Summary())
    pipeline = Pipeline(ScriptedEngine("x"), settings, plugins, retriever=_LabelledSnippet())
    fim = FimInput("def notify():\n    ", "\n", "python", (ContextSnippet("x = 1\n", "a.py"),))
    prepared = pipeline.prepare(FimTask(SamplingParams(max_tokens=16), fim))
    shown = prepared.generation.shown_text()
    placeholders = re.findall(r"<EMAIL_\d+>", shown)
    assert len(placeholders) == len(set(placeholders)) == 2, shown


def test_a_block_without_a_place_is_not_said_to_be_at_line_0() -> None:
    from tether.pipeline.governance import describe_block

    placed = Finding("house/code-name", "prefix", "policy", "block", line=3, column=7)
    unplaced = Finding("house/topic", "messages[0]", "policy", "block")
    said = describe_block([placed, unplaced])
    assert "house/code-name in prefix at line 3, column 7" in said
    assert "house/topic in messages[0]." in said and "line 0" not in said

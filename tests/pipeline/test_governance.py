from __future__ import annotations

import asyncio

import pytest

from tests.helpers import ScriptedEngine
from tether import CompletionReview, Finding, PromptReview, hookimpl
from tether.default_plugins.policy import PolicyPlugin
from tether.engines.base import SamplingParams
from tether.pipeline import AnswerChunk, CompletionTask, Pipeline
from tether.pipeline.governance import StreamRestorer
from tether.pipeline.result import STAGES
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

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.traces.conftest import SECRET, make_trace
from tether.cli.explain import _print_recent
from tether.pipeline.result import STAGES
from tether.traces import Trace, TraceStore, render_explanation
from tether.traces.explain import PROMPT_HEAD, PROMPT_TAIL

SECTIONS = [
    "What came in",
    "What the policies did",
    "What the model was shown",
    "What it returned",
    "What the checks found",
    "Timings",
    "Reproducibility",
]


def test_every_section_and_its_facts() -> None:
    text = render_explanation(make_trace())
    positions = [text.index(title) for title in SECTIONS]
    assert positions == sorted(positions)
    for fact in [
        "/v1/completions",  # endpoint
        "alice",  # principal
        "seed=42",  # sampling
        "redact",  # policy action
        "secrets.aws-access-key",
        "line 1, column 7",  # where
        "qwen (digest d1g3st)",  # template
        "util.py (score 0.870)",  # context
        "print(key)",  # output
        "finish reason: stop",
        "21 prompt, 9 completion",
        "py.eval at line 3",  # compliance finding
        "error",
        "ttft",
        "ab" * 32,  # model sha256
        "fp_123",
        "llamacpp",
    ]:
        assert fact in text, fact


def test_renders_exactly_the_stored_prompt(store: TraceStore) -> None:
    # The policy redacted the key before the engine saw it; the trace holds that text.
    store.record(make_trace())
    stored = store.get("cmpl-abc")
    assert stored is not None
    text = render_explanation(stored)
    assert "key = '[REDACTED:aws-key]'" in text
    assert SECRET not in text
    assert SECRET not in stored.to_json()


def test_long_prompt_is_clipped_with_a_note() -> None:
    prompt = "A" * PROMPT_HEAD + "M" * 10_000 + "Z" * PROMPT_TAIL
    text = render_explanation(make_trace(prompt=prompt))
    assert "[... 10000 characters omitted; `tether explain cmpl-abc --json`" in text
    assert "M" * 10 not in text
    assert "A" * PROMPT_HEAD in text and "Z" * PROMPT_TAIL in text


def test_empty_trace_says_so() -> None:
    text = render_explanation(make_trace(policy=[], findings=[], context=[], sampling={}))
    assert "no policy rule matched" in text
    assert "the checks found nothing" in text
    assert "seed:               -" in text


def test_timings_are_shown_in_pipeline_order() -> None:
    text = render_explanation(make_trace())
    section = text[text.index("Timings") : text.index("Reproducibility")]
    names = [line.split()[0] for line in section.splitlines()[1:] if line.strip()]
    assert names == list(STAGES)


def test_docs_name_the_stages_the_pipeline_writes() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "traces.md").read_text()
    row = next(line for line in docs.splitlines() if line.startswith("| `timings` |"))
    assert ", ".join(STAGES) in row


def test_the_store_snippets_are_explained() -> None:
    retrieved = {
        "id": 7,
        "version": 2,
        "hash": "ab" * 32,
        "name": "slugify",
        "scores": {"fused": 0.03, "bm25": 4.2, "bm25_rank": 1, "similarity": None},
        "tokens": 40,
        "fitted": True,
    }
    left_out = {**retrieved, "id": 8, "name": "huge", "fitted": False, "tokens": 900}
    text = render_explanation(make_trace(snippets=[retrieved, left_out]))
    section = text[text.index("Snippets from the store") : text.index("What the model was shown")]
    assert "#7 v2 slugify: in the prompt; 40 tokens; fused 0.03; bm25 4.2 (rank 1)" in section
    assert "#8 v2 huge: over the token budget, left out" in section
    assert "none retrieved" in render_explanation(make_trace())


def test_what_the_client_got_is_shown_where_it_differs() -> None:
    same = render_explanation(make_trace())
    assert "what the engine wrote:" in same and "what the client got" not in same
    text = render_explanation(make_trace(output="x = 1\n\nprint(x)", delivered="x = 1"))
    assert "what the client got (5 characters):\n    | x = 1\n" in text


def test_an_older_trace_without_the_field_loads() -> None:
    data = make_trace().to_dict()
    del data["delivered"]
    assert Trace.from_dict(data).delivered is None


def test_escape_sequences_in_a_trace_are_shown_not_sent_to_the_terminal() -> None:
    """A prompt, an answer or a file name holds what a client sent and the model wrote:
    printed raw, an OSC 52 sequence set the reader's clipboard, and others retitle the
    terminal or clear it. Each control character but tab and newline is shown escaped."""
    trace = make_trace(
        prompt="say \x1b]52;c;aGk=\x07 hi\tthere\n",
        output="\x1b[2Jgone\x9b31m",
        context=[{"filename": "a\x1b[8m.py", "text": "x = 1\r\n", "score": None}],
    )
    text = render_explanation(trace)
    for raw in ("\x1b", "\x07", "\x9b", "\r"):
        assert raw not in text
    assert "say \\x1b]52;c;aGk=\\x07 hi\tthere" in text
    assert "\\x1b[2Jgone\\x9b31m" in text and "- a\\x1b[8m.py (score -)" in text


def test_a_line_is_shown_as_one_line_whatever_unicode_calls_a_separator() -> None:
    """str.splitlines() broke the shown prompt at U+2028, U+0085, a form feed or a file
    separator, none of which ends a line in an editor or in git, and the character was
    lost: the prompt shown was not the prompt sent."""
    code = "s = 'a\u2028b\u2029c\x85d\x0ce\x1cf'"
    text = render_explanation(make_trace(prompt=f"{code}\r\nx = 1\n", output="y\rz\n"))
    assert "    | s = 'a\\u2028b\\u2029c\\x85d\\x0ce\\x1cf'\n    | x = 1\n" in text
    assert "    | y\n    | z\n" in text


def test_bidirectional_controls_in_a_trace_are_shown_escaped() -> None:
    """An override or isolate control (Trojan Source) printed raw reorders the line it is
    on at the reader's terminal: the prompt read was not the prompt sent."""
    code = "ok = level != 'none\u202e \u2066// admin\u2069 \u2066' and x"
    text = render_explanation(make_trace(prompt=code + "\n", output="\u202ay\u202c\n"))
    for raw in ("\u202a", "\u202c", "\u202e", "\u2066", "\u2069"):
        assert raw not in text
    assert "'none\\u202e \\u2066// admin\\u2069 \\u2066' and x" in text
    assert "| \\u202ay\\u202c" in text


@pytest.mark.parametrize("hidden", ["\u200b", "\u2060", "\ufeff"])
def test_a_zero_width_character_in_a_trace_is_shown_escaped(hidden: str) -> None:
    """A zero-width space, a word joiner or a byte-order mark in the middle of a line is
    printed as nothing: a suggestion that hid one in a name (``is_admin`` and
    ``is\u200b_admin`` are two names) read the same as one that did not."""
    code = f"if is{hidden}_admin(user):"
    text = render_explanation(make_trace(prompt=code + "\n", output=f"{hidden}ok\n"))
    assert hidden not in text
    escaped = f"\\u{ord(hidden):04x}"
    assert f"| if is{escaped}_admin(user):" in text and f"| {escaped}ok" in text


@pytest.mark.parametrize(
    "text",
    [
        "# \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
        "# \U0001f468\u200d\U0001f469",
        "# \u05e9\u05dc\u05d5\u05dd\u200f!",
    ],
    ids=["Persian", "emoji", "Hebrew"],
)
def test_the_joiners_and_marks_that_scripts_draw_with_are_shown_as_they_are(text: str) -> None:
    """Persian words, emoji sequences and right-to-left text are written with the
    zero-width joiners and the direction marks: escaped, they could not be read."""
    assert f"| {text}" in render_explanation(make_trace(prompt="x\n", output=text + "\n"))


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("tz", "offset"),
    [("NPT-5:45", "+0545"), ("invalid", "+0000")],
    ids=["Kathmandu", "invalid"],
)
def test_times_are_shown_with_their_offset_from_utc(
    zone: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tz: str,
    offset: str,
) -> None:
    """Listed with no zone, a time under TZ=Asia/Kathmandu read 5:45 hours off the usage
    report's and the audit records' UTC; and a TZ the system does not know (read as UTC)
    was named as though it were a zone: "16:45:43 invalid"."""
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    trace = make_trace()
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(trace.created))
    assert f"time:      {when} {offset}\n" in render_explanation(trace)
    _print_recent(
        [{"id": trace.id, "created": trace.created, "kind": "chat", "endpoint": "/x"}], False
    )
    assert f" {when} {offset}  chat" in capsys.readouterr().out


def test_the_answers_json_format_is_named_not_printed_whole() -> None:
    """The schema sat inside the sampling line as a Python dict, one line of it however
    large (a format of megabytes printed megabytes); it is in the trace's JSON."""
    schema = {
        "type": "object",
        "properties": {f"field_{i}": {"type": "string"} for i in range(300)},
    }
    answer_format = {"type": "json_schema", "json_schema": {"name": "record\x1b", "schema": schema}}
    sampling = {"max_tokens": 64, "seed": 0, "response_format": answer_format}
    shown = render_explanation(make_trace(sampling=sampling))
    assert "sampling:  max_tokens=64, seed=0\n" in shown
    size = len(json.dumps(schema))
    assert f"format:    json_schema 'record\\\\x1b', a schema of {size:,} characters\n" in shown
    assert "field_299" not in shown
    json_mode = {"max_tokens": 64, "response_format": {"type": "json_object"}}
    assert "format:    json_object\n" in render_explanation(make_trace(sampling=json_mode))


def test_the_format_a_chosen_call_keeps_to_is_named_on_a_line_of_its_own() -> None:
    """A request with functions the model may choose carries the calls' schema, which the
    answer kept to only once it began a call: named as the answer's own format is, not
    printed whole in the sampling line."""
    schema = {"anyOf": [{"type": "object", "properties": {"name": {"const": "get_weather"}}}]}
    call_format = {"type": "json_schema", "json_schema": {"name": "call", "schema": schema}}
    sampling = {"max_tokens": 64, "chosen_call_format": call_format}
    shown = render_explanation(make_trace(sampling=sampling))
    assert "sampling:  max_tokens=64\n" in shown and "get_weather" not in shown
    size = len(json.dumps(schema))
    assert f"call:      json_schema 'call', a schema of {size:,} characters\n" in shown
    assert "format:" not in shown

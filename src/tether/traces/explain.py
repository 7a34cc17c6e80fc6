"""A readable account of one trace, in plain text sections, for ``tether explain``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from tether.pipeline.result import STAGES
from tether.printable import printable
from tether.traces.model import Trace

PROMPT_HEAD = 2000  # characters of a long prompt shown from its start...
PROMPT_TAIL = 1500  # ...and from its end, where the cursor usually is
SNIPPET_CHARS = 400


def _section(title: str, lines: Iterable[str]) -> str:
    body = "\n".join(f"  {line}" if line else "" for line in lines)
    return f"{title}\n{body or '  (none)'}"


_LINE_END = re.compile(r"\r\n|\r|\n")  # where editors and git end a line; not U+2028


def _indent(text: str, prefix: str = "  | ") -> list[str]:
    lines = _LINE_END.split(text)
    if len(lines) > 1 and not lines[-1]:
        lines.pop()  # the end of the last line starts none
    return [prefix + line for line in lines]


def _clip(text: str, head: int, tail: int, trace_id: str) -> str:
    if len(text) <= head + tail:
        return text
    omitted = len(text) - head - tail
    note = (
        f"[... {omitted} characters omitted; "
        f"`tether explain {trace_id} --json` shows all of it ...]"
    )
    end = f"\n{text[-tail:]}" if tail else ""  # text[-0:] would be the whole text
    return f"{text[:head]}\n{note}{end}"


def _where(record: Mapping[str, Any]) -> str:
    line, column = record.get("line") or 0, record.get("column") or 0
    if line:
        return f"line {line}, column {column}" if column else f"line {line}"
    return f"chars {record.get('start', 0)}-{record.get('end', 0)}"


def _request(trace: Trace) -> list[str]:
    when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(trace.created))
    lines = [
        f"id:        {trace.id}",
        f"time:      {when}",
        f"endpoint:  {trace.endpoint}",
        f"kind:      {trace.kind}",
        f"principal: {trace.principal or '-'} (token {trace.token_id or '-'})",
    ]
    formats = ("response_format", "chosen_call_format")
    sampling = {k: v for k, v in trace.sampling.items() if k not in formats}
    params = ", ".join(f"{k}={v}" for k, v in sampling.items()) or "-"
    lines.append(f"sampling:  {params}")
    answer_format = trace.sampling.get("response_format")
    if isinstance(answer_format, dict):
        lines.append(f"format:    {_format_named(answer_format)}")
    call_format = trace.sampling.get("chosen_call_format")
    if isinstance(call_format, dict):  # kept to once the answer starts as a call
        lines.append(f"call:      {_format_named(call_format)}")
    return lines


def _format_named(answer_format: dict[str, Any]) -> str:
    """The answer's JSON format in a line: its kind, and a schema's name and size (the
    schema itself is in the trace's JSON, and may be thousands of lines)."""
    kind = str(answer_format.get("type"))
    spec = answer_format.get("json_schema")
    if kind != "json_schema" or not isinstance(spec, dict):
        return kind
    size = len(json.dumps(spec.get("schema") or {}, ensure_ascii=False))
    return f"json_schema {printable(str(spec.get('name')))!r}, a schema of {size:,} characters"


def _policy(trace: Trace) -> list[str]:
    return [
        f"{r.get('action', '?'):12} {r.get('rule_id', '?')} at {_where(r)}: {r.get('message', '')}"
        for r in trace.policy
    ] or ["no policy rule matched; the prompt went through unchanged"]


def _shown(trace: Trace) -> list[str]:
    lines = [
        f"template: {trace.template or '-'} (digest {trace.template_digest or '-'})",
        f"prompt as sent to the engine ({len(trace.prompt)} characters, after redaction):",
        *_indent(_clip(trace.prompt, PROMPT_HEAD, PROMPT_TAIL, trace.id)),
    ]
    if trace.context:
        lines.append(f"context ({len(trace.context)} snippets):")
    for item in trace.context:
        score = item.get("score")
        shown = "-" if score is None else f"{score:.3f}"
        lines.append(f"- {item.get('filename', '?')} (score {shown})")
        lines.extend(_indent(_clip(str(item.get("text", "")), SNIPPET_CHARS, 0, trace.id)))
    return lines


def _snippets(trace: Trace) -> list[str]:
    lines = []
    for item in trace.snippets:
        scores = item.get("scores") or {}
        ranked = ", ".join(
            f"{name} {scores[name]} (rank {scores[name + '_rank']})"
            for name in ("bm25", "similarity")
            if scores.get(name) is not None
        )
        fitted = "in the prompt" if item.get("fitted") else "over the token budget, left out"
        lines.append(
            f"- #{item.get('id')} v{item.get('version')} {item.get('name', '?')}: {fitted}; "
            f"{item.get('tokens', 0)} tokens; fused {scores.get('fused', '-')}; {ranked or '-'}"
        )
    return lines or ["none retrieved (empty store, nothing relevant, or retrieval off)"]


def _returned(trace: Trace) -> list[str]:
    lines = [
        f"finish reason: {trace.finish_reason or '-'}",
        f"tokens: {trace.prompt_tokens} prompt, {trace.completion_tokens} completion",
        "what the engine wrote"
        + (", until the pipeline stopped it:" if trace.ended_early else ":"),
        *_indent(trace.output),
    ]
    if trace.delivered is not None:
        got = f"what the client got ({len(trace.delivered)} characters):"
        lines += [got, *_indent(trace.delivered)]
    elif any(r.get("action") == "pseudonymize" for r in trace.policy):
        lines.append(
            "the client got it with the pseudonymized values put back; that text is not kept"
        )
    return lines


def _checks(trace: Trace) -> list[str]:
    return [
        f"{r.get('severity', '?'):8} {r.get('rule_id', '?')} at {_where(r)}: "
        f"{r.get('message', '')} ({r.get('action', '?')})"
        for r in trace.findings
    ] or ["the checks found nothing"]


def _timings(trace: Trace) -> list[str]:
    order = [s for s in STAGES if s in trace.timings]
    order += sorted(s for s in trace.timings if s not in STAGES)
    return [f"{stage:10} {trace.timings[stage] * 1000:9.1f} ms" for stage in order]


def _fingerprint(trace: Trace) -> list[str]:
    return [
        f"model:              {trace.model or '-'}",
        f"model sha256:       {trace.model_sha256 or '-'}",
        f"engine:             {trace.engine or '-'}",
        f"system_fingerprint: {trace.system_fingerprint or '-'}",
        f"seed:               {'-' if trace.seed is None else trace.seed}",
    ]


def render_explanation(trace: Trace) -> str:
    """What came in, what the policies did, what the model saw and said, and why."""
    sections = [
        ("What came in", _request(trace)),
        ("What the policies did", _policy(trace)),
        ("Snippets from the store", _snippets(trace)),
        ("What the model was shown", _shown(trace)),
        ("What it returned", _returned(trace)),
        ("What the checks found", _checks(trace)),
        ("Timings", _timings(trace)),
        ("Reproducibility", _fingerprint(trace)),
    ]
    text = "\n\n".join(_section(title, lines) for title, lines in sections) + "\n"
    return printable(text)  # a trace holds what any client sent and the model wrote

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import retention
from tether.findings import Finding
from tether.traces import Trace, TraceStore, trace_from

SECRET = "AKIAIOSFODNN7EXAMPLE"  # what the policy redacted; must never reach a trace


@pytest.fixture(autouse=True)
def just_booted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host that has just booted, where no store prunes unless told: these traces are
    dated 2023, and a prune at their first write would take them all."""
    monkeypatch.setattr(retention, "since_boot", lambda: 0.0)


def make_trace(id: str = "cmpl-abc", created: float = 1_700_000_000.0, **over: Any) -> Trace:
    values: dict[str, Any] = {
        "id": id,
        "created": created,
        "kind": "fim",
        "endpoint": "/v1/completions",
        "principal": "alice",
        "token_id": "tok-1",
        "model": "qwen-coder",
        "model_sha256": "ab" * 32,
        "engine": "llamacpp",
        "template": "qwen",
        "template_digest": "d1g3st",
        "prompt": "<|fim_prefix|>key = '[REDACTED:aws-key]'\n<|fim_suffix|><|fim_middle|>",
        "context": [{"filename": "util.py", "text": "def helper(): ...", "score": 0.87}],
        "policy": [
            Finding(
                rule_id="secrets.aws-access-key",
                message="AWS access key",
                stage="policy",
                action="redact",
                line=1,
                column=7,
                fingerprint="f" * 64,
            )
        ],
        "sampling": {"max_tokens": 64, "temperature": 0.2, "top_p": 0.95, "seed": 42},
        "timings": {
            "govern": 0.001,
            "retrieve": 0.0003,
            "compress": 0.0001,
            "render": 0.0002,
            "ttft": 0.05,
            "generate": 0.25,
            "check": 0.0004,
            "total": 0.3,
        },
        "prompt_tokens": 21,
        "completion_tokens": 9,
        "findings": [
            Finding(
                rule_id="py.eval",
                message="eval() on input",
                stage="compliance",
                action="annotate",
                severity="error",
                line=3,
            )
        ],
        "output": "print(key)",
        "finish_reason": "stop",
        "system_fingerprint": "fp_123",
    }
    values.update(over)
    return trace_from(**values)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TraceStore]:
    with TraceStore(tmp_path / "traces.sqlite") as s:
        yield s

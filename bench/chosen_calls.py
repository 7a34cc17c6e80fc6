"""Calls the model chooses to write: how many answers are valid tool calls with and without
the lazy grammar that keeps a call, once begun, to its schema.

The app runs in process on the default model; each request offers one to three functions
with ``tool_choice`` auto and greedy sampling, and is answered twice: as served, and with
the call's grammar taken away (``ToolOffer.chosen_format`` giving none), as before it was
kept; then again after an earlier exchange in which the model called a function, which
makes the small model start more answers as a call. Reports each arm's share of answers
that come back as tool calls, and the answers that changed between text and a call.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from fastapi.testclient import TestClient

from bench._common import headline, print_table, write_result
from tether.engines.llamacpp import LlamaCppEngine
from tether.models import default_model_path
from tether.server.app import build_app
from tether.server.tool_calls import ToolOffer
from tether.settings import load_settings

TOKEN = "tth_bench-token"


def _function(name: str, about: str, **properties: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {k: {"type": v} for k, v in properties.items()}}
    schema["required"] = list(properties)
    return {
        "type": "function",
        "function": {"name": name, "description": about, "parameters": schema},
    }


WEATHER = _function("get_weather", "The weather in a city now.", city="string")
ADD = _function("add", "The sum of two numbers.", a="number", b="number")
SEARCH = _function("search_files", "Find files whose text holds a phrase.", phrase="string")
READ = _function("read_file", "The text of a file.", path="string")
ASKS: tuple[tuple[str, tuple[dict[str, Any], ...]], ...] = (
    ("What is the weather in Paris?", (WEATHER,)),
    ("What's the weather like in Tokyo right now?", (WEATHER, ADD)),
    ("Is it raining in London?", (WEATHER, SEARCH)),
    ("Add 2 and 3.", (ADD,)),
    ("What is 17 plus 25?", (ADD, WEATHER)),
    ("Please add 1.5 and 2.25.", (ADD, READ, SEARCH)),
    ("Find files that mention TODO.", (SEARCH,)),
    ("Search the project for 'def main'.", (SEARCH, READ)),
    ("Which files contain the word deprecated?", (SEARCH, READ, WEATHER)),
    ("Show me the contents of README.md.", (READ,)),
    ("Open src/app.py and show it to me.", (READ, SEARCH)),
    ("Read the file setup.cfg.", (READ, ADD, SEARCH)),
    ("Call get_weather for Berlin.", (WEATHER, ADD, READ)),
    ("Use the add tool on 10 and 32.", (ADD, SEARCH)),
    ("Tell me a joke about cats.", (WEATHER, ADD)),
    ("What is the capital of France?", (SEARCH,)),
)


# An earlier exchange in which the model called the first function offered, which makes the
# small model start more of its answers as a call.
EXAMPLES = {
    "get_weather": ("Is it sunny in Rome?", {"city": "Rome"}),
    "add": ("How much is 4 plus 5?", {"a": 4, "b": 5}),
    "search_files": ("Which files mention login?", {"phrase": "login"}),
    "read_file": ("Show me notes.txt.", {"path": "notes.txt"}),
}


def _example(name: str) -> list[dict[str, Any]]:
    ask, arguments = EXAMPLES[name]
    function = {"name": name, "arguments": json.dumps(arguments)}
    call = {"id": "call_1", "type": "function", "function": function}
    return [
        {"role": "user", "content": ask},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"},
        {"role": "assistant", "content": "Done."},
    ]


def _answer(
    client: TestClient, ask: str, tools: tuple[dict[str, Any], ...], primed: bool
) -> dict[str, Any]:
    earlier = _example(tools[0]["function"]["name"]) if primed else []
    body = {
        "messages": [*earlier, {"role": "user", "content": ask}],
        "tools": list(tools),
        "temperature": 0,
        "max_tokens": 96,
    }
    response = client.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    message = response.json()["choices"][0]["message"]
    calls = [call["function"] for call in message.get("tool_calls") or []]
    return {"text": message.get("content"), "calls": calls}


def _arm(client: TestClient, kept: bool) -> list[dict[str, Any]]:
    asked = [(ask, tools, primed) for primed in (False, True) for ask, tools in ASKS]
    if kept:
        return [_answer(client, *one) for one in asked]
    with mock.patch.object(ToolOffer, "chosen_format", lambda self, given: None):
        return [_answer(client, *one) for one in asked]


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        environ = {"TETHER_HOME": str(Path(home) / "data"), "TETHER_ENGINE_N_CTX": "2048"}
        settings = load_settings(cwd=Path(home), environ=environ)

        def engine() -> LlamaCppEngine:
            cache = settings.data.home / "cache"
            return LlamaCppEngine(settings.engine, default_model_path(), cache)

        with TestClient(build_app(settings, TOKEN, engine)) as client:
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            before, after = _arm(client, kept=False), _arm(client, kept=True)
    asks = [f"{'(primed) ' if primed else ''}{ask}" for primed in (False, True) for ask, _ in ASKS]
    rows, changed = [], []
    for ask, free, kept in zip(asks, before, after, strict=True):
        rows.append((ask[:48], bool(free["calls"]), bool(kept["calls"]), free == kept))
        if bool(free["calls"]) != bool(kept["calls"]):
            changed.append({"ask": ask, "before": free, "after": kept})
    print_table(("ask", "call before", "call after", "same answer"), rows)
    share_before = sum(bool(a["calls"]) for a in before) / len(asks)
    share_after = sum(bool(a["calls"]) for a in after) / len(asks)
    print(
        f"valid calls: {share_before:.0%} before, {share_after:.0%} after; {len(changed)} changed"
    )
    path = write_result(
        "chosen_calls",
        {
            "headlines": [
                headline("calls_before", share_before, "share"),
                headline("calls_after", share_after, "share"),
            ],
            "answers": [
                {"ask": ask, "before": free, "after": kept}
                for ask, free, kept in zip(asks, before, after, strict=True)
            ],
            "changed": changed,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

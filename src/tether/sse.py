"""Reading an OpenAI-style server-sent event stream: one JSON object per ``data:`` line."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any


async def json_events(lines: AsyncIterable[bytes | str]) -> AsyncIterator[dict[str, Any]]:
    """The JSON payload of each ``data:`` line, until ``data: [DONE]`` or the end.

    An ``error:`` line, as llama.cpp's server wrote a failure midway before it sent one
    as data, is an event ``{"error": ...}``. Other lines (comments, ``event:``, blanks
    between events) are skipped.
    """
    async for raw in lines:
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if line.startswith("error:"):
            text = line[6:].strip()
            try:
                yield {"error": json.loads(text)}
            except ValueError:
                yield {"error": text}
            continue
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if isinstance(event, dict):
            yield event

"""Request bodies parsed as strict JSON: text that is not Unicode is refused at the door.

JSON's ``\\u`` escapes can spell a lone UTF-16 surrogate, which Python's ``json`` module
accepts but which nothing downstream can encode as UTF-8: the tokenizer, the audit log,
SQLite. pydantic's parser refuses it, and invalid UTF-8, saying where; the refusal
becomes the usual 400 ("the request body is not valid JSON").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import Request, Response
from fastapi.routing import APIRoute

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                # RFC 8259 asks for UTF-8 but lets readers take UTF-16/32 and a BOM, as
                # Python's json module does.
                encoding = json.detect_encoding(body)
                text = body if encoding == "utf-8" else body.decode(encoding)
                self._json = pydantic_core.from_json(text)
            except ValueError as exc:  # UnicodeDecodeError is one too
                reason = str(exc)
                if "hex escape" in reason and _SURROGATE_ESCAPE.search(body):
                    reason = (
                        f"{reason}: a \\u escape names a lone UTF-16 surrogate, which is not "
                        "text; escape a character beyond U+FFFF as a pair, or send it as UTF-8"
                    )
                raise json.JSONDecodeError(reason, body.decode("utf-8", "replace"), 0) from exc
        return self._json


class StrictJsonRoute(APIRoute):
    """The route class of every router: its handler reads a ``StrictJsonRequest``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict

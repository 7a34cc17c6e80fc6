"""A real OpenAI-compatible HTTP server whose answer the test chooses.

The model's words cannot be chosen, so end-to-end tests that must see a given answer
(a suggestion that changes the file, a completion with a finding) run tether's gateway
engine against this upstream: a socket, HTTP and server-sent events like any upstream.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "stub-model"


@dataclass
class StubUpstream:
    answer: str
    base_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    piece_delay_s: float = 0.0  # between streamed pieces, to keep requests in flight
    # Misbehaviour, switched on by a test: answer every request with this status (and
    # headers), or with this body (content type, bytes), or only after a delay.
    refuse: tuple[int, dict[str, str]] | None = None
    refusal: str = "refused"  # the message of a refused request
    raw: tuple[str, bytes] | None = None
    hold_open_s: float = 0.0  # after a raw body, keep the connection open this long
    answer_delay_s: float = 0.0
    model_lists: int = 0  # GET /v1/models answered: health checks
    stop_reason: str | None = None  # the stop string the answer is said to end at (vLLM's)
    prompt_tokens: int = 7  # what usage reports the prompt took
    max_model_len: int = 0  # the context window its listing gives, as vLLM's does; 0: none
    # /v1/health answers 503 (a tether whose upstreams are down, a llama.cpp server loading
    # its model) while it still lists its model; otherwise there is no such route, as in vLLM.
    not_ready: bool = False
    # A prompt holding this is answered 500, as vLLM answers some inputs; others are not.
    poison: str | None = None
    # A window that prompt_tokens and max_tokens together must fit, refused in tether's
    # words where they do not, as a tether upstream refuses them; 0: none is checked.
    window: int = 0


def _handler(stub: StubUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet

        def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            self._bytes(status, "application/json", json.dumps(body).encode(), headers)

        def _bytes(
            self, status: int, kind: str, data: bytes, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if stub.refuse is not None:
                self._json(stub.refuse[0], {"error": {"message": "refused"}}, stub.refuse[1])
            elif self.path.rstrip("/") == "/v1/models":
                stub.model_lists += 1
                listed: dict[str, Any] = {"id": MODEL, "object": "model"}
                if stub.max_model_len:
                    listed["max_model_len"] = stub.max_model_len
                self._json(200, {"object": "list", "data": [listed]})
            elif self.path.rstrip("/") == "/v1/health" and stub.not_ready:
                error = {"message": "not ready: the engine is not answering"}
                self._json(503, {"error": error})
            else:
                self._json(404, {"error": {"message": "no such route"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            stub.requests.append(body)
            if stub.poison is not None and stub.poison in json.dumps(body):  # at once
                self._json(500, {"error": {"message": stub.refusal}})
                return
            time.sleep(stub.answer_delay_s)
            if stub.refuse is not None:
                error = {"message": stub.refusal, "param": "prompt"}
                self._json(stub.refuse[0], {"error": error}, stub.refuse[1])
                return
            if stub.window and stub.prompt_tokens + int(body.get("max_tokens") or 0) > stub.window:
                self._refuse_for_the_window(int(body.get("max_tokens") or 0))
                return
            if body.get("model") != MODEL:  # as vLLM answers a model it does not serve
                error = {"message": f"The model `{body.get('model')}` does not exist."}
                self._json(404, {"error": error})
                return
            if stub.raw is not None and stub.hold_open_s:  # no length: the end is the close
                self.send_response(200)
                self.send_header("Content-Type", stub.raw[0])
                self.end_headers()
                self.wfile.write(stub.raw[1])
                self.wfile.flush()
                time.sleep(stub.hold_open_s)
                self.close_connection = True
                return
            if stub.raw is not None:
                self._bytes(200, *stub.raw)
                return
            chat = self.path.endswith("/chat/completions")
            usage = {
                "prompt_tokens": stub.prompt_tokens,
                "completion_tokens": max(1, len(stub.answer) // 4),
                "prompt_tokens_details": {"cached_tokens": 3},
            }
            if not body.get("stream"):
                choice: dict[str, Any] = {
                    "index": 0,
                    "finish_reason": "stop",
                    "stop_reason": stub.stop_reason,
                }
                if chat:
                    choice["message"] = {"role": "assistant", "content": stub.answer}
                else:
                    choice["text"] = stub.answer
                self._json(200, {"id": "stub", "choices": [choice], "usage": usage})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            pieces = [stub.answer[i : i + 7] for i in range(0, len(stub.answer), 7)]
            for piece in pieces:
                time.sleep(stub.piece_delay_s)
                delta: dict[str, Any] = {"delta": {"content": piece}} if chat else {"text": piece}
                self._event({"choices": [{"index": 0, "finish_reason": None, **delta}]})
            last: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
            last["stop_reason"] = stub.stop_reason
            self._event({"choices": [{"index": 0, "finish_reason": "stop", **last}]})
            self._event({"choices": [], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

        def _refuse_for_the_window(self, max_tokens: int) -> None:
            window = f"this model's maximum context length is {stub.window} tokens"
            if stub.prompt_tokens >= stub.window:
                message = (
                    f"the prompt is {stub.prompt_tokens} tokens, more than the context "
                    f"window: {window}; shorten the prompt"
                )
                error: dict[str, Any] = {"message": message, "param": None}
            else:
                message = (
                    f"the prompt is {stub.prompt_tokens} tokens and max_tokens is "
                    f"{max_tokens}, together more than the context window: {window}; "
                    "shorten the prompt or lower max_tokens"
                )
                error = {"message": message, "param": "max_tokens"}
            self._json(400, {"error": {**error, "code": "context_length_exceeded"}})

        def _event(self, payload: dict[str, Any]) -> None:
            self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            self.wfile.flush()

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that went away
            super().handle_error(request, client_address)


@contextmanager
def stub_upstream(answer: str, piece_delay_s: float = 0.0) -> Iterator[StubUpstream]:
    """An upstream on a free loopback port answering every request with ``answer``."""
    stub = StubUpstream(answer, piece_delay_s=piece_delay_s)
    server = _Server(("127.0.0.1", 0), _handler(stub))
    stub.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()

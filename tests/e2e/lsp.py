"""A minimal Language Server Protocol client over a child process's stdio (JSON-RPC)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any


class LspClient:
    def __init__(self, command: list[str], env: dict[str, str], stderr: Path) -> None:
        self._stderr = stderr.open("wb")
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self.received: list[dict[str, Any]] = []
        self._next_id = 0
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        while True:
            headers: dict[str, str] = {}
            while line := self.process.stdout.readline().decode().strip():
                name, _, value = line.partition(":")
                headers[name.lower()] = value.strip()
            if not headers:
                return  # the server closed its output
            message = json.loads(self.process.stdout.read(int(headers["content-length"])))
            if "method" in message and "id" in message:  # a request to us: acknowledge it
                self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            with self._arrived:
                self.received.append(message)
                self._arrived.notify_all()

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        data = json.dumps(message).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.process.stdin.flush()

    def request(self, method: str, params: Any, timeout: float = 60.0) -> Any:
        self._next_id += 1
        wanted = self._next_id
        self._send({"jsonrpc": "2.0", "id": wanted, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for message in self.received:
                    if message.get("id") == wanted and "method" not in message:
                        if "error" in message:
                            raise RuntimeError(f"{method} failed: {message['error']}")
                        return message.get("result")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer to {method} in {timeout} s")
                self._arrived.wait(left)

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def close(self) -> None:
        """Shut the server down as an editor does, and wait for it to exit."""
        try:
            self.request("shutdown", None, timeout=20)
            self.notify("exit", None)
            self.process.wait(20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            self._reader.join(10)  # it ends at the end of the server's output
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
            self._stderr.close()

"""A server on this machine is reached directly, whatever proxy the environment names."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import refusing_proxy
from tether import direct


@pytest.fixture
def company_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every proxy variable set to a refusing proxy, and no NO_PROXY; what it was asked."""
    with refusing_proxy() as (variables, seen):
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        yield seen


@pytest.mark.parametrize(
    ("url", "here"),
    [
        ("http://127.0.0.1:8421", True),
        ("http://127.8.0.1:8421/v1", True),
        ("https://localhost:8421", True),
        ("http://LOCALHOST.:8421", True),
        ("http://tether.localhost", True),
        ("http://[::1]:8421", True),
        ("http://0.0.0.0:8421", True),
        ("http://[::]:8421", True),
        ("http://10.0.0.5:8421", False),
        ("https://tether.example.com", False),
        ("http://localhost.example.com", False),
    ],
)
def test_what_names_this_machine(url: str, here: bool) -> None:
    assert direct.on_this_machine(url) is here


def test_a_server_on_this_machine_is_reached_directly(company_proxy: list[str]) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Here)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/readyz"
        assert httpx.get(url).status_code == 403  # what any client did: the proxy's page
        assert direct.request("GET", url).text == "here"
        assert direct.request("GET", url.replace("127.0.0.1", "localhost")).text == "here"
    finally:
        server.shutdown()
        server.server_close()
    assert company_proxy == [url]  # httpx.get's alone


def test_a_server_elsewhere_is_reached_through_the_proxy(company_proxy: list[str]) -> None:
    assert direct.request("GET", "http://tether.invalid/readyz").status_code == 403
    assert company_proxy == ["http://tether.invalid/readyz"]
    with pytest.raises(httpx.ConnectError):  # an upstream: directly, as the gateway's requests
        direct.request("GET", "http://tether.invalid/v1/models", always_direct=True)
    assert len(company_proxy) == 1


class _Here(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"here")

    def log_message(self, *args: object) -> None:
        pass

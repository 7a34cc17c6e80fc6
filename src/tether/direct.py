"""HTTP transports that reach a server directly, never through a proxy the environment
names (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``).

On a workstation behind a company proxy those are set for the internet, and rarely with
``NO_PROXY`` naming 127.0.0.1: the proxy then refused the CLI's requests to a tether on
the same machine, or answered them itself, and the CLI called the server "not a tether
server". A server on this machine is always reached directly; one elsewhere through the
environment's proxy, as any HTTP client would. Upstream engines are always reached
directly, as aiohttp, which sends their requests, never reads the environment's proxies.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any

import httpx

Verify = ssl.SSLContext | bool


def on_this_machine(url: str) -> bool:
    """Whether ``url`` names this machine: localhost, a loopback address, or the
    any-address a server listens on (0.0.0.0, ::), which reaches this machine."""
    host = httpx.URL(url).host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def transport_for(url: str, verify: Verify = True) -> httpx.AsyncHTTPTransport | None:
    """A direct transport for an async client of a server on this machine; None (the
    environment's proxies apply) for one elsewhere."""
    return httpx.AsyncHTTPTransport(verify=verify) if on_this_machine(url) else None


def request(
    method: str, url: str, *, verify: Verify = True, always_direct: bool = False, **kwargs: Any
) -> httpx.Response:
    """``httpx.request``, but direct to a server on this machine, or to any with
    ``always_direct``."""
    direct = always_direct or on_this_machine(url)
    transport = httpx.HTTPTransport(verify=verify) if direct else None
    with httpx.Client(verify=verify, transport=transport) as client:
        return client.request(method, url, **kwargs)

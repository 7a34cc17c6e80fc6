"""URLs as logs, screens and error messages show them: never the credentials they carry."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def without_credentials(url: str) -> str:
    """``url`` without a user name or password."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
    except ValueError:  # not a URL urlsplit can read: whatever precedes an "@" goes
        return url.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def url_shown(url: str, *, path: bool = True) -> str:
    """``url`` without credentials, nor its query string or fragment (which may hold a
    token), nor with ``path=False`` its path (a webhook's often holds its secret)."""
    try:
        parts = urlsplit(without_credentials(url))
    except ValueError:
        return without_credentials(url).split("/")[0] + "//***"
    hidden = parts._replace(
        query="***" if parts.query else "",
        fragment="***" if parts.fragment else "",
        path=parts.path if path or parts.path in ("", "/") else "/***",
    )
    return urlunsplit(hidden)

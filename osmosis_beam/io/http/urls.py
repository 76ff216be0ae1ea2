"""URL helpers shared by the HTTP sources: checks, credentials, fragments, origins (no network).

Example::

    from osmosis_beam.io.http.urls import split_credentials
    split_credentials("https://bob:pw@example.org/feed")   # ('https://example.org/feed', ('bob', 'pw'))
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["check_url", "split_credentials", "strip_fragment", "origin"]


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be fetched, or None."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return f"{url!r} is not an http(s) URL"
    if not parts.hostname:
        return f"{url!r} has no host"
    return None


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without ``user:password@``, and the credentials it held (None when it held none)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    netloc = parts.netloc.rpartition("@")[2]
    public = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return public, (unquote(parts.username or ""), unquote(parts.password or ""))


def strip_fragment(url: str) -> str:
    """``url`` without its ``#fragment`` (never sent to a server), with ``/`` as the least path."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower-cased."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"

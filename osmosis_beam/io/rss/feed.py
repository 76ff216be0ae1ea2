"""feedparser, with its URL joins memoized: the same parse, about a quarter less CPU on a feed with a base URL.

feedparser joins URLs in pure Python at every element: each start tag joins the document's base URL
with itself (``make_safe_absolute_uri(base, base)``) and every link and guid with the base. With the
feed's own URL as base (``Content-Location``, so that relative links resolve against where the feed came
from) that is one ``urllib.parse.urljoin`` per element, about a quarter of the parse of a 20,000-entry
feed. ``feedparser.urls._urljoin(base, uri)`` is a pure function of its two strings, so a small LRU cache
in front of it returns exactly what it would have computed; the calls repeat (the same base, the same
pair), so nearly all of them hit. The cache is installed once, process-wide, in both modules that call
the function; it holds at most ``_CACHE_SIZE`` pairs.

Example::

    from osmosis_beam.io.rss.feed import parse_feed
    parsed = parse_feed(body, {"content-location": url, "content-type": "application/rss+xml"})
    parsed.entries[0].link
"""
from __future__ import annotations

import functools
import threading
from typing import Any

__all__ = ["parse_feed"]

_CACHE_SIZE = 4096
_lock = threading.Lock()
_installed = False


def _install(feedparser) -> None:
    """Put the memoized join in place of ``_urljoin`` in ``feedparser.urls`` and ``feedparser.mixin`` (once)."""
    global _installed
    with _lock:
        if _installed:
            return
        from feedparser import mixin, urls

        plain = urls._urljoin  # noqa: SLF001 - the function feedparser calls by this module-level name
        if not isinstance(plain, functools._lru_cache_wrapper):  # noqa: SLF001
            cached = functools.lru_cache(maxsize=_CACHE_SIZE)(plain)
            urls._urljoin = cached  # noqa: SLF001 - make_safe_absolute_uri and RelativeURIResolver look it up here
            if getattr(mixin, "_urljoin", None) is plain:
                mixin._urljoin = cached  # noqa: SLF001 - the parser's own reference (xml:base, resolve_uri)
        _installed = True


def parse_feed(body: bytes, response_headers: dict[str, str]) -> Any:
    """``feedparser.parse(body, response_headers=...)`` with the memoized URL join."""
    import feedparser

    _install(feedparser)
    return feedparser.parse(body, response_headers=response_headers)

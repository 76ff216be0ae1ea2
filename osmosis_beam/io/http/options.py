"""The options every HTTP source (web, rss) takes, declared once.

A connector lists ``*http_options(...)`` in its ``options``; the defaults it passes differ where the
sources differ (a feed may be larger than a page; a feed reader fetches on a user's behalf and does not
read robots.txt by default, as feed readers do).

Example::

    options = (Option("url", required=True), *http_options(max_bytes=50 * 1024 * 1024))
"""
from __future__ import annotations

import datetime as dt

from osmosis_beam import __version__
from typing import Any, Mapping

from osmosis_beam.core.options import Option
from osmosis_beam.core.secrets import redact_headers, redact_url

__all__ = ["http_options", "default_user_agent", "public_http_options"]


def default_user_agent(what: str) -> str:
    """The User-Agent osmosis sends: names the reader and where to learn about it."""
    return f"osmosis-beam/{__version__} ({what}; +https://pypi.org/project/osmosis-beam/)"


def http_options(
    *, user_agent: str, max_bytes: int, respect_robots_txt: bool = True, request_interval: float = 1.0
) -> tuple[Option, ...]:
    """The shared HTTP options, with the source's own defaults."""
    seconds = dt.timedelta
    return (
        Option("timeout", "duration", default=seconds(seconds=30), help="read timeout: longest wait for the next bytes"),
        Option("connect_timeout", "duration", default=seconds(seconds=10)),
        Option("deadline", "duration", default=seconds(minutes=2),
               help="total time one request may take, headers and body, however slowly the server sends"),
        Option("page_deadline", "duration", default=seconds(minutes=5),
               help="total time for one document: its redirects, retries and the waits between them"),
        Option("retries", "int", default=3, minimum=0, help="retries on timeouts, dropped connections, 408, 429 and 5xx"),
        Option("retry_backoff", "duration", default=seconds(seconds=1), help="first retry delay (doubles)"),
        Option("max_retry_wait", "duration", default=seconds(seconds=60), help="cap on waiting between retries per document"),
        Option("request_interval", "duration", default=seconds(seconds=request_interval), help="per-host rate limit"),
        Option("respect_robots_txt", "bool", default=respect_robots_txt),
        Option("max_bytes", "int", default=max_bytes, minimum=1, help="largest document accepted (after decompression)"),
        Option("max_redirects", "int", default=5, minimum=0),
        Option("user_agent", default=user_agent),
        Option("headers", "dict", default={}, help="extra request headers (secret-looking ones are never shown)"),
        Option("verify_tls", "bool", default=True),
    )


def public_http_options(options: Mapping[str, Any], *, drop_headers: bool = False) -> dict[str, Any]:
    """``options`` safe to show or ship: URLs redacted by rule, secret headers as ``***`` (or no headers).

    Used for display data and logs (``drop_headers=False``) and for what travels to Beam workers,
    which never fetch and so need no headers at all (``drop_headers=True``).
    """
    shown = dict(options)
    if isinstance(shown.get("url"), str):
        shown["url"] = redact_url(shown["url"])
    if isinstance(shown.get("urls"), (list, tuple)):
        shown["urls"] = [redact_url(u) if isinstance(u, str) else u for u in shown["urls"]]
    headers = shown.get("headers")
    if drop_headers:
        shown["headers"] = {}
    elif isinstance(headers, Mapping):
        shown["headers"] = redact_headers(headers)
    return shown

"""Connection failures said plainly: refused, unknown host, TLS, timeouts, in the PostgreSQL connector's style.

``requests`` reports a refused connection as ``HTTPConnectionPool(host='127.0.0.1', port=9): Max retries
exceeded with url: /feed.xml (Caused by NewConnectionError(...: [Errno 111] Connection refused))``.
:func:`explain_connection_error` turns it into ``nothing accepts connections on 127.0.0.1:9 (connection
refused); check the host and port in source.url, and that the server is running``.

Example::

    try:
        session.get(url, timeout=(10, 30))
    except requests.RequestException as exc:
        reason, retriable = explain_connection_error(exc, url)
"""
from __future__ import annotations

import errno
import ssl
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

__all__ = ["explain_connection_error", "short_reason"]

_DNS_WORDS = ("name or service not known", "nodename nor servname", "getaddrinfo failed", "temporary failure in name resolution",
              "no address associated", "failed to resolve", "name resolution")


def short_reason(exc: BaseException) -> str:
    """The innermost readable reason of a requests/urllib3 error, without pool and retry boilerplate."""
    text = str(exc)
    if "(Caused by" in text:
        text = text.split("(Caused by", 1)[1].rstrip(")").strip()
    for prefix in ("NewConnectionError(", "ProtocolError(", "SSLError(", "ReadTimeoutError(", "ConnectTimeoutError("):
        if text.startswith(prefix):
            text = text[len(prefix):].rstrip(")")
    if ": " in text and text.startswith(("<urllib3", "HTTPConnection", "HTTPSConnection")):
        text = text.split(": ", 1)[1]
    return text.strip("'\" ")[:300]


def _chain(exc: BaseException):
    seen = set()
    stack = [exc]
    while stack:
        cur = stack.pop()
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        stack.extend([getattr(cur, "reason", None), cur.__cause__, cur.__context__])
        stack.extend(a for a in getattr(cur, "args", ()) if isinstance(a, BaseException))


def explain_connection_error(exc: BaseException, url: str) -> tuple[str, bool]:
    """``(what went wrong and the fix, retriable)`` for a failure to connect to or talk with ``url``'s host."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = f"{host}:{port}"
    chain = list(_chain(exc))
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, urllib3.exceptions.NameResolutionError) for e in chain) or any(w in text for w in _DNS_WORDS):
        return f"unknown host {host!r} (the name does not resolve); check the host name in source.url", False
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "connection refused" in text or (
        any(getattr(e, "errno", None) == errno.ECONNREFUSED for e in chain)
    ):
        return (f"nothing accepts connections on {where} (connection refused); check the host and port in "
                "source.url, and that the server is running"), True
    if isinstance(exc, requests.exceptions.SSLError) or any(isinstance(e, ssl.SSLError) for e in chain):
        detail = next((str(getattr(e, "reason", "") or e) for e in chain if isinstance(e, ssl.SSLError)), short_reason(exc))
        return (f"the TLS handshake with {where} failed ({detail[:200]}); check the server's certificate, "
                "or set source.verify_tls: false for a server you trust without one"), False
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no answer from {where} in time (connect timeout, source.connect_timeout); check the host, port and firewall", True
    if any(isinstance(e, (ConnectionResetError, BrokenPipeError)) for e in chain) or "reset by peer" in text:
        return f"{where} closed the connection (connection reset); retry later", True
    if "unreachable" in text:
        return f"{where} cannot be reached (network unreachable); check the host and the network", True
    return f"cannot talk to {where} ({short_reason(exc)})", True

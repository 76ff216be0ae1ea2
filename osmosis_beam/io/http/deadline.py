"""A total deadline for one HTTP request, however slowly the server trickles its bytes.

``requests``' ``timeout`` bounds each socket read, so a server sending one byte a second (slowloris)
keeps a request alive forever. Here every connection registers its socket with the deadline of the
request being made in this thread; when the deadline passes, a timer shuts the socket down, which
wakes the blocked read at once (headers or body), and :attr:`Deadline.expired` tells why it ended.

Example::

    session = requests.Session()
    mount_deadline_adapter(session)
    with Deadline(30.0) as deadline:
        resp = session.get(url, stream=True, timeout=(10, 30))
        body = resp.content
    if deadline.expired: ...
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["Deadline", "mount_deadline_adapter"]

_CURRENT = threading.local()


class Deadline:
    """The deadline of the request being made in this thread (a context manager; not reentrant)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = max(0.0, float(seconds))
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._started = 0.0

    def __enter__(self) -> "Deadline":
        self._started = time.monotonic()
        _CURRENT.deadline = self
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        _CURRENT.deadline = None
        with self._lock:
            self._socks.clear()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def watch(self, sock: Any) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it has passed)."""
        if sock is None:
            return
        with self._lock:
            if not self.expired:
                self._socks.append(sock)
                return
        _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            socks, self._socks = self._socks, []
        for sock in socks:
            _shutdown(sock)


def _shutdown(sock: Any) -> None:
    try:
        # socket.socket's own shutdown, also for TLS sockets: it wakes a read blocked in another thread
        # without touching the TLS object that thread is using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, TypeError):
        pass


def _watch_current(sock: Any) -> None:
    deadline = getattr(_CURRENT, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)


class _DeadlineHTTPConnection(HTTPConnection):
    def getresponse(self, *args: Any, **kwargs: Any):  # the connection may come from the pool: watch it now
        _watch_current(self.sock)
        return super().getresponse(*args, **kwargs)


class _DeadlineHTTPSConnection(HTTPSConnection):
    def getresponse(self, *args: Any, **kwargs: Any):
        _watch_current(self.sock)
        return super().getresponse(*args, **kwargs)


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_POOLS = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


def mount_deadline_adapter(session: requests.Session) -> None:
    """Make every http(s) request of ``session`` honour the :class:`Deadline` it runs under."""
    adapter = _DeadlineAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)

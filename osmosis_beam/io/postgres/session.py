"""Deadlines for every PostgreSQL connection osmosis opens (source, sink, state store): nothing waits forever.

Each connection gets

- ``connect_timeout`` (libpq): how long connecting may take;
- ``statement_timeout`` and ``lock_timeout`` (server settings): a statement that runs too long, or waits
  too long for a lock (a table under ``ACCESS EXCLUSIVE``), is cancelled by the server with an error;
- TCP keepalives and ``tcp_user_timeout`` (libpq): a peer that vanished (cable, firewall, dead host) is
  noticed by the kernel;
- a client-side deadline: a statement (or fetch, commit) with no answer ``statement_timeout`` + 10 s
  after it was sent closes the socket, so even a backend that cannot cancel itself (a stopped process,
  a hung host that still acknowledges TCP) fails the call with :class:`StalledError`.

Parameters the DSN sets itself (``connect_timeout``, ``keepalives_idle`` ...) win over these defaults.

Example::

    from osmosis_beam.io.postgres.session import Deadlines, connect
    conn = connect("postgresql://app@db/shop", Deadlines(statement_timeout=60.0), application_name="osmosis-beam")
    with conn.cursor() as cur:
        cur.execute("SELECT 1")   # raises StalledError if the server stays silent for 70 s
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any, Iterator

import psycopg2
import psycopg2.extensions

__all__ = ["Deadlines", "StalledError", "connect", "DEFAULT_DEADLINES", "CLIENT_MARGIN", "timeout_hint", "deadline_options",
           "deadlines_from", "wait_longer_for_locks"]

CLIENT_MARGIN = 10.0  # seconds the client waits past statement_timeout before it gives up on the server


@dataclasses.dataclass(frozen=True)
class Deadlines:
    """How long a connection may take to connect, run a statement and wait for a lock (seconds)."""

    connect_timeout: float = 10.0
    statement_timeout: float = 600.0
    lock_timeout: float = 30.0
    keepalives_idle: int = 30
    keepalives_interval: int = 10
    keepalives_count: int = 3
    client_margin: float = CLIENT_MARGIN

    @property
    def client_deadline(self) -> float:
        """Seconds of silence after which the client closes the connection itself."""
        return self.statement_timeout + self.client_margin

    def libpq(self) -> dict[str, Any]:
        """The libpq connection parameters these deadlines set."""
        return {
            "connect_timeout": max(2, int(round(self.connect_timeout))),  # libpq treats 1 as 2
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle,
            "keepalives_interval": self.keepalives_interval,
            "keepalives_count": self.keepalives_count,
            # Unacknowledged data for this long drops the connection (Linux TCP_USER_TIMEOUT, ms).
            "tcp_user_timeout": int((self.keepalives_idle + self.keepalives_interval * self.keepalives_count) * 1000),
        }

    def settings_sql(self) -> str:
        return (f"SET statement_timeout = {int(self.statement_timeout * 1000)}; "
                f"SET lock_timeout = {int(self.lock_timeout * 1000)}")


DEFAULT_DEADLINES = Deadlines()


def deadline_options(option_class: Any) -> tuple:
    """The options a PostgreSQL connector or sink takes for its deadlines (``option_class`` is core's Option)."""
    d = DEFAULT_DEADLINES
    return (
        option_class("connect_timeout", "duration", default=dt.timedelta(seconds=d.connect_timeout),
                     help="how long connecting may take"),
        option_class("statement_timeout", "duration", default=dt.timedelta(seconds=d.statement_timeout),
                     help="longest statement (one FETCH of a typed read, one COPY of a zero-decode sub-window, "
                          "one merge); the client gives up 10s later"),
        option_class("lock_timeout", "duration", default=dt.timedelta(seconds=d.lock_timeout),
                     help="longest wait for a lock (a table under ACCESS EXCLUSIVE fails the run after this)"),
    )


def deadlines_from(config: Any) -> Deadlines:
    """Deadlines from validated option values (durations); missing ones keep the defaults."""
    values = {}
    for name in ("connect_timeout", "statement_timeout", "lock_timeout"):
        value = config.get(name) if hasattr(config, "get") else None
        if value is not None:
            values[name] = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    return dataclasses.replace(DEFAULT_DEADLINES, **values)


class StalledError(psycopg2.OperationalError):
    """The server sent nothing within the client-side deadline; the connection was closed."""


def timeout_hint(exc: BaseException, deadlines: Deadlines | None = None) -> str | None:
    """A plain explanation for a timeout error of the server or of the client deadline, else None."""
    if isinstance(exc, StalledError):
        return str(exc)
    code = getattr(exc, "pgcode", None)
    text = str(getattr(exc, "pgerror", None) or exc).lower()
    if code == "55P03" or "lock timeout" in text:
        limit = f" ({deadlines.lock_timeout:g}s)" if deadlines else ""
        return (f"the table (or a row) is locked by another session longer than lock_timeout{limit} allows; find "
                "the blocking session in pg_locks / pg_stat_activity, or raise lock_timeout")
    if code == "57014" and "statement timeout" in text:
        limit = f" ({deadlines.statement_timeout:g}s)" if deadlines else ""
        return f"the statement ran longer than statement_timeout{limit} allows; raise statement_timeout, or narrow the read"
    return None


def wait_longer_for_locks(cur, deadlines: Deadlines):
    """For a lock osmosis takes itself (serializing publishes): wait up to statement_timeout, not lock_timeout.

    Returns a function that restores lock_timeout for the rest of the transaction.
    """
    cur.execute(f"SET LOCAL lock_timeout = {int(deadlines.statement_timeout * 1000)}")

    def restore() -> None:
        cur.execute(f"SET LOCAL lock_timeout = {int(deadlines.lock_timeout * 1000)}")

    return restore


# -- the client-side deadline --------------------------------------------------------------------------
class _Watchdog:
    """One daemon thread that shuts down the socket of a connection silent past its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, tuple[float, "GuardedConnection"]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, conn: "GuardedConnection", seconds: float) -> int:
        token = next(self._ids)
        deadline = time.monotonic() + seconds
        with self._cond:
            self._armed[token] = (deadline, conn)
            heapq.heappush(self._heap, (deadline, token))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="osmosis-pg-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait(30.0)
                    continue
                deadline, token = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                _, conn = self._armed.pop(token)
            conn._give_up()


_WATCHDOG = _Watchdog()


class GuardedConnection(psycopg2.extensions.connection):
    """A psycopg2 connection whose every round trip has a client-side deadline (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = GuardedCursor
        self.deadline = DEFAULT_DEADLINES.client_deadline
        self.margin = DEFAULT_DEADLINES.client_margin
        self.what = "postgres"
        self.stalled = False

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Run the body under the client-side deadline; a call the watchdog cut raises StalledError."""
        token = _WATCHDOG.arm(self, self.deadline)
        try:
            yield
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            if self.stalled and not isinstance(exc, StalledError):
                raise StalledError(
                    f"{self.what}: no answer from the server for {self.deadline:g}s (statement_timeout + "
                    f"{self.margin:g}s); the backend is stalled or the network is down, so the connection was "
                    "closed; check the server, or raise statement_timeout"
                ) from None
            raise
        finally:
            _WATCHDOG.disarm(token)

    def _give_up(self) -> None:
        """Called by the watchdog: make the blocked call return by shutting the socket down."""
        self.stalled = True
        try:
            sock = socket.socket(fileno=os.dup(self.fileno()))
        except (OSError, psycopg2.Error):
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.close()

    def commit(self) -> None:
        with self.guard():
            super().commit()

    def rollback(self) -> None:
        if self.closed:
            return super().rollback()
        with self.guard():
            super().rollback()


class GuardedCursor(psycopg2.extensions.cursor):
    """Every call that waits for the server runs under the connection's client-side deadline."""

    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's name
        with self.connection.guard():
            return super().execute(query, vars)

    def executemany(self, query, vars_list):
        with self.connection.guard():
            return super().executemany(query, vars_list)

    def callproc(self, procname, parameters=None):
        with self.connection.guard():
            return super().callproc(procname, parameters)

    def fetchone(self):
        with self.connection.guard():
            return super().fetchone()

    def fetchmany(self, size=None):
        with self.connection.guard():
            return super().fetchmany(self.arraysize if size is None else size)

    def fetchall(self):
        with self.connection.guard():
            return super().fetchall()

    def copy_expert(self, sql, file, size=8192):
        with self.connection.guard():
            return super().copy_expert(sql, file, size)

    def __iter__(self):
        # A named cursor fetches ``itersize`` rows per round trip; each round trip is guarded.
        while True:
            rows = self.fetchmany(self.itersize)
            if not rows:
                return
            yield from rows


def connect(dsn: str, deadlines: Deadlines = DEFAULT_DEADLINES, *, application_name: str, what: str = "postgres",
            setup: str = "") -> GuardedConnection:
    """A connection with ``deadlines`` (the DSN's own parameters win) and ``setup`` SQL run in autocommit.

    Raises psycopg2.Error as psycopg2.connect does; the caller explains it.
    """
    params = psycopg2.extensions.parse_dsn(dsn)
    extra: dict[str, Any] = {k: v for k, v in deadlines.libpq().items() if k not in params}
    if "application_name" not in params:
        extra["application_name"] = application_name
    conn = psycopg2.connect(dsn, connection_factory=GuardedConnection, **extra)
    conn.what = what
    conn.deadline = deadlines.client_deadline
    conn.margin = deadlines.client_margin
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(deadlines.settings_sql() + (f"; {setup}" if setup else ""))
        conn.autocommit = False
    except BaseException:
        conn.close()
        raise
    return conn

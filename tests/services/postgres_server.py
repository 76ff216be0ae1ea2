"""Throwaway PostgreSQL server for the test suite.

``PostgresServer`` gives tests a *real* PostgreSQL server, in one of two ways:

1. If the environment variable ``OSMOSIS_TEST_PG_DSN`` is set (e.g. in CI with a
   PostgreSQL service container), that server is used as-is.  It is checked for
   connectivity on ``start()`` and is never stopped by this harness.
2. Otherwise a private cluster is created from the installed server binaries
   (``initdb``/``pg_ctl`` on ``PATH``, ``$OSMOSIS_TEST_PG_BINDIR``, or
   ``/usr/lib/postgresql/*/bin``, newest first) in a temporary directory,
   listening on a free TCP port on 127.0.0.1.  Host connections require a
   password (``scram-sha-256``) so wrong-password tests behave like production.
   When running as root the server runs as the ``postgres`` system user
   (override with ``$OSMOSIS_TEST_PG_OS_USER``), since PostgreSQL refuses to
   run as root.  ``stop()`` shuts it down and deletes the directory.

Example (runnable: ``python tests/services/postgres_server.py``)::

    import psycopg2
    from tests.services.postgres_server import PostgresServer

    ok, reason = PostgresServer.available()
    if ok:
        with PostgresServer() as pg:
            dsn = pg.create_database("ingest_test")  # postgresql://osmosis:...@127.0.0.1:PORT/ingest_test
            with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                assert cur.fetchone() == (1,)
            conn.close()
            pg.drop_database("ingest_test")

Only the standard library and psycopg2 are used.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from typing import Any, Mapping, Sequence

try:  # imported lazily-tolerant so available() can explain a missing driver
    import psycopg2
    import psycopg2.extensions
    from psycopg2 import sql
except ImportError:  # pragma: no cover - psycopg2 is a test dependency
    psycopg2 = None  # type: ignore[assignment]

__all__ = ["PostgresServer", "PostgresServerError", "available", "find_pg_bindir"]

ENV_DSN = "OSMOSIS_TEST_PG_DSN"
ENV_BINDIR = "OSMOSIS_TEST_PG_BINDIR"
ENV_OS_USER = "OSMOSIS_TEST_PG_OS_USER"

DEFAULT_USER = "osmosis"
_LOG_TAIL_LINES = 40


class PostgresServerError(RuntimeError):
    """The server could not be created, started, reached or stopped."""


# --------------------------------------------------------------------------- #
# discovery
# --------------------------------------------------------------------------- #
def _version_key(path: str) -> tuple:
    """Sort key for ``.../postgresql/<version>/bin``: numeric version parts."""
    m = re.search(r"(\d+(?:\.\d+)*)", os.path.basename(os.path.dirname(path)))
    return tuple(int(p) for p in m.group(1).split(".")) if m else (-1,)


def _has_binaries(bindir: str) -> bool:
    return all(
        os.path.isfile(os.path.join(bindir, exe)) and os.access(os.path.join(bindir, exe), os.X_OK)
        for exe in ("initdb", "pg_ctl", "postgres")
    )


def find_pg_bindir() -> str | None:
    """Directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None.

    Order: ``$OSMOSIS_TEST_PG_BINDIR``; ``initdb`` on PATH (symlinks resolved,
    so Debian's ``/usr/local/bin -> /usr/lib/postgresql/N/bin`` works); then
    ``/usr/lib/postgresql/*/bin``, ``/usr/pgsql-*/bin``, ``/usr/local/pgsql/bin``
    with the newest version first.
    """
    candidates: list[str] = []
    env_dir = os.environ.get(ENV_BINDIR)
    if env_dir:
        candidates.append(env_dir)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
        candidates.append(os.path.dirname(on_path))
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"):
        candidates.extend(sorted(glob.glob(pattern), key=_version_key, reverse=True))
    candidates.append("/usr/local/pgsql/bin")
    for c in candidates:
        if _has_binaries(c):
            return os.path.realpath(c)
    return None


def _os_user_for_server() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as (only when we are root)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get(ENV_OS_USER, "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresServerError(
            f"running as root, but system user {name!r} does not exist; PostgreSQL "
            f"refuses to run as root (create the user or set ${ENV_OS_USER})"
        ) from None


def available() -> tuple[bool, str]:
    """Whether a PostgreSQL server can be had, and why (not)."""
    if psycopg2 is None:
        return False, "psycopg2 is not installed"
    if os.environ.get(ENV_DSN):
        return True, f"${ENV_DSN} is set"
    bindir = find_pg_bindir()
    if bindir is None:
        return False, (
            f"no PostgreSQL server binaries (initdb/pg_ctl/postgres) found and ${ENV_DSN} "
            "is not set; install e.g. the Debian package postgresql"
        )
    try:
        user = _os_user_for_server()
    except PostgresServerError as exc:
        return False, str(exc)
    how = f" (as system user {user.pw_name!r})" if user else ""
    return True, f"server binaries in {bindir}{how}"


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tail(path: str, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "r", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError as exc:
        return f"<could not read {path}: {exc}>"


def _url(user: str, password: str | None, host: str, port: int, dbname: str) -> str:
    auth = urllib.parse.quote(user, safe="")
    if password:
        auth += ":" + urllib.parse.quote(password, safe="")
    return f"postgresql://{auth}@{host}:{port}/{urllib.parse.quote(dbname, safe='')}"


# --------------------------------------------------------------------------- #
# the server
# --------------------------------------------------------------------------- #
class PostgresServer:
    """A real PostgreSQL server: an external one via ``$OSMOSIS_TEST_PG_DSN``,
    or a throwaway local cluster.  See the module docstring.

    After ``start()``: ``dsn`` (libpq URL to the ``postgres`` database),
    ``host``, ``port``, ``user``, ``password``.  ``external`` tells whether the
    server came from the environment (and so is never stopped).
    """

    def __init__(
        self,
        *,
        user: str = DEFAULT_USER,
        password: str | None = None,
        startup_timeout: float = 30.0,
        server_options: Mapping[str, str] | None = None,
        base_dir: str | None = None,
    ) -> None:
        self.user = user
        self.password: str | None = password or secrets.token_urlsafe(18)
        self.host: str | None = None
        self.port: int | None = None
        self.dsn: str | None = None
        self.external = False
        self.startup_timeout = startup_timeout
        self.server_options = dict(server_options or {})
        self.base_dir = base_dir
        self.tmpdir: str | None = None
        self.datadir: str | None = None
        self.sockdir: str | None = None
        self.logfile: str | None = None
        self._bindir: str | None = None
        self._os_user: pwd.struct_passwd | None = None
        self._running = False
        self._lock = threading.RLock()

    available = staticmethod(available)

    # ---- lifecycle --------------------------------------------------------
    def start(self) -> "PostgresServer":
        with self._lock:
            if self._running:
                return self
            if psycopg2 is None:
                raise PostgresServerError("psycopg2 is not installed")
            env_dsn = os.environ.get(ENV_DSN)
            if env_dsn:
                self._use_external(env_dsn)
            else:
                self._start_local()
            self._running = True
            return self

    def stop(self) -> None:
        """Stop the local server and delete its directory.  Idempotent; a
        server from ``$OSMOSIS_TEST_PG_DSN`` is left running."""
        with self._lock:
            try:
                atexit.unregister(self.stop)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass
            self._running = False
            if self.external:
                return
            self._shutdown_and_remove()

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._running

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<PostgresServer {state} {self.host}:{self.port} external={self.external}>"

    # ---- helpers for tests -----------------------------------------------
    def dsn_for(self, dbname: str, *, user: str | None = None, password: str | None = None) -> str:
        """DSN for another database (and optionally other credentials) on this server."""
        self._require_running()
        assert self.dsn is not None
        if self.external and not self.dsn.startswith(("postgresql://", "postgres://")):
            overrides: dict[str, Any] = {"dbname": dbname}
            if user is not None:
                overrides["user"] = user
            if password is not None:
                overrides["password"] = password
            return psycopg2.extensions.make_dsn(self.dsn, **overrides)
        if self.external:
            parts = urllib.parse.urlsplit(self.dsn)
            netloc = parts.netloc
            if user is not None or password is not None:
                hostpart = netloc.rsplit("@", 1)[-1]
                netloc = f"{urllib.parse.quote(user if user is not None else self.user or '', safe='')}"
                pw = password if password is not None else self.password
                if pw:
                    netloc += ":" + urllib.parse.quote(pw, safe="")
                netloc += "@" + hostpart
            return urllib.parse.urlunsplit(
                (parts.scheme, netloc, "/" + urllib.parse.quote(dbname, safe=""), parts.query, parts.fragment)
            )
        assert self.host is not None and self.port is not None
        return _url(
            user if user is not None else self.user,
            password if password is not None else self.password,
            self.host,
            self.port,
            dbname,
        )

    def connect(self, dbname: str | None = None, **kwargs: Any):
        """A new psycopg2 connection (to ``postgres`` or *dbname*)."""
        self._require_running()
        return psycopg2.connect(self.dsn_for(dbname) if dbname else self.dsn, **kwargs)

    def create_database(self, name: str) -> str:
        """Create a fresh database *name* (dropping any leftover) and return its DSN."""
        self.drop_database(name)
        self._admin(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name)))
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database *name* if it exists, disconnecting its sessions."""
        conn = self.connect(connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                if conn.server_version >= 130000:
                    cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                else:  # pragma: no cover - old servers
                    cur.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        (name,),
                    )
                    cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        finally:
            conn.close()

    # ---- internals ----------------------------------------------------------
    def _require_running(self) -> None:
        if not self._running:
            raise PostgresServerError("server is not running; call start() first")

    def _admin(self, statement: Any, params: Sequence[Any] | None = None) -> None:
        conn = self.connect(connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement, params)
        finally:
            conn.close()

    def _use_external(self, dsn: str) -> None:
        try:
            params = psycopg2.extensions.parse_dsn(dsn)
        except psycopg2.ProgrammingError as exc:
            raise PostgresServerError(f"${ENV_DSN} is not a valid DSN: {exc}") from None
        self.external = True
        self.dsn = dsn
        self.host = params.get("host") or os.environ.get("PGHOST") or "localhost"
        self.port = int(params.get("port") or os.environ.get("PGPORT") or 5432)
        self.user = params.get("user") or os.environ.get("PGUSER") or self.user
        self.password = params.get("password") or os.environ.get("PGPASSWORD")
        try:
            psycopg2.connect(dsn, connect_timeout=int(min(self.startup_timeout, 30)) or 1).close()
        except psycopg2.Error as exc:
            self.external = False
            self.dsn = None
            raise PostgresServerError(f"cannot connect to ${ENV_DSN} server: {exc}".strip()) from None

    # -- local cluster --
    def _run(self, args: Sequence[str], *, timeout: float, check: bool = True) -> subprocess.CompletedProcess:
        """Run a server binary, as the unprivileged user when we are root."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        kwargs: dict[str, Any] = {}
        if self._os_user is not None:
            kwargs.update(user=self._os_user.pw_uid, group=self._os_user.pw_gid, extra_groups=[])
            env["HOME"] = self.tmpdir or "/"
            env["USER"] = env["LOGNAME"] = self._os_user.pw_name
        proc = subprocess.run(
            list(args),
            cwd=self.tmpdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            **kwargs,
        )
        if check and proc.returncode != 0:
            raise PostgresServerError(
                f"{os.path.basename(args[0])} failed (exit {proc.returncode}): {' '.join(map(shlex.quote, args))}\n"
                f"{proc.stdout.strip()}"
            )
        return proc

    def _pick_base_dir(self) -> str | None:
        """A parent for the temp dir that the server user can traverse."""
        if self.base_dir or self._os_user is None:
            return self.base_dir
        base = tempfile.gettempdir()
        path = os.path.realpath(base)
        while True:
            if not os.stat(path).st_mode & 0o001:
                return "/tmp"  # e.g. TMPDIR under /root: not reachable by postgres
            parent = os.path.dirname(path)
            if parent == path:
                return base
            path = parent

    def _start_local(self) -> None:
        self._bindir = find_pg_bindir()
        if self._bindir is None:
            raise PostgresServerError(available()[1])
        self._os_user = _os_user_for_server()
        self.tmpdir = tempfile.mkdtemp(prefix="osmosis-pg-", dir=self._pick_base_dir())
        atexit.register(self.stop)
        try:
            self._initdb()
            last_error: Exception | None = None
            for _ in range(3):  # retry on a lost race for the port
                try:
                    self._pg_ctl_start()
                    last_error = None
                    break
                except _PortInUse as exc:
                    last_error = exc
            if last_error is not None:
                raise PostgresServerError(str(last_error))
        except BaseException:
            self.stop()
            raise

    def _initdb(self) -> None:
        assert self.tmpdir is not None and self._bindir is not None
        self.datadir = os.path.join(self.tmpdir, "data")
        self.sockdir = os.path.join(self.tmpdir, "sock")
        self.logfile = os.path.join(self.tmpdir, "postgres.log")
        os.mkdir(self.sockdir, 0o700)
        pwfile = os.path.join(self.tmpdir, "pwfile")
        with open(os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
            fh.write(self.password + "\n")
        if self._os_user is not None:
            uid, gid = self._os_user.pw_uid, self._os_user.pw_gid
            for p in (self.tmpdir, self.sockdir, pwfile):
                os.chown(p, uid, gid)
        try:
            self._run(
                [
                    os.path.join(self._bindir, "initdb"),
                    "-D", self.datadir,
                    "-U", self.user,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                timeout=120,
            )
        finally:
            try:
                os.unlink(pwfile)
            except OSError:
                pass

    def _pg_ctl_start(self) -> None:
        assert self.datadir and self.sockdir and self.logfile and self._bindir
        self.host = "127.0.0.1"
        self.port = _free_port(self.host)
        opts = {
            "listen_addresses": self.host,
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "off",
            **self.server_options,
        }
        o = f"-p {self.port} -k {shlex.quote(self.sockdir)} " + " ".join(
            f"-c {shlex.quote(f'{k}={v}')}" for k, v in opts.items()
        )
        log_offset = os.path.getsize(self.logfile) if os.path.exists(self.logfile) else 0
        timeout = max(1, int(self.startup_timeout))
        try:
            proc = self._run(
                [
                    os.path.join(self._bindir, "pg_ctl"),
                    "-D", self.datadir,
                    "-o", o,
                    "-l", self.logfile,
                    "-w", "-t", str(timeout),
                    "start",
                ],
                timeout=timeout + 15,
                check=False,
            )
            output = proc.stdout.strip()
            ok = proc.returncode == 0
        except subprocess.TimeoutExpired:
            output, ok = "pg_ctl start timed out", False
        if not ok:
            log = _tail(self.logfile)
            new_log = ""
            try:
                with open(self.logfile, errors="replace") as fh:
                    fh.seek(log_offset)
                    new_log = fh.read()
            except OSError:
                pass
            self._kill_postmaster()
            if "could not bind" in new_log or "Address already in use" in new_log:
                raise _PortInUse(f"port {self.port} in use:\n{log}")
            raise PostgresServerError(
                f"PostgreSQL failed to start (pg_ctl timeout {timeout}s): {output}\n--- tail of {self.logfile} ---\n{log}"
            )
        self.dsn = _url(self.user, self.password, self.host, self.port, "postgres")
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.dsn is not None
        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                psycopg2.connect(self.dsn, connect_timeout=5).close()
                return
            except psycopg2.OperationalError as exc:
                last = exc
                time.sleep(0.1)
        raise PostgresServerError(
            f"PostgreSQL on {self.host}:{self.port} not accepting connections after "
            f"{self.startup_timeout}s: {last}\n--- tail of {self.logfile} ---\n{_tail(self.logfile or '')}"
        )

    def _postmaster_pid(self) -> int | None:
        if not self.datadir:
            return None
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as fh:
                return int(fh.readline().strip())
        except (OSError, ValueError):
            return None

    def _kill_postmaster(self) -> None:
        """Last resort: SIGQUIT (immediate shutdown), then SIGKILL."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        for sig, wait in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            except PermissionError:  # pragma: no cover
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)

    def _shutdown_and_remove(self) -> None:
        if self.datadir and self._bindir and os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            try:
                proc = self._run(
                    [os.path.join(self._bindir, "pg_ctl"), "-D", self.datadir, "-m", "immediate", "-w", "-t", "20", "stop"],
                    timeout=30,
                    check=False,
                )
                if proc.returncode != 0:
                    self._kill_postmaster()
            except Exception:
                self._kill_postmaster()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = self.datadir = self.sockdir = self.logfile = None
        self.dsn = None


class _PortInUse(PostgresServerError):
    pass


# --------------------------------------------------------------------------- #
if __name__ == "__main__":
    import sys

    ok, reason = available()
    print(f"available: {ok} ({reason})")
    if not ok:
        sys.exit(1)
    t0 = time.monotonic()
    with PostgresServer() as pg:
        print(f"started in {time.monotonic() - t0:.2f}s")
        print(f"dsn: {pg.dsn}")
        conn = pg.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT version()")
                print(cur.fetchone()[0])
        finally:
            conn.close()
        t1 = time.monotonic()
    print(f"stopped in {time.monotonic() - t1:.2f}s")

"""FerretDB 1.x as a second, more faithful MongoDB-wire server for the test suite.

FerretDB v1.24.2 (the newest 1.x) with its SQLite backend, built from the Go module proxy by
``ferretdb/install.sh`` into ``${OSMOSIS_CACHE_DIR:-~/.cache/osmosis-beam}/ferretdb/v1.24.2/bin``
(``./run_local.sh test`` builds it before pytest starts; ``start()`` builds it too when missing).
Each server gets a fresh SQLite folder in a temporary directory and a free loopback port, and is
stopped (and its folder removed) by ``stop()``. The SQLite backend behaves like the PostgreSQL one
for everything below (the type checks live in FerretDB's handler, above the backend), and needs no
other server.

FerretDB 1.24.2 via pymongo 4.x, what matters here (``python -m tests.services.ferretdb_server``
re-checks the main points):
  works, unlike CongoDB: unique indexes are enforced (E11000, also on compound and dotted keys;
    creating one over duplicates fails); ``$set``/replace keep every BSON type they support (Int64,
    datetime, ObjectId, Binary with its subtype, UUID, Regex, Timestamp, nested docs, arrays);
    any ``_id`` type (str, int) is found again; changing ``_id`` in a replacement fails with
    error 66 like mongod; ``client.server_info()``.
  works like CongoDB: ping, hello/serverStatus ``localTime``, buildInfo (says "7.0.42"), bulk
    upserts with ``upserted`` ids, find with range + sort + projection + skip/limit, getMore,
    find_raw_batches, killCursors, estimated/count_documents, list_indexes, aggregate ($sort,
    $limit, $project), list_collection_names/list_database_names.
  does NOT work:
    - Decimal128, Code (JavaScript), MinKey and MaxKey: FerretDB 1.x has no such types and
      *closes the connection* on a document holding one (pymongo: AutoReconnect).
    - DBRef (fields starting with ``$`` are refused, code 2) and arrays nested in arrays
      ("nested arrays are not supported", code 2).
    - the ``update`` reply that carries a write error lacks ``n``/``nModified``, which makes
      pymongo's bulk_write raise ``KeyError('nModified')`` instead of BulkWriteError: an ordered
      bulk upsert that hits a write error (e.g. error 66) cannot be handled by a client.
      (Insert errors are reported normally: BulkWriteError with E11000.)
    - the ``$sample`` aggregation stage; no change streams or transactions.
  authentication (``FerretDBServer(username=...)``, the ``ferretdb_auth_server`` fixture): FerretDB's
    experimental new auth (``--test-enable-new-auth`` with ``--setup-database/--setup-username/
    --setup-password``, which FerretDB refuses without that flag) creates one user in that database;
    pymongo with that user, its password and ``authSource=<database>`` works with SCRAM-SHA-256,
    SCRAM-SHA-1 or no authMechanism; a wrong password or an unknown user fails with code 18
    ``Authentication failed.``; ``PLAIN`` is refused (code 18, "Unsupported authentication mechanism");
    without credentials ``ping``/``hello``/``buildInfo`` answer but other commands fail with code 13
    ("requires authentication"). The user's password is handed over in the environment
    (``FERRETDB_SETUP_PASSWORD``), not on the command line.

Public API:
    FerretDBServer(*, host="127.0.0.1", binary=None, startup_timeout=30.0,
                   username=None, password=None, database="osmosis")
        .start() -> FerretDBServer   .stop() -> None (idempotent)   .uri   .port   .version
        .uri_with(password) -> the URI with another password (auth only)   .username .password .database
        context manager
        With ``username`` the server requires authentication (``password`` defaults to a random one);
        ``.uri`` then carries the user, the password and ``authSource``, and ``start()`` checks that the
        password is accepted and a wrong one refused.
    available(install=False) -> tuple[bool, str]
    install(install_dir=None) -> pathlib.Path (the binary)
    FerretDBServerError(RuntimeError)
"""
from __future__ import annotations

import atexit
import collections
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
import urllib.parse
from typing import Any, Optional, Tuple

__all__ = ["FerretDBServer", "FerretDBServerError", "available", "install", "VERSION"]

VERSION = "1.24.2"
INSTALL_MARKER = f"ferretdb=v{VERSION} rev=1"  # must match install.sh
ENV_CACHE = "OSMOSIS_CACHE_DIR"
ENV_DIR = "OSMOSIS_FERRETDB_DIR"
INSTALL_TIMEOUT = 900.0

_INSTALL_SH = Path(__file__).resolve().parent / "ferretdb" / "install.sh"
_install_lock = threading.Lock()


class FerretDBServerError(RuntimeError):
    """FerretDB could not be built, started or reached."""


def default_install_dir() -> Path:
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    cache = os.environ.get(ENV_CACHE) or str(Path.home() / ".cache" / "osmosis-beam")
    return Path(cache).expanduser() / "ferretdb" / f"v{VERSION}"


def _binary(d: Path) -> Optional[Path]:
    binary = d / "bin" / "ferretdb"
    try:
        if (d / ".installed").read_text().strip() == INSTALL_MARKER and os.access(binary, os.X_OK):
            return binary
    except OSError:
        pass
    return None


def _go() -> Optional[str]:
    for candidate in (os.environ.get("GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def install(install_dir: Optional[os.PathLike] = None) -> Path:
    """Builds FerretDB with ferretdb/install.sh unless it is there; returns the binary."""
    d = Path(install_dir).expanduser() if install_dir else default_install_dir()
    with _install_lock:
        found = _binary(d)
        if found:
            return found
        try:
            proc = subprocess.run(["bash", str(_INSTALL_SH), str(d)], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise FerretDBServerError(f"FerretDB build timed out after {INSTALL_TIMEOUT:.0f} s:\n{exc.stderr or ''}") from exc
        found = _binary(d)
        if proc.returncode != 0 or not found:
            raise FerretDBServerError(f"FerretDB build failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}".rstrip())
        return found


def available(install: bool = False) -> Tuple[bool, str]:
    """Can a FerretDBServer be had here?  (ok, reason).  Never starts a server."""
    d = default_install_dir()
    if _binary(d):
        return True, f"FerretDB v{VERSION} built at {d}"
    if not _go():
        return False, f"FerretDB v{VERSION} is not built at {d} and Go (>= 1.24) is not there to build it"
    if install:
        try:
            globals()["install"](d)
        except FerretDBServerError as exc:
            return False, str(exc)
        return True, f"FerretDB v{VERSION} built at {d}"
    return True, f"FerretDB v{VERSION} not yet built; start() builds it into {d}"


def _die_with_parent() -> None:  # runs in the child before exec (Linux): SIGTERM when the test process dies
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; atexit stops it otherwise
        pass


class FerretDBServer:
    """A FerretDB child process (SQLite backend in a temporary folder) on a free loopback port."""

    def __init__(self, *, host: str = "127.0.0.1", binary: Optional[os.PathLike] = None,
                 startup_timeout: float = 30.0, username: Optional[str] = None,
                 password: Optional[str] = None, database: str = "osmosis") -> None:
        if password is not None and not username:
            raise ValueError("FerretDBServer: a password needs a username")
        self.host = host
        self.username = username
        self.password = (password or secrets.token_urlsafe(18)) if username else None
        self.database = database
        self.binary = Path(binary) if binary else None
        self.startup_timeout = startup_timeout
        self.uri: Optional[str] = None
        self.port: Optional[int] = None
        self.version = VERSION
        self.start_seconds: Optional[float] = None
        self._proc: Optional[subprocess.Popen] = None
        self._dir: Optional[str] = None
        self._output: collections.deque = collections.deque(maxlen=300)
        self._listening = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.RLock()

    def start(self) -> "FerretDBServer":
        with self._lock:
            if self._proc is not None:
                return self
            binary = self.binary or install()
            self._dir = tempfile.mkdtemp(prefix="osmosis-ferretdb-")
            data = Path(self._dir) / "data"
            data.mkdir()
            cmd = [
                str(binary),
                "--handler=sqlite", f"--sqlite-url=file:{data}/",
                f"--listen-addr={self.host}:0",  # the port it got is in its log
                "--debug-addr=-", "--state-dir=-", "--telemetry=disable",
                "--log-level=INFO", "--log-format=text",
            ]
            env = dict(os.environ)
            for name in list(env):
                if name.startswith("FERRETDB_"):  # only what is asked for here
                    del env[name]
            if self.username:
                cmd += ["--test-enable-new-auth", f"--setup-database={self.database}",
                        f"--setup-username={self.username}"]
                env["FERRETDB_SETUP_PASSWORD"] = self.password  # not on the command line (ps shows that)
            t0 = time.monotonic()
            deadline = t0 + self.startup_timeout
            self._output.clear()
            self._listening.clear()
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True, bufsize=1, cwd=self._dir, env=env,
                                          start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            self._thread = threading.Thread(target=self._reader, args=(self._proc.stderr,), daemon=True)
            self._thread.start()
            atexit.register(self.stop)
            while not self._listening.wait(0.05):
                if self._proc.poll() is not None:
                    rc = self._proc.returncode
                    self._thread.join(2)
                    self._cleanup()
                    raise FerretDBServerError(f"FerretDB exited with code {rc} before listening:\n{self.output}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise FerretDBServerError(f"FerretDB not listening within {self.startup_timeout:.0f} s:\n{self.output}")
            self.uri = self._uri(self.password)
            self._wait_for_ping(deadline)
            if self.username:
                self._check_auth()
            self.start_seconds = time.monotonic() - t0
            return self

    def _uri(self, password: Optional[str]) -> str:
        if not self.username:
            return f"mongodb://{self.host}:{self.port}/?directConnection=true"
        user = urllib.parse.quote(self.username, safe="")
        pw = urllib.parse.quote(password or "", safe="")
        db = urllib.parse.quote(self.database, safe="")
        return f"mongodb://{user}:{pw}@{self.host}:{self.port}/?directConnection=true&authSource={db}"

    def uri_with(self, password: str) -> str:
        """The URI of this (authenticating) server with ``password`` instead of the user's own."""
        if not self.username or self.port is None:
            raise FerretDBServerError("uri_with: the server has no user or is not started")
        return self._uri(password)

    def _check_auth(self) -> None:
        """The user's password is accepted and a wrong one refused (code 18); else the server is no use."""
        import pymongo
        from pymongo.errors import OperationFailure

        def attempt(uri: str):
            client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000)
            try:
                return client[self.database].list_collection_names()
            finally:
                client.close()

        try:
            attempt(self.uri)
        except Exception as exc:  # noqa: BLE001
            self.stop()
            raise FerretDBServerError(f"FerretDB refused its own user {self.username!r}: {type(exc).__name__}: "
                                      f"{str(exc).replace(self.password, '***')}") from None
        wrong = "not-" + self.password
        try:
            attempt(self._uri(wrong))
        except OperationFailure as exc:
            if exc.code == 18:
                return
            self.stop()
            raise FerretDBServerError(f"FerretDB answered a wrong password with code {exc.code}, not 18") from None
        except Exception as exc:  # noqa: BLE001
            self.stop()
            raise FerretDBServerError(f"FerretDB: a wrong password gave {type(exc).__name__}, not code 18") from None
        self.stop()
        raise FerretDBServerError("FerretDB accepted a wrong password: it does not authenticate")

    def _wait_for_ping(self, deadline: float) -> None:
        import pymongo

        last: Exception | None = None
        # ping answers without credentials, also when the server requires them
        ping_uri = f"mongodb://{self.host}:{self.port}/?directConnection=true"
        while time.monotonic() < deadline:
            client = pymongo.MongoClient(ping_uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000)
            try:
                client.admin.command("ping")
                return
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                last = exc
                time.sleep(0.1)
            finally:
                client.close()
        self.stop()
        raise FerretDBServerError(f"FerretDB at {ping_uri} did not answer ping within {self.startup_timeout:.0f} s ({last}):\n{self.output}")

    def _reader(self, stream) -> None:
        for line in stream:
            line = line.rstrip("\n")
            self._output.append(line)
            if not self._listening.is_set():
                m = re.search(r'Listening on TCP [^\s"]*:(\d+)\.\.\.', line)
                if m:
                    self.port = int(m.group(1))
                    self._listening.set()
        stream.close()

    @property
    def output(self) -> str:
        """Recent log lines of the server (for debugging)."""
        return "\n".join(self._output) or "(no output)"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
                except ProcessLookupError:
                    pass
            if self._thread is not None:
                self._thread.join(2)
                self._thread = None
            self._cleanup()
            try:
                atexit.unregister(self.stop)
            except Exception:  # noqa: BLE001
                pass

    def _cleanup(self) -> None:
        self._proc = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "FerretDBServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        auth = f" user={self.username!r} db={self.database!r}" if self.username else ""
        uri = self.uri.replace(urllib.parse.quote(self.password, safe=""), "***") if self.uri and self.password else self.uri
        return f"<FerretDBServer v{VERSION} sqlite uri={uri!r}{auth} running={self.running}>"


def _main() -> int:
    """Smoke test: start, check the points above that the tests rely on, stop."""
    import datetime as dt

    import pymongo
    from bson import Binary, Decimal128, Int64, ObjectId

    ok, reason = available()
    print(f"available: {ok} ({reason})")
    if not ok:
        return 1
    t0 = time.monotonic()
    with FerretDBServer() as srv:
        print(f"started in {time.monotonic() - t0:.2f} s: {srv!r}")
        client = pymongo.MongoClient(srv.uri, tz_aware=True)
        coll = client.osmosis_smoke.docs
        coll.drop()
        coll.create_index([("k", 1)], unique=True)
        doc = {"k": 1, "at": dt.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=dt.timezone.utc), "n": Int64(2**40),
               "bin": Binary(b"\x01", 0x80), "ref": ObjectId()}
        coll.insert_one({"k": 1})
        coll.update_one({"k": 1}, {"$set": doc})
        got = coll.find_one({"k": 1}, {"_id": 0})
        print(f"$set round trip exact: {got == doc and type(got['n']) is Int64}")
        try:
            coll.insert_one({"k": 1})
            print("unique index enforced: False")
        except pymongo.errors.DuplicateKeyError:
            print("unique index enforced: True")
        try:
            coll.insert_one({"k": 2, "d": Decimal128("1.5")})
            print("Decimal128: stored")
        except pymongo.errors.AutoReconnect:
            print("Decimal128: unsupported (connection closed)")
        client.close()
    print(f"stopped: running={srv.running}")
    with FerretDBServer(username="osmosis") as auth:  # start() checks the password and a wrong one
        print(f"authenticating server: {auth!r}")
        for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
            for label, uri in (("right", auth.uri), ("wrong", auth.uri_with("wrong-password"))):
                client = pymongo.MongoClient(f"{uri}&authMechanism={mech}", serverSelectionTimeoutMS=3000)
                try:
                    client[auth.database].list_collection_names()
                    print(f"  {mech} {label} password: accepted")
                except pymongo.errors.OperationFailure as exc:
                    print(f"  {mech} {label} password: refused, code {exc.code} ({exc.details.get('errmsg', '')[:60]!r})")
                finally:
                    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())

"""A real MongoDB-wire server for the test suite.

Uses ``OSMOSIS_TEST_MONGO_URI`` when set (an external mongod, never stopped),
otherwise CongoDB: the in-memory MongoDB-wire server from the npm package
``@push.rocks/smartmongo`` 2.2.0, installed by ``congodb/install.sh`` into
``${OSMOSIS_CACHE_DIR:-~/.cache/osmosis-beam}/congodb`` and run by
``congodb/server.mjs`` under Node >= 18.

CongoDB 2.2.0 via pymongo 4.x (congodb/probe.py; re-run it for details):
  works: ping; insert_one/insert_many; find with {f: {$gte: dt, $lt: dt}} +
    sort on two keys + projection + batch_size + skip/limit; getMore streams
    (100k docs, batch_size=1000: 99 getMores, all in ~0.6 s; default getMore
    batch is 101 docs); count_documents, estimated_document_count, distinct,
    aggregate; list_collection_names/list_database_names; create_index/
    list_indexes; update_*/replace_one/delete_*/find_one_and_update;
    bulk_write with UpdateOne(upsert=True) (+Insert/Replace/DeleteOne), counts
    and upserted_ids right.  Commands ``hello`` and ``serverStatus`` both
    report ``localTime`` (server clock, ms precision); ``buildInfo`` answers
    (version "7.0.0", maxWireVersion 21).
  BSON round trips OK: datetime (ms precision, like mongod; tz_aware works),
    Decimal128, Binary (subtype 0 comes back as bytes, as with mongod; UUID
    subtype 4 and others keep their subtype), ObjectId, nested docs, arrays,
    int32, bool, None, double, str, Regex/re.compile (-> bson Regex).
  does NOT work / differs from mongod:
    - int64 with |v| in (2**31, 2**53] comes back as *float* (value exact,
      type lost, e.g. epoch millis); larger int64 stays Int64.  Compare
      numerically, not by type.
    - ``_id`` must be an ObjectId (or omitted): a str ``_id`` is rejected with
      code 11000 (DuplicateKeyError!) "input must be a 24 character hex...";
      an int or 24-hex-str ``_id`` inserts but find({"_id": v}) returns None.
    - unique indexes are accepted but not enforced.
    - ``client.server_info()`` fails (driver sends lowercase "buildinfo":
      CommandNotFound); use ``client.admin.command("buildInfo")``.
    - no auth, no change streams, no real transactions; in-memory only.
    - ``hello`` carries a ``topologyVersion`` with a new processId each time and answers an awaitable
      hello (``maxAwaitTimeMS``) at once, so pymongo's default (streaming) monitor sends about a thousand
      hellos a second per open client (CPU in the client and the server); ``serverMonitoringMode="poll"``
      avoids it (``client()`` sets it, and so does the connector's ``new_client``).

Public API:
    MongoServer(uri=None, *, host="127.0.0.1", port=0, install_dir=None,
                startup_timeout=30.0)
        .start() -> MongoServer      .stop() -> None (idempotent)
        .uri: str | None             .external: bool    .port: int | None
        .client(**kwargs) -> pymongo.MongoClient (owned; closed by stop())
        context manager: ``with MongoServer() as srv: ...``
    available(install=False) -> tuple[bool, str]   (also MongoServer.available)
    install(install_dir=None) -> pathlib.Path
    MongoServerError(RuntimeError)

Run ``python -m tests.services.mongo_server`` (or this file) for a smoke test.
"""

from __future__ import annotations

import atexit
import collections
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Optional, Tuple

import pymongo

__all__ = ["MongoServer", "MongoServerError", "available", "install", "ENV_URI"]

ENV_URI = "OSMOSIS_TEST_MONGO_URI"
ENV_CACHE = "OSMOSIS_CACHE_DIR"
ENV_CONGODB_DIR = "OSMOSIS_CONGODB_DIR"
MIN_NODE_MAJOR = 18
INSTALL_MARKER = "smartmongo=2.2.0 rev=1"  # must match install.sh

_HERE = Path(__file__).resolve().parent
_CONGODB = _HERE / "congodb"
_INSTALL_SH = _CONGODB / "install.sh"
_SERVER_MJS = _CONGODB / "server.mjs"

_install_lock = threading.Lock()
_installed: dict = {}


class MongoServerError(RuntimeError):
    """The test MongoDB server could not be installed, started or reached."""


def default_install_dir() -> Path:
    if os.environ.get(ENV_CONGODB_DIR):
        return Path(os.environ[ENV_CONGODB_DIR]).expanduser()
    cache = os.environ.get(ENV_CACHE) or str(Path.home() / ".cache" / "osmosis-beam")
    return Path(cache).expanduser() / "congodb"


def _is_installed(d: Path) -> bool:
    marker = d / ".installed"
    entry = d / "node_modules/@push.rocks/smartmongo/dist_ts/congodb/index.js"
    try:
        return marker.read_text().strip() == INSTALL_MARKER and entry.is_file()
    except OSError:
        return False


def install(install_dir: Optional[os.PathLike] = None) -> Path:
    """Run congodb/install.sh (at most once per process and dir); return the dir."""
    d = Path(install_dir).expanduser() if install_dir else default_install_dir()
    key = str(d.resolve())
    with _install_lock:
        if key in _installed:
            return _installed[key]
        if not _is_installed(d):
            try:
                proc = subprocess.run(
                    ["bash", str(_INSTALL_SH), str(d)],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
            except subprocess.TimeoutExpired as exc:
                raise MongoServerError(f"congodb install timed out after 600 s:\n{exc.stderr or ''}") from exc
            if proc.returncode != 0 or not _is_installed(d):
                raise MongoServerError(
                    f"congodb install failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}".rstrip()
                )
        _installed[key] = d
        return d


def _node_problem() -> Optional[str]:
    """None if a usable node is on PATH, else the reason why not."""
    node = shutil.which("node")
    if not node:
        return "'node' not found on PATH (CongoDB needs Node.js >= 18)"
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"'node --version' failed: {exc}"
    m = re.match(r"v(\d+)\.", out.strip())
    if not m or int(m.group(1)) < MIN_NODE_MAJOR:
        return f"Node.js >= {MIN_NODE_MAJOR} required, found {out.strip() or 'unknown'}"
    return None


def _ping(uri: str, timeout_ms: int = 5000) -> None:
    client: pymongo.MongoClient = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        client.admin.command("ping")
    finally:
        client.close()


def available(install: bool = False) -> Tuple[bool, str]:
    """Can a MongoServer be had here?  Returns (ok, reason).

    With ``OSMOSIS_TEST_MONGO_URI`` set, pings it.  Otherwise checks node
    (>= 18) and that CongoDB is installed, or that npm is there to install it;
    with ``install=True`` runs the installer instead of just checking npm.
    Never starts a server.
    """
    uri = os.environ.get(ENV_URI)
    if uri:
        try:
            _ping(uri)
        except Exception as exc:  # noqa: BLE001 - any failure means unavailable
            return False, f"{ENV_URI}={uri} not reachable: {exc}"
        return True, f"external server from {ENV_URI}"
    problem = _node_problem()
    if problem:
        return False, problem
    if not _SERVER_MJS.is_file() or not _INSTALL_SH.is_file():
        return False, f"missing {_SERVER_MJS} or {_INSTALL_SH}"
    d = default_install_dir()
    if _is_installed(d):
        return True, f"CongoDB installed at {d}"
    if install:
        try:
            globals()["install"](d)
        except MongoServerError as exc:
            return False, str(exc)
        return True, f"CongoDB installed at {d}"
    if not shutil.which("npm"):
        return False, "CongoDB not installed and 'npm' not found on PATH to install it"
    return True, f"CongoDB not yet installed; will install into {d} on start()"


class MongoServer:
    """A MongoDB-wire server for tests: external (env URI) or a CongoDB child process."""

    def __init__(
        self,
        uri: Optional[str] = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        install_dir: Optional[os.PathLike] = None,
        startup_timeout: float = 30.0,
    ) -> None:
        env_uri = uri or os.environ.get(ENV_URI) or None
        self.external: bool = bool(env_uri)
        self.uri: Optional[str] = env_uri
        self.host = host
        self.port: Optional[int] = port or None
        self._want_port = port
        self._install_dir = install_dir
        self.startup_timeout = startup_timeout
        self._proc: Optional[subprocess.Popen] = None
        self._output: collections.deque = collections.deque(maxlen=400)
        self._ready = threading.Event()
        self._threads: list = []
        self._clients: list = []
        self._started = False
        self._lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "MongoServer":
        with self._lock:
            if self._started:
                return self
            if self.external:
                try:
                    _ping(self.uri)  # type: ignore[arg-type]
                except Exception as exc:  # noqa: BLE001
                    raise MongoServerError(f"external MongoDB {self.uri} not reachable: {exc}") from exc
                self._started = True
                return self
            problem = _node_problem()
            if problem:
                raise MongoServerError(problem)
            d = install(self._install_dir)
            self._spawn(d)
            self._started = True
            atexit.register(self.stop)
            return self

    def _spawn(self, install_dir: Path) -> None:
        cmd = [
            shutil.which("node") or "node",
            str(_SERVER_MJS),
            "--dir", str(install_dir),
            "--host", self.host,
            "--port", str(self._want_port),
            "--exit-on-stdin-eof",  # dies with us even if we are SIGKILLed
        ]
        self._output.clear()
        self._ready.clear()
        t0 = time.monotonic()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,  # terminal Ctrl-C goes to us, not the server
        )
        self._threads = [
            threading.Thread(target=self._reader, args=(self._proc.stdout, "out"), daemon=True),
            threading.Thread(target=self._reader, args=(self._proc.stderr, "err"), daemon=True),
        ]
        for t in self._threads:
            t.start()
        deadline = t0 + self.startup_timeout
        while not self._ready.wait(0.05):
            if self._proc.poll() is not None:
                for t in self._threads:
                    t.join(2)
                rc, self._proc = self._proc.returncode, None
                raise MongoServerError(f"CongoDB server exited with code {rc} before READY:\n{self._captured()}")
            if time.monotonic() > deadline:
                self._terminate()
                raise MongoServerError(
                    f"CongoDB server not READY within {self.startup_timeout:.0f} s:\n{self._captured()}"
                )
        self.uri = f"mongodb://{self.host}:{self.port}/?directConnection=true"
        try:
            _ping(self.uri, timeout_ms=int(max(1.0, deadline - time.monotonic()) * 1000))
        except Exception as exc:  # noqa: BLE001
            self._terminate()
            raise MongoServerError(f"CongoDB said READY but ping failed: {exc}\n{self._captured()}") from exc
        self.start_seconds = time.monotonic() - t0

    def _reader(self, stream, tag: str) -> None:
        for line in stream:
            line = line.rstrip("\n")
            self._output.append(f"[{tag}] {line}")
            if tag == "out" and not self._ready.is_set():
                m = re.match(r"READY (\d+)\s*$", line)
                if m:
                    self.port = int(m.group(1))
                    self._ready.set()
        stream.close()

    def _captured(self) -> str:
        return "\n".join(self._output) or "(no output)"

    @property
    def output(self) -> str:
        """Recent stdout/stderr lines of the server process (for debugging)."""
        return self._captured()

    def _terminate(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            except ProcessLookupError:
                pass
        try:
            if proc.stdin:
                proc.stdin.close()
        except OSError:
            pass
        for t in self._threads:
            t.join(2)

    def stop(self) -> None:
        with self._lock:
            for c in self._clients:
                try:
                    c.close()
                except Exception:  # noqa: BLE001
                    pass
            self._clients.clear()
            if not self.external:
                self._terminate()
                try:
                    atexit.unregister(self.stop)
                except Exception:  # noqa: BLE001
                    pass
            self._started = False

    @property
    def running(self) -> bool:
        if self.external:
            return self._started
        return self._proc is not None and self._proc.poll() is None

    # -- helpers -----------------------------------------------------------
    def client(self, **kwargs: Any) -> pymongo.MongoClient:
        """A MongoClient for this server; closed by stop()."""
        if not self._started or not self.uri:
            raise MongoServerError("MongoServer not started")
        kwargs.setdefault("serverSelectionTimeoutMS", 5000)
        # CongoDB answers the streaming monitor's awaitable hello at once, so that monitor would send about a
        # thousand hellos a second for as long as the client is open: poll instead.
        kwargs.setdefault("serverMonitoringMode", "poll")
        c: pymongo.MongoClient = pymongo.MongoClient(self.uri, **kwargs)
        self._clients.append(c)
        return c

    def __enter__(self) -> "MongoServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    available = staticmethod(available)

    def __repr__(self) -> str:
        kind = "external" if self.external else "congodb"
        return f"<MongoServer {kind} uri={self.uri!r} running={self.running}>"


def _main() -> int:
    import datetime

    ok, reason = available()
    print(f"available: {ok} ({reason})")
    if not ok:
        return 1
    t0 = time.monotonic()
    with MongoServer() as srv:
        print(f"started in {time.monotonic() - t0:.2f} s: {srv!r}")
        coll = srv.client()["osmosis_smoke"]["docs"]
        coll.drop()
        doc = {"name": "smoke", "at": datetime.datetime(2024, 1, 2, 3, 4, 5), "n": 1}
        res = coll.insert_one(doc)
        got = coll.find_one({"_id": res.inserted_id})
        print(f"read back: {got}")
        assert got is not None and got["name"] == "smoke" and got["at"] == doc["at"], got
        proc = srv._proc
    print(f"stopped: running={srv.running}, server exit code={proc.returncode if proc else 'n/a (external)'}")
    srv.stop()  # idempotent
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())

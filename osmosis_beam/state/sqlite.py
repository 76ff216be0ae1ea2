"""The embedded state store: one SQLite file under the home (``HOME/state.db``).

Safe when several processes share a home: WAL journaling, a busy timeout, and every
read-modify-write (leases, commits) inside ``BEGIN IMMEDIATE``.

Example::

    from osmosis_beam.state.sqlite import SQLiteStateStore
    store = SQLiteStateStore("/tmp/home/state.db")
    store.list_runs("tech_news", limit=5)
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

from osmosis_beam.core.errors import StateError
from osmosis_beam.core.models import SyncJob, SyncRun
from osmosis_beam.core.timefmt import format_timestamp, parse_timestamp, utcnow
from osmosis_beam.core.window import format_bound, parse_bound
from osmosis_beam.state.store import (
    Lease,
    SourceRecord,
    StateStore,
    Watermark,
    holder_is_dead,
    status_list,
    window_of,
)

__all__ = ["SQLiteStateStore", "SCHEMA_VERSION"]

# Each entry migrates from version i to i+1. Never edit a released entry: append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE sources (
        id TEXT PRIMARY KEY, type TEXT NOT NULL, config TEXT NOT NULL, pipeline_path TEXT,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE sync_jobs (
        pipeline_id TEXT PRIMARY KEY, source_id TEXT NOT NULL, interval_minutes REAL, cron TEXT,
        timezone TEXT NOT NULL DEFAULT 'UTC', last_run TEXT, next_run TEXT, status TEXT NOT NULL DEFAULT 'idle',
        consecutive_failures INTEGER NOT NULL DEFAULT 0, spec_path TEXT);
    CREATE TABLE watermarks (
        pipeline_id TEXT PRIMARY KEY, value TEXT, state TEXT NOT NULL DEFAULT '{}', updated_at TEXT NOT NULL);
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, pipeline_id TEXT NOT NULL, status TEXT NOT NULL,
        started_at TEXT NOT NULL, finished_at TEXT, window_lo TEXT, window_hi TEXT,
        records_read INTEGER NOT NULL DEFAULT 0, records_written INTEGER NOT NULL DEFAULT 0,
        dead_letter INTEGER NOT NULL DEFAULT 0, error TEXT, runner TEXT, full_refresh INTEGER NOT NULL DEFAULT 0,
        note TEXT, holder TEXT);
    CREATE INDEX runs_by_pipeline ON runs (pipeline_id, started_at);
    CREATE INDEX runs_by_status ON runs (status);
    CREATE TABLE leases (
        pipeline_id TEXT PRIMARY KEY, holder TEXT NOT NULL, acquired_at TEXT NOT NULL, expires_at TEXT NOT NULL);
    """,
    # v2: the connector state a run will commit, saved before it publishes (for repair after a crash)
    """
    ALTER TABLE runs ADD COLUMN pending_state TEXT;
    """,
    # v3: paused sync jobs; runs listed newest first across pipelines and by status (the dashboard's pages)
    """
    ALTER TABLE sync_jobs ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX runs_by_started ON runs (started_at);
    CREATE INDEX runs_by_status_started ON runs (status, started_at);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def _ts(value: dt.datetime | None) -> str | None:
    return format_timestamp(value)


def _bound_text(value) -> str | None:
    bound = format_bound(value)
    return None if bound is None else str(bound)


def _dt(value: str | None) -> dt.datetime | None:
    return parse_timestamp(value) if value else None


def _window_text(run: SyncRun) -> dict[str, str | None]:
    if run.window is None:
        return {"lo": None, "hi": None}
    return {"lo": _bound_text(run.window.lo), "hi": _bound_text(run.window.hi)}


class SQLiteStateStore(StateStore):
    """State in one SQLite file; ``path`` is created (with its folder) when missing.

    ``read_only=True`` (the commands that only read: history, jobs, state show, sources list,
    dead-letters list) opens an existing file without writing to it, so they work on a read-only
    ``state.db`` or home; anything that writes then fails with a clear error. A missing file is created
    as usual (there is nothing to read yet).
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 30.0, read_only: bool = False) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._timeout = timeout
        self._local = threading.local()  # one open connection per thread (and process), reused
        self._uri: str | None = None
        if read_only and self.path.is_file():
            self._open_read_only()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"state home {self.path.parent}: cannot create it ({exc.strerror}); choose --home DIR") from None
        self._migrate()

    # -- connections ---------------------------------------------------------------------
    def _open_read_only(self) -> None:
        """Read without writing: ``mode=ro``, else (a read-only folder where WAL's -shm cannot be made)
        ``immutable=1``, which is safe because nothing can write there either."""
        base = "file:" + urllib.parse.quote(str(self.path.resolve()))
        last: Exception | None = None
        for uri in (base + "?mode=ro", base + "?mode=ro&immutable=1"):
            self._uri = uri
            try:
                with self._read() as conn:
                    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            except StateError as exc:
                last = exc
                continue
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"state store {self.path} has schema version {version}, newer than this osmosis-beam "
                    f"understands ({SCHEMA_VERSION}); upgrade osmosis-beam"
                )
            return
        raise last  # type: ignore[misc]

    def _write_refused(self) -> StateError | None:
        """The error for a state file or home that cannot be written (a read-only mount or file), if it is one."""
        for path in (self.path, self.path.parent):
            if path.exists() and not os.access(path, os.W_OK):
                return StateError(
                    f"state store {self.path}: {path} is read-only; commands that only read (history, jobs, "
                    "state show, sources list, dead-letters list) work, this one writes: make the home writable"
                )
        return None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened once and reused.

        Opening and closing a connection per call cost two thirds of a run with nothing new: closing the
        last connection of a WAL database checkpoints it (an fsync), so 200 quiet pipelines took seconds.
        Between calls a connection holds no transaction, so reuse changes nothing for other processes.
        """
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            return conn
        conn = self._connect()
        local.conn, local.pid = conn, os.getpid()
        return conn

    def _drop(self, conn: sqlite3.Connection) -> None:
        """Close ``conn`` after an error (the next call opens a fresh one)."""
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        try:
            conn.close()
        except sqlite3.Error:
            pass

    def _connect(self) -> sqlite3.Connection:
        try:
            if self._uri is not None:
                conn = sqlite3.connect(self._uri, uri=True, timeout=self._timeout, isolation_level=None)
            else:
                conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateError(f"state store {self.path}: cannot open ({exc})") from None
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout = %d" % int(self._timeout * 1000))
            if self._uri is not None:
                return conn
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError as exc:  # "file is not a database": a stray or corrupt file
            conn.close()
            raise self._write_refused() or StateError(f"state store {self.path}: not an osmosis state database ({exc})") from None
        return conn

    @contextlib.contextmanager
    def _tx(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._drop(conn)
            if self._uri is not None and "readonly" in str(exc):
                raise StateError(
                    f"state store {self.path}: opened read-only, and this command writes; "
                    "make the home writable to run it"
                ) from None
            raise self._write_refused() or StateError(f"state store {self.path}: {exc}") from None
        except BaseException:
            if conn.in_transaction:
                self._drop(conn)
            raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            yield conn
        except sqlite3.DatabaseError as exc:
            self._drop(conn)  # closed: nothing to roll back
            raise StateError(f"state store {self.path}: {exc}") from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if conn.in_transaction:  # a read never leaves a transaction open on a reused connection
            conn.execute("ROLLBACK")

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL journaling, waiting out other processes that open the same new home at once.

        Changing the journal mode does not wait on the busy timeout: it fails at once with "database is
        locked" while another connection holds a lock, so it is retried here until the timeout.
        """
        deadline = time.monotonic() + self._timeout
        delay = 0.002
        while True:
            try:
                if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise self._write_refused() or StateError(f"state store {self.path}: cannot open ({exc})") from None
                if time.monotonic() >= deadline:
                    raise StateError(f"state store {self.path}: {exc} (another process holds it)") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            except sqlite3.DatabaseError as exc:
                raise StateError(f"state store {self.path}: not an osmosis state database ({exc})") from None

    def _migrate(self) -> None:
        conn = self._connect()
        try:
            self._use_wal(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise StateError(
                        f"state store {self.path} has schema version {version}, newer than this osmosis-beam "
                        f"understands ({SCHEMA_VERSION}); upgrade osmosis-beam"
                    )
                for index in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[index].split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (str(index + 1),),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise self._write_refused() or StateError(f"state store {self.path}: {exc}") from None
        finally:
            conn.close()

    def default_home(self) -> Path:
        """The folder of the state file is the home."""
        return self.path.parent

    def schema_version(self) -> int:
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            return int(row[0]) if row else 0

    # -- sources -------------------------------------------------------------------------------
    def put_source(self, source_id, type_name, config, pipeline_path) -> None:
        now = _ts(utcnow())
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO sources (id, type, config, pipeline_path, created_at, updated_at) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT (id) DO UPDATE SET type = excluded.type, config = excluded.config, "
                "pipeline_path = excluded.pipeline_path, updated_at = excluded.updated_at",
                (source_id, type_name, json.dumps(config, sort_keys=True, default=str), pipeline_path, now, now),
            )

    @staticmethod
    def _source(row) -> SourceRecord:
        return SourceRecord(
            id=row["id"], type=row["type"], config=json.loads(row["config"]), pipeline_path=row["pipeline_path"],
            created_at=_dt(row["created_at"]), updated_at=_dt(row["updated_at"]),
        )

    def get_source(self, source_id):
        with self._read() as conn:
            row = conn.execute("SELECT * FROM sources WHERE id = ?", (source_id,)).fetchone()
        return self._source(row) if row else None

    def list_sources(self):
        with self._read() as conn:
            return [self._source(r) for r in conn.execute("SELECT * FROM sources ORDER BY id")]

    def remove_source(self, source_id) -> bool:
        with self._tx() as conn:
            return conn.execute("DELETE FROM sources WHERE id = ?", (source_id,)).rowcount > 0

    # -- sync jobs ---------------------------------------------------------------------------------
    def put_job(self, job: SyncJob) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO sync_jobs (pipeline_id, source_id, interval_minutes, cron, timezone, last_run, next_run, "
                "status, consecutive_failures, spec_path) VALUES (?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (pipeline_id) DO UPDATE SET source_id = excluded.source_id, "
                "interval_minutes = excluded.interval_minutes, cron = excluded.cron, timezone = excluded.timezone, "
                "last_run = excluded.last_run, next_run = excluded.next_run, status = excluded.status, "
                "consecutive_failures = excluded.consecutive_failures, spec_path = excluded.spec_path",
                (job.pipeline_id, job.source_id, job.interval_minutes, job.cron, job.timezone, _ts(job.last_run),
                 _ts(job.next_run), job.status, job.consecutive_failures, job.spec_path),
            )

    @staticmethod
    def _job(row) -> SyncJob:
        return SyncJob(
            pipeline_id=row["pipeline_id"], source_id=row["source_id"], interval_minutes=row["interval_minutes"],
            cron=row["cron"], timezone=row["timezone"], last_run=_dt(row["last_run"]), next_run=_dt(row["next_run"]),
            status=row["status"], consecutive_failures=row["consecutive_failures"], spec_path=row["spec_path"],
        )

    def get_job(self, pipeline_id):
        with self._read() as conn:
            row = conn.execute("SELECT * FROM sync_jobs WHERE pipeline_id = ?", (pipeline_id,)).fetchone()
        return self._job(row) if row else None

    def list_jobs(self):
        with self._read() as conn:
            return [self._job(r) for r in conn.execute("SELECT * FROM sync_jobs ORDER BY pipeline_id")]

    # -- watermarks ---------------------------------------------------------------------------------
    def get_watermark(self, pipeline_id) -> Watermark:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM watermarks WHERE pipeline_id = ?", (pipeline_id,)).fetchone()
        if row is None:
            return Watermark(None, {})
        return Watermark(parse_bound(row["value"]), json.loads(row["state"] or "{}"), _dt(row["updated_at"]))

    def reset_watermark(self, pipeline_id) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM watermarks WHERE pipeline_id = ?", (pipeline_id,))

    # -- history -----------------------------------------------------------------------------------------
    def start_run(self, run: SyncRun, holder: str) -> None:
        window = _window_text(run)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO runs (run_id, pipeline_id, status, started_at, window_lo, window_hi, runner, full_refresh, "
                "note, holder) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (run.run_id, run.pipeline_id, run.status, _ts(run.started_at), window["lo"], window["hi"], run.runner,
                 int(run.full_refresh), run.note, holder),
            )

    def _finish(self, conn, run: SyncRun) -> int:
        window = _window_text(run)
        return conn.execute(
            "UPDATE runs SET status = ?, finished_at = ?, window_lo = ?, window_hi = ?, records_read = ?, "
            "records_written = ?, dead_letter = ?, error = ?, note = ? WHERE run_id = ?",
            (run.status, _ts(run.finished_at), window["lo"], window["hi"], run.records_read, run.records_written,
             run.dead_letter, run.error, run.note, run.run_id),
        ).rowcount

    def commit_run(self, run, watermark, state) -> None:
        with self._tx() as conn:
            if watermark is not None or state is not None:
                current = conn.execute("SELECT value, state FROM watermarks WHERE pipeline_id = ?", (run.pipeline_id,)).fetchone()
                value = _bound_text(watermark) if watermark is not None else (current["value"] if current else None)
                state_text = json.dumps(state if state is not None else json.loads(current["state"]) if current else {}, sort_keys=True)
                conn.execute(
                    "INSERT INTO watermarks (pipeline_id, value, state, updated_at) VALUES (?,?,?,?) "
                    "ON CONFLICT (pipeline_id) DO UPDATE SET value = excluded.value, state = excluded.state, "
                    "updated_at = excluded.updated_at",
                    (run.pipeline_id, value, state_text, _ts(utcnow())),
                )
            if not self._finish(conn, run):
                # Rolls the watermark back too: it never moves without its run in the history.
                raise StateError(f"state store {self.path}: run {run.run_id} was never started; watermark not moved")

    def set_pending_state(self, run_id, state, counts=None) -> None:
        c = counts or {}
        with self._tx() as conn:
            conn.execute(
                "UPDATE runs SET pending_state = ?, records_read = coalesce(?, records_read), "
                "records_written = coalesce(?, records_written), dead_letter = coalesce(?, dead_letter) WHERE run_id = ?",
                (None if state is None else json.dumps(state, sort_keys=True), c.get("records_read"),
                 c.get("records_written"), c.get("dead_letter"), run_id),
            )

    def get_pending_state(self, run_id):
        with self._read() as conn:
            row = conn.execute("SELECT pending_state FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def fail_run(self, run) -> None:
        with self._tx() as conn:
            self._finish(conn, run)

    @staticmethod
    def _run(row) -> SyncRun:
        return SyncRun(
            run_id=row["run_id"], pipeline_id=row["pipeline_id"], status=row["status"],
            started_at=_dt(row["started_at"]), finished_at=_dt(row["finished_at"]),
            window=window_of(row["window_lo"], row["window_hi"]), records_read=row["records_read"],
            records_written=row["records_written"], dead_letter=row["dead_letter"], error=row["error"],
            runner=row["runner"], full_refresh=bool(row["full_refresh"]), note=row["note"],
        )

    def list_runs(self, pipeline_id=None, limit=None):
        sql = "SELECT * FROM runs"
        args: list[Any] = []
        if pipeline_id:
            sql += " WHERE pipeline_id = ?"
            args.append(pipeline_id)
        sql += " ORDER BY started_at DESC, rowid DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._read() as conn:
            return [self._run(r) for r in conn.execute(sql, args)]

    def get_run(self, run_id):
        with self._read() as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return self._run(row) if row else None

    def running_runs(self, pipeline_id=None):
        sql = "SELECT * FROM runs WHERE status = 'running'"
        args = []
        if pipeline_id:
            sql += " AND pipeline_id = ?"
            args.append(pipeline_id)
        with self._read() as conn:
            return [(self._run(r), r["holder"]) for r in conn.execute(sql + " ORDER BY started_at", args)]

    # -- leases ----------------------------------------------------------------------------------------------
    def acquire_lease(self, pipeline_id, holder, ttl) -> Lease | None:
        now = utcnow()
        expires = now + dt.timedelta(seconds=ttl)
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM leases WHERE pipeline_id = ?", (pipeline_id,)).fetchone()
            if row is not None and row["holder"] != holder:
                if _dt(row["expires_at"]) > now and not holder_is_dead(row["holder"]):
                    return None
            conn.execute(
                "INSERT INTO leases (pipeline_id, holder, acquired_at, expires_at) VALUES (?,?,?,?) "
                "ON CONFLICT (pipeline_id) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at, "
                "expires_at = excluded.expires_at",
                (pipeline_id, holder, _ts(now), _ts(expires)),
            )
        return Lease(pipeline_id, holder, now, expires)

    def renew_lease(self, pipeline_id, holder, ttl) -> bool:
        expires = utcnow() + dt.timedelta(seconds=ttl)
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE leases SET expires_at = ? WHERE pipeline_id = ? AND holder = ?", (_ts(expires), pipeline_id, holder)
            )
            return cur.rowcount > 0

    def release_lease(self, pipeline_id, holder) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM leases WHERE pipeline_id = ? AND holder = ?", (pipeline_id, holder))

    def get_lease(self, pipeline_id):
        with self._read() as conn:
            row = conn.execute("SELECT * FROM leases WHERE pipeline_id = ?", (pipeline_id,)).fetchone()
        if row is None:
            return None
        return Lease(row["pipeline_id"], row["holder"], _dt(row["acquired_at"]), _dt(row["expires_at"]))

    # -- operations: state commands, the dashboard, metrics ------------------------------------------------
    def change_watermark(self, pipeline_id, value, state, record, who) -> None:
        window = _window_text(record)
        with self._tx() as conn:
            if value is None and state is None:
                conn.execute("DELETE FROM watermarks WHERE pipeline_id = ?", (pipeline_id,))
            else:
                conn.execute(
                    "INSERT INTO watermarks (pipeline_id, value, state, updated_at) VALUES (?,?,?,?) "
                    "ON CONFLICT (pipeline_id) DO UPDATE SET value = excluded.value, state = excluded.state, "
                    "updated_at = excluded.updated_at",
                    (pipeline_id, _bound_text(value), json.dumps(state or {}, sort_keys=True), _ts(utcnow())),
                )
            conn.execute(
                "INSERT INTO runs (run_id, pipeline_id, status, started_at, finished_at, window_lo, window_hi, runner, "
                "full_refresh, note, holder) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (record.run_id, pipeline_id, record.status, _ts(record.started_at), _ts(record.finished_at),
                 window["lo"], window["hi"], record.runner, int(record.full_refresh), record.note, who),
            )

    @staticmethod
    def _run_filter(pipeline_id, status, since) -> tuple[str, list[Any]]:
        where, args = [], []
        if pipeline_id:
            where.append("pipeline_id = ?")
            args.append(pipeline_id)
        statuses = status_list(status)
        if statuses:
            where.append("status IN (%s)" % ",".join("?" * len(statuses)))
            args += statuses
        if since is not None:
            where.append("started_at >= ?")
            args.append(_ts(since))
        return (" WHERE " + " AND ".join(where)) if where else "", args

    def query_runs(self, pipeline_id=None, status=None, since=None, limit=None, offset=0):
        where, args = self._run_filter(pipeline_id, status, since)
        sql = f"SELECT * FROM runs{where} ORDER BY started_at DESC, rowid DESC LIMIT ? OFFSET ?"
        args += [int(limit) if limit else -1, int(offset or 0)]
        with self._read() as conn:
            return [self._run(r) for r in conn.execute(sql, args)]

    def count_runs(self, pipeline_id=None, status=None, since=None) -> int:
        where, args = self._run_filter(pipeline_id, status, since)
        with self._read() as conn:
            return int(conn.execute(f"SELECT count(*) FROM runs{where}", args).fetchone()[0])

    def set_paused(self, pipeline_id, paused) -> bool:
        with self._tx() as conn:
            return conn.execute(
                "UPDATE sync_jobs SET paused = ? WHERE pipeline_id = ?", (int(bool(paused)), pipeline_id)
            ).rowcount > 0

    def paused_pipelines(self) -> set[str]:
        with self._read() as conn:
            return {r[0] for r in conn.execute("SELECT pipeline_id FROM sync_jobs WHERE paused <> 0")}

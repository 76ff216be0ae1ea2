"""The shared state store on PostgreSQL: several launchers on several hosts share one state.

The same interface and semantics as :mod:`osmosis_beam.state.sqlite`, with the tables in one schema
(``osmosis`` unless the URL says ``?schema=NAME``). Schema migrations are versioned and run under an
advisory lock, so launchers starting at once migrate once. Every read-modify-write is one transaction;
a lease is taken with one atomic ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`` on the server's
clock (hosts' clocks may disagree; the database's is the one they share), so two processes never hold
the same lease, and a lease whose holder died expires after its TTL (or at once, when the holder was a
process on this host that no longer exists).

Example::

    from osmosis_beam.state.factory import open_store
    store = open_store(url="postgresql://osmosis:secret@db:5432/ops?schema=osmosis")
    lease = store.acquire_lease("orders", holder="host-a:1234:abcd", ttl=60)
    store.get_watermark("orders")
"""
from __future__ import annotations

import dataclasses
import json
import threading
import urllib.parse
from typing import Any, Callable, TypeVar

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from osmosis_beam.core.errors import StateError
from osmosis_beam.core.models import SyncJob, SyncRun
from osmosis_beam.core.secrets import redact_text, redact_url
from osmosis_beam.core.timefmt import parse_duration, utcnow
from osmosis_beam.core.window import format_bound, parse_bound
from osmosis_beam.io.postgres.session import Deadlines, connect, timeout_hint
from osmosis_beam.state.store import (
    Lease,
    SourceRecord,
    StateStore,
    Watermark,
    holder_is_dead,
    status_list,
    window_of,
)

__all__ = ["PostgresStateStore", "SCHEMA_VERSION", "DEFAULT_SCHEMA"]

DEFAULT_SCHEMA = "osmosis"
T = TypeVar("T")

# Each entry migrates from version i to i+1 ({s} is the schema). Never edit a released entry: append one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE {s}.sources (
        id text PRIMARY KEY, type text NOT NULL, config jsonb NOT NULL, pipeline_path text,
        created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
    CREATE TABLE {s}.sync_jobs (
        pipeline_id text PRIMARY KEY, source_id text NOT NULL, interval_minutes double precision, cron text,
        timezone text NOT NULL DEFAULT 'UTC', last_run timestamptz, next_run timestamptz,
        status text NOT NULL DEFAULT 'idle', consecutive_failures integer NOT NULL DEFAULT 0, spec_path text);
    CREATE TABLE {s}.watermarks (
        pipeline_id text PRIMARY KEY, value text, state jsonb NOT NULL DEFAULT '{{}}', updated_at timestamptz NOT NULL);
    CREATE TABLE {s}.runs (
        seq bigserial UNIQUE, run_id text PRIMARY KEY, pipeline_id text NOT NULL, status text NOT NULL,
        started_at timestamptz NOT NULL, finished_at timestamptz, window_lo text, window_hi text,
        records_read bigint NOT NULL DEFAULT 0, records_written bigint NOT NULL DEFAULT 0,
        dead_letter bigint NOT NULL DEFAULT 0, error text, runner text, full_refresh boolean NOT NULL DEFAULT false,
        note text, holder text);
    CREATE INDEX runs_by_pipeline ON {s}.runs (pipeline_id, started_at);
    CREATE INDEX runs_by_status ON {s}.runs (status);
    CREATE TABLE {s}.leases (
        pipeline_id text PRIMARY KEY, holder text NOT NULL, acquired_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL);
    """,
    # v2: the connector state a run will commit, saved before it publishes (for repair after a crash)
    """
    ALTER TABLE {s}.runs ADD COLUMN pending_state jsonb;
    """,
    # v3: paused sync jobs; runs listed newest first across pipelines and by status (the dashboard's pages)
    """
    ALTER TABLE {s}.sync_jobs ADD COLUMN paused boolean NOT NULL DEFAULT false;
    CREATE INDEX runs_by_started ON {s}.runs (started_at, seq);
    CREATE INDEX runs_by_status_started ON {s}.runs (status, started_at);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

_RUN_COLUMNS = (
    "run_id, pipeline_id, status, started_at, finished_at, window_lo, window_hi, records_read, records_written, "
    "dead_letter, error, runner, full_refresh, note, holder"
)


def _bound_text(value) -> str | None:
    bound = format_bound(value)
    return None if bound is None else str(bound)


def _window_text(run: SyncRun) -> dict[str, str | None]:
    if run.window is None:
        return {"lo": None, "hi": None}
    return {"lo": _bound_text(run.window.lo), "hi": _bound_text(run.window.hi)}


# The state store's statements are short: a stuck one fails within a minute, not forever.
STATE_DEADLINES = Deadlines(statement_timeout=60.0, lock_timeout=30.0)


def _split_url(url: str) -> tuple[str, str | None, dict[str, float]]:
    """The libpq URL without osmosis's own query parameters (``schema``, ``statement_timeout``,
    ``lock_timeout`` as durations like 30s), and those."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    schema = None
    timeouts: dict[str, float] = {}
    kept = []
    for key, value in query:
        if key == "schema":
            schema = value
        elif key in ("statement_timeout", "lock_timeout"):
            try:
                timeouts[key] = parse_duration(value).total_seconds()
            except (ValueError, TypeError):
                raise StateError(f"state URL: {key}={value!r} is not a duration; write e.g. {key}=30s") from None
        else:
            kept.append((key, value))
    clean = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept)))
    return clean, schema, timeouts


class PostgresStateStore(StateStore):
    """State in PostgreSQL tables under ``schema`` (created with its tables when missing)."""

    def __init__(self, url: str, *, schema: str | None = None, connect_timeout: int = 10, read_only: bool = False) -> None:
        self.location = redact_url(url)
        self._dsn, url_schema, timeouts = _split_url(url) if "://" in url else (url, None, {})
        self.schema = schema or url_schema or DEFAULT_SCHEMA
        self.deadlines = dataclasses.replace(STATE_DEADLINES, connect_timeout=float(connect_timeout), **timeouts)
        self._conn: Any = None
        self._lock = threading.RLock()
        self._s = sql.Identifier(self.schema)
        try:
            self._password = psycopg2.extensions.parse_dsn(self._dsn).get("password")
        except psycopg2.ProgrammingError as exc:
            raise StateError(f"state store {self.location}: not a valid PostgreSQL URL ({redact_text(str(exc).strip(), [url])})") from None
        # Commands that only read (history, jobs, state show, ...) take no lock and run no DDL when the schema is
        # current, so a role with only USAGE and SELECT (an analyst's, a monitor's) can use them.
        if not (read_only and self._current_schema()):
            self._migrate()

    # -- connections ---------------------------------------------------------------------
    def _error(self, exc: BaseException, doing: str = "") -> StateError:
        text = redact_text(str(getattr(exc, "pgerror", None) or exc).strip(), [self._dsn, self._password]) or type(exc).__name__
        text = text.replace("ERROR:  ", "").replace("FATAL:  ", "")
        lower = text.lower()
        if "password authentication failed" in lower:
            text = "the server refused the password; check the password in the state URL"
        elif "does not exist" in lower and "database" in lower:
            text = f"{text.splitlines()[0]}; create the database or fix the state URL"
        elif "connection refused" in lower:
            text = "nothing accepts connections there (connection refused); check the host and port"
        elif "could not translate host name" in lower:
            text = "unknown host; check the host name in the state URL"
        else:
            hint = timeout_hint(exc, self.deadlines)
            if hint is not None and hint != text:
                text = f"{text.splitlines()[0]}; {hint}"
        return StateError(f"state store {self.location}: {doing}{text}")

    def _connection(self):
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = connect(self._dsn, self.deadlines, application_name="osmosis-beam state",
                           what=f"state store {self.location}", setup="SET TIME ZONE 'UTC'")
        except psycopg2.Error as exc:
            raise self._error(exc, "cannot connect: ") from None
        self._conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error:
                pass

    def _run(self, work: Callable[[Any], T]) -> T:
        """Run ``work(cursor)`` in one transaction; reconnect once when the connection was lost."""
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    with conn.cursor() as cur:
                        result = work(cur)
                    conn.commit()
                    return result
                except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                    lost = conn.closed != 0
                    self._drop_connection()
                    if lost and attempt == 1:
                        continue
                    raise self._error(exc) from None
                except psycopg2.Error as exc:
                    self._rollback(conn)
                    raise self._error(exc) from None
                except BaseException:
                    self._rollback(conn)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _rollback(self, conn) -> None:
        try:
            conn.rollback()
        except psycopg2.Error:
            self._drop_connection()

    def _q(self, text: str) -> sql.Composed:
        """``text`` with ``{s}`` as the schema identifier."""
        return sql.SQL(text).format(s=self._s)

    def _current_schema(self) -> bool:
        """True when the schema exists at this osmosis-beam's version (a newer one is refused)."""

        def work(cur) -> int:
            cur.execute("SELECT to_regclass(%s)", (f"{self._s.as_string(cur)}.meta",))
            if cur.fetchone()[0] is None:
                return 0
            cur.execute(self._q("SELECT value FROM {s}.meta WHERE key = 'schema_version'"))
            row = cur.fetchone()
            return int(row[0]) if row else 0

        version = self._run(work)
        if version > SCHEMA_VERSION:
            raise self._too_new(version)
        return version == SCHEMA_VERSION

    def _too_new(self, version: int) -> StateError:
        return StateError(
            f"state store {self.location} (schema {self.schema}) has schema version {version}, newer than this "
            f"osmosis-beam understands ({SCHEMA_VERSION}); upgrade osmosis-beam"
        )

    def _migrate(self) -> None:
        def work(cur) -> None:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7707))", (f"osmosis-state-migrate:{self.schema}",))
            cur.execute(self._q("CREATE SCHEMA IF NOT EXISTS {s}"))
            cur.execute(self._q("CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL)"))
            cur.execute(self._q("SELECT value FROM {s}.meta WHERE key = 'schema_version'"))
            row = cur.fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise self._too_new(version)
            for index in range(version, SCHEMA_VERSION):
                cur.execute(self._q(MIGRATIONS[index]))
                cur.execute(
                    self._q(
                        "INSERT INTO {s}.meta (key, value) VALUES ('schema_version', %s) "
                        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                    ),
                    (str(index + 1),),
                )

        self._run(work)

    def schema_version(self) -> int:
        def work(cur) -> int:
            cur.execute(self._q("SELECT value FROM {s}.meta WHERE key = 'schema_version'"))
            row = cur.fetchone()
            return int(row[0]) if row else 0

        return self._run(work)

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    # -- sources -------------------------------------------------------------------------------
    def put_source(self, source_id, type_name, config, pipeline_path) -> None:
        now = utcnow()
        text = json.dumps(config, sort_keys=True, default=str)
        self._run(lambda cur: cur.execute(
            self._q(
                "INSERT INTO {s}.sources (id, type, config, pipeline_path, created_at, updated_at) "
                "VALUES (%s, %s, %s::jsonb, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET type = EXCLUDED.type, config = EXCLUDED.config, "
                "pipeline_path = EXCLUDED.pipeline_path, updated_at = EXCLUDED.updated_at"
            ),
            (source_id, type_name, text, pipeline_path, now, now),
        ))

    @staticmethod
    def _source(row) -> SourceRecord:
        return SourceRecord(id=row[0], type=row[1], config=row[2], pipeline_path=row[3], created_at=row[4], updated_at=row[5])

    def _select(self, text: str, args: tuple = ()) -> list[tuple]:
        def work(cur) -> list[tuple]:
            cur.execute(self._q(text), args)
            return cur.fetchall()

        return self._run(work)

    def get_source(self, source_id):
        rows = self._select(
            "SELECT id, type, config, pipeline_path, created_at, updated_at FROM {s}.sources WHERE id = %s", (source_id,)
        )
        return self._source(rows[0]) if rows else None

    def list_sources(self):
        rows = self._select("SELECT id, type, config, pipeline_path, created_at, updated_at FROM {s}.sources ORDER BY id")
        return [self._source(r) for r in rows]

    def remove_source(self, source_id) -> bool:
        def work(cur) -> bool:
            cur.execute(self._q("DELETE FROM {s}.sources WHERE id = %s"), (source_id,))
            return cur.rowcount > 0

        return self._run(work)

    # -- sync jobs ---------------------------------------------------------------------------------
    def put_job(self, job: SyncJob) -> None:
        self._run(lambda cur: cur.execute(
            self._q(
                "INSERT INTO {s}.sync_jobs (pipeline_id, source_id, interval_minutes, cron, timezone, last_run, next_run, "
                "status, consecutive_failures, spec_path) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (pipeline_id) DO UPDATE SET source_id = EXCLUDED.source_id, "
                "interval_minutes = EXCLUDED.interval_minutes, cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, "
                "last_run = EXCLUDED.last_run, next_run = EXCLUDED.next_run, status = EXCLUDED.status, "
                "consecutive_failures = EXCLUDED.consecutive_failures, spec_path = EXCLUDED.spec_path"
            ),
            (job.pipeline_id, job.source_id, job.interval_minutes, job.cron, job.timezone, job.last_run,
             job.next_run, job.status, job.consecutive_failures, job.spec_path),
        ))

    _JOB_COLUMNS = (
        "pipeline_id, source_id, interval_minutes, cron, timezone, last_run, next_run, status, "
        "consecutive_failures, spec_path"
    )

    @staticmethod
    def _job(row) -> SyncJob:
        return SyncJob(
            pipeline_id=row[0], source_id=row[1], interval_minutes=row[2], cron=row[3], timezone=row[4],
            last_run=row[5], next_run=row[6], status=row[7], consecutive_failures=row[8], spec_path=row[9],
        )

    def get_job(self, pipeline_id):
        rows = self._select(f"SELECT {self._JOB_COLUMNS} FROM {{s}}.sync_jobs WHERE pipeline_id = %s", (pipeline_id,))
        return self._job(rows[0]) if rows else None

    def list_jobs(self):
        return [self._job(r) for r in self._select(f"SELECT {self._JOB_COLUMNS} FROM {{s}}.sync_jobs ORDER BY pipeline_id")]

    # -- watermarks ---------------------------------------------------------------------------------
    def get_watermark(self, pipeline_id) -> Watermark:
        rows = self._select("SELECT value, state, updated_at FROM {s}.watermarks WHERE pipeline_id = %s", (pipeline_id,))
        if not rows:
            return Watermark(None, {})
        value, state, updated_at = rows[0]
        return Watermark(parse_bound(value), state or {}, updated_at)

    def reset_watermark(self, pipeline_id) -> None:
        self._run(lambda cur: cur.execute(self._q("DELETE FROM {s}.watermarks WHERE pipeline_id = %s"), (pipeline_id,)))

    # -- history -----------------------------------------------------------------------------------------
    def start_run(self, run: SyncRun, holder: str) -> None:
        window = _window_text(run)
        self._run(lambda cur: cur.execute(
            self._q(
                "INSERT INTO {s}.runs (run_id, pipeline_id, status, started_at, window_lo, window_hi, runner, "
                "full_refresh, note, holder) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            ),
            (run.run_id, run.pipeline_id, run.status, run.started_at, window["lo"], window["hi"], run.runner,
             bool(run.full_refresh), run.note, holder),
        ))

    def _finish(self, cur, run: SyncRun) -> int:
        window = _window_text(run)
        cur.execute(
            self._q(
                "UPDATE {s}.runs SET status = %s, finished_at = %s, window_lo = %s, window_hi = %s, records_read = %s, "
                "records_written = %s, dead_letter = %s, error = %s, note = %s WHERE run_id = %s"
            ),
            (run.status, run.finished_at, window["lo"], window["hi"], run.records_read, run.records_written,
             run.dead_letter, run.error, run.note, run.run_id),
        )
        return cur.rowcount

    def commit_run(self, run, watermark, state) -> None:
        def work(cur) -> None:
            if watermark is not None or state is not None:
                cur.execute(
                    self._q("SELECT value, state FROM {s}.watermarks WHERE pipeline_id = %s FOR UPDATE"), (run.pipeline_id,)
                )
                current = cur.fetchone()
                value = _bound_text(watermark) if watermark is not None else (current[0] if current else None)
                new_state = state if state is not None else (current[1] if current else {})
                cur.execute(
                    self._q(
                        "INSERT INTO {s}.watermarks (pipeline_id, value, state, updated_at) VALUES (%s, %s, %s::jsonb, %s) "
                        "ON CONFLICT (pipeline_id) DO UPDATE SET value = EXCLUDED.value, state = EXCLUDED.state, "
                        "updated_at = EXCLUDED.updated_at"
                    ),
                    (run.pipeline_id, value, json.dumps(new_state or {}, sort_keys=True), utcnow()),
                )
            if not self._finish(cur, run):
                # Rolls the watermark back too: it never moves without its run in the history.
                raise StateError(f"state store {self.location}: run {run.run_id} was never started; watermark not moved")

        self._run(work)

    def set_pending_state(self, run_id, state, counts=None) -> None:
        c = counts or {}
        self._run(lambda cur: cur.execute(
            self._q(
                "UPDATE {s}.runs SET pending_state = %s::jsonb, records_read = coalesce(%s, records_read), "
                "records_written = coalesce(%s, records_written), dead_letter = coalesce(%s, dead_letter) "
                "WHERE run_id = %s"
            ),
            (None if state is None else json.dumps(state, sort_keys=True), c.get("records_read"),
             c.get("records_written"), c.get("dead_letter"), run_id),
        ))

    def get_pending_state(self, run_id):
        rows = self._select("SELECT pending_state FROM {s}.runs WHERE run_id = %s", (run_id,))
        return rows[0][0] if rows and rows[0][0] else None

    def fail_run(self, run) -> None:
        self._run(lambda cur: self._finish(cur, run))

    @staticmethod
    def _run_of(row) -> SyncRun:
        return SyncRun(
            run_id=row[0], pipeline_id=row[1], status=row[2], started_at=row[3], finished_at=row[4],
            window=window_of(row[5], row[6]), records_read=row[7], records_written=row[8], dead_letter=row[9],
            error=row[10], runner=row[11], full_refresh=bool(row[12]), note=row[13],
        )

    def list_runs(self, pipeline_id=None, limit=None):
        text = f"SELECT {_RUN_COLUMNS} FROM {{s}}.runs"
        args: list[Any] = []
        if pipeline_id:
            text += " WHERE pipeline_id = %s"
            args.append(pipeline_id)
        text += " ORDER BY started_at DESC, seq DESC"
        if limit:
            text += " LIMIT %s"
            args.append(int(limit))
        return [self._run_of(r) for r in self._select(text, tuple(args))]

    def get_run(self, run_id):
        rows = self._select(f"SELECT {_RUN_COLUMNS} FROM {{s}}.runs WHERE run_id = %s", (run_id,))
        return self._run_of(rows[0]) if rows else None

    def running_runs(self, pipeline_id=None):
        text = f"SELECT {_RUN_COLUMNS} FROM {{s}}.runs WHERE status = 'running'"
        args: list[Any] = []
        if pipeline_id:
            text += " AND pipeline_id = %s"
            args.append(pipeline_id)
        return [(self._run_of(r), r[14]) for r in self._select(text + " ORDER BY started_at, seq", tuple(args))]

    # -- leases ----------------------------------------------------------------------------------------------
    def acquire_lease(self, pipeline_id, holder, ttl) -> Lease | None:
        def work(cur) -> Lease | None:
            # One atomic statement: insert, or take over when ours or expired (on the server's clock).
            cur.execute(
                self._q(
                    "INSERT INTO {s}.leases AS l (pipeline_id, holder, acquired_at, expires_at) "
                    "VALUES (%s, %s, statement_timestamp(), statement_timestamp() + %s * interval '1 second') "
                    "ON CONFLICT (pipeline_id) DO UPDATE SET holder = EXCLUDED.holder, acquired_at = EXCLUDED.acquired_at, "
                    "expires_at = EXCLUDED.expires_at "
                    "WHERE l.holder = EXCLUDED.holder OR l.expires_at <= statement_timestamp() "
                    "RETURNING pipeline_id, holder, acquired_at, expires_at"
                ),
                (pipeline_id, holder, float(ttl)),
            )
            row = cur.fetchone()
            if row is None:
                # Held and live on the clock; the row is locked now. Break it if its holder died on this host.
                cur.execute(self._q("SELECT holder FROM {s}.leases WHERE pipeline_id = %s FOR UPDATE"), (pipeline_id,))
                current = cur.fetchone()
                if current is not None and holder_is_dead(current[0]):
                    cur.execute(
                        self._q(
                            "UPDATE {s}.leases SET holder = %s, acquired_at = statement_timestamp(), "
                            "expires_at = statement_timestamp() + %s * interval '1 second' "
                            "WHERE pipeline_id = %s AND holder = %s RETURNING pipeline_id, holder, acquired_at, expires_at"
                        ),
                        (holder, float(ttl), pipeline_id, current[0]),
                    )
                    row = cur.fetchone()
            return Lease(*row) if row else None

        return self._run(work)

    def renew_lease(self, pipeline_id, holder, ttl) -> bool:
        def work(cur) -> bool:
            cur.execute(
                self._q(
                    "UPDATE {s}.leases SET expires_at = statement_timestamp() + %s * interval '1 second' "
                    "WHERE pipeline_id = %s AND holder = %s"
                ),
                (float(ttl), pipeline_id, holder),
            )
            return cur.rowcount > 0

        return self._run(work)

    def release_lease(self, pipeline_id, holder) -> None:
        self._run(lambda cur: cur.execute(
            self._q("DELETE FROM {s}.leases WHERE pipeline_id = %s AND holder = %s"), (pipeline_id, holder)
        ))

    def get_lease(self, pipeline_id):
        rows = self._select(
            "SELECT pipeline_id, holder, acquired_at, expires_at FROM {s}.leases WHERE pipeline_id = %s", (pipeline_id,)
        )
        return Lease(*rows[0]) if rows else None

    # -- operations: state commands, the dashboard, metrics ------------------------------------------------
    def change_watermark(self, pipeline_id, value, state, record, who) -> None:
        window = _window_text(record)

        def work(cur) -> None:
            if value is None and state is None:
                cur.execute(self._q("DELETE FROM {s}.watermarks WHERE pipeline_id = %s"), (pipeline_id,))
            else:
                cur.execute(
                    self._q(
                        "INSERT INTO {s}.watermarks (pipeline_id, value, state, updated_at) VALUES (%s, %s, %s::jsonb, %s) "
                        "ON CONFLICT (pipeline_id) DO UPDATE SET value = EXCLUDED.value, state = EXCLUDED.state, "
                        "updated_at = EXCLUDED.updated_at"
                    ),
                    (pipeline_id, _bound_text(value), json.dumps(state or {}, sort_keys=True), utcnow()),
                )
            cur.execute(
                self._q(
                    "INSERT INTO {s}.runs (run_id, pipeline_id, status, started_at, finished_at, window_lo, window_hi, "
                    "runner, full_refresh, note, holder) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                ),
                (record.run_id, pipeline_id, record.status, record.started_at, record.finished_at, window["lo"],
                 window["hi"], record.runner, bool(record.full_refresh), record.note, who),
            )

        self._run(work)

    @staticmethod
    def _run_filter(pipeline_id, status, since) -> tuple[str, list[Any]]:
        where, args = [], []
        if pipeline_id:
            where.append("pipeline_id = %s")
            args.append(pipeline_id)
        statuses = status_list(status)
        if statuses:
            where.append("status = ANY(%s)")
            args.append(statuses)
        if since is not None:
            where.append("started_at >= %s")
            args.append(since)
        return (" WHERE " + " AND ".join(where)) if where else "", args

    def query_runs(self, pipeline_id=None, status=None, since=None, limit=None, offset=0):
        where, args = self._run_filter(pipeline_id, status, since)
        text = f"SELECT {_RUN_COLUMNS} FROM {{s}}.runs{where} ORDER BY started_at DESC, seq DESC LIMIT %s OFFSET %s"
        args += [int(limit) if limit else None, int(offset or 0)]
        return [self._run_of(r) for r in self._select(text, tuple(args))]

    def count_runs(self, pipeline_id=None, status=None, since=None) -> int:
        where, args = self._run_filter(pipeline_id, status, since)
        return int(self._select(f"SELECT count(*) FROM {{s}}.runs{where}", tuple(args))[0][0])

    def set_paused(self, pipeline_id, paused) -> bool:
        def work(cur) -> bool:
            cur.execute(self._q("UPDATE {s}.sync_jobs SET paused = %s WHERE pipeline_id = %s"), (bool(paused), pipeline_id))
            return cur.rowcount > 0

        return self._run(work)

    def paused_pipelines(self) -> set[str]:
        return {r[0] for r in self._select("SELECT pipeline_id FROM {s}.sync_jobs WHERE paused")}

"""Helpers for the PostgreSQL tests: a clean database per test, SQL on it, and reads/writes through a real
Beam runner.

``pg_dsn`` here overrides the suite's fixture of that name for the modules that import it: one database per
test module, emptied before each test (every schema dropped, settings reset, other sessions ended), which
is as isolated as a new database per test and several times faster (CREATE/DROP DATABASE checkpoint).

Example::

    from tests.integration.pg_support import pg_dsn, pg_module_database  # noqa: F401  (fixtures)

    def test_something(pg_dsn):
        execute(pg_dsn, "CREATE TABLE t (id int)", "INSERT INTO t VALUES (1)")
        records, dead = read_through_beam(connector, SyncWindow(lo, hi), splits=4)
"""
from __future__ import annotations

import datetime as dt
import textwrap
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

import apache_beam as beam
import psycopg2
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from osmosis_beam.core.window import IncrementalSpec, SyncWindow
from osmosis_beam.io.postgres.source import PostgresConnector
from osmosis_beam.io.read import ReadWindow

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


_RESET = """
DO $$
DECLARE s text;
BEGIN
    PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid();
    FOR s IN SELECT nspname FROM pg_namespace
             WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', s);
    END LOOP;
    EXECUTE format('ALTER DATABASE %I RESET ALL', current_database());
END $$;
CREATE SCHEMA public;
GRANT USAGE ON SCHEMA public TO PUBLIC;
"""


@pytest.fixture(scope="module")
def pg_module_database(pg_server, request):
    """One database for the test module (dropped afterwards)."""
    name = "m_" + request.module.__name__.rsplit(".", 1)[-1][:40]
    dsn = pg_server.create_database(name)
    yield dsn
    pg_server.drop_database(name)


@pytest.fixture
def pg_dsn(pg_module_database):
    """The module's database, emptied: no schema but an empty ``public``, default settings, no other sessions."""
    execute(pg_module_database, _RESET)
    return pg_module_database


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def execute(dsn: str, *statements: str, args: Sequence[Any] | None = None) -> None:
    """Run statements in autocommit mode."""
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement, args)
    finally:
        conn.close()


def fetch(dsn: str, query: str, args: Sequence[Any] | None = None) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute(query, args)
            return cur.fetchall()
    finally:
        conn.close()


def source(dsn: str, cursor: str | None = "updated_at", **options: Any) -> PostgresConnector:
    return PostgresConnector({"dsn": dsn, **options}, incremental=IncrementalSpec(cursor_field=cursor), pipeline_id="t")


def read_all(connector: PostgresConnector, lo, hi) -> list:
    """Every item ``read_window`` yields (records and dead letters), in this process."""
    connector.connect()
    try:
        return list(connector.read_window(lo, hi))
    finally:
        connector.disconnect()


class _Store:
    """Collects elements in this process (the in-process runner runs DoFns here)."""

    items: dict[str, list] = {}

    def __init__(self) -> None:
        self.key = uuid.uuid4().hex
        _Store.items[self.key] = []

    def add(self, element) -> None:
        _Store.items[self.key].append(element)

    def add_batch(self, batch) -> None:
        _Store.items[self.key].append(list(batch))

    def take(self) -> list:
        return _Store.items.pop(self.key)


def pipeline() -> beam.Pipeline:
    return beam.Pipeline(runner=FnApiRunner())


def read_through_beam(connector, window: SyncWindow, *, splits: int = 4, batch_size: int = 2000,
                      split_from=None) -> tuple[list[list[dict]], list[dict]]:
    """The record batches and dead letters ``ReadWindow`` produces on the in-process runner."""
    batches, dead = _Store(), _Store()
    with pipeline() as p:
        out = p | "Read" >> ReadWindow(connector, window, splits=splits, batch_size=batch_size, split_from=split_from)
        out.records | "Batches" >> beam.Map(batches.add_batch)
        out.dead_letter | "Dead" >> beam.Map(dead.add)
    return batches.take(), dead.take()


def sync_once(connector, sink, window: SyncWindow, run_id: str, *, splits: int = 2, full_refresh: bool = False,
              prepare_full_refresh: bool | None = None, split_from: dt.datetime | None = None) -> tuple[dict, list[dict]]:
    """One run as the SyncRunner does it: prepare, read -> write on Beam, publish. Returns (details, dead).
    ``split_from`` is the lowest cursor, from which a window without a lower bound splits (the runner asks the
    source for it)."""
    connector.connect()
    try:
        empty = connector.window_is_empty(window) is True
    finally:
        connector.disconnect()
    dead = _Store()
    if not empty:
        if prepare_full_refresh is None:
            sink.prepare(run_id)
        else:
            sink.prepare(run_id, full_refresh=prepare_full_refresh)
        with pipeline() as p:
            read = p | "Read" >> ReadWindow(connector, window, splits=splits, batch_size=500, split_from=split_from)
            written = read.records | "Write" >> sink.write(run_id)
            (read.dead_letter, written.dead_letter) | beam.Flatten() | beam.Map(dead.add)
    details = sink.publish(run_id, window_hi=window.hi if isinstance(window.hi, dt.datetime) else T0,
                           full_refresh=full_refresh)
    return details, dead.take()


def write_through_beam(sink, run_id: str, batches: Iterable[list[dict]]) -> list[dict]:
    """Write ``batches`` with ``sink.write(run_id)``; return the dead letters."""
    dead = _Store()
    with pipeline() as p:
        out = p | beam.Create(list(batches)) | "Write" >> sink.write(run_id)
        out.dead_letter | beam.Map(dead.add)
    return dead.take()


def flatten(batches: list[list[dict]]) -> list[dict]:
    return [r for batch in batches for r in batch]


def every_type_yaml(path: Path, out: Path, extra: str = "", *, sink: str = "jsonl", pipeline_id: str = "zero") -> Path:
    """Write a pipeline YAML to ``path``: the table ``every_type`` of ``${ZD_DSN}`` (cursor ``updated_at``, no
    safety lag) into a ``sink`` at ``out``; ``extra`` is more top-level YAML (``read: {path: typed}``)."""
    path.write_text(textwrap.dedent(f"""\
        id: {pipeline_id}
        source:
          type: postgres
          dsn: ${{ZD_DSN}}
          table: every_type
        incremental:
          cursor_field: updated_at
          safety_lag: 0s
        {extra}
        sink:
          type: {sink}
          path: {out}
        """))
    return path

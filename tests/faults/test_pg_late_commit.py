"""Rows of a transaction that commits late are never lost with the default options (issue 15, item 3).

A real concurrent transaction inserts a row stamped ``now() - 1s`` (or ``now()``) and stays open for more
than 5 s while a sync runs; it commits afterwards and the next sync must deliver the row, once. Also with
``safety_lag: 0s``, and with a role that cannot see other sessions (a warning names the grant that fixes it).
"""
from __future__ import annotations

import logging
import time

import psycopg2

from osmosis_beam.config import parse_pipeline
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner
from tests.faults.pg_support import execute

HELD = 6.0  # seconds the late transaction stays open: longer than the default safety_lag of 5 s


def make_table(dsn):
    execute(dsn, "CREATE TABLE events (id serial PRIMARY KEY, updated_at timestamptz NOT NULL, v text)",
            "INSERT INTO events (updated_at, v) SELECT now() - interval '1 hour' + i * interval '1 second', 'early ' || i "
            "FROM generate_series(1, 50) i")


def runner(home, dsn, out, **incremental):
    spec = parse_pipeline({
        "id": "events", "source": {"type": "postgres", "dsn": dsn, "table": "events"},
        "incremental": {"cursor_field": "updated_at", **incremental},
        "sink": {"type": "jsonl", "path": str(out)},
    })
    return SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home)


def open_writer(dsn, *values_sql):
    """A transaction that has inserted rows and stays open (the caller commits it)."""
    conn = psycopg2.connect(dsn, application_name="late writer")
    with conn.cursor() as cur:
        for value in values_sql:
            cur.execute(f"INSERT INTO events (updated_at, v) VALUES ({value}, %s)", (f"late {value}",))
        cur.execute("SELECT now()")
        started = cur.fetchone()[0]
    return conn, started


def delivered(out):
    return sorted(r["v"] for r in read_jsonl_dir(out))


def late_rows_survive(home, dsn, tmp_path, faults, values, **incremental):
    make_table(dsn)
    out = tmp_path / "out"
    writer, started = open_writer(dsn, *values)
    faults.injected()
    try:
        time.sleep(HELD)
        first = runner(home, dsn, out, **incremental).run()
        assert first.status == "succeeded"
        assert first.window.hi <= started  # capped at the open transaction's start
        assert [v for v in delivered(out) if v.startswith("late")] == []
        writer.commit()
    finally:
        writer.close()
    second = runner(home, dsn, out, **incremental).run()
    assert second.status == "succeeded" and second.window.lo == first.window.hi
    got = delivered(out)
    want = sorted(r[0] for r in execute(dsn, "SELECT v FROM events"))
    assert got == want  # every row, the late ones included, exactly once
    faults.checked(len(got))
    return got


def test_a_late_commit_is_delivered_with_the_defaults(home, pg_dsn, tmp_path, faults):
    got = late_rows_survive(home, pg_dsn, tmp_path, faults, ["now() - interval '1 second'"])
    assert "late now() - interval '1 second'" in got


def test_a_late_commit_is_delivered_with_no_safety_lag(home, pg_dsn, tmp_path, faults):
    got = late_rows_survive(home, pg_dsn, tmp_path, faults,
                            ["now()", "clock_timestamp()", "now() - interval '1 second'"], safety_lag="0s")
    assert len([v for v in got if v.startswith("late")]) == 3


def test_a_role_that_cannot_see_other_sessions_is_warned_once_and_the_grant_fixes_it(
        home, pg_server, pg_dsn, tmp_path, faults, caplog):
    make_table(pg_dsn)
    dbname = pg_dsn.rsplit("/", 1)[1]
    execute(pg_dsn, "DROP ROLE IF EXISTS late_reader", "CREATE ROLE late_reader LOGIN PASSWORD 'reader-pw'",
            "GRANT SELECT ON events TO late_reader")
    reader = pg_server.dsn_for(dbname, user="late_reader", password="reader-pw")
    out = tmp_path / "out"
    writer, started = open_writer(pg_dsn, "now() - interval '1 second'")  # another role: invisible to the reader
    faults.injected()
    try:
        with caplog.at_level(logging.WARNING, logger="osmosis_beam"):
            blind = runner(home, reader, out).run()
        warnings = [r.getMessage() for r in caplog.records if "pg_read_all_stats" in r.getMessage()]
        assert len(warnings) == 1, warnings  # once per run
        assert "GRANT pg_read_all_stats TO late_reader" in warnings[0]
        assert "1 of them in a writing transaction" in warnings[0]
        assert "reader-pw" not in warnings[0]
        assert blind.status == "succeeded"

        execute(pg_dsn, "GRANT pg_read_all_stats TO late_reader")
        time.sleep(HELD)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="osmosis_beam"):
            seeing = runner(home, reader, out).run()
        assert not [r for r in caplog.records if "pg_read_all_stats" in r.getMessage()]
        assert seeing.window.hi <= started  # now it sees the open transaction and waits for it
        writer.commit()
    finally:
        writer.close()
        execute(pg_dsn, "REVOKE pg_read_all_stats FROM late_reader")
    last = runner(home, reader, out).run()
    assert last.status == "succeeded"
    got = delivered(out)
    assert got == sorted(r[0] for r in execute(pg_dsn, "SELECT v FROM events"))
    faults.checked(len(got))
    execute(pg_dsn, "DROP OWNED BY late_reader", "DROP ROLE late_reader")


def test_the_cap_can_be_turned_off_and_then_the_late_row_is_lost_as_documented(home, pg_dsn, tmp_path, faults):
    """The opt-out behaves as README says (this is what the default protects against)."""
    make_table(pg_dsn)
    out = tmp_path / "out"
    spec = parse_pipeline({
        "id": "events", "source": {"type": "postgres", "dsn": pg_dsn, "table": "events",
                                   "wait_for_open_transactions": False},
        "incremental": {"cursor_field": "updated_at"}, "sink": {"type": "jsonl", "path": str(out)},
    })
    writer, _ = open_writer(pg_dsn, "now() - interval '1 second'")
    faults.injected()
    try:
        time.sleep(HELD)
        SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home).run()
        writer.commit()
    finally:
        writer.close()
    SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home).run()
    assert "late now() - interval '1 second'" not in delivered(out)
    faults.checked(50)

"""A stalled PostgreSQL backend or a locked table fails the run clearly within its deadline (issue 15, item 11).

Real faults on the session's server: a statement that sleeps (``pg_sleep``), a table held under
``ACCESS EXCLUSIVE`` by another session (source and sink side), and a backend process frozen with
SIGSTOP in the middle of a FETCH (it cannot even cancel itself; only the client-side deadline helps).
Each failed run leaves a failed history row and an unchanged watermark; the re-run completes the data once.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import psycopg2
import pytest
import yaml

from osmosis_beam.core.errors import OsmosisError
from osmosis_beam.config import load_pipeline, parse_pipeline
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.io.postgres.session import DEFAULT_DEADLINES, Deadlines, StalledError, connect
from osmosis_beam.state.postgres import PostgresStateStore
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner
from tests.faults.pg_support import execute
from tests.services import unavailable

ROWS = 40


def make_table(dsn, name="events"):
    execute(dsn, f"CREATE TABLE {name} (id int PRIMARY KEY, updated_at timestamptz NOT NULL, v text)",
            f"INSERT INTO {name} SELECT i, now() - interval '1 hour' + i * interval '1 second', 'row ' || i "
            f"FROM generate_series(1, {ROWS}) i")


def write_yaml(tmp_path, source, sink, name="p"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"id": name, "source": {"type": "postgres", **source},
                                    "incremental": {"cursor_field": "updated_at"}, "sink": sink}))
    return path


def history(home, pid="p"):
    return list(reversed(SQLiteStateStore(home / "state.db").list_runs(pid)))


def rerun(home, path):
    """The re-run, in this process (Beam is imported already): it must complete the window."""
    spec = load_pipeline(str(path))
    return SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home).run()


def one_line_error(result):
    out = result.stderr.strip()
    assert result.returncode != 0, out
    assert "Traceback" not in out, out
    return out


def test_a_sleeping_statement_fails_at_statement_timeout(tmp_path, home, pg_dsn, osmosis_cli, faults):
    make_table(pg_dsn)
    query = "SELECT e.id, e.updated_at, e.v FROM events e CROSS JOIN LATERAL (SELECT pg_sleep(30)) s"
    path = write_yaml(tmp_path, {"dsn": pg_dsn, "query": query, "statement_timeout": "2s"},
                      {"type": "jsonl", "path": str(tmp_path / "out")})
    faults.injected()
    result = osmosis_cli("run", path, timeout=120)
    out = one_line_error(result)
    assert "statement timeout" in out and "statement_timeout (2s)" in out, out
    [run] = history(home)
    assert run.status == "failed" and "statement_timeout" in run.error
    assert SQLiteStateStore(home / "state.db").get_watermark("p").value is None


def test_a_source_table_under_access_exclusive_fails_at_lock_timeout_and_the_rerun_completes(
        tmp_path, home, pg_dsn, osmosis_cli, faults):
    make_table(pg_dsn)
    out = tmp_path / "out"
    path = write_yaml(tmp_path, {"dsn": pg_dsn, "table": "events", "lock_timeout": "1s"},
                      {"type": "jsonl", "path": str(out)})
    locker = psycopg2.connect(pg_dsn)
    try:
        locker.cursor().execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        faults.injected()
        result = osmosis_cli("run", path, timeout=120)
    finally:
        locker.close()
    text = one_line_error(result)
    assert "lock timeout" in text and "lock_timeout (1s)" in text and "pg_locks" in text, text
    assert history(home)[-1].status == "failed"
    assert rerun(home, path).status == "succeeded"
    ids = sorted(r["id"] for r in read_jsonl_dir(out))
    assert ids == list(range(1, ROWS + 1))
    faults.checked(len(ids))


def test_a_sink_table_under_access_exclusive_fails_at_lock_timeout_and_the_rerun_completes(
        tmp_path, home, pg_server, pg_dsn, osmosis_cli, faults):
    make_table(pg_dsn)
    execute(pg_dsn, "CREATE TABLE target (id int PRIMARY KEY, updated_at timestamptz, v text)")
    path = write_yaml(tmp_path, {"dsn": pg_dsn, "table": "events"},
                      {"type": "postgres", "dsn": pg_dsn, "table": "target", "key": ["id"], "lock_timeout": "1s"})
    locker = psycopg2.connect(pg_dsn)
    try:
        locker.cursor().execute("LOCK TABLE target IN ACCESS EXCLUSIVE MODE")
        faults.injected()
        result = osmosis_cli("run", path, timeout=120)
    finally:
        locker.close()
    text = one_line_error(result)
    assert "lock_timeout (1s)" in text, text
    assert history(home)[-1].status == "failed"
    assert SQLiteStateStore(home / "state.db").get_watermark("p").value is None
    assert rerun(home, path).status == "succeeded"
    rows = execute(pg_dsn, "SELECT id, v FROM target ORDER BY id")
    assert rows == execute(pg_dsn, "SELECT id, v FROM events ORDER BY id")
    faults.checked(len(rows))


def needs_local_backends(pg_server) -> None:
    """SIGSTOP needs the server's processes on this machine (not $OSMOSIS_TEST_PG_DSN's remote server)."""
    if pg_server.external:
        unavailable("a local PostgreSQL server whose backends can be signalled", "the server is external")


def _backend(dsn, predicate_sql, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = execute(dsn, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                             f"AND pid <> pg_backend_pid() AND {predicate_sql}")
        if found:
            return found[0][0]
        time.sleep(0.05)
    raise AssertionError(f"no backend matching {predicate_sql}")


def test_a_sigstopped_backend_fails_the_run_at_the_client_deadline(tmp_path, home, pg_server, pg_dsn, faults):
    needs_local_backends(pg_server)
    make_table(pg_dsn)
    out = tmp_path / "out"
    query = "SELECT e.id, e.updated_at, e.v FROM events e CROSS JOIN LATERAL (SELECT pg_sleep(0.2)) s"
    spec = parse_pipeline({"id": "p", "source": {"type": "postgres", "dsn": pg_dsn, "query": query,
                                                "statement_timeout": "3s"},
                           "incremental": {"cursor_field": "updated_at"}, "sink": {"type": "jsonl", "path": str(out)}})
    outcome: dict = {}

    def run():
        try:
            outcome["run"] = SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home).run()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    # The typed read FETCHes from a server-side cursor; the zero-decode read (this pipeline) streams a COPY.
    pid = _backend(pg_dsn, "state = 'active' AND (query LIKE 'FETCH%' OR query LIKE 'COPY (%')")
    os.kill(pid, signal.SIGSTOP)
    faults.injected()
    try:
        thread.join(120)  # the client deadline is statement_timeout + 10 s
        assert not thread.is_alive(), "the run hangs on a stopped backend"
    finally:
        os.kill(pid, signal.SIGCONT)
    error = outcome.get("error")
    assert isinstance(error, OsmosisError), outcome
    assert "no answer from the server for 13s" in str(error), error
    [run] = history(home)
    assert run.status == "failed" and "no answer from the server" in run.error
    assert SQLiteStateStore(home / "state.db").get_watermark("p").value is None


def test_every_connection_gets_the_deadlines(pg_server, pg_dsn, faults):
    """Source, sink and state store connections: timeouts set on the server, keepalives on the socket."""
    faults.injected()
    conn = connect(pg_dsn, Deadlines(statement_timeout=7, lock_timeout=3), application_name="probe")
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone()[0] == "7s"
            cur.execute("SHOW lock_timeout")
            assert cur.fetchone()[0] == "3s"
        params = conn.get_dsn_parameters()
        assert params["keepalives"] == "1" and params["keepalives_idle"] == "30" and params["tcp_user_timeout"]
        assert params["connect_timeout"] == "10"
    finally:
        conn.close()
    store = PostgresStateStore(pg_dsn + "?schema=deadlines&statement_timeout=45s&lock_timeout=5s")
    rows = store._run(lambda cur: (cur.execute("SHOW statement_timeout"), cur.fetchone())[1])  # noqa: SLF001
    assert rows[0] == "45s"
    assert store.deadlines.lock_timeout == 5 and DEFAULT_DEADLINES.statement_timeout == 600


def test_the_client_deadline_catches_a_frozen_state_store(pg_server, pg_dsn, faults):
    """Even a short state-store statement on a stopped backend returns, with the reason."""
    needs_local_backends(pg_server)
    conn = connect(pg_dsn, Deadlines(statement_timeout=1, client_margin=1), application_name="frozen")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            os.kill(pid, signal.SIGSTOP)
            faults.injected()
            try:
                with pytest.raises(StalledError, match=r"no answer from the server for 2s \(statement_timeout \+ 1s\)"):
                    cur.execute("SELECT 1")
            finally:
                os.kill(pid, signal.SIGCONT)
    finally:
        conn.close()

"""The PostgreSQL state store against a real server: migrations, atomic commits, history, and leases
shared by processes (never held twice; an expired or dead holder's lease is taken over)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from osmosis_beam.core.errors import StateError
from osmosis_beam.core.models import SyncRun
from osmosis_beam.state.factory import open_store
from osmosis_beam.state.postgres import SCHEMA_VERSION, PostgresStateStore
from tests.integration.pg_support import execute, fetch, pg_dsn, pg_module_database, utc  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"meta", "sources", "sync_jobs", "watermarks", "runs", "leases"}


@pytest.fixture
def store(pg_dsn):
    s = PostgresStateStore(pg_dsn)
    yield s
    s.close()


def new_run(run_id="r1", pipeline="orders", started=None, window=None) -> SyncRun:
    return SyncRun(run_id=run_id, pipeline_id=pipeline, status="running", started_at=started or utc(2024, 5, 1, 10),
                   window=window, runner="direct")


def succeed(run: SyncRun, **counts) -> SyncRun:
    run.status, run.finished_at = "succeeded", utc(2024, 5, 1, 10, 5)
    for key, value in counts.items():
        setattr(run, key, value)
    return run


def tables_in(dsn: str, schema: str) -> set[str]:
    return {r[0] for r in fetch(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))}


# -- schema and migrations ----------------------------------------------------------------------------------
def test_a_new_database_gets_the_current_schema_in_the_osmosis_schema(store, pg_dsn):
    assert store.schema_version() == SCHEMA_VERSION
    assert tables_in(pg_dsn, "osmosis") == TABLES
    assert tables_in(pg_dsn, "public") == set()


def test_the_schema_name_comes_from_the_url_and_stores_are_independent(pg_dsn):
    a = PostgresStateStore(pg_dsn + "?schema=team_a")
    b = PostgresStateStore(pg_dsn, schema="team b")
    a.put_source("news", "rss", {}, None)
    assert [s.id for s in a.list_sources()] == ["news"] and b.list_sources() == []
    assert tables_in(pg_dsn, "team_a") == TABLES == tables_in(pg_dsn, "team b")
    assert "schema=" in a.location and "@" in a.location
    a.close()
    b.close()


def test_open_store_dispatches_postgresql_urls(pg_dsn, monkeypatch):
    monkeypatch.setenv("OSMOSIS_STATE_URL", pg_dsn + "?schema=from_env")
    s = open_store()
    assert isinstance(s, PostgresStateStore) and s.schema == "from_env"
    password = psycopg2.extensions.parse_dsn(pg_dsn)["password"]
    assert password not in s.location and ":***@" in s.location
    s.close()


def test_reopening_keeps_data_and_concurrent_starts_migrate_once(pg_dsn):
    errors: list[BaseException] = []

    def start() -> None:
        try:
            PostgresStateStore(pg_dsn + "?schema=racing").close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = PostgresStateStore(pg_dsn + "?schema=racing")
    s.put_source("news", "rss", {"url": "http://h/f"}, None)
    s.close()
    again = PostgresStateStore(pg_dsn + "?schema=racing")
    assert again.get_source("news").config == {"url": "http://h/f"}
    assert fetch(pg_dsn, "SELECT value FROM racing.meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    again.close()


def test_an_old_schema_is_upgraded_keeping_its_data(pg_dsn, monkeypatch):
    from osmosis_beam.state import postgres as module

    monkeypatch.setattr(module, "SCHEMA_VERSION", 1)
    old = PostgresStateStore(pg_dsn)
    old.start_run(new_run(), "me")
    old.close()
    assert old.schema_version() == 1
    monkeypatch.undo()
    new = PostgresStateStore(pg_dsn)
    assert new.schema_version() == SCHEMA_VERSION
    assert new.get_run("r1").status == "running"
    new.set_pending_state("r1", {"etag": "x"})
    assert new.get_pending_state("r1") == {"etag": "x"}
    new.close()


def test_a_newer_schema_is_refused_with_a_clear_error(store, pg_dsn):
    execute(pg_dsn, "UPDATE osmosis.meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StateError, match="schema version 99, newer than this osmosis-beam understands"):
        PostgresStateStore(pg_dsn)


def test_wrong_password_is_a_state_error_without_the_password(pg_server, pg_dsn):
    dbname = psycopg2.extensions.parse_dsn(pg_dsn)["dbname"]
    with pytest.raises(StateError) as err:
        PostgresStateStore(pg_server.dsn_for(dbname, password="Wrong-Password-77"))
    assert "refused the password" in str(err.value)
    assert "Wrong-Password-77" not in str(err.value) and pg_server.password not in str(err.value)


def test_a_lost_connection_is_reopened(store, pg_dsn):
    store.put_source("a", "rss", {}, None)
    execute(pg_dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'osmosis-beam state' AND datname = current_database()")
    assert [s.id for s in store.list_sources()] == ["a"]


# -- leases across connections and processes (the rest of the store's contract: tests/contracts/) ------------
def test_racing_threads_with_their_own_connections_get_one_lease(pg_dsn):
    stores = [PostgresStateStore(pg_dsn) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    won: list[str] = []

    def race(i: int, s: PostgresStateStore) -> None:
        barrier.wait()
        if s.acquire_lease("orders", f"racer-{i}", ttl=60) is not None:
            won.append(f"racer-{i}")

    threads = [threading.Thread(target=race, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert len(won) == 1


HAMMER = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, sys.argv[5])
    from osmosis_beam.state.postgres import PostgresStateStore
    from osmosis_beam.state.store import new_holder_id

    dsn, marker, go, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    store = PostgresStateStore(dsn)
    holder = new_holder_id()
    while not os.path.exists(go):
        time.sleep(0.001)
    held = missed = overlaps = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if store.acquire_lease("shared", holder, ttl=60) is None:
            missed += 1
            continue
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:  # the other process is inside too
            overlaps += 1
        else:
            os.close(fd)
            held += 1
            time.sleep(0.001)
            os.unlink(marker)
        store.release_lease("shared", holder)
        time.sleep(0.0005)  # give the other process a chance
    print(held, missed, overlaps)
    """
)


def test_two_processes_never_hold_the_same_lease(pg_dsn, tmp_path):
    PostgresStateStore(pg_dsn).close()  # migrate first so both start hammering at once
    marker, go = tmp_path / "inside", tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", HAMMER, pg_dsn, str(marker), str(go), "1.5", str(ROOT)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    time.sleep(0.5)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(tuple(int(x) for x in out.split()))
    assert all(overlaps == 0 for _, _, overlaps in results)
    assert all(held > 0 for held, _, _ in results)  # both got the lease at times
    assert all(missed > 0 for _, missed, _ in results)  # and both were turned away at times


def test_commands_that_only_read_work_with_a_select_only_role(store, pg_server, pg_dsn, tmp_path):
    """history, jobs and state show take no migration lock and run no DDL on a current schema, so a monitoring
    role with only USAGE and SELECT can use them; a writing command with that role fails with a clear error."""
    run = new_run("r-ro")
    store.start_run(run, "me")
    store.commit_run(succeed(run, records_read=3, records_written=3), utc(2024, 5, 1, 9), None)
    execute(pg_dsn, "DROP OWNED BY osmosis_monitor" if fetch(pg_dsn, "SELECT 1 FROM pg_roles WHERE rolname = 'osmosis_monitor'") else "SELECT 1",
            "DROP ROLE IF EXISTS osmosis_monitor", "CREATE ROLE osmosis_monitor LOGIN PASSWORD 'monitor-pw-5'",
            "GRANT USAGE ON SCHEMA osmosis TO osmosis_monitor",
            "GRANT SELECT ON ALL TABLES IN SCHEMA osmosis TO osmosis_monitor")
    dbname = psycopg2.extensions.parse_dsn(pg_dsn)["dbname"]
    url = pg_server.dsn_for(dbname, user="osmosis_monitor", password="monitor-pw-5")
    base = [sys.executable, "-m", "osmosis_beam.cli", "--state", url]
    for command in (["history", "--json"], ["jobs"], ["state", "show", "orders"], ["sources", "list"]):
        done = subprocess.run([*base, *command], capture_output=True, text=True, timeout=60, cwd=str(ROOT))
        assert done.returncode == 0, (command, done.stderr)
        assert "monitor-pw-5" not in done.stdout + done.stderr
    history = subprocess.run([*base, "history", "--json"], capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert '"r-ro"' in history.stdout
    # A store opened for writing still migrates under its lock, which this role may not take part in.
    with pytest.raises(StateError, match="permission denied"):
        PostgresStateStore(url)
    execute(pg_dsn, "DROP OWNED BY osmosis_monitor", "DROP ROLE osmosis_monitor")


def test_a_read_only_open_of_an_empty_database_still_creates_the_schema(pg_dsn):
    s = open_store(url=pg_dsn, read_only=True)
    try:
        assert s.schema_version() == SCHEMA_VERSION and tables_in(pg_dsn, "osmosis") == TABLES
    finally:
        s.close()

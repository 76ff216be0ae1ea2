"""The PostgreSQL state store against a real server: migrations, atomic commits, history, and leases
shared by processes (never held twice; an expired or dead holder's lease is taken over)."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from osmosis_beam.core.errors import StateError
from osmosis_beam.core.models import SyncJob, SyncRun
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.state.factory import open_store
from osmosis_beam.state.postgres import SCHEMA_VERSION, PostgresStateStore
from osmosis_beam.state.store import new_holder_id
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


# -- sources, jobs, watermarks, history ------------------------------------------------------------------------
def test_sources_and_jobs_round_trip(store):
    store.put_source("b", "rss", {"url": "http://h/b", "n": [1, 2]}, "/p/b.yaml")
    store.put_source("a", "rss", {"url": "http://h/a"}, None)
    assert [s.id for s in store.list_sources()] == ["a", "b"]
    b = store.get_source("b")
    assert (b.type, b.config, b.pipeline_path) == ("rss", {"url": "http://h/b", "n": [1, 2]}, "/p/b.yaml")
    assert b.created_at.tzinfo is not None
    assert store.remove_source("a") is True and store.remove_source("a") is False
    job = SyncJob("orders", "orders", interval_minutes=15, last_run=utc(2024, 1, 1), next_run=utc(2024, 1, 1, 0, 15),
                  consecutive_failures=1, spec_path="/p/o.yaml")
    store.put_job(job)
    store.put_job(SyncJob("news", "news", cron="0 * * * *", timezone="Europe/Berlin"))
    assert store.get_job("orders") == job
    assert [j.pipeline_id for j in store.list_jobs()] == ["news", "orders"]
    assert store.get_job("nope") is None


def test_commit_sets_watermark_state_and_run_status_together(store):
    hi = utc(2024, 5, 1, 9, 59, 55, 123456)
    run = new_run(window=SyncWindow(None, hi))
    store.start_run(run, holder="me")
    assert store.get_run("r1").status == "running"
    assert store.running_runs("orders")[0][1] == "me"
    store.commit_run(succeed(run, records_read=3, records_written=2, dead_letter=1), hi, {"etag": "W/1"})
    wm = store.get_watermark("orders")
    assert wm.value == hi and wm.state == {"etag": "W/1"}
    saved = store.get_run("r1")
    assert (saved.status, saved.records_read, saved.records_written, saved.dead_letter) == ("succeeded", 3, 2, 1)
    assert saved.window == SyncWindow(None, hi) and store.running_runs() == []


def test_commit_without_a_new_watermark_or_state_keeps_the_old_ones(store):
    store.start_run(new_run("r1"), "me")
    store.commit_run(succeed(new_run("r1")), utc(2024, 1, 1), {"cursor": 1})
    store.start_run(new_run("r2"), "me")
    store.commit_run(succeed(new_run("r2")), None, {"cursor": 2})
    assert store.get_watermark("orders").value == utc(2024, 1, 1)
    store.start_run(new_run("r3"), "me")
    store.commit_run(succeed(new_run("r3")), utc(2024, 2, 1), None)
    assert store.get_watermark("orders").value == utc(2024, 2, 1)
    assert store.get_watermark("orders").state == {"cursor": 2}


def test_integer_watermarks(store):
    store.start_run(new_run(window=SyncWindow(None, 1000)), "me")
    store.commit_run(succeed(new_run(window=SyncWindow(None, 1000))), 1000, None)
    assert store.get_watermark("orders").value == 1000
    assert store.get_run("r1").window == SyncWindow(None, 1000)


def test_commit_for_a_run_that_was_never_started_moves_nothing(store):
    with pytest.raises(StateError, match="run ghost was never started; watermark not moved"):
        store.commit_run(succeed(new_run("ghost")), utc(2024, 6, 1), {"v": 1})
    assert store.get_watermark("orders").value is None
    assert store.list_runs() == []


def test_a_failed_run_leaves_the_watermark_and_reset_clears_it(store):
    store.start_run(new_run("r1"), "me")
    store.commit_run(succeed(new_run("r1")), utc(2024, 1, 1), {"x": 1})
    run = new_run("r2", window=SyncWindow(utc(2024, 1, 1), utc(2024, 2, 1)))
    store.start_run(run, "me")
    run.status, run.error, run.finished_at = "failed", "connection refused", utc(2024, 5, 1, 10, 1)
    store.fail_run(run)
    assert store.get_watermark("orders").value == utc(2024, 1, 1)
    assert (store.get_run("r2").status, store.get_run("r2").error) == ("failed", "connection refused")
    store.reset_watermark("orders")
    assert store.get_watermark("orders").value is None and store.get_watermark("orders").state == {}


def test_history_is_newest_first_with_ties_by_insert_order(store):
    starts = {"old": utc(2024, 5, 1, 9), "newest": utc(2024, 5, 1, 11), "mid": utc(2024, 5, 1, 10),
              "mid_plus_half": utc(2024, 5, 1, 10, 0, 0, 500000), "other": utc(2024, 5, 1, 12)}
    for run_id, started in starts.items():
        store.start_run(new_run(run_id, pipeline="news" if run_id == "other" else "orders", started=started), "me")
    for run_id in ("tie_1", "tie_2"):
        store.start_run(new_run(run_id, started=utc(2024, 5, 1, 8)), "me")
    assert [r.run_id for r in store.list_runs("orders")] == ["newest", "mid_plus_half", "mid", "old", "tie_2", "tie_1"]
    assert [r.run_id for r in store.list_runs()][0] == "other"
    assert [r.run_id for r in store.list_runs("orders", limit=2)] == ["newest", "mid_plus_half"]
    with pytest.raises(StateError):
        store.start_run(new_run("old"), "me")  # run ids are unique


# -- leases -------------------------------------------------------------------------------------------------------
def test_a_lease_is_exclusive_renewable_and_releasable(store):
    lease = store.acquire_lease("orders", "a", ttl=60)
    assert lease.holder == "a" and lease.expires_at - lease.acquired_at == dt.timedelta(seconds=60)
    assert store.acquire_lease("orders", "b", ttl=60) is None
    assert store.acquire_lease("orders", "a", ttl=60) is not None  # the holder may take it again
    assert store.renew_lease("orders", "a", ttl=120) is True
    assert store.renew_lease("orders", "b", ttl=120) is False
    assert store.get_lease("orders").holder == "a"
    store.release_lease("orders", "b")  # not the holder: no effect
    assert store.get_lease("orders").holder == "a"
    store.release_lease("orders", "a")
    assert store.get_lease("orders") is None
    assert store.acquire_lease("orders", "b", ttl=60).holder == "b"


def test_an_expired_lease_is_taken_over(store, pg_dsn):
    other = PostgresStateStore(pg_dsn)  # another launcher
    try:
        assert store.acquire_lease("orders", "host-a:1:x", ttl=0.4) is not None
        assert other.acquire_lease("orders", "host-b:1:y", ttl=60) is None
        time.sleep(0.5)
        taken = other.acquire_lease("orders", "host-b:1:y", ttl=60)
        assert taken is not None and taken.holder == "host-b:1:y"
        assert store.renew_lease("orders", "host-a:1:x", ttl=60) is False  # the old holder learns it lost it
        assert store.acquire_lease("orders", "host-a:1:x", ttl=60) is None
    finally:
        other.close()


def test_a_lease_held_by_a_dead_process_on_this_host_is_taken_at_once(store):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = new_holder_id().rsplit(":", 2)[0] + f":{proc.pid}:dead0000"
    assert store.acquire_lease("orders", dead, ttl=3600) is not None
    mine = new_holder_id()
    assert store.acquire_lease("orders", mine, ttl=60).holder == mine
    # A live holder on this host keeps its lease.
    assert store.acquire_lease("orders", new_holder_id(), ttl=60) is None


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

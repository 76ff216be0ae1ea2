"""The SQLite state store: schema and migrations, atomic commits, leases (also across real processes), history.

Also the types it persists: SyncWindow and SyncRun (whose summary is the CLI's JSON contract).
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from osmosis_beam.core.errors import StateError
from osmosis_beam.core.models import SyncRun
from osmosis_beam.core.timefmt import MIN_MICROS, to_micros
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.state import sqlite as sqlite_module
from osmosis_beam.state.factory import open_store
from osmosis_beam.state.sqlite import SCHEMA_VERSION, SQLiteStateStore
from osmosis_beam.state.store import holder_is_dead, new_holder_id, resolve_home

UTC = dt.timezone.utc
ROOT = Path(__file__).resolve().parents[2]
TABLES = {"meta", "sources", "sync_jobs", "watermarks", "runs", "leases"}


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "home" / "state.db"


@pytest.fixture
def store(db) -> SQLiteStateStore:
    return SQLiteStateStore(db)


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def stored_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        conn.close()


def new_run(run_id="r1", pipeline="orders", started=None, window=None) -> SyncRun:
    return SyncRun(run_id=run_id, pipeline_id=pipeline, status="running", started_at=started or utc(2024, 5, 1, 10),
                   window=window, runner="direct")


def succeed(run: SyncRun, read=10, written=9, dead=1) -> SyncRun:
    run.status, run.finished_at = "succeeded", run.started_at + dt.timedelta(seconds=5)
    run.records_read, run.records_written, run.dead_letter = read, written, dead
    return run


# -- schema and migrations ------------------------------------------------------------------------------------------------
def test_a_new_home_gets_the_current_schema(store, db):
    assert db.is_file()
    assert store.schema_version() == SCHEMA_VERSION == stored_version(db)
    assert TABLES <= tables(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_empty_database_file_is_migrated(db):
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    assert SQLiteStateStore(db).schema_version() == SCHEMA_VERSION
    assert TABLES <= tables(db)


def test_reopening_keeps_data_and_does_not_migrate_again(store, db):
    store.put_source("news", "rss", {"url": "http://h/f"}, None)
    again = SQLiteStateStore(db)
    assert again.schema_version() == SCHEMA_VERSION
    assert again.get_source("news").config == {"url": "http://h/f"}


def test_an_old_database_is_upgraded_step_by_step_keeping_its_data(db, monkeypatch):
    full = list(sqlite_module.MIGRATIONS)
    # A home written by the first release (schema version 1).
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", full[:1])
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", 1)
    old = SQLiteStateStore(db)
    old.start_run(new_run(), holder="h")
    old.commit_run(succeed(new_run()), utc(2024, 5, 1, 9), {"etag": "x"})
    assert stored_version(db) == 1
    # This release, plus one more migration to show each step runs once and in order.
    extra = "CREATE TABLE extra_v (n INTEGER); INSERT INTO extra_v SELECT count(*) FROM runs"
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", full + [extra])
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", len(full) + 1)
    new = SQLiteStateStore(db)
    assert new.schema_version() == len(full) + 1 == stored_version(db)
    assert new.get_run("r1").status == "succeeded"
    assert new.get_watermark("orders").value == utc(2024, 5, 1, 9)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT n FROM extra_v").fetchall() == [(1,)]
    SQLiteStateStore(db)  # opening again runs nothing twice
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM extra_v").fetchone()[0] == 1


def test_a_failing_migration_changes_nothing(store, db, monkeypatch):
    store.put_source("news", "rss", {}, None)
    broken = "CREATE TABLE half_done (x); INSERT INTO no_such_table VALUES (1)"
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", list(sqlite_module.MIGRATIONS) + [broken])
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StateError, match="no such table: no_such_table"):
        SQLiteStateStore(db)
    assert stored_version(db) == SCHEMA_VERSION
    assert "half_done" not in tables(db)
    monkeypatch.undo()
    assert SQLiteStateStore(db).get_source("news") is not None


def test_a_newer_schema_is_refused_with_a_clear_error(store, db):
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 5),))
    with pytest.raises(StateError) as info:
        SQLiteStateStore(db)
    assert str(info.value) == (
        f"state store {db} has schema version {SCHEMA_VERSION + 5}, newer than this osmosis-beam "
        f"understands ({SCHEMA_VERSION}); upgrade osmosis-beam"
    )
    assert stored_version(db) == SCHEMA_VERSION + 5  # left as it was


def test_a_file_that_is_not_a_database_is_a_state_error(db):
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="not an osmosis state database"):
        SQLiteStateStore(db)


def test_an_unusable_home_is_a_state_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StateError, match="cannot create it"):
        SQLiteStateStore(tmp_path / "afile" / "home" / "state.db")


def test_home_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OSMOSIS_STATE_URL", raising=False)
    monkeypatch.delenv("OSMOSIS_HOME", raising=False)
    assert resolve_home() == tmp_path.resolve() / ".osmosis"
    monkeypatch.setenv("OSMOSIS_HOME", str(tmp_path / "env-home"))
    assert resolve_home() == tmp_path / "env-home"
    assert resolve_home(tmp_path / "flag-home") == tmp_path / "flag-home"  # --home wins
    store = open_store(tmp_path / "flag-home")
    assert isinstance(store, SQLiteStateStore) and store.path == tmp_path / "flag-home" / "state.db"


# -- commits (what every store does is in osmosis_beam.testing.state, run by tests/contracts/) -------------------------
def test_commit_is_atomic_when_marking_the_run_fails(store, monkeypatch):
    store.start_run(new_run("r1"), "me")
    store.commit_run(succeed(new_run("r1")), utc(2024, 1, 1), {"v": 1})
    store.start_run(new_run("r2"), "me")

    def broken_finish(self, conn, run):
        raise RuntimeError("disk full while marking the run")

    monkeypatch.setattr(SQLiteStateStore, "_finish", broken_finish)
    with pytest.raises(RuntimeError, match="disk full"):
        store.commit_run(succeed(new_run("r2")), utc(2024, 6, 1), {"v": 2})
    monkeypatch.undo()
    # The watermark written earlier in the same transaction was rolled back with it.
    assert store.get_watermark("orders").value == utc(2024, 1, 1)
    assert store.get_watermark("orders").state == {"v": 1}
    assert store.get_run("r2").status == "running"


# -- leases (beyond the contract suite) -----------------------------------------------------------------------------------
HOST = socket.gethostname()


def test_a_zombie_holder_counts_as_dead(store):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc.kill()
        deadline = time.monotonic() + 10
        while not holder_is_dead(f"{HOST}:{proc.pid}:z") and time.monotonic() < deadline:
            time.sleep(0.01)  # not reaped yet: a zombie once the kill lands
        assert holder_is_dead(f"{HOST}:{proc.pid}:z")
        store.acquire_lease("orders", f"{HOST}:{proc.pid}:z", ttl=3600)
        assert store.acquire_lease("orders", new_holder_id(), ttl=60) is not None
    finally:
        proc.wait()


@pytest.mark.parametrize(
    "holder",
    [
        f"{HOST}:{os.getpid()}:another",  # alive on this host
        "some-other-host.invalid:999999:x",  # another host: its pid says nothing here
        "not-a-holder-id",
    ],
    ids=["alive-here", "another-host", "not-a-holder-id"],  # not the pid: every xdist worker collects the same ids
)
def test_a_live_or_unknowable_holder_keeps_its_lease(store, holder):
    assert not holder_is_dead(holder)
    store.acquire_lease("orders", holder, ttl=3600)
    assert store.acquire_lease("orders", new_holder_id(), ttl=60) is None


WORKER = textwrap.dedent(
    """\
    import os, sys, time
    from osmosis_beam.state.sqlite import SQLiteStateStore
    from osmosis_beam.state.store import new_holder_id

    db, marker, go, target = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    while not os.path.exists(go):
        time.sleep(0.001)
    store = SQLiteStateStore(db)            # both open a brand-new home at the same moment
    holder = new_holder_id()
    held = missed = overlaps = 0
    # At least 1 s, and on until this process held the lease `target` times and was turned away at least once
    # (on a loaded machine the other process may start a second or more later), for at most 30 s.
    start = time.monotonic()
    while time.monotonic() - start < 30 and (held < target or missed == 0 or time.monotonic() - start < 1.0):
        lease = store.acquire_lease("shared", holder, ttl=60)
        if lease is None:
            missed += 1
            continue
        assert lease.holder == holder
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:             # the other process is inside too
            overlaps += 1
        else:
            os.close(fd)
            held += 1
            time.sleep(0.0005)
            os.unlink(marker)
        store.release_lease("shared", holder)
        time.sleep(0.0002)
    print(held, missed, overlaps)
    """
)


def test_two_processes_hammering_one_lease_never_both_hold_it(tmp_path):
    db = tmp_path / "home" / "state.db"
    marker, go = tmp_path / "inside", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(db), str(marker), str(go), "30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        for _ in range(2)
    ]
    time.sleep(0.3)  # both started and waiting
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(tuple(int(x) for x in out.split()))
    assert all(overlaps == 0 for _, _, overlaps in results), results
    # The test means something only if both held it many times and each was turned away while the other held it.
    assert all(held >= 30 for held, _, _ in results), results
    assert all(missed > 0 for _, missed, _ in results), results
    assert SQLiteStateStore(db).get_lease("shared") is None


def _hold_write_lock(db: Path) -> sqlite3.Connection:
    """Another process in the middle of creating the home: a fresh database with its write lock held."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    return conn


def test_opening_a_home_another_process_is_creating_waits_for_it(db):
    # Switching to WAL does not wait on SQLite's busy timeout: it fails at once with "database is locked".
    # Two launchers starting on a brand-new home must not see that as a broken home.
    other = _hold_write_lock(db)
    timer = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    timer.start()
    try:
        began = time.monotonic()
        store = SQLiteStateStore(db)
        assert time.monotonic() - began >= 0.2  # it waited for the other writer
        assert store.schema_version() == SCHEMA_VERSION
    finally:
        timer.join()
        other.close()


def test_a_home_locked_past_the_timeout_is_a_clear_state_error(db):
    other = _hold_write_lock(db)
    try:
        with pytest.raises(StateError, match=r"database is locked \(another process holds it\)"):
            SQLiteStateStore(db, timeout=0.2)
    finally:
        other.close()


# -- the types the store persists ------------------------------------------------------------------------------------------
def test_sync_window_bounds():
    window = SyncWindow(utc(2024, 1, 1), utc(2024, 1, 2))
    assert window.lo_micros == to_micros(utc(2024, 1, 1)) and window.hi_micros == to_micros(utc(2024, 1, 2))
    assert not window.is_empty and not window.is_integer
    assert SyncWindow(utc(2024, 1, 2), utc(2024, 1, 2)).is_empty
    assert SyncWindow(None, utc(2024, 1, 1)).lo_micros == MIN_MICROS
    assert SyncWindow(5, 10).is_integer and SyncWindow(5, 10).lo_micros == 5
    assert str(window) == "[2024-01-01T00:00:00+00:00, 2024-01-02T00:00:00+00:00)"
    assert str(SyncWindow(None, 7)) == "[-inf, 7)"


def test_sync_window_from_micros_round_trips():
    window = SyncWindow(utc(2024, 1, 1, 0, 0, 0, 1), utc(2024, 1, 2))
    assert SyncWindow.from_micros(window.lo_micros, window.hi_micros) == window
    assert SyncWindow.from_micros(MIN_MICROS, window.hi_micros).lo is None
    assert SyncWindow.from_micros(3, 9, integer=True) == SyncWindow(3, 9)


@pytest.mark.parametrize(
    "lo, hi, message",
    [
        (dt.datetime(2024, 1, 1), utc(2024, 1, 2), "SyncWindow.lo must be timezone-aware"),
        (utc(2024, 1, 1), dt.datetime(2024, 1, 2), "SyncWindow.hi must be timezone-aware"),
        (1, utc(2024, 1, 2), "must both be datetimes or both be ints"),
        (None, True, "must be an aware datetime or an int"),
        (None, "2024-01-01", "must be an aware datetime or an int"),
        (None, None, "SyncWindow.hi is required"),
    ],
)
def test_sync_window_rejects_bad_bounds(lo, hi, message):
    with pytest.raises(ValueError, match=message):
        SyncWindow(lo, hi)


def test_run_summary_has_exactly_the_contract_keys():
    run = succeed(new_run(window=SyncWindow(utc(2024, 1, 1), utc(2024, 1, 2, 0, 0, 0, 5))))
    summary = run.summary()
    assert list(summary) == ["pipeline", "run_id", "status", "records_read", "records_written", "dead_letter", "window"]
    assert summary == {
        "pipeline": "orders", "run_id": "r1", "status": "succeeded", "records_read": 10, "records_written": 9,
        "dead_letter": 1, "window": {"lo": "2024-01-01T00:00:00+00:00", "hi": "2024-01-02T00:00:00.000005+00:00"},
    }
    assert new_run().summary()["window"] == {"lo": None, "hi": None}
    assert SyncRun("r", "p", "succeeded", utc(2024, 1, 1), window=SyncWindow(None, 42)).summary()["window"] == {"lo": None, "hi": 42}


def test_run_history_dict_adds_times_and_error():
    run = succeed(new_run())
    data = run.to_dict()
    assert {k: data[k] for k in run.summary()} == run.summary()
    assert data["started_at"] == "2024-05-01T10:00:00+00:00" and data["finished_at"] == "2024-05-01T10:00:05+00:00"
    assert data["error"] is None


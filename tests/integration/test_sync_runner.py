"""SyncRunner end to end on the in-process Beam runner: windows, commit, failure, repair, leases."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import LeaseHeldError, RunError, StateError
from osmosis_beam.core.timefmt import parse_timestamp
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner

SYNTH = "tests.integration.synthetic:SyntheticConnector"
ROOT = Path(__file__).resolve().parents[2]


def make_spec(tmp_path, source=None, **extra):
    data = {
        "id": "synth",
        "source": {"type": SYNTH, "count": 50, "clock": "2024-01-01T01:00:00Z", **(source or {})},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "sink": {"type": "jsonl", "path": "out"},
        **extra,
    }
    return parse_pipeline(data, path=str(tmp_path / "synth.yaml"))


def runner(spec, home, **kw):
    return SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home, **kw)


def test_run_commits_window_and_counts(tmp_path, home):
    spec = make_spec(tmp_path, read={"splits": 4, "batch_size": 7})
    run = runner(spec, home).run()
    assert run.status == "succeeded"
    assert (run.records_read, run.records_written, run.dead_letter) == (50, 50, 0)
    assert run.window.lo == parse_timestamp("2024-01-01T00:00:00Z")
    assert run.window.hi == parse_timestamp("2024-01-01T01:00:00Z")
    rows = list(read_jsonl_dir(tmp_path / "out"))
    assert sorted(r["id"] for r in rows) == list(range(50))
    assert rows[0]["ts"].endswith("+00:00")
    store = SQLiteStateStore(home / "state.db")
    assert store.get_watermark("synth").value == parse_timestamp("2024-01-01T01:00:00Z")
    [stored] = store.list_runs("synth")
    assert stored.status == "succeeded" and stored.records_written == 50


def test_second_run_reads_only_new_window(tmp_path, home):
    # 100 records one second apart from 00:00:00; the clock moves from 00:00:30 to 00:01:00.
    spec1 = make_spec(tmp_path, source={"count": 100, "clock": "2024-01-01T00:00:30Z"})
    assert runner(spec1, home).run().records_read == 30
    spec2 = make_spec(tmp_path, source={"count": 100, "clock": "2024-01-01T00:01:00Z"})
    run2 = runner(spec2, home).run()
    assert run2.records_read == 30
    assert run2.window.lo == parse_timestamp("2024-01-01T00:00:30Z")
    ids = sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out"))
    assert ids == list(range(60))  # nothing lost, nothing doubled


def test_ties_at_window_boundary_fall_into_next_window(tmp_path, home):
    # 5 records tie on every second; hi = 00:00:10 exactly, so the 5 records at 00:00:10 wait.
    spec1 = make_spec(tmp_path, source={"count": 100, "ties": 5, "clock": "2024-01-01T00:00:10Z"})
    assert runner(spec1, home).run().records_read == 50
    spec2 = make_spec(tmp_path, source={"count": 100, "ties": 5, "clock": "2024-01-01T00:00:11Z"})
    assert runner(spec2, home).run().records_read == 5
    ids = sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out"))
    assert ids == list(range(55))


def test_split_window_delivers_each_record_once(tmp_path, home):
    spec = make_spec(
        tmp_path,
        source={"count": 20000, "ties": 3, "step_us": 1000, "clock": "2024-01-02T00:00:00Z"},
        read={"splits": 16, "batch_size": 500},
    )
    run = runner(spec, home).run()
    assert run.records_read == 20000 == run.records_written
    ids = [r["id"] for r in read_jsonl_dir(tmp_path / "out")]
    assert len(ids) == 20000 and len(set(ids)) == 20000


def test_open_lower_bound_reads_everything_before_hi(tmp_path, home):
    data = {
        "id": "open", "source": {"type": SYNTH, "count": 10, "clock": "2024-01-01T00:00:05Z"},
        "sink": {"type": "jsonl", "path": "out"},
    }
    run = runner(parse_pipeline(data, path=str(tmp_path / "p.yaml")), home).run()
    assert run.window.lo is None and run.records_read == 5


def test_safety_lag_and_max_window(tmp_path, home):
    spec = make_spec(
        tmp_path,
        source={"count": 100, "clock": "2024-01-01T00:01:00Z"},
        incremental={"start": "2024-01-01T00:00:00Z", "safety_lag": "10s", "max_window": "20s"},
    )
    run = runner(spec, home).run()
    assert run.window.hi == parse_timestamp("2024-01-01T00:00:20Z") and run.records_read == 20
    run2 = runner(spec, home).run()
    assert run2.window.lo == parse_timestamp("2024-01-01T00:00:20Z")
    assert run2.window.hi == parse_timestamp("2024-01-01T00:00:40Z") and run2.records_read == 20
    run3 = runner(spec, home).run()  # capped by clock - lag = 00:00:50
    assert run3.window.hi == parse_timestamp("2024-01-01T00:00:50Z") and run3.records_read == 10


def test_empty_window_advances_watermark_without_beam(tmp_path, home):
    spec = make_spec(tmp_path, source={"count": 5, "clock": "2024-01-01T02:00:00Z"})
    runner(spec, home).run()
    spec2 = make_spec(tmp_path, source={"count": 5, "clock": "2024-01-01T03:00:00Z"})
    run = runner(spec2, home).run()
    assert run.records_read == 0 and run.status == "succeeded"
    store = SQLiteStateStore(home / "state.db")
    assert store.get_watermark("synth").value == parse_timestamp("2024-01-01T03:00:00Z")


def test_failure_leaves_watermark_and_no_output_then_rerun_completes(tmp_path, home):
    spec = make_spec(tmp_path, source={"fail_after": 20, "password": "s3cr3t-pw"})
    with pytest.raises(RunError) as info:
        runner(spec, home).run()
    assert "s3cr3t-pw" not in str(info.value)
    assert "broke after 20 records" in str(info.value)
    store = SQLiteStateStore(home / "state.db")
    assert store.get_watermark("synth").value is None
    [failed] = store.list_runs("synth")
    assert failed.status == "failed" and "s3cr3t-pw" not in failed.error and "***" in failed.error
    assert list(read_jsonl_dir(tmp_path / "out")) == []
    assert not any((tmp_path / "out").glob("_staging/*")), "staged output of a failed run must be removed"
    run = runner(make_spec(tmp_path), home).run()
    assert run.records_written == 50
    assert sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out")) == list(range(50))


def test_full_refresh_rereads_and_replaces_output(tmp_path, home):
    spec = make_spec(tmp_path)
    runner(spec, home).run()
    run = runner(spec, home, full_refresh=True).run()
    assert run.records_read == 50 and run.full_refresh
    assert sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out")) == list(range(50))


def test_lease_held_by_live_process_skips_the_run(tmp_path, home):
    store = SQLiteStateStore(home / "state.db")
    other = f"otherhost:{os.getpid()}:abcd"
    assert store.acquire_lease("synth", other, ttl=60)
    with pytest.raises(LeaseHeldError, match="another run holds its lease"):
        runner(make_spec(tmp_path), home).run()
    assert store.list_runs("synth") == []
    store.release_lease("synth", other)
    assert runner(make_spec(tmp_path), home).run().status == "succeeded"


def test_crash_between_publish_and_commit_is_repaired(tmp_path, home, monkeypatch):
    # A process dying right after publishing cannot be timed for real; inject the fault at the commit.
    spec = make_spec(tmp_path)
    calls = {"n": 0}
    original = SQLiteStateStore.commit_run

    def dying_commit(self, run, watermark, state):
        calls["n"] += 1
        raise SystemExit("killed")

    monkeypatch.setattr(SQLiteStateStore, "commit_run", dying_commit)
    with pytest.raises(SystemExit):
        runner(spec, home).run()
    monkeypatch.setattr(SQLiteStateStore, "commit_run", original)
    store = SQLiteStateStore(home / "state.db")
    [left] = store.list_runs("synth")
    assert left.status == "running"
    assert len(list(read_jsonl_dir(tmp_path / "out"))) == 50  # published
    run = runner(spec, home).run()  # repairs: commits the published run, then reads an empty window
    runs = store.list_runs("synth")
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert "committed at the next start" in runs[1].note
    assert run.records_read == 0
    assert sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out")) == list(range(50))


def test_commit_failure_after_publish_is_not_marked_failed(tmp_path, home, monkeypatch):
    spec = make_spec(tmp_path)

    def broken_commit(self, run, watermark, state):
        raise StateError("database is locked")

    monkeypatch.setattr(SQLiteStateStore, "commit_run", broken_commit)
    monkeypatch.setattr("osmosis_beam.sync.attempt.time.sleep", lambda s: None)
    with pytest.raises(RunError, match="the next run commits it"):
        runner(spec, home).run()
    monkeypatch.undo()
    runner(spec, home).run()
    assert sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out")) == list(range(50))


def test_steps_and_dead_letters(tmp_path, home):
    spec = make_spec(
        tmp_path,
        steps=[{"map": {"ratio": "100 // (id % 10)"}}, {"filter": "id < 40"}],
    )
    run = runner(spec, home).run()
    assert run.records_read == 50
    assert run.dead_letter == 5  # ids 0, 10, 20, 30, 40 divide by zero
    assert run.records_written == 36  # ids 0-39 pass the filter, minus the 4 dead letters among them
    dead = list(read_jsonl_dir(home / "dead_letter" / "synth"))
    assert sorted(d["record"]["id"] for d in dead) == [0, 10, 20, 30, 40]
    assert all(d["step"] == "1: map" and "ZeroDivisionError" in d["error"] for d in dead)


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_killed_run_leaves_no_watermark_and_no_visible_output(tmp_path, home):
    marker = tmp_path / "reading"
    pipeline = {
        "id": "slow",
        "source": {"type": SYNTH, "count": 400, "clock": "2024-01-01T01:00:00Z", "sleep_per_record": 0.02,
                   "marker": str(marker)},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "read": {"batch_size": 10, "splits": 1},
        "sink": {"type": "jsonl", "path": str(tmp_path / "out")},
    }
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    cmd = [sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), "run", str(path)]
    proc = subprocess.Popen(cmd, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _wait_for(lambda: marker.exists() and any((tmp_path / "out").glob("_staging/*/*"))), "run never started writing"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    store = SQLiteStateStore(home / "state.db")
    assert store.get_watermark("slow").value is None
    assert list(read_jsonl_dir(tmp_path / "out")) == []
    assert [r.status for r in store.list_runs("slow")] == ["running"]
    # The re-run marks the abandoned run failed and completes the window exactly once.
    pipeline["source"]["sleep_per_record"] = 0.0
    path.write_text(yaml.safe_dump(pipeline))
    done = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded" and summary["records_written"] == 400
    statuses = [(r.status, r.error or "") for r in store.list_runs("slow")]
    assert statuses[0][0] == "succeeded"
    assert statuses[1][0] == "failed" and "abandoned" in statuses[1][1]
    assert sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out")) == list(range(400))
    assert not any((tmp_path / "out").glob("_staging/*"))

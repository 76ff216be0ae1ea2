"""The launcher's second SIGTERM aborts at once, and the run it leaves unfinished is repaired and completed
exactly once by the next start (issue 15, item 13); a stuck pipeline does not hold the others (item 11)."""
from __future__ import annotations

import signal
import time

import pytest
import yaml

from osmosis_beam.config import load_pipeline
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.scheduler.launcher import SyncScheduler
from osmosis_beam.state.sqlite import SQLiteStateStore
from tests.faults.pg_support import execute
from tests.integration.test_launcher import SYNTH, finish, start, wait_for

COUNT = 400


def slow_pipeline(tmp_path, marker, sleep):
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump({
        "id": "slow",
        # One batch of 400 records at 0.1 s each: 40 s inside one Beam bundle, which no cancel check reaches.
        "source": {"type": SYNTH, "count": COUNT, "clock": "2024-01-01T01:00:00Z", "sleep_per_record": sleep,
                   "marker": str(marker)},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "read": {"batch_size": COUNT, "splits": 1},
        "sink": {"type": "jsonl", "path": str(tmp_path / "out")},
        "schedule": {"every": "1h"},
    }))
    return path


@pytest.mark.parametrize("signals", [2, 1], ids=["second-sigterm", "grace-2s-passed"])
def test_an_abort_is_at_once_and_the_repaired_run_completes_the_data_once(tmp_path, home, faults, signals):
    """A second SIGTERM aborts at once; after one, --grace 2s plus a few seconds for the cancel, not 17 s."""
    marker = tmp_path / "reading"
    path = slow_pipeline(tmp_path, marker, sleep=0.1)
    proc = start(home, "--grace", "2s", path)
    try:
        wait_for(lambda: marker.exists(), timeout=120, what="the run to start reading")
    finally:
        proc.send_signal(signal.SIGTERM)
        if signals == 2:
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
    faults.injected(signals)
    # Generous, yet well under the 40 s the run still needs: only an abort returns within it.
    rc, err = finish(proc, timeout=30)
    assert rc == 0, err
    assert "Traceback" not in err
    assert "aborted: 1 runs left unfinished for the next start to repair" in err
    store = SQLiteStateStore(home / "state.db")
    [left] = store.list_runs("slow")
    assert left.status == "running"  # unfinished, nothing committed: repairable
    assert store.get_watermark("slow").value is None
    assert not (tmp_path / "out").exists() or not list(read_jsonl_dir(tmp_path / "out"))

    fast = slow_pipeline(tmp_path, marker, sleep=0.0)  # the same pipeline; the cause of slowness is gone
    # The next start, in this process: it repairs the abandoned run (its process is gone), then runs.
    repaired = SyncScheduler([load_pipeline(str(fast))], store, home=home).run(once=True)
    assert repaired.succeeded == 1 and repaired.failed == 0
    runs = sorted(store.list_runs("slow"), key=lambda r: r.started_at)
    assert [r.status for r in runs] == ["failed", "succeeded"], runs
    ids = sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out"))
    assert ids == list(range(COUNT))  # complete, and exactly once
    faults.checked(len(ids))


def test_one_pipeline_stuck_on_postgres_does_not_hold_the_others(tmp_path, home, pg_dsn, faults):
    execute(pg_dsn, "CREATE TABLE events (id int PRIMARY KEY, updated_at timestamptz NOT NULL)",
            "INSERT INTO events SELECT i, now() - interval '1 hour' FROM generate_series(1, 5) i")
    stuck = tmp_path / "stuck.yaml"
    stuck.write_text(yaml.safe_dump({
        "id": "stuck",
        "source": {"type": "postgres", "dsn": pg_dsn, "statement_timeout": "8s",
                   "query": "SELECT e.id, e.updated_at FROM events e CROSS JOIN LATERAL (SELECT pg_sleep(60)) s"},
        "incremental": {"cursor_field": "updated_at"},
        "sink": {"type": "jsonl", "path": str(tmp_path / "out_stuck")},
        "schedule": {"every": "1h"},
    }))
    quick = tmp_path / "quick.yaml"
    quick.write_text(yaml.safe_dump({
        "id": "quick", "source": {"type": SYNTH, "count": 5},
        "sink": {"type": "jsonl", "path": str(tmp_path / "out_quick")}, "schedule": {"every": "1s"},
    }))
    faults.injected()
    proc = start(home, "--concurrency", "2", "--max-runs", "4", "--backoff", "1h", stuck, quick)
    rc, err = finish(proc, timeout=300)
    assert "Traceback" not in err
    store = SQLiteStateStore(home / "state.db")
    [s] = store.list_runs("stuck")
    assert s.status == "failed" and "statement_timeout (8s)" in s.error, s.error
    quick_runs = store.list_runs("quick")
    assert len(quick_runs) >= 2 and all(r.status == "succeeded" for r in quick_runs)
    # The quick pipeline kept its schedule while the stuck one waited for its deadline.
    assert sum(r.finished_at < s.finished_at for r in quick_runs) >= 2, (quick_runs, s)
    assert rc == 1  # a run failed
    faults.checked(5)

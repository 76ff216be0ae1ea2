"""Without ``--debug``, a failing worker gives one clear error line, not Beam's tracebacks (issue 15, item 14).

Real faults: PostgreSQL stopped (a private server, shut down immediately) during a sink write, a full disk
(a 512 KiB tmpfs) under the jsonl sink, and Ctrl-C (SIGINT) in the middle of ``osmosis run``, which exits 130
with one line and leaves nothing committed, so the re-run completes the data exactly once.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import uuid

import pytest
import yaml

from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.config import load_pipeline
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner
from tests.integration.test_launcher import ROOT, SYNTH, wait_for
from tests.services import unavailable


def pipeline(tmp_path, sink, name="p", **source):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "id": name, "source": {"type": SYNTH, "clock": "2024-01-01T12:00:00Z", **source},
        "incremental": {"start": "2024-01-01T00:00:00Z"}, "sink": sink,
    }))
    return path


def osmosis(home, *args):
    return [sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), *map(str, args)]


def assert_quiet(stderr: str) -> None:
    # Live progress lines (a log line every 5 s when stderr is piped) are osmosis's own, not noise.
    lines = [line for line in stderr.strip().splitlines() if line.strip() and " osmosis_beam.progress: " not in line]
    assert "Traceback" not in stderr, stderr
    assert "apache_beam" not in stderr, stderr
    assert len(lines) <= 2, stderr  # the run's error (and the launcher-side log line of the same failure)
    assert lines[-1].startswith(("error: ", "interrupted")), stderr


@pytest.fixture
def small_disk(tmp_path):
    """A real 512 KiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        unavailable("a small tmpfs", done.stderr.strip() or "mount failed (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_under_the_jsonl_sink_is_one_line(tmp_path, home, small_disk, faults):
    path = pipeline(tmp_path, {"type": "jsonl", "path": str(small_disk / "out")}, count=30000, step_us=1000)
    faults.injected()
    done = subprocess.run(osmosis(home, "run", path), cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert_quiet(done.stderr)
    assert "No space left on device" in done.stderr
    [run] = SQLiteStateStore(home / "state.db").list_runs("p")
    assert run.status == "failed" and "No space left" in run.error


def test_postgres_stopped_during_a_sink_write_is_one_line(tmp_path, home, faults):
    from tests.services.postgres_server import PostgresServer, available

    ok, reason = available()
    if not ok:
        unavailable("PostgreSQL", reason)
    server = PostgresServer()
    server.start()
    try:
        dsn = server.create_database("doomed")
        marker = tmp_path / "reading"
        path = pipeline(tmp_path, {"type": "postgres", "dsn": dsn, "table": "target", "key": ["id"]},
                        count=400, sleep_per_record=0.02, marker=str(marker))
        proc = subprocess.Popen(osmosis(home, "run", path), cwd=str(ROOT), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        wait_for(lambda: marker.exists(), timeout=120, what="the run to start reading")
        server.stop()  # immediate shutdown while the sink writes
        faults.injected()
        _, err = proc.communicate(timeout=180)
    finally:
        if server.running:
            server.stop()
    assert proc.returncode == 1, err
    assert_quiet(err)
    assert SQLiteStateStore(home / "state.db").list_runs("p")[0].status == "failed"


def test_ctrl_c_exits_130_with_one_line_and_the_rerun_completes_once(tmp_path, home, faults):
    marker = tmp_path / "reading"
    out = tmp_path / "out" / uuid.uuid4().hex[:6]
    slow = pipeline(tmp_path, {"type": "jsonl", "path": str(out)}, count=200, sleep_per_record=0.05,
                    marker=str(marker))
    proc = subprocess.Popen(osmosis(home, "run", slow), cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: marker.exists(), timeout=120, what="the run to start reading")
    proc.send_signal(signal.SIGINT)
    faults.injected()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert_quiet(err)
    assert "KeyboardInterrupt" not in err and "RuntimeError" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted: nothing was committed")
    store = SQLiteStateStore(home / "state.db")
    [run] = store.list_runs("p")
    assert run.status == "failed" and store.get_watermark("p").value is None
    assert not out.exists() or not list(read_jsonl_dir(out))

    fast = pipeline(tmp_path, {"type": "jsonl", "path": str(out)}, count=200)
    assert SyncRunner(load_pipeline(str(fast)), store, home=home).run().status == "succeeded"
    ids = sorted(r["id"] for r in read_jsonl_dir(out))
    assert ids == list(range(200))
    faults.checked(len(ids))


def test_ctrl_c_stops_the_launcher_with_130_and_one_line(tmp_path, home, faults):
    marker = tmp_path / "reading"
    out = tmp_path / "out_launch"
    path = tmp_path / "slow_launch.yaml"
    path.write_text(yaml.safe_dump({
        "id": "slow_launch",
        "source": {"type": SYNTH, "count": 200, "clock": "2024-01-01T12:00:00Z", "sleep_per_record": 0.05,
                   "marker": str(marker)},
        "incremental": {"start": "2024-01-01T00:00:00Z"}, "read": {"batch_size": 5, "splits": 1},
        "sink": {"type": "jsonl", "path": str(out)}, "schedule": {"every": "1h"},
    }))
    proc = subprocess.Popen(osmosis(home, "launch", "--grace", "1s", path), cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: marker.exists(), timeout=120, what="the run to start reading")
    proc.send_signal(signal.SIGINT)
    faults.injected()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1] == "interrupted: 1 runs cancelled without committing"
    [run] = SQLiteStateStore(home / "state.db").list_runs("slow_launch")
    assert run.status == "failed" and "cancelled" in run.error

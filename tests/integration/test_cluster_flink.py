"""The same pipelines on a real Flink cluster (JobManager + two one-slot TaskManagers on loopback) and on direct.

The session's ``flink_cluster`` (tests/conftest.py, tests/services/flink_cluster.py) is shared by every test
here; it is started once per session and stopped at the end. The pipelines are in
tests/integration/cluster_support.py (the Spark tests run the same ones). Every run goes through the CLI
the way a user runs it::

    osmosis run P.yaml --runner flink -- --flink_master=localhost:PORT --job_endpoint=localhost:JOBPORT \
        --parallelism=2 --environment_type=LOOPBACK --job_timeout=150s

and the very same YAML runs on ``direct``; the outputs must be equal. Workers are LOOPBACK (this machine has
no Docker): the TaskManagers run Flink's tasks and hand each bundle to the SDK worker in the launcher.
Jobs are few and small, since each Flink submission costs about 20-30 s here.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.state.sqlite import SQLiteStateStore
from tests.integration.cluster_support import (
    ROOT,
    SYNTH,
    osmosis,
    runs,
    same_postgres_to_jsonl_with_dead_letters,
    same_postgres_upsert,
    same_rss_to_jsonl,
    write_yaml,
)

LIMIT = "150s"  # job_timeout of every Flink job here

# One xdist worker runs every test on the Flink cluster, so the session starts it once (pytest.ini).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.xdist_group("flink_cluster")]


def flink_args(cluster, parallelism: int = 2) -> list[str]:
    return ["--runner", "flink", "--", f"--flink_master={cluster.master}", f"--job_endpoint={cluster.job_endpoint}",
            f"--parallelism={parallelism}", "--environment_type=LOOPBACK", f"--job_timeout={LIMIT}"]


def assert_parallel_on_both_taskmanagers(cluster, job_id: str) -> dict:
    """From Flink's REST API: the job's parallel vertices ran a subtask on each TaskManager, at the same time."""
    # The Beam job server reports DONE when Flink hands back the job's result; the JobManager's REST view can
    # still say RUNNING for a moment after that, so wait (bounded) for it to say FINISHED.
    cluster.wait_state(job_id, ("FINISHED", "FAILED", "CANCELED"), timeout=30)
    job = cluster.job(job_id)
    assert job["state"] == "FINISHED", job["state"]
    tms = set(cluster.taskmanager_ids())
    assert len(tms) == 2
    parallel = [v for v in job["vertices"] if v["parallelism"] == 2]
    assert parallel, [(v["name"], v["parallelism"]) for v in job["vertices"]]
    evidence = {}
    for vertex in parallel:
        detail = cluster.rest(f"/jobs/{job_id}/vertices/{vertex['id']}")
        subtasks = detail["subtasks"]
        assert {s["taskmanager-id"] for s in subtasks} == tms, (vertex["name"], subtasks)
        evidence[vertex["name"]] = [(s["taskmanager-id"], s["start-time"], s["end-time"],
                                     s["metrics"]["read-records"], s["metrics"]["write-records"]) for s in subtasks]
    # The vertex that reads the window's splits: both subtasks got records and overlapped in time.
    reads = [name for name in evidence if "Read" in name and all(rec > 0 for *_, rec, _ in evidence[name])]
    assert reads, evidence
    (_, s1, e1, *_), (_, s2, e2, *_) = evidence[reads[0]]
    assert max(s1, s2) < min(e1, e2), evidence[reads[0]]
    return evidence


# -- the same output on direct and flink ------------------------------------------------------------------------
def test_postgres_upsert_gives_the_same_table_on_direct_and_flink(tmp_path, pg_dsn, flink_cluster):
    before = set(flink_cluster.jobs())
    same_postgres_upsert(tmp_path, pg_dsn, flink_args(flink_cluster))
    assert_parallel_on_both_taskmanagers(flink_cluster, flink_cluster.new_job(before))


def test_postgres_to_jsonl_with_dead_letters_matches_direct(tmp_path, pg_dsn, flink_cluster):
    same_postgres_to_jsonl_with_dead_letters(tmp_path, pg_dsn, flink_args(flink_cluster))


def test_rss_to_jsonl_matches_direct(tmp_path, feed_server, flink_cluster):
    same_rss_to_jsonl(tmp_path, feed_server, flink_args(flink_cluster))


# -- failures: a TaskManager dies; the launcher is stopped ------------------------------------------------------
def slow_pipeline(tmp_path: Path, pid: str, marker: Path, sleep: float, **extra) -> Path:
    # 400 records spread over the hour (one every 9 s), so each of the 4 splits holds 100 of them; at 40 ms a
    # record that is about 6 s of reading per TaskManager.
    return write_yaml(tmp_path / f"{pid}.yaml", {
        "id": pid,
        "source": {"type": SYNTH, "count": 400, "step_us": 9_000_000, "clock": "2024-01-01T01:00:00Z",
                   "sleep_per_record": sleep, "marker": str(marker)},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "read": {"splits": 4, "batch_size": 10},
        "sink": {"type": "jsonl", "path": str(tmp_path / f"out_{pid}")},
        **extra,
    })


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_killing_a_taskmanager_fails_the_run_and_the_rerun_delivers_every_row_once(tmp_path, home, flink_cluster):
    marker = tmp_path / "reading"
    path = slow_pipeline(tmp_path, "tm_kill", marker, 0.03)
    before = set(flink_cluster.jobs())
    cmd = [sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), "run", str(path), *flink_args(flink_cluster)]
    proc = subprocess.Popen(cmd, cwd=str(ROOT), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_file(marker, proc)
        job_id = flink_cluster.new_job(before)
        victim = flink_cluster.tms[-1]
        victim.kill()
        # Its replacement starts at once (the job has no restarts, so it cannot take the dead one's tasks).
        flink_cluster.tms.remove(victim)
        flink_cluster.add_taskmanager()
        _, stderr = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert flink_cluster.wait_state(job_id, ("FAILED",), timeout=60) == "FAILED"
    assert "failed" in stderr.lower() and job_id[:8] in stderr or "FAILED" in stderr, stderr[-3000:]
    [failed] = runs(home, "tm_kill")
    assert failed.status == "failed" and failed.error
    assert SQLiteStateStore(home / "state.db").get_watermark("tm_kill").value is None
    assert list(read_jsonl_dir(tmp_path / "out_tm_kill")) == []  # nothing published

    flink_cluster.wait_for_taskmanagers(2)
    again = osmosis(home, "run", path, *flink_args(flink_cluster))
    assert again["rc"] == 0, again["stderr"][-3000:]
    assert (again["status"], again["records_read"], again["records_written"]) == ("succeeded", 400, 400)
    ids = [r["id"] for r in read_jsonl_dir(tmp_path / "out_tm_kill")]
    assert sorted(ids) == list(range(400))  # every row, exactly once
    assert [r.status for r in runs(home, "tm_kill")] == ["failed", "succeeded"]


def test_sigterm_to_the_launcher_cancels_the_flink_job(tmp_path, home, flink_cluster):
    marker = tmp_path / "reading"
    path = slow_pipeline(tmp_path, "stopped", marker, 0.2, schedule={"every": "1h"},
                         runner={"name": "flink", "options": {
                             "flink_master": flink_cluster.master, "job_endpoint": flink_cluster.job_endpoint,
                             "parallelism": 2, "environment_type": "LOOPBACK", "job_timeout": LIMIT}})
    before = set(flink_cluster.jobs())
    cmd = [sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), "launch", "--once", "--grace", "1s", str(path)]
    proc = subprocess.Popen(cmd, cwd=str(ROOT), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_file(marker, proc)
        job_id = flink_cluster.new_job(before)
        assert flink_cluster.job(job_id)["state"] == "RUNNING"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    try:
        state = flink_cluster.wait_state(job_id, ("CANCELED",), timeout=60)
    except RuntimeError:
        raise AssertionError(f"job {flink_cluster.job(job_id)['state']}; launcher rc {proc.returncode}: {stderr[-4000:]}")
    assert state == "CANCELED"
    [run] = runs(home, "stopped")
    assert run.status == "failed" and "cancel" in (run.error or "").lower(), (run.error, stderr[-2000:])
    assert SQLiteStateStore(home / "state.db").get_watermark("stopped").value is None

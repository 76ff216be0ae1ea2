"""The launcher end to end: real `osmosis launch` processes, real Beam runs, signals, two launchers on one home."""
from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import RunError
from osmosis_beam.core.timefmt import format_timestamp, parse_timestamp, utcnow
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner

SYNTH = "tests.integration.synthetic:SyntheticConnector"
ROOT = Path(__file__).resolve().parents[2]


# -- helpers ------------------------------------------------------------------------------------------
def write_pipeline(folder: Path, pid: str, source: dict, schedule=None, **extra) -> Path:
    data = {
        "id": pid,
        "source": {"type": SYNTH, **source},
        "sink": {"type": "jsonl", "path": str(folder / f"out_{pid}")},
        "schedule": schedule or {"every": "1s"},
        **extra,
    }
    path = folder / f"{pid}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def osmosis(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), *map(str, args)]


def start(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(osmosis(home, "launch", *args), cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(osmosis(home, *args), cwd=str(ROOT), capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, timeout: float = 45.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"launcher did not exit within {timeout}s:\n{err}")
    return proc.returncode, err


def runs_of(store: SQLiteStateStore, pid: str, status: str | None = None):
    """Runs of ``pid``, oldest first."""
    runs = list(reversed(store.list_runs(pid)))
    return [r for r in runs if status is None or r.status == status]


def ids(folder: Path) -> list[int]:
    return sorted(r["id"] for r in read_jsonl_dir(folder))


def assert_no_overlap(runs) -> None:
    ordered = sorted(runs, key=lambda r: r.started_at)
    for before, after in zip(ordered, ordered[1:]):
        assert before.finished_at is not None, f"run {before.run_id} never finished"
        assert before.finished_at <= after.started_at, f"runs {before.run_id} and {after.run_id} overlap"


def assert_contiguous(runs) -> None:
    """Each committed window starts where the previous one ended: nothing read twice, nothing skipped."""
    ok = [r for r in sorted(runs, key=lambda r: r.started_at) if r.status == "succeeded"]
    for before, after in zip(ok, ok[1:]):
        assert after.window.lo == before.window.hi, (before.window, after.window)


def live_source(count: int, step_us: int, **more) -> dict:
    """Records from now on, ``step_us`` apart, read up to the source clock (real time)."""
    return {"count": count, "first": format_timestamp(utcnow()), "step_us": step_us, **more}


@pytest.fixture
def store(home):
    return SQLiteStateStore(home / "state.db")


# -- the loop -----------------------------------------------------------------------------------------
def test_second_level_interval_runs_until_max_runs(tmp_path, home, store):
    path = write_pipeline(tmp_path, "tick", live_source(count=60, step_us=100_000))
    launched = utcnow()
    done = run_cli(home, "launch", path, "--max-runs", "4")
    assert done.returncode == 0, done.stderr
    runs = runs_of(store, "tick")
    assert [r.status for r in runs] == ["succeeded"] * 4
    # One log line per run start and end, with window, counts and duration.
    starts = [line for line in done.stderr.splitlines() if " start tick run " in line]
    ends = [line for line in done.stderr.splitlines() if " end tick run " in line]
    assert len(starts) == 4 and len(ends) == 4
    assert all("window [" in line for line in starts)
    assert all("succeeded window [" in line and " read " in line and " written " in line and "s; next" in line for line in ends)
    # Never early: run k starts no sooner than its slot, and slots are 1 s apart from the launch on
    # (a run's started_at comes after a variable start-up, so gaps between two runs may be shorter).
    assert runs[-1].started_at - launched >= dt.timedelta(seconds=3)
    assert_contiguous(runs)
    hi = runs[-1].window.hi
    first = parse_timestamp(yaml.safe_load(path.read_text())["source"]["first"])
    expected = [i for i in range(60) if first + dt.timedelta(microseconds=100_000 * i) < hi]
    assert ids(tmp_path / "out_tick") == expected and expected


def test_once_runs_what_is_due_then_exits_and_jobs_lists_them(tmp_path, home, store):
    a = write_pipeline(tmp_path, "a", {"count": 5}, schedule={"every": "1h"})
    b = write_pipeline(tmp_path, "b", {"count": 7}, schedule={"cron": "0 3 * * *", "timezone": "Europe/Berlin"})
    f = write_pipeline(tmp_path, "f", {"count": 5, "fail_after": 0, "clock": "2024-01-01T01:00:00Z"},
                       schedule={"every": "1h"}, incremental={"start": "2024-01-01T00:00:00Z"})
    done = run_cli(home, "launch", "--once", "--concurrency", "2", a, b, f)
    assert done.returncode == 1, done.stderr  # --once exits 1 when one of its runs failed
    assert [r.status for r in runs_of(store, "a")] == ["succeeded"]
    assert [r.status for r in runs_of(store, "b")] == ["succeeded"]
    assert [r.status for r in runs_of(store, "f")] == ["failed"]
    again = run_cli(home, "launch", "--once", "--dir", tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing is due now" in again.stderr
    assert [len(runs_of(store, pid)) for pid in "abf"] == [1, 1, 1]

    listed = run_cli(home, "jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    jobs = {j["pipeline"]: j for j in json.loads(listed.stdout)}
    assert set(jobs) == {"a", "b", "f"}
    assert jobs["f"]["status"] == "failed" and jobs["f"]["consecutive_failures"] == 1
    jobs.pop("f")
    assert jobs["a"]["schedule"] == {"every": "1h"}
    assert jobs["b"]["schedule"] == {"cron": "0 3 * * *", "timezone": "Europe/Berlin"}
    for job in jobs.values():
        assert job["status"] == "succeeded" and job["consecutive_failures"] == 0
        assert set(job) >= {"pipeline", "schedule", "last_run", "next_run", "status"}
    last, nxt = parse_timestamp(jobs["a"]["last_run"]), parse_timestamp(jobs["a"]["next_run"])
    assert dt.timedelta(minutes=59) < nxt - last <= dt.timedelta(hours=1)
    b_next = parse_timestamp(jobs["b"]["next_run"])
    assert b_next.minute == 0 and b_next.hour in (1, 2)  # 03:00 in Berlin is 01:00 or 02:00 UTC
    table = run_cli(home, "jobs")
    assert table.returncode == 0 and "every 1h" in table.stdout and "cron 0 3 * * * Europe/Berlin" in table.stdout


def test_launch_usage_errors(tmp_path, home):
    # (A pipeline set without any schedule is a ConfigError too: tests/unit/test_launcher_jobs.py.)
    done = run_cli(home, "launch")
    assert done.returncode == 2 and "give pipeline files or --dir" in done.stderr
    done = run_cli(home, "launch", "--grace", "soon", write_pipeline(tmp_path, "g", {"count": 1}))
    assert done.returncode == 2 and "--grace" in done.stderr and "Traceback" not in done.stderr


# -- no overlap across processes ----------------------------------------------------------------------
def test_two_launchers_on_one_home_never_run_a_pipeline_twice_at_once(tmp_path, home, store):
    paths = [
        write_pipeline(tmp_path, pid, live_source(count=400, step_us=25_000, sleep_per_record=0.004),
                       read={"splits": 1, "batch_size": 20})
        for pid in ("p1", "p2")
    ]
    launchers = [start(home, "--concurrency", "2", *paths) for _ in range(2)]
    try:
        wait_for(lambda: all(len(runs_of(store, pid, "succeeded")) >= 4 for pid in ("p1", "p2")),
                 timeout=60, what="four runs of each pipeline")
    finally:
        for proc in launchers:
            proc.send_signal(signal.SIGTERM)
    results = [finish(proc) for proc in launchers]
    assert [rc for rc, _ in results] == [0, 0], [err for _, err in results]
    for pid in ("p1", "p2"):
        runs = runs_of(store, pid)
        assert runs and all(r.status == "succeeded" for r in runs), [(r.status, r.error) for r in runs]
        assert_no_overlap(runs)
        assert_contiguous(runs)
        got = ids(tmp_path / f"out_{pid}")
        assert len(got) == len(set(got)), "a record was delivered twice"
        first = parse_timestamp(yaml.safe_load(paths[0 if pid == "p1" else 1].read_text())["source"]["first"])
        hi = runs[-1].window.hi
        assert got == [i for i in range(400) if first + dt.timedelta(microseconds=25_000 * i) < hi]


# -- crash and restart --------------------------------------------------------------------------------
def test_launcher_killed_mid_run_and_restarted_loses_and_duplicates_nothing(tmp_path, home, store):
    marker = tmp_path / "reading"
    source = {"count": 400, "clock": "2024-01-01T01:00:00Z", "sleep_per_record": 0.02, "marker": str(marker)}
    extra = {"incremental": {"start": "2024-01-01T00:00:00Z"}, "read": {"batch_size": 10, "splits": 1}}
    path = write_pipeline(tmp_path, "slow", source, **extra)
    out = tmp_path / "out_slow"
    proc = start(home, path)
    try:
        wait_for(lambda: marker.exists() and any(out.glob("_staging/*/*")), what="the run to start writing")
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert [r.status for r in runs_of(store, "slow")] == ["running"]
    assert store.get_watermark("slow").value is None
    assert ids(out) == []

    source["sleep_per_record"] = 0.0
    write_pipeline(tmp_path, "slow", source, **extra)
    done = run_cli(home, "launch", path, "--max-runs", "1")
    assert done.returncode == 0, done.stderr
    runs = runs_of(store, "slow")
    assert [r.status for r in runs] == ["failed", "succeeded"]
    assert "abandoned" in runs[0].error
    assert runs[1].records_written == 400
    assert ids(out) == list(range(400))
    assert not any(out.glob("_staging/*"))
    assert store.get_watermark("slow").value == parse_timestamp("2024-01-01T01:00:00Z")


# -- SIGTERM ------------------------------------------------------------------------------------------
def test_sigterm_lets_running_runs_finish_within_grace_aborts_the_rest_and_exits_0(tmp_path, home, store):
    quick_marker, stuck_marker = tmp_path / "quick", tmp_path / "stuck"
    extra = {"incremental": {"start": "2024-01-01T00:00:00Z"}, "read": {"batch_size": 5, "splits": 1}}
    quick = write_pipeline(tmp_path, "quick", {"count": 20, "clock": "2024-01-01T01:00:00Z", "sleep_per_record": 0.05,
                                               "marker": str(quick_marker)}, **extra)
    stuck = write_pipeline(tmp_path, "stuck", {"count": 1000, "clock": "2024-01-01T01:00:00Z", "sleep_per_record": 0.05,
                                               "marker": str(stuck_marker)}, **extra)
    proc = start(home, "--concurrency", "2", "--grace", "5s", quick, stuck)
    try:
        wait_for(lambda: quick_marker.exists() and stuck_marker.exists(), what="both runs to start reading")
    finally:
        signalled = utcnow()
        proc.send_signal(signal.SIGTERM)
    rc, err = finish(proc, timeout=45)
    stopped = utcnow()
    assert rc == 0, err
    assert stopped - signalled < dt.timedelta(seconds=5 + 15)
    [q] = runs_of(store, "quick")  # no new run after the signal, although it is due every second
    assert q.status == "succeeded" and q.records_written == 20
    assert q.finished_at > signalled  # it was running when the signal came, and was let finish
    assert ids(tmp_path / "out_quick") == list(range(20))
    [s] = runs_of(store, "stuck")
    assert s.status == "failed" and "cancelled" in s.error
    assert s.finished_at - signalled >= dt.timedelta(seconds=5)  # aborted only after the grace period
    assert store.get_watermark("stuck").value is None
    assert ids(tmp_path / "out_stuck") == []
    assert not any((tmp_path / "out_stuck").glob("_staging/*"))
    assert "Traceback" not in err
    jobs = {j["pipeline"]: j for j in json.loads(run_cli(home, "jobs", "--json").stdout)}
    assert jobs["stuck"]["status"] == "cancelled" and jobs["stuck"]["consecutive_failures"] == 0


def test_cancel_event_aborts_an_in_process_run_without_committing(tmp_path, home):
    spec = parse_pipeline(
        {
            "id": "slow",
            "source": {"type": SYNTH, "count": 200, "clock": "2024-01-01T01:00:00Z", "sleep_per_record": 0.02},
            "incremental": {"start": "2024-01-01T00:00:00Z"},
            "read": {"batch_size": 5, "splits": 1},
            "sink": {"type": "jsonl", "path": "out"},
        },
        path=str(tmp_path / "slow.yaml"),
    )
    store = SQLiteStateStore(home / "state.db")
    cancel = threading.Event()
    started: list[float] = []
    runner = SyncRunner(spec, store, home=home, cancel_event=cancel, on_start=lambda run: started.append(time.monotonic()))
    timer = threading.Thread(target=lambda: (wait_for(lambda: started, what="the run to start"), time.sleep(0.5), cancel.set()))
    timer.start()
    with pytest.raises(RunError, match="cancelled"):
        runner.run()
    timer.join()
    assert time.monotonic() - started[0] < 3.5  # the read alone sleeps 4 s: the run was cut short
    [run] = store.list_runs("slow")
    assert run.status == "failed" and "cancelled" in run.error
    assert store.get_watermark("slow").value is None
    assert list(read_jsonl_dir(tmp_path / "out")) == []
    assert store.get_lease("slow") is None


# -- backoff ------------------------------------------------------------------------------------------
def test_failing_pipeline_backs_off_exponentially_while_another_keeps_its_schedule(tmp_path, home, store):
    failing = write_pipeline(tmp_path, "bad", {"count": 50, "fail_after": 0, "clock": "2024-01-01T01:00:00Z"},
                             incremental={"start": "2024-01-01T00:00:00Z"})
    healthy = write_pipeline(tmp_path, "good", live_source(count=100, step_us=100_000))
    proc = start(home, "--concurrency", "2", "--backoff", "0.5s", "--max-backoff", "2s", failing, healthy)
    try:
        wait_for(lambda: len(runs_of(store, "bad", "failed")) >= 4, timeout=60, what="four failures")
    finally:
        proc.send_signal(signal.SIGTERM)
    rc, err = finish(proc)
    assert rc == 0, err
    bad = runs_of(store, "bad")
    assert all(r.status == "failed" for r in bad)
    # Waits after failures 1, 2, 3: 0.5 s, 1 s, 2 s (each no sooner; the loop may add a little).
    for k, delay in enumerate((0.5, 1, 2)):
        gap = bad[k + 1].started_at - bad[k].finished_at
        assert gap >= dt.timedelta(seconds=delay), (k, gap)
    # Meanwhile the healthy pipeline kept its 1 s schedule through the failing one's waits (>= 3 s).
    good = runs_of(store, "good")
    assert all(r.status == "succeeded" for r in good)
    during = [r for r in good if bad[1].finished_at < r.started_at < bad[3].started_at]
    assert len(during) >= 2, [r.started_at for r in good]
    assert_contiguous(good)
    # The job remembers the failures; after the 4th failure the wait is capped at 2 s (not 4 s).
    jobs = {j["pipeline"]: j for j in json.loads(run_cli(home, "jobs", "--json").stdout)}
    assert jobs["bad"]["status"] == "failed" and jobs["bad"]["consecutive_failures"] == len(bad)
    assert jobs["good"]["status"] == "succeeded" and jobs["good"]["consecutive_failures"] == 0
    if len(bad) == 4:
        wait = parse_timestamp(jobs["bad"]["next_run"]) - bad[-1].finished_at
        assert dt.timedelta(seconds=2) <= wait < dt.timedelta(seconds=3), wait
    assert "backing off 2s" in err

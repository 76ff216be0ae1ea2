"""The launcher's bookkeeping without running Beam: loading, sync jobs, the abandoned-run sweep."""
from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys

import pytest
import yaml

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.models import SyncJob, SyncRun
from osmosis_beam.core.timefmt import parse_timestamp
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.scheduler.launcher import SyncScheduler, describe_jobs, load_specs
from osmosis_beam.state.sqlite import SQLiteStateStore

SYNTH = "tests.integration.synthetic:SyntheticConnector"
T0 = parse_timestamp("2024-05-01T12:00:00Z")


def spec(tmp_path, pid="p", schedule=None, **source):
    data = {
        "id": pid,
        "source": {"type": SYNTH, "count": 5, **source},
        "sink": {"type": "jsonl", "path": f"out_{pid}"},
        "schedule": schedule if schedule is not None else {"every": "15m"},
    }
    return parse_pipeline(data, path=str(tmp_path / f"{pid}.yaml"))


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def store(home):
    return SQLiteStateStore(home / "state.db")


def test_load_specs_reports_every_problem_of_every_file(tmp_path):
    good = {"id": "a", "source": {"type": "rss", "url": "http://x/f"}, "sink": {"type": "jsonl", "path": "o"},
            "schedule": {"every": "1m"}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(good))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**good, "id": "b", "schedule": {"cron": "61 * * * *"}}))
    (tmp_path / "c.yml").write_text(yaml.safe_dump({**good, "id": "a"}))
    (tmp_path / "notes.txt").write_text("not a pipeline")
    with pytest.raises(ConfigError) as info:
        load_specs(directory=tmp_path)
    problems = info.value.problems
    assert any("b.yaml" in p and "invalid cron expression '61 * * * *'" in p for p in problems)
    assert any("c.yml" in p and "'a'" in p and "unique" in p for p in problems)
    (tmp_path / "b.yaml").unlink()
    (tmp_path / "c.yml").unlink()
    assert [s.id for s in load_specs(directory=tmp_path)] == ["a"]
    with pytest.raises(ConfigError, match="give pipeline files or --dir"):
        load_specs()


def test_pipelines_without_schedule_are_ignored_and_none_at_all_is_an_error(tmp_path, store):
    unscheduled = parse_pipeline(
        {"id": "u", "source": {"type": SYNTH}, "sink": {"type": "jsonl", "path": "o"}}, path=str(tmp_path / "u.yaml")
    )
    with pytest.raises(ConfigError, match="none of the pipelines has a schedule"):
        SyncScheduler([unscheduled], store)
    scheduler = SyncScheduler([unscheduled, spec(tmp_path)], store)
    assert [s.id for s in scheduler.specs] == ["p"]
    with pytest.raises(ConfigError, match="concurrency"):
        SyncScheduler([spec(tmp_path)], store, concurrency=0)


def test_register_creates_jobs_due_now_and_a_restart_keeps_them(tmp_path, store):
    clock = Clock(T0)
    [job] = SyncScheduler([spec(tmp_path)], store, clock=clock).register()
    assert job.next_run == T0 and job.interval_minutes == 15 and job.spec_path == str(tmp_path / "p.yaml")
    stored = store.get_job("p")
    stored.last_run, stored.next_run = T0, T0 + dt.timedelta(minutes=15)
    store.put_job(stored)
    clock.now = T0 + dt.timedelta(minutes=3)  # a restart: the job continues where it stopped
    SyncScheduler([spec(tmp_path)], store, clock=clock).register()
    assert store.get_job("p").next_run == T0 + dt.timedelta(minutes=15)


def test_register_reschedules_a_job_whose_schedule_changed(tmp_path, store):
    store.put_job(SyncJob("p", "p", interval_minutes=15, last_run=T0, next_run=T0 + dt.timedelta(minutes=15)))
    clock = Clock(T0 + dt.timedelta(minutes=1))
    SyncScheduler([spec(tmp_path, schedule={"cron": "0 * * * *", "timezone": "Europe/Berlin"})], store, clock=clock).register()
    job = store.get_job("p")
    assert (job.cron, job.timezone, job.interval_minutes) == ("0 * * * *", "Europe/Berlin", None)
    assert job.next_run == parse_timestamp("2024-05-01T13:00:00Z")
    assert job.last_run == T0


def test_register_keeps_the_cadence_of_a_pipeline_run_by_hand(tmp_path, store):
    # `osmosis run` saves a job without next run; the launcher counts from that run.
    store.put_job(SyncJob("p", "p", interval_minutes=15))
    run = SyncRun("r1", "p", "running", started_at=T0)
    store.start_run(run, "h:1:x")
    run.status, run.finished_at = "succeeded", T0
    store.commit_run(run, None, None)
    SyncScheduler([spec(tmp_path)], store, clock=Clock(T0 + dt.timedelta(minutes=2))).register()
    assert store.get_job("p").next_run == T0 + dt.timedelta(minutes=15)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_sweep_marks_runs_of_dead_launchers_failed_and_leaves_live_ones_alone(tmp_path, store):
    host = socket.gethostname()
    dead = SyncRun("dead-run", "p", "running", started_at=T0, window=SyncWindow(None, T0))
    store.start_run(dead, f"{host}:{_dead_pid()}:aaaa")
    live = SyncRun("live-run", "q", "running", started_at=T0, window=SyncWindow(None, T0))
    live_holder = f"{host}:{os.getpid()}:bbbb"
    store.start_run(live, live_holder)
    store.acquire_lease("q", live_holder, ttl=60)
    remote = SyncRun("remote-run", "r", "running", started_at=T0, window=SyncWindow(None, T0))
    store.start_run(remote, "elsewhere:1:cccc")  # another host: cannot tell, leave it to its lease

    scheduler = SyncScheduler([spec(tmp_path, "p"), spec(tmp_path, "q"), spec(tmp_path, "r")], store)
    assert scheduler.sweep_abandoned() == 1
    assert store.get_run("dead-run").status == "failed"
    assert "abandoned" in store.get_run("dead-run").error
    assert store.get_run("live-run").status == "running"
    assert store.get_run("remote-run").status == "running"
    assert store.get_lease("q").holder == live_holder
    assert store.get_lease("p") is None  # the sweep released what it took


def test_describe_jobs_shows_schedule_times_and_running(tmp_path, store):
    SyncScheduler([spec(tmp_path, "a"), spec(tmp_path, "b", schedule={"cron": "*/5 * * * *"})], store, clock=Clock(T0)).register()
    store.acquire_lease("a", f"{socket.gethostname()}:{os.getpid()}:x", ttl=60)
    rows = {r["pipeline"]: r for r in describe_jobs(store)}
    assert rows["a"]["schedule"] == {"every": "15m"} and rows["a"]["status"] == "running"
    assert rows["b"]["schedule"] == {"cron": "*/5 * * * *", "timezone": "UTC"} and rows["b"]["status"] == "idle"
    assert rows["b"]["next_run"] == "2024-05-01T12:00:00+00:00" and rows["b"]["last_run"] is None

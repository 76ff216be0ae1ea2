"""`osmosis state show | set | clear`, the history filters and `jobs` after manual runs, on SQLite and PostgreSQL.

Real `osmosis` processes, real runs of the synthetic connector, the state stores on a real SQLite file and a
real PostgreSQL server.
"""
from __future__ import annotations

import datetime as dt
import getpass
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from osmosis_beam.core.models import SyncJob, SyncRun
from osmosis_beam.core.timefmt import parse_timestamp, utcnow
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.state.commands import (
    STATE_STATUS,
    clear_state,
    describe_state,
    set_watermark,
)
from osmosis_beam.state.factory import open_store
from osmosis_beam.state.store import new_holder_id
from tests.integration.pg_support import pg_dsn, pg_module_database  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
SYNTH = "tests.integration.synthetic:SyntheticConnector"
UTC = dt.timezone.utc
WHO = f"{getpass.getuser()}@{socket.gethostname()}"


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request, tmp_path):
    """A state store URL: SQLite in a temp home, or a database on the suite's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'state.db'}"
    return request.getfixturevalue("pg_dsn")


@pytest.fixture
def store(state_url):
    s = open_store(url=state_url)
    yield s
    s.close()


def pipeline(tmp_path: Path, pid: str = "synth", **source) -> Path:
    path = tmp_path / f"{pid}.yaml"
    path.write_text(yaml.safe_dump({
        "id": pid,
        "source": {"type": SYNTH, "count": 20, "first": "2024-01-01T00:00:00Z", "step_us": 3_600_000_000, **source},
        "sink": {"type": "jsonl", "path": str(tmp_path / f"out_{pid}")},
        "schedule": {"every": "1h"},
    }))
    return path


def osmosis(state_url: str, tmp_path: Path, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "osmosis_beam.cli", "--home", str(tmp_path / "home"), "--state", state_url, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=str(ROOT), input=stdin)


def summary(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_show_set_and_clear_the_watermark_with_history(state_url, store, tmp_path):
    yaml_path = pipeline(tmp_path)
    first = summary(osmosis(state_url, tmp_path, "run", yaml_path))
    assert first["records_read"] == 20

    shown = json.loads(osmosis(state_url, tmp_path, "state", "show", "synth", "--json").stdout)
    assert shown["watermark"] == first["window"]["hi"]
    assert shown["window"] == first["window"] and shown["committed_by"]["run_id"] == first["run_id"]
    assert shown["lease"] is None and shown["pending"] == []
    text = osmosis(state_url, tmp_path, "state", "show", "synth").stdout
    assert f"watermark     {first['window']['hi']}" in text and "lease         - (free)" in text

    # Without --yes and without a terminal nothing changes.
    refused = osmosis(state_url, tmp_path, "state", "set", "synth", "--hi", "2024-01-01T10:00:00Z", stdin="")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert describe_state(store, "synth")["watermark"] == first["window"]["hi"]

    # Rewind: the next run re-reads from 10:00 (records 10..19).
    done = osmosis(state_url, tmp_path, "state", "set", "synth", "--hi", "2024-01-01T10:00:00Z", "--yes")
    assert done.returncode == 0, done.stderr
    assert "rewinds" in done.stderr and WHO in done.stdout
    assert store.get_watermark("synth").value == dt.datetime(2024, 1, 1, 10, tzinfo=UTC)
    change = store.query_runs("synth", status=STATE_STATUS)[0]
    assert change.window.hi == dt.datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert f"by {WHO}" in change.note and first["window"]["hi"] in change.note
    assert abs((change.started_at - utcnow()).total_seconds()) < 60
    again = summary(osmosis(state_url, tmp_path, "run", yaml_path))
    assert again["window"]["lo"] == "2024-01-01T10:00:00+00:00"
    assert again["records_read"] == 10

    # Clear: the next run is a full read.
    cleared = osmosis(state_url, tmp_path, "state", "clear", "synth", "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert store.get_watermark("synth").value is None
    assert json.loads(osmosis(state_url, tmp_path, "state", "show", "synth", "--json").stdout)["watermark"] is None
    full = summary(osmosis(state_url, tmp_path, "run", yaml_path))
    assert full["window"]["lo"] is None and full["records_read"] == 20

    changes = json.loads(osmosis(state_url, tmp_path, "history", "--status", "state", "--json").stdout)
    assert [c["status"] for c in changes] == ["state", "state"]
    assert changes[0]["note"].startswith(f"state cleared by {WHO}")


def test_state_changes_wait_for_the_lease_and_check_their_input(state_url, store, tmp_path):
    store.put_job(SyncJob(pipeline_id="orders", source_id="orders"))
    holder = new_holder_id()  # this test process: alive, so the lease is live
    assert store.acquire_lease("orders", holder, 60)
    held = osmosis(state_url, tmp_path, "state", "set", "orders", "--hi", "2024-02-01T00:00:00Z", "--yes")
    assert held.returncode == 3 and "holds its lease" in held.stderr and holder in held.stderr
    assert osmosis(state_url, tmp_path, "state", "clear", "orders", "--yes").returncode == 3
    store.release_lease("orders", holder)

    naive = osmosis(state_url, tmp_path, "state", "set", "orders", "--hi", "2024-02-01", "--yes")
    assert naive.returncode == 2 and "time zone" in naive.stderr
    unknown = osmosis(state_url, tmp_path, "state", "show", "ordres")
    assert unknown.returncode == 2 and "unknown pipeline 'ordres'; known: orders" in unknown.stderr

    set_watermark(store, "orders", "1000", by="ops@box")  # integer cursors take integers
    assert store.get_watermark("orders").value == 1000
    wrong = osmosis(state_url, tmp_path, "state", "set", "orders", "--hi", "2024-02-01T00:00:00Z", "--yes")
    assert wrong.returncode == 2 and "integer" in wrong.stderr
    clear_state(store, "orders", by="ops@box")
    assert store.get_watermark("orders").value is None


def add_run(store, pid: str, start: dt.datetime, seconds: float, status: str, error: str | None = None) -> None:
    run = SyncRun(run_id=f"{pid}-{start:%d%H%M%S}", pipeline_id=pid, status="running", started_at=start,
                  window=SyncWindow(None, start), runner="direct")
    store.start_run(run, "host:1:abcd")
    run.status, run.finished_at, run.error = status, start + dt.timedelta(seconds=seconds), error
    if status == "failed":
        store.fail_run(run)
    else:
        store.commit_run(run, None, None)


def test_history_filters_limit_duration_and_whole_errors(state_url, store, tmp_path):
    now = utcnow().replace(microsecond=0)
    long_error = "RetriableConnectorError: the source broke " + "x" * 150 + "\nsecond line of the error"
    for i in range(30):
        add_run(store, "a" if i % 2 else "b", now - dt.timedelta(hours=30 - i), 2.5,
                "failed" if i % 10 == 0 else "succeeded", long_error if i == 20 else None)

    default = json.loads(osmosis(state_url, tmp_path, "history", "--json").stdout)
    assert len(default) == 20 and default[0]["started_at"] > default[-1]["started_at"]
    assert default[0]["duration_seconds"] == 2.5
    assert len(json.loads(osmosis(state_url, tmp_path, "history", "--json", "--limit", "100").stdout)) == 30
    failed = json.loads(osmosis(state_url, tmp_path, "history", "--json", "--status", "failed").stdout)
    assert len(failed) == 3 and {r["status"] for r in failed} == {"failed"}
    recent = json.loads(osmosis(state_url, tmp_path, "history", "--json", "--since", "330m").stdout)
    assert len(recent) == 5  # runs started 5h, 4h, 3h, 2h, 1h ago
    since_time = (now - dt.timedelta(hours=3, minutes=30)).isoformat()
    assert len(json.loads(osmosis(state_url, tmp_path, "history", "--json", "--since", since_time).stdout)) == 3
    assert len(json.loads(osmosis(state_url, tmp_path, "history", "--json", "--pipeline", "a", "--limit", "100").stdout)) == 15

    table = osmosis(state_url, tmp_path, "history", "--status", "failed", "--pipeline", "b").stdout
    assert "DURATION" in table.splitlines()[0] and "2.50s" in table
    assert long_error.splitlines()[0] in table  # not cut
    assert any(line.strip() == "second line of the error" for line in table.splitlines())
    assert osmosis(state_url, tmp_path, "history", "--since", "yesterday").returncode == 2

    # Paging for the dashboard: one indexed query each.
    page = store.query_runs(limit=7, offset=14)
    assert len(page) == 7 and page[0].started_at == now - dt.timedelta(hours=15)
    assert store.count_runs() == 30 and store.count_runs("b", status="failed") == 3 and not store.count_runs("a", status="failed")
    assert store.count_runs(since=now - dt.timedelta(hours=5, minutes=30)) == 5


def test_jobs_show_manual_runs_and_paused_jobs(state_url, store, tmp_path):
    ok = pipeline(tmp_path, "manual")
    run = summary(osmosis(state_url, tmp_path, "run", ok))
    jobs = {j["pipeline"]: j for j in json.loads(osmosis(state_url, tmp_path, "jobs", "--json").stdout)}
    started = store.get_run(run["run_id"]).started_at
    assert parse_timestamp(jobs["manual"]["last_run"]) == started and jobs["manual"]["status"] == "succeeded"

    broken = pipeline(tmp_path, "manual", fail_after=0, first="2020-01-01T00:00:00Z")
    assert osmosis(state_url, tmp_path, "state", "clear", "manual", "--yes").returncode == 0
    assert osmosis(state_url, tmp_path, "run", broken).returncode == 1
    jobs = {j["pipeline"]: j for j in json.loads(osmosis(state_url, tmp_path, "jobs", "--json").stdout)}
    assert jobs["manual"]["status"] == "failed"
    assert parse_timestamp(jobs["manual"]["last_run"]) > started
    header, row = osmosis(state_url, tmp_path, "jobs").stdout.splitlines()[:2]
    assert row.split()[:4] == ["manual", "every", "1h", jobs["manual"]["last_run"]] and "failed" in row

    assert store.set_paused("manual", True) and not store.set_paused("nope", True)
    assert store.paused_pipelines() == {"manual"}
    jobs = {j["pipeline"]: j for j in json.loads(osmosis(state_url, tmp_path, "jobs", "--json").stdout)}
    assert jobs["manual"]["status"] == "paused" and jobs["manual"]["paused"] is True
    # The launcher starts no run of a paused job, even when it is due.
    job = store.get_job("manual")
    job.next_run = utcnow() - dt.timedelta(minutes=1)
    store.put_job(job)
    ok = pipeline(tmp_path, "manual")  # the working YAML again
    before = store.count_runs("manual")
    launched = osmosis(state_url, tmp_path, "launch", ok, "--once")
    assert launched.returncode == 0, launched.stderr
    assert store.count_runs("manual") == before
    assert store.set_paused("manual", False)
    launched = osmosis(state_url, tmp_path, "launch", ok, "--once")
    assert launched.returncode == 0, launched.stderr
    assert store.count_runs("manual") == before + 1

"""``launch --once`` by several launchers on one PostgreSQL state store returns as soon as every due pipeline has
run somewhere, or is held by a live lease, and says which (issue 15, item 12).

Three launchers (three homes, one ``--state postgresql://...``, the same 12 pipelines, ``--once
--concurrency 2``) start at once, as cron would start them on three hosts. Each pipeline runs exactly once;
every launcher returns, and its log accounts for every pipeline: run here, or run (held) by another one.
"""
from __future__ import annotations

import re
import subprocess
import sys

import yaml

from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.state.postgres import PostgresStateStore
from tests.integration.test_launcher import ROOT, SYNTH

PIPELINES = 12
RECORDS = 20


def test_three_once_launchers_on_one_postgres_state_share_the_work_and_all_return(tmp_path, pg_dsn, faults):
    state = pg_dsn + "?schema=osmosis_once"
    folder = tmp_path / "pipelines"
    folder.mkdir()
    for i in range(PIPELINES):
        (folder / f"p{i:02d}.yaml").write_text(yaml.safe_dump({
            "id": f"p{i:02d}",
            "source": {"type": SYNTH, "count": RECORDS, "clock": "2024-01-01T01:00:00Z", "sleep_per_record": 0.02},
            "incremental": {"start": "2024-01-01T00:00:00Z"},
            "sink": {"type": "jsonl", "path": str(tmp_path / "out" / f"p{i:02d}")},
            "schedule": {"every": "1h"},  # due now; once it ran, not again for an hour
        }))
    launchers = []
    for n in range(3):
        home = tmp_path / f"home{n}"
        home.mkdir()
        launchers.append(subprocess.Popen(
            [sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), "--state", state,
             "launch", "--once", "--concurrency", "2", "--dir", str(folder)],
            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    faults.injected(3)  # three launchers racing for the same 12 pipelines
    logs = []
    try:
        for proc in launchers:
            _, err = proc.communicate(timeout=400)  # generous: before the fix one waited for the next tick (1h)
            assert proc.returncode == 0, err
            assert "Traceback" not in err, err
            logs.append(err)
    finally:
        for proc in launchers:
            if proc.poll() is None:
                proc.kill()

    store = PostgresStateStore(state)
    ran_here: dict[str, list[int]] = {}
    for n, err in enumerate(logs):
        for pid in re.findall(r"\bstart (p\d\d) run ", err):
            ran_here.setdefault(pid, []).append(n)
        accounted = set(re.findall(r"\bstart (p\d\d) run ", err))
        accounted |= set(re.findall(r"once: (p\d\d) (?:ran on another launcher|held by a live lease)", err))
        accounted |= set(re.findall(r"skip (p\d\d): (?:another run holds its lease|another launcher ran it)", err))
        # Every launcher knows what became of every pipeline that was due when it started.
        assert accounted == {f"p{i:02d}" for i in range(PIPELINES)} or "nothing is due now" in err, (n, err)
    for i in range(PIPELINES):
        pid = f"p{i:02d}"
        runs = store.list_runs(pid)
        assert [r.status for r in runs] == ["succeeded"], (pid, runs)  # exactly once, somewhere
        assert len(ran_here.get(pid, [])) == 1, (pid, ran_here.get(pid))
        assert sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out" / pid)) == list(range(RECORDS))
        faults.checked(RECORDS)


def test_a_launcher_that_decided_on_stale_jobs_checks_again_under_the_lease(tmp_path, home, faults):
    """The race behind "exactly once": B reads the jobs (X due), A runs X and releases the lease, then B takes
    the lease. B must see that X ran meanwhile and skip it, not run the window again."""
    from osmosis_beam.config import load_pipeline
    from osmosis_beam.scheduler.launcher import SyncScheduler
    from osmosis_beam.state.sqlite import SQLiteStateStore

    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump({
        "id": "x", "source": {"type": SYNTH, "count": RECORDS, "clock": "2024-01-01T01:00:00Z"},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "sink": {"type": "jsonl", "path": str(tmp_path / "out")}, "schedule": {"every": "1h"},
    }))
    spec = load_pipeline(str(path))
    store = SQLiteStateStore(home / "state.db")
    b = SyncScheduler([spec], store, home=home)
    [stale] = b.register()  # B decides: x is due
    faults.injected()
    a = SyncScheduler([spec], store, home=home).run(once=True)  # A runs x meanwhile
    assert a.succeeded == 1
    b._once_outcome = {}
    b._start(spec, stale)  # B goes ahead on what it read before
    b._running["x"].join(60)
    done = b._done.get_nowait()
    assert done.outcome == "skipped" and "another launcher ran it meanwhile" in done.error.message
    assert "ran on another launcher" in b._once_outcome["x"]
    assert [r.status for r in store.list_runs("x")] == ["succeeded"]  # one run, not two
    assert store.get_lease("x") is None  # B released the lease it took to check
    assert sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out")) == list(range(RECORDS))
    faults.checked(RECORDS)

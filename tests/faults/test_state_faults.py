"""The smaller defects of issue 15, item 15, each caused for real: a read-only home, a full disk under the
JSONL sink, a run killed between publish and commit, and stage tables whose cleanup could not reach the server."""
from __future__ import annotations

import json
import signal
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg2
import pytest
import yaml
from psycopg2 import sql

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import RunError
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.io.files.parquet import read_parquet_table
from osmosis_beam.io.postgres.client import STAGE_PREFIX, Target
from osmosis_beam.io.postgres.sink import stage_comment
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner
from tests.faults import helpers

SYNTH = "tests.integration.synthetic:SyntheticConnector"
ROOT = Path(__file__).resolve().parents[2]


def write_pipeline(path: Path, sink: dict, *, count=50, clock="2024-01-01T01:00:00Z", steps=(), **extra) -> Path:
    path.write_text(yaml.safe_dump({
        "id": "synth",
        "source": {"type": SYNTH, "count": count, "clock": clock},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "steps": list(steps),
        "sink": sink,
        **extra,
    }))
    return path


def test_commands_that_only_read_work_on_a_read_only_home(tmp_path, tmpfs, osmosis_cli, faults):
    fs = tmpfs("8M")
    home = fs.path / "home"
    pipeline = write_pipeline(tmp_path / "p.yaml", {"type": "jsonl", "path": "out"},
                              steps=[{"map": {"r": "1 // (id % 5)"}}], dead_letter={"max_ratio": 0.5})
    ran = osmosis_cli("run", pipeline, home_dir=home)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout.splitlines()[-1])["run_id"]
    fs.read_only()
    faults.injected()
    try:
        for argv, expected in [
            (["history"], "succeeded"),
            (["history", "--json"], run_id),
            (["jobs"], "synth"),
            (["state", "show", "synth"], "2024-01-01T01:00:00"),
            (["sources", "list"], "synth"),
            (["dead-letters", "list", "synth"], "10 x 1: map: ZeroDivisionError"),
        ]:
            out = osmosis_cli(*argv, home_dir=home)
            assert out.returncode == 0, (argv, out.stderr)
            assert expected in out.stdout, (argv, out.stdout)
        [run] = json.loads(osmosis_cli("history", "--json", home_dir=home).stdout)
        assert (run["records_read"], run["records_written"], run["dead_letter"]) == (50, 40, 10)
        # A command that writes says why it cannot, without a traceback.
        refused = osmosis_cli("run", pipeline, home_dir=home)
        assert refused.returncode != 0
        assert "state store" in refused.stderr and "is read-only" in refused.stderr, refused.stderr
        assert "make the home writable" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        fs.read_only(False)
    faults.checked(50)


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_a_full_disk_under_a_file_sink_names_the_path_and_the_rerun_completes(tmp_path, tmpfs, osmosis_cli, home, kind, faults):
    fs = tmpfs("256k")
    out = fs.path / "out"
    sink = {"type": "jsonl", "path": str(out)} if kind == "jsonl" else {
        "type": "parquet", "path": str(out), "compression": "none", "row_group_size": 2000}
    pipeline = write_pipeline(tmp_path / "p.yaml", sink, count=20000, clock="2024-01-02T00:00:00Z")
    failed = osmosis_cli("run", pipeline)
    faults.injected()
    assert failed.returncode == 1, failed.stderr
    assert "No space left on device" in failed.stderr and "the disk is full" in failed.stderr, failed.stderr
    assert str(out / "_staging") in failed.stderr  # the full path of what could not be written
    [run] = json.loads(osmosis_cli("history", "--json").stdout)
    assert run["status"] == "failed" and str(out) in run["error"]
    assert not (out / "_staging").exists() or not any((out / "_staging").iterdir())

    fs.resize("64M")
    again = osmosis_cli("run", pipeline)
    assert again.returncode == 0, again.stderr
    if kind == "jsonl":
        ids = [r["id"] for r in read_jsonl_dir(out)]
    else:
        ids = read_parquet_table(out).column("id").to_pylist()
    assert sorted(ids) == list(range(20000))
    faults.checked(len(ids))


KILL_AT_COMMIT = textwrap.dedent("""
    import os, signal, sys
    from osmosis_beam.config import load_pipeline
    from osmosis_beam.state.sqlite import SQLiteStateStore
    from osmosis_beam.sync.runner import SyncRunner

    class KilledAtCommit(SQLiteStateStore):
        def commit_run(self, run, watermark, state):
            os.kill(os.getpid(), signal.SIGKILL)   # after the publish, before the commit

    home = sys.argv[2]
    SyncRunner(load_pipeline(sys.argv[1]), KilledAtCommit(home + "/state.db"), home=home).run()
""")


@pytest.mark.parametrize("kind", ["jsonl", "postgres-append"])
def test_a_run_killed_after_publishing_is_repaired_with_its_counts(tmp_path, home, osmosis_cli, kind, request, faults):
    if kind == "jsonl":
        sink = {"type": "jsonl", "path": "out"}
    else:
        sink = {"type": "postgres", "dsn": request.getfixturevalue("pg_dsn"), "table": "out", "mode": "append"}
    pipeline = write_pipeline(tmp_path / "p.yaml", sink, count=3000, clock="2024-01-01T02:00:00Z",
                              steps=[{"map": {"r": "1 // (id % 100)"}}])
    script = tmp_path / "kill_at_commit.py"
    script.write_text(KILL_AT_COMMIT)
    # A script run by path has its own folder on sys.path, not the checkout: give it the checkout.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    killed = subprocess.run([sys.executable, str(script), str(pipeline), str(home)], capture_output=True,
                            text=True, timeout=180, cwd=str(ROOT), env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    faults.injected()

    again = osmosis_cli("run", pipeline)
    assert again.returncode == 0, again.stderr
    runs = json.loads(osmosis_cli("history", "--json").stdout)
    first = runs[-1]
    assert first["status"] == "succeeded" and "committed at the next start" in first["note"]
    assert (first["records_read"], first["records_written"], first["dead_letter"]) == (3000, 2970, 30)
    table = osmosis_cli("history").stdout.splitlines()
    assert any("3000" in line and "2970" in line and "30" in line for line in table[1:]), table
    if kind == "jsonl":
        ids = sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out"))
    else:
        with psycopg2.connect(sink["dsn"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM out ORDER BY id")
            ids = [r[0] for r in cur.fetchall()]
    assert ids == [i for i in range(3000) if i % 100]
    faults.checked(3000)


def _stage_tables(dsn) -> dict[str, str | None]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
            "WHERE c.relkind = 'r' AND starts_with(c.relname, %s)", (STAGE_PREFIX,)
        )
        return dict(cur.fetchall())


def test_stage_tables_of_failed_append_runs_are_dropped_and_no_other(tmp_path, home, pg_dsn, monkeypatch, faults):
    sink = {"type": "postgres", "dsn": pg_dsn, "table": "out", "mode": "append"}
    monkeypatch.setenv("FAULT_PG_DSN", pg_dsn)
    # Another pipeline's live stage beside the same table, and this pipeline's stage of another table.
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        out_target = Target(pg_dsn, "public.out", [], "append", True, None)
        out_target.schema = "public"
        other_target = Target(pg_dsn, "public.elsewhere", [], "append", True, None)
        other_target.schema = "public"
        for name, comment in [
            (out_target.stage_name("live-run"), stage_comment("other", "live-run")),
            (other_target.stage_name("old-run"), stage_comment("synth", "old-run")),
        ]:
            cur.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier("public", name)))
            cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(sql.Identifier("public", name), sql.Literal(comment)))
    bystanders = _stage_tables(pg_dsn)

    data = {
        "id": "synth", "source": {"type": SYNTH, "count": 50, "clock": "2024-01-01T01:00:00Z"},
        "incremental": {"start": "2024-01-01T00:00:00Z"}, "read": {"splits": 1, "batch_size": 5},
        "steps": [{"python": "tests.faults.helpers:lock_out_then_fail", "on_error": "fail"}], "sink": sink,
    }
    store = SQLiteStateStore(home / "state.db")
    try:
        with pytest.raises(RunError, match="fault: failing at record 30"):
            SyncRunner(parse_pipeline(data, path=str(tmp_path / "p.yaml")), store, home=home).run()
    finally:
        helpers.set_connections(pg_dsn, True)
    faults.injected()
    left = {n: c for n, c in _stage_tables(pg_dsn).items() if n not in bystanders}
    [(name, comment)] = left.items()  # the cleanup could not reach the server: the stage is still there
    assert comment.startswith("osmosis stage: pipeline=synth run=")

    data["steps"] = []
    run = SyncRunner(parse_pipeline(data, path=str(tmp_path / "p.yaml")), store, home=home).run()
    assert run.records_written == 50
    assert _stage_tables(pg_dsn) == bystanders  # its own stale stage dropped; the others kept
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT id) FROM out")
        assert cur.fetchone() == (50, 50)
    faults.checked(50)

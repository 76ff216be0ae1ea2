"""Dead letters under faults: a full disk at their publish never doubles rows, the budget stops a run that
dead-letters too much, and a replay delivers each kept dead letter once (issue 15, items 2 and 6).

The disk is a real tmpfs that really fills (ENOSPC). The moment it fills is chosen by the state store: a
store whose ``set_pending_state`` (called right before publishing) fills the tmpfs first, so the fault
lands exactly between the Beam job and the publish, on every run. Two faults cannot be caused for real at
an exact instant and are injected at the call (each test says which): a rename failing after the sink's
output is visible, and a replay stopping between its publish and its bookkeeping.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg2
import pytest
import yaml

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import ConfigError, RunError
from osmosis_beam.io.files.dead_letters import DeadLetterFolder, list_folders
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner

SYNTH = "tests.integration.synthetic:SyntheticConnector"
FAILS_ON_EVEN = {"map": {"r": "1 // (id % 2)"}}  # ids 0, 2, ... raise ZeroDivisionError: 10 of 20 dead


class FillingStore(SQLiteStateStore):
    """A real SQLite store that fills ``tmpfs`` when a run is about to publish (while ``armed``)."""

    def __init__(self, path, tmpfs) -> None:
        super().__init__(path)
        self.tmpfs = tmpfs
        self.armed = True

    def set_pending_state(self, run_id, state, counts=None) -> None:
        super().set_pending_state(run_id, state, counts)
        if self.armed:
            assert self.tmpfs.fill() > 0


def make_spec(tmp_path, sink, steps=(FAILS_ON_EVEN,), dead_letter=None, count=20, pid="synth"):
    data = {
        "id": pid,
        "source": {"type": SYNTH, "count": count, "clock": "2024-01-01T01:00:00Z"},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "read": {"batch_size": 5},
        "steps": list(steps),
        "sink": sink,
        "dead_letter": dead_letter if dead_letter is not None else {"max_ratio": 1},
    }
    path = tmp_path / f"{pid}.yaml"
    path.write_text(yaml.safe_dump(data))
    return parse_pipeline(data, path=str(path))


def sink_ids(kind, tmp_path, pg_dsn=None) -> list[int]:
    if kind == "jsonl":
        return sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out"))
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.out')")
        if cur.fetchone()[0] is None:
            return []
        cur.execute("SELECT id FROM public.out ORDER BY id")
        return [r[0] for r in cur.fetchall()]


def dead_ids(root: Path) -> list[int]:
    return sorted(letter["record"]["id"] for f in list_folders(root) for letter in f.letters())


@pytest.fixture(params=["jsonl", "postgres-append"])
def sink_kind(request):
    return request.param


@pytest.fixture
def sink_config(sink_kind, request):
    if sink_kind == "jsonl":
        return {"type": "jsonl", "path": "out"}
    dsn = request.getfixturevalue("pg_dsn")
    return {"type": "postgres", "dsn": dsn, "table": "out", "mode": "append"}


def test_a_full_disk_at_the_dead_letter_publish_never_doubles_rows(tmp_path, home, tmpfs, sink_kind, sink_config, faults):
    fs = tmpfs("512k")
    dead_root = fs.path / "dead"
    spec = make_spec(tmp_path, sink_config, dead_letter={"path": str(dead_root), "max_ratio": 1})
    store = FillingStore(home / "state.db", fs)
    dsn = sink_config.get("dsn")

    with pytest.raises(RunError) as failed:
        SyncRunner(spec, store, home=home).run()
    faults.injected()
    message = str(failed.value)
    assert "No space left on device" in message and "the disk is full" in message, message
    assert str(dead_root / "_staging") in message, message  # the full path, not just "ENOSPC"
    # Nothing is visible, the run is failed, the watermark did not move.
    assert sink_ids(sink_kind, tmp_path, dsn) == []
    assert list_folders(dead_root) == []
    [run] = store.list_runs("synth")
    assert run.status == "failed" and "No space left" in run.error
    assert store.get_watermark("synth").value is None

    fs.free()
    store.armed = False
    again = SyncRunner(spec, store, home=home).run()
    assert (again.records_read, again.records_written, again.dead_letter) == (20, 10, 10)
    assert sink_ids(sink_kind, tmp_path, dsn) == list(range(1, 20, 2))  # 10 rows, once each
    assert dead_ids(dead_root) == list(range(0, 20, 2))  # 10 dead letters, once each
    faults.checked(20)


def test_a_dead_letter_rename_failing_after_the_sink_published_leaves_the_run_for_repair(
    tmp_path, home, sink_kind, sink_config, monkeypatch, faults
):
    # Injected at the call: with the manifest written before the sink publishes, what is left is one rename
    # inside the dead-letter folder; a filesystem that fails exactly that rename (EIO) cannot be made on cue.
    spec = make_spec(tmp_path, sink_config)
    store = SQLiteStateStore(home / "state.db")
    dead_root = home / "dead_letter" / "synth"
    real_rename = os.rename

    def failing_rename(src, dst, *a, **kw):
        if str(src).startswith(str(dead_root / "_staging")):
            raise OSError(5, "Input/output error", str(src))
        return real_rename(src, dst, *a, **kw)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(RunError, match="published its output but could not finish"):
        SyncRunner(spec, store, home=home).run()
    faults.injected()
    monkeypatch.setattr(os, "rename", real_rename)
    dsn = sink_config.get("dsn")
    assert sink_ids(sink_kind, tmp_path, dsn) == list(range(1, 20, 2))  # visible...
    [run] = store.list_runs("synth")
    assert run.status == "running"  # ...so never failed: a re-run would publish the window again

    SyncRunner(spec, store, home=home).run()  # repairs it first: commits it and publishes its dead letters
    repaired = store.get_run(run.run_id)
    assert repaired.status == "succeeded" and "committed at the next start" in repaired.note
    assert (repaired.records_read, repaired.records_written, repaired.dead_letter) == (20, 10, 10)
    assert sink_ids(sink_kind, tmp_path, dsn) == list(range(1, 20, 2))
    assert dead_ids(dead_root) == list(range(0, 20, 2))
    faults.checked(20)


def test_the_dead_letter_budget_fails_the_run_and_publishes_nothing(tmp_path, home, faults):
    store = SQLiteStateStore(home / "state.db")
    out = tmp_path / "out"
    sink = {"type": "jsonl", "path": "out"}
    cases = [
        # (steps, dead_letter, expected phrase)
        ([FAILS_ON_EVEN], {}, "10 dead letters out of 20 records (50.0%), more than dead_letter.max_ratio 0.1"),
        ([{"map": {"r": "1 // 0"}}], {"max_ratio": 0.99}, "all 20 records of the window are dead letters"),
        ([{"map": {"r": "1 // (id % 10)"}}], {"max_count": 1}, "2 dead letters, more than dead_letter.max_count 1"),
    ]
    for steps, budget, phrase in cases:
        spec = make_spec(tmp_path, sink, steps=steps, dead_letter=budget)
        with pytest.raises(RunError) as failed:
            SyncRunner(spec, store, home=home).run()
        faults.injected()
        message = str(failed.value)
        assert "over the dead-letter budget" in message and phrase in message, message
        assert "nothing was published or committed" in message and "raise dead_letter.max_ratio" in message
        assert "ZeroDivisionError" in message  # the most common reason, so the fix is obvious
        assert not list(out.rglob("part-*")) and list_folders(home / "dead_letter" / "synth") == []
        assert store.get_watermark("synth").value is None
        assert store.list_runs("synth")[0].status == "failed"
    # Within budget: 2 of 20 is 10%, not more.
    ok = SyncRunner(make_spec(tmp_path, sink, steps=[{"map": {"r": "1 // (id % 10)"}}], dead_letter={}), store, home=home).run()
    assert (ok.status, ok.records_written, ok.dead_letter) == ("succeeded", 18, 2)
    faults.checked(20)


def test_dead_letters_list_and_replay_deliver_each_record_once(tmp_path, osmosis_cli, home, faults):
    pipeline = tmp_path / "synth.yaml"

    def write(step):
        make_spec(tmp_path, {"type": "jsonl", "path": "out"}, steps=[step])
        data = yaml.safe_load(pipeline.read_text())
        pipeline.write_text(yaml.safe_dump(data))

    write(FAILS_ON_EVEN)
    first = osmosis_cli("run", pipeline)
    assert first.returncode == 0, first.stderr
    first_run = json.loads(first.stdout.splitlines()[-1])["run_id"]
    listed = osmosis_cli("dead-letters", "list", "synth")
    assert listed.returncode == 0, listed.stderr
    assert first_run in listed.stdout and "kept" in listed.stdout
    assert "10 x 1: map: ZeroDivisionError" in listed.stdout, listed.stdout
    assert "osmosis dead-letters replay synth" in listed.stdout

    # A partial fix: ids 2, 6, 10, ... now pass; 0, 4, 8, ... fail again and stay dead letters.
    write({"map": {"r": "1 // (id % 4) if id % 2 == 0 else 1 // (id % 2)"}})
    replay = osmosis_cli("dead-letters", "replay", "synth")
    assert replay.returncode == 0, replay.stderr
    r1 = json.loads(replay.stdout.splitlines()[-1])
    assert (r1["records_read"], r1["records_written"], r1["dead_letter"]) == (10, 5, 5)
    assert r1["window"] == {"lo": None, "hi": None}  # a replay has no window: the watermark stays
    faults.injected()

    again = osmosis_cli("dead-letters", "replay", "synth", "--run", first_run)
    assert again.returncode == 2 and f"already replayed by run {r1['run_id']}" in again.stderr, again.stderr

    write({"map": {"r": "0"}})
    r2 = json.loads(osmosis_cli("dead-letters", "replay", "synth").stdout.splitlines()[-1])
    assert (r2["records_read"], r2["records_written"], r2["dead_letter"]) == (5, 5, 0)
    nothing = osmosis_cli("dead-letters", "replay", "synth")
    assert nothing.returncode == 0 and "no dead letters to replay" in nothing.stderr

    ids = sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out"))
    assert ids == list(range(20))  # every record once: 10 + 5 + 5
    listed = json.loads(osmosis_cli("dead-letters", "list", "synth", "--json").stdout)
    assert [(f["run_id"], f["count"], f["status"]) for f in listed] == [
        (first_run, 10, f"replayed by {r1['run_id']}"), (r1["run_id"], 5, f"replayed by {r2['run_id']}"),
    ]
    history = json.loads(osmosis_cli("history", "--json").stdout)
    assert [h["status"] for h in history] == ["succeeded"] * 3
    assert json.loads(osmosis_cli("state", "show", "synth", "--json").stdout)["watermark"] == "2024-01-01T01:00:00+00:00"
    faults.checked(20)


def test_a_replay_that_stops_after_publishing_is_never_published_again(tmp_path, home, pg_dsn, monkeypatch, faults):
    # Injected at the call: the replay stops right after its sink published, before it marks the claims done
    # (a kill at that instant); the sink's own record of published runs settles the claims.
    sink = {"type": "postgres", "dsn": pg_dsn, "table": "out", "mode": "append"}
    store = SQLiteStateStore(home / "state.db")
    SyncRunner(make_spec(tmp_path, sink), store, home=home).run()
    fixed = make_spec(tmp_path, sink, steps=[{"map": {"r": "0"}}])
    real_claim = DeadLetterFolder.write_claim

    def stop_when_done(self, run_id, status):
        if status == "done":
            raise KeyboardInterrupt
        return real_claim(self, run_id, status)

    monkeypatch.setattr(DeadLetterFolder, "write_claim", stop_when_done)
    with pytest.raises(RunError, match="published its output but could not finish"):
        SyncRunner(fixed, store, home=home).replay()
    faults.injected()
    monkeypatch.setattr(DeadLetterFolder, "write_claim", real_claim)
    assert sink_ids("postgres", tmp_path, pg_dsn) == list(range(20))

    assert SyncRunner(fixed, store, home=home).replay() is None  # settled as done: nothing left to replay
    assert sink_ids("postgres", tmp_path, pg_dsn) == list(range(20))
    statuses = sorted(r.status for r in store.list_runs("synth"))
    assert statuses == ["succeeded", "succeeded"]  # the stopped replay was committed by the next start
    with pytest.raises(ConfigError, match="no dead letters of that run"):
        SyncRunner(fixed, store, home=home).replay("nope")
    faults.checked(20)

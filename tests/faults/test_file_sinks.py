"""File sinks under hostile placement: a full refresh removes only its own output; URLs, the home and the
pipeline file are refused before anything is written (issue 15, items 1 and 15)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner

SYNTH = "tests.integration.synthetic:SyntheticConnector"


def spec_of(tmp_path, pid="synth", sink=None, count=20, clock="2024-01-01T01:00:00Z", **extra):
    data = {
        "id": pid,
        "source": {"type": SYNTH, "count": count, "clock": clock},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "sink": sink or {"type": "jsonl", "path": "out"},
        **extra,
    }
    return parse_pipeline(data, path=str(tmp_path / f"{pid}.yaml"))


def write_yaml(path: Path, pid: str, sink: dict) -> Path:
    path.write_text(yaml.safe_dump({
        "id": pid, "source": {"type": SYNTH, "count": 5, "clock": "2024-01-01T01:00:00Z"},
        "incremental": {"start": "2024-01-01T00:00:00Z"}, "sink": sink,
    }))
    return path


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_full_refresh_removes_only_what_the_pipeline_published(tmp_path, home, faults, kind):
    store = SQLiteStateStore(home / "state.db")
    sink = {"type": kind, "path": "shared"}
    a = spec_of(tmp_path, "a", sink)
    b = spec_of(tmp_path, "b", sink, count=7)
    assert SyncRunner(a, store, home=home).run().records_written == 20
    assert SyncRunner(b, store, home=home).run().records_written == 7
    shared = tmp_path / "shared"
    # The user's own things in the folder: a file, a folder, a folder that looks like output, a fake manifest.
    (shared / "notes.txt").write_text("mine")
    (shared / "reports").mkdir()
    (shared / "reports" / "q1.csv").write_text("1,2\n")
    lookalike = shared / "20240101T000000000000Z-20240101T000000-deadbeef"
    lookalike.mkdir()
    (lookalike / "part-x.jsonl").write_text('{"id": -1}\n')
    forged = shared / "forged"
    forged.mkdir()
    (forged / "_manifest.json").write_text(json.dumps({"run_id": "x", "pipeline": "a", "files": []}))
    before_b = sorted(p.name for p in shared.iterdir() if p.name.endswith(tuple(
        r.run_id for r in store.list_runs("b"))))
    faults.injected()

    later = spec_of(tmp_path, "a", sink, clock="2024-01-01T02:00:00Z", count=30)
    run = SyncRunner(later, store, home=home, full_refresh=True).run()
    assert run.records_written == 30

    names = sorted(p.name for p in shared.iterdir())
    assert "notes.txt" in names and "reports" in names and lookalike.name in names and "forged" in names
    assert (shared / "reports" / "q1.csv").read_text() == "1,2\n"
    assert [n for n in names if n in before_b] == before_b  # b's output survives a's full refresh
    a_runs = {r.run_id for r in store.list_runs("a")}
    a_folders = [n for n in names if any(n.endswith(f"-{r}") for r in a_runs)]
    assert a_folders == [n for n in names if n.endswith(f"-{run.run_id}")]  # a's earlier output is gone
    if kind == "jsonl":
        ids = [r["id"] for r in read_jsonl_dir(shared)]
        # a's 30 (once), b's 7, and the user's lookalike folder's line
        assert sorted(ids) == sorted(list(range(30)) + list(range(7)) + [-1])
        faults.checked(len(ids))


def test_a_sink_path_that_is_or_holds_the_home_or_the_pipeline_file_is_refused(tmp_path, osmosis_cli, home, faults):
    cases = {
        "home": ({"type": "jsonl", "path": str(home)}, "is the osmosis home"),
        "above-home": ({"type": "jsonl", "path": str(home.parent)}, "contains the osmosis home"),
        "yaml-folder": ({"type": "jsonl", "path": "."}, "contains the pipeline file"),
        "parquet-home": ({"type": "parquet", "path": str(home)}, "is the osmosis home"),
    }
    for name, (sink, expected) in cases.items():
        folder = tmp_path / "pipes" / name
        folder.mkdir(parents=True)
        pipeline = write_yaml(folder / "p.yaml", "p", sink)
        faults.injected()
        checked = osmosis_cli("validate", pipeline)
        assert checked.returncode == 2, checked.stderr
        assert expected in checked.stderr and "sink.path:" in checked.stderr, checked.stderr
        if name in ("home", "yaml-folder"):
            ran = osmosis_cli("run", pipeline)
            assert ran.returncode == 2 and expected in ran.stderr, ran.stderr
            assert "Traceback" not in ran.stderr
    # Nothing was written anywhere, and the home holds only the state store (no run was recorded).
    assert not list((tmp_path / "pipes").rglob("part-*"))
    assert json.loads(osmosis_cli("history", "--json").stdout) == []
    # The library refuses it too, before taking the lease.
    spec = spec_of(tmp_path, sink={"type": "jsonl", "path": str(home)})
    with pytest.raises(ConfigError, match="is the osmosis home"):
        SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home).run()


@pytest.mark.parametrize("url", ["gs://bucket/out", "s3://bucket/out", "file:///tmp/out", "hdfs://nn:8020/out"])
def test_a_url_path_on_a_file_sink_is_refused(tmp_path, osmosis_cli, url, faults):
    pipeline = write_yaml(tmp_path / "p.yaml", "p", {"type": "jsonl", "path": url})
    faults.injected()
    for command in ("validate", "run") if url.startswith("gs:") else ("validate",):
        out = osmosis_cli(command, pipeline)
        assert out.returncode == 2, out.stderr
        assert f"sink.path: '{url}' is a {url.split(':')[0]}:// URL" in out.stderr, out.stderr
        assert "object stores are not supported yet" in out.stderr
    assert not any(p.name.endswith(":") for p in tmp_path.rglob("*")), "no local folder named like the scheme"
    with pytest.raises(ConfigError, match="is a gs:// URL"):
        spec_of(tmp_path, sink={"type": "parquet", "path": "gs://b/o"})

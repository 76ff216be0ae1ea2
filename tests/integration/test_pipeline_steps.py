"""Steps on Beam: the Python API on the in-process runner, and steps inside real sync runs.

Every step alone and composed, expression errors to the dead letter with the step's label,
``on_error: fail``, dedupe across batches and sub-windows, and ``osmosis validate`` on step errors.
"""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import apache_beam as beam
import pytest
import yaml
from apache_beam.testing.util import assert_that, equal_to

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import ConfigError, RunError
from osmosis_beam.core.timefmt import parse_timestamp
from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.runners.options import in_process_pipeline
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.steps.base import StepFailed
from osmosis_beam.steps.cast import CastStep
from osmosis_beam.steps.dedupe import DedupeStep
from osmosis_beam.steps.expressions import FilterStep, MapStep
from osmosis_beam.steps.fields import DropStep, RenameStep, SelectStep
from osmosis_beam.steps.pipeline import Pipeline
from osmosis_beam.steps.python import PythonStep
from osmosis_beam.steps.reshape import ExplodeStep, FlattenStep
from osmosis_beam.steps.text import HtmlToTextStep
from osmosis_beam.sync.runner import SyncRunner

SYNTH = "tests.integration.synthetic:SyntheticConnector"
ROOT = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


def articles(n=12):
    return [
        {
            "id": i,
            "guid": f"g{i % 4}",
            "published": T0 + dt.timedelta(hours=i),
            "price": Decimal(i) * Decimal("12.5"),
            "raw": str(i),
            "summary": f"<p>Story <b>{i}</b> &amp; more</p>",
            "author": {"name": f"a{i}", "geo": {"country": "NL"}},
            "tags": [f"t{j}" for j in range(i % 3)],
        }
        for i in range(n)
    ]


def key(records):
    return sorted(records, key=lambda r: repr(sorted(r.items(), key=str)))


# -- the Python API ------------------------------------------------------------------------------
ALONE = [
    FilterStep("price > 100 and published >= timestamp('2024-01-01T05:00:00Z')"),
    MapStep({"title": "'#' + str(id)", "price2": "price * 2"}),
    SelectStep(["id", "price"]),
    DropStep(["summary", "author"]),
    RenameStep({"guid": "feed_id"}),
    CastStep({"raw": "int", "price": "str"}),
    FlattenStep(separator="/"),
    ExplodeStep("tags", index="tag_no"),
    HtmlToTextStep(["summary"]),
    PythonStep("tests.unit.test_steps:double_or_drop"),
]


@pytest.mark.parametrize("step", ALONE, ids=lambda s: s.name)
def test_each_step_alone_on_beam_matches_process(step):
    records = articles()
    pipeline = Pipeline().add_step(step)
    out = pipeline.execute(records, batch_size=5)
    assert key(out) == key(step.process(records))
    assert pipeline.last_dead_letters == []


def test_dedupe_alone_on_beam_across_batches():
    records = articles(40)
    pipeline = Pipeline().add_step(DedupeStep(["guid"], "published"))
    out = pipeline.execute(records, batch_size=3)  # every key is spread over many batches
    assert sorted((r["guid"], r["id"]) for r in out) == [("g0", 36), ("g1", 37), ("g2", 38), ("g3", 39)]
    assert key(out) == key(DedupeStep(["guid"], "published").process(records))


def test_steps_composed_with_functions_and_record_ptransforms():
    pipeline = (
        Pipeline()
        .add_step(HtmlToTextStep(["summary"]))
        .add_step(FlattenStep())
        .add_step(CastStep({"raw": "int"}))
        .add_step(ExplodeStep("tags"))
        .add_step(FilterStep("raw % 2 == 1"))
        .add_step(DedupeStep(["guid"], "published"))
        .add_step(MapStep({"total": "price + raw", "country": "record['author.geo.country']"}))
        .add_step(lambda r: None if r["id"] == 11 else {**r, "seen": True})
        .add_step(beam.Map(lambda r: {**r, "via_beam": r["id"] * 10}))
        .add_step(RenameStep({"summary": "text"}))
        .add_step(DropStep(["author.name"]))
        .add_step(SelectStep(["id", "guid", "tags", "text", "total", "country", "seen", "via_beam"]))
    )
    out = sorted(pipeline.execute(articles(12), batch_size=4), key=lambda r: r["id"])
    # odd ids with tags: 1 (t0), 5 (t0, t1), 7 (t0), 11 (t0, t1); latest per guid: g1 -> id 5 (9 has no tags), g3 -> 11 (dropped).
    assert out == [
        {"id": 5, "guid": "g1", "tags": out[0]["tags"], "text": "Story 5 & more", "total": Decimal("67.5"),
         "country": "NL", "seen": True, "via_beam": 50},
    ]
    assert out[0]["tags"] in ("t0", "t1")
    assert pipeline.last_dead_letters == []
    assert [s.name if hasattr(s, "name") else s for s in pipeline.steps][:2] == ["html_to_text", "flatten"]


def test_errors_go_to_the_dead_letter_with_the_step_label():
    records = articles(10) + [{"id": 99, "raw": "x", "price": None}]
    pipeline = (
        Pipeline()
        .add_step(CastStep({"raw": "int"}))
        .add_step(MapStep({"ratio": "100 // (id % 5)"}))
        .add_step(FilterStep("price > 10"))
    )
    out = pipeline.execute(records, batch_size=3)
    assert sorted(r["id"] for r in out) == [1, 2, 3, 4, 6, 7, 8, 9]
    dead = sorted(pipeline.last_dead_letters, key=lambda d: d["record"]["id"])
    assert [(d["step"], d["record"]["id"]) for d in dead] == [("2: map", 0), ("2: map", 5), ("1: cast", 99)]
    assert dead[0]["error"] == "ZeroDivisionError: integer division or modulo by zero"
    assert dead[2]["error"] == "ValueError: cast.raw: cannot cast str 'x' to int"
    assert dead[0]["record"]["price"] == Decimal("0.0")  # the record as it entered the step, native values


def test_dedupe_dead_letters_records_without_a_key():
    pipeline = Pipeline().add_step(DedupeStep(["guid"], "published"), label="dedupe guids")
    out = pipeline.execute(articles(4) + [{"id": 9, "guid": None}])
    assert len(out) == 4
    [dead] = pipeline.last_dead_letters
    assert dead["step"] == "dedupe guids" and "no value for key field 'guid'" in dead["error"]


def test_on_error_fail_stops_the_pipeline():
    pipeline = Pipeline().add_step(MapStep({"x": "1 // (id - 3)"}), on_error="fail")
    with pytest.raises(Exception) as info:
        pipeline.execute(articles(5))
    assert "step 1: map failed: ZeroDivisionError" in str(info.value)
    with pytest.raises(Exception, match="step 1: dedupe failed: dedupe: the record has no value for key field 'guid'"):
        Pipeline().add_step(DedupeStep(["guid"], "t"), on_error="fail").execute([{"id": 1}])
    assert issubclass(StepFailed, RunError)


def test_add_step_checks_its_arguments():
    with pytest.raises(TypeError, match="a step must be a TransformationStep, a Beam PTransform or a function"):
        Pipeline().add_step(42)
    with pytest.raises(ValueError, match="on_error must be"):
        Pipeline().add_step(FilterStep("True"), on_error="ignore")
    with pytest.raises(ConfigError, match="no cursor to pick the latest record by"):
        Pipeline().add_step(DedupeStep(["id"])).execute([{"id": 1}])


def test_pipeline_is_a_composite_transform_in_a_beam_pipeline():
    steps = Pipeline().add_step(MapStep({"y": "1 // id"})).add_step(FilterStep("id > 1"))
    with in_process_pipeline() as p:
        out = p | beam.Create([[{"id": 0}, {"id": 1}], [{"id": 2}, {"id": 3}]]) | "Steps" >> steps
        ids = out["records"] | beam.FlatMap(lambda b: b) | beam.Map(lambda r: r["id"])
        assert_that(ids, equal_to([2, 3]), label="records")
        dead = out["dead_letter"] | beam.Map(lambda d: (d["step"], d["record"]["id"]))
        assert_that(dead, equal_to([("1: map", 0)]), label="dead letters")


# -- in a sync run ----------------------------------------------------------------------------------
def make_spec(tmp_path, steps, *, source=None, **extra):
    data = {
        "id": "synth",
        "source": {"type": SYNTH, "count": 50, "clock": "2024-01-01T01:00:00Z", **(source or {})},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "read": {"splits": 4, "batch_size": 7},
        "steps": steps,
        "sink": {"type": "jsonl", "path": "out"},
        **extra,
    }
    return parse_pipeline(data, path=str(tmp_path / "synth.yaml"))


def runner(spec, home):
    return SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home)


def test_sync_run_with_composed_steps_and_dead_letters(tmp_path, home):
    spec = make_spec(tmp_path, [
        {"map": {"group": "id % 5", "amount": "Decimal(value) / 4", "meta": "{'src': {'kind': 'synth', 'n': id}}",
                 "labels": "['x'] * (id % 3)", "html": "'<p>n&deg; ' + str(id) + '</p>'"}},
        {"cast": {"group": "str"}},
        {"flatten": {"separator": "_"}},
        {"explode": {"field": "labels", "index": "label_no"}},
        {"html_to_text": ["html"]},
        {"filter": "100 // (id % 7) > 0"},                    # ids 0, 7, 14, ... raise: dead letters of step 6
        {"dedupe": {"key": ["group"]}},                       # the latest by the connector's cursor (ts)
        {"rename": {"meta_src_kind": "kind"}},
        {"drop": ["value"]},
        {"select": ["id", "group", "amount", "kind", "html", "label_no", "ts"]},
    ], dead_letter={"max_ratio": 0.2})
    run = runner(spec, home).run()
    assert run.status == "succeeded" and run.records_read == 50
    dead = list(read_jsonl_dir(home / "dead_letter" / "synth"))
    # Records with id % 3 == 0 have no labels and are dropped by explode before the filter runs.
    # ids 14 and 35 have two labels: each exploded record is a dead letter of its own.
    assert sorted(d["record"]["id"] for d in dead) == [7, 14, 14, 28, 35, 35, 49]
    assert {d["step"] for d in dead} == {"6: filter"} and all("ZeroDivisionError" in d["error"] for d in dead)
    assert run.dead_letter == 7
    out = sorted(read_jsonl_dir(tmp_path / "out"), key=lambda r: r["group"])
    # per group (id % 5), the largest id with id % 3 != 0 and id % 7 != 0; its last label (ties on ts break by content).
    assert [(r["group"], r["id"]) for r in out] == [("0", 40), ("1", 46), ("2", 47), ("3", 43), ("4", 44)]
    assert out[0] == {
        "id": 40, "group": "0", "amount": "100", "kind": "synth", "html": "n° 40", "label_no": 0,
        "ts": "2024-01-01T00:00:40+00:00",
    }
    assert run.records_written == 5


def test_dedupe_across_sub_windows_and_batches(tmp_path, home):
    # 600 records, 3 per timestamp, read in 8 sub-windows of batches of 5: each key spans them all.
    spec = make_spec(
        tmp_path,
        [{"map": {"k": "id % 4"}}, {"dedupe": {"key": ["k"], "cursor": "id"}}],
        source={"count": 600, "ties": 3, "step_us": 1000},
        read={"splits": 8, "batch_size": 5},
    )
    run = runner(spec, home).run()
    assert run.records_read == 600 and run.records_written == 4
    assert sorted(r["id"] for r in read_jsonl_dir(tmp_path / "out")) == [596, 597, 598, 599]


def test_custom_dead_letter_path(tmp_path, home):
    spec = make_spec(tmp_path, [{"cast": {"id": "bool"}}], dead_letter={"path": "./rejects", "max_ratio": 1})
    run = runner(spec, home).run()
    assert run.records_written == 2 and run.dead_letter == 48  # only ids 0 and 1 are booleans
    dead = list(read_jsonl_dir(tmp_path / "rejects"))
    assert len(dead) == 48 and dead[0]["step"] == "1: cast" and "use true/false" in dead[0]["error"]
    assert not (home / "dead_letter").exists()
    [stored] = SQLiteStateStore(home / "state.db").list_runs("synth")
    assert stored.dead_letter == 48


def test_on_error_fail_fails_the_run_and_keeps_the_watermark(tmp_path, home):
    spec = make_spec(tmp_path, [{"filter": "id < 100"}, {"map": {"r": "1 // (id - 20)"}, "on_error": "fail"}])
    with pytest.raises(RunError, match=r"step 2: map failed: ZeroDivisionError"):
        runner(spec, home).run()
    store = SQLiteStateStore(home / "state.db")
    assert store.get_watermark("synth").value is None
    [failed] = store.list_runs("synth")
    assert failed.status == "failed" and "2: map" in failed.error
    assert list(read_jsonl_dir(tmp_path / "out")) == []
    assert list(read_jsonl_dir(home / "dead_letter" / "synth")) == []
    # Fixed, the same window runs again.
    run = runner(make_spec(tmp_path, [{"map": {"r": "1 // (id - 200)"}, "on_error": "fail"}]), home).run()
    assert run.status == "succeeded" and run.records_written == 50
    assert store.get_watermark("synth").value == parse_timestamp("2024-01-01T01:00:00Z")


# -- osmosis validate ------------------------------------------------------------------------------
def _validate(*paths):
    return subprocess.run(
        [sys.executable, "-m", "osmosis_beam.cli", "validate", *map(str, paths)],
        capture_output=True, text=True, cwd=str(ROOT), timeout=120,
    )


def test_osmosis_validate_reports_step_errors_with_index_and_name(tmp_path):
    bad = {
        "id": "bad",
        "source": {"type": SYNTH},
        "steps": [
            {"filter": "value > 1"},
            {"map": {"total": "value *"}},
            {"dedupe": {"keys": ["id"]}},
            {"html2text": ["summary"]},
            {"cast": {"value": "integr", "ts": "datetime(Nowhere/City)"}},
            {"explode": {"field": "tags", "keep_empty": "perhaps"}},
        ],
        "sink": {"type": "jsonl", "path": "out"},
    }
    good = dict(bad, id="good", steps=[
        {"filter": "value > 1", "on_error": "fail"}, {"map": {"total": "value * 2"}}, {"cast": {"total": "decimal(12,2)"}},
        {"flatten": None}, {"explode": "tags"}, {"html_to_text": ["summary"]}, {"dedupe": {"key": ["id"]}},
        {"select": ["id", "total"]}, {"rename": {"total": "amount"}}, {"drop": ["x"]},
        {"python": "tests.unit.test_steps:double_or_drop"},
    ])
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(good))
    out = _validate(tmp_path / "good.yaml", tmp_path / "bad.yaml")
    assert out.returncode == 2, out.stderr
    assert "good.yaml: ok (pipeline good: " in out.stdout and "-> 11 steps -> jsonl" in out.stdout
    lines = [line.strip() for line in out.stderr.splitlines()]
    assert any(line.endswith("bad.yaml: invalid") for line in lines), out.stderr
    expected = [
        "steps[2] (map): total: invalid Python expression 'value *': it ends too early: something is missing after 'value *'",
        "steps[3] (dedupe): keys: unknown option (did you mean 'key'?); known: key, cursor",
        "steps[3] (dedupe): key: required (the fields that identify a record)",
        "steps[4] (html2text): unknown step 'html2text' (did you mean 'html_to_text'?); known:",
        "steps[5] (cast): value: unknown type 'integr' (did you mean 'int'?)",
        "steps[5] (cast): ts: unknown time zone 'Nowhere/City'",
        "steps[6] (explode): keep_empty: must be true or false, got 'perhaps'",
    ]
    for text in expected:
        assert any(line.startswith(text) for line in lines), (text, out.stderr)
    assert not any(line.startswith("steps[1]") for line in lines)

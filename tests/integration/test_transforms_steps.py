"""Every built-in step as a Beam transform on a PCollection of records, in a plain ``beam.Pipeline()``;
and the seed's ``TransformationStep`` (``name``, ``process``) and ``Pipeline`` (``add_step``, ``execute``).

Each step's output on Beam must equal what the step's ``process`` gives in this process, record for record.
"""
from __future__ import annotations

import datetime as dt
import decimal

import apache_beam as beam
import pytest

import osmosis_beam
from osmosis_beam import steps as steps_pkg
from osmosis_beam.core.models import TransformationStep
from osmosis_beam.steps import (
    Cast,
    CallPython,
    Dedupe,
    Drop,
    Explode,
    Filter,
    FlattenFields,
    HtmlToText,
    MapFields,
    Pipeline,
    Rename,
    Select,
    StepChain,
)
from tests.integration.transforms_support import Collect

UTC = dt.timezone.utc


def articles():
    return [
        {"id": i % 4, "title": f"t{i}", "amount": f"{i * 30}.5", "tags": [f"a{i}", f"b{i}"][: i % 3],
         "meta": {"author": {"name": f"u{i}"}, "lang": "en"}, "body": f"<p>Hello <b>{i}</b></p><p>bye</p>",
         "updated": dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(hours=i)}
        for i in range(10)
    ]


CASES = [
    ("filter", lambda: Filter("float(amount) > 100"), 
     lambda rs: [r for r in rs if float(r["amount"]) > 100]),
    ("map", lambda: MapFields(double="float(amount) * 2", title="title + '!'"),
     lambda rs: [{**r, "double": float(r["amount"]) * 2, "title": r["title"] + "!"} for r in rs]),
    ("select", lambda: Select(["id", "title"]), lambda rs: [{"id": r["id"], "title": r["title"]} for r in rs]),
    ("select varargs", lambda: Select("id", "title"), lambda rs: [{"id": r["id"], "title": r["title"]} for r in rs]),
    ("drop", lambda: Drop(["body", "meta"]),
     lambda rs: [{k: v for k, v in r.items() if k not in ("body", "meta")} for r in rs]),
    ("rename", lambda: Rename({"title": "headline"}),
     lambda rs: [{("headline" if k == "title" else k): v for k, v in r.items()} for r in rs]),
    ("cast", lambda: Cast({"amount": "decimal(12,2)"}),
     lambda rs: [{**r, "amount": decimal.Decimal(r["amount"]).quantize(decimal.Decimal("0.01"))} for r in rs]),
    ("flatten", lambda: FlattenFields({"separator": "."}),
     lambda rs: [{**{k: v for k, v in r.items() if k != "meta"}, "meta.author.name": r["meta"]["author"]["name"],
                  "meta.lang": "en"} for r in rs]),
    ("explode", lambda: Explode("tags"),
     lambda rs: [{**r, "tags": t} for r in rs for t in r["tags"]]),
    ("html_to_text", lambda: HtmlToText(["body"]),
     lambda rs: [{**r, "body": f"Hello {r['title'][1:]}\nbye"} for r in rs]),
    ("python", lambda: CallPython("tests.integration.transforms_support:shout"),
     lambda rs: [{**r, "title": r["title"].upper()} for r in rs]),
    ("dedupe", lambda: Dedupe(key=["id"], cursor="updated"),
     lambda rs: [max((r for r in rs if r["id"] == k), key=lambda r: r["updated"]) for k in sorted({r["id"] for r in rs})]),
]


def _key(record):
    return repr(sorted(record.items(), key=lambda kv: kv[0]))


@pytest.mark.parametrize("make, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_step_on_a_pcollection_of_records(make, expected):
    out = Collect()
    with beam.Pipeline() as p:
        p | beam.Create(articles()) | make() | out.sink("rows")
    got, want = out["rows"], expected(articles())
    assert all(isinstance(r, dict) for r in got)
    assert sorted(map(_key, got)) == sorted(map(_key, want))
    assert len(want) > 0


def test_steps_compose_with_beam_transforms_and_batched_form():
    out = Collect()
    with beam.Pipeline() as p:
        rows = p | beam.Create(articles())
        (rows
         | "Big" >> Filter("float(amount) > 100")
         | "Tag" >> beam.Map(lambda r: {**r, "seen": True})
         | "Keep" >> Select(["id", "title", "seen"])
         | out.sink("rows"))
        (rows
         | "Batch" >> beam.BatchElements(min_batch_size=3, max_batch_size=3)
         | "Batched filter" >> Filter("id == 1", batched=True)
         | out.sink("batches"))
    assert sorted(r["title"] for r in out["rows"]) == ["t4", "t5", "t6", "t7", "t8", "t9"]
    assert all(r["seen"] for r in out["rows"])
    assert all(isinstance(b, list) for b in out["batches"])
    assert sorted(r["title"] for b in out["batches"] for r in b) == ["t1", "t5", "t9"]


def test_a_failing_record_fails_the_pipeline_or_goes_to_dead_letters_when_asked():
    rows = articles() + [{"id": 99, "title": "bad", "amount": "lots"}]
    with pytest.raises(Exception) as info:
        with beam.Pipeline() as p:
            p | beam.Create(rows) | "Amounts" >> Cast({"amount": "decimal"})
    assert "Amounts" in str(info.value) and "lots" in str(info.value)

    out = Collect()
    with beam.Pipeline() as p:
        good, dead = p | beam.Create(rows) | Filter("float(amount) > 100").with_exception_handling()
        good | out.sink("rows")
        dead | out.sink("dead")
    assert len(out["rows"]) == 6
    [letter] = out["dead"]
    assert letter["record"]["title"] == "bad" and "ValueError" in letter["error"] and letter["step"]


def test_step_config_problems_are_clear_at_construction():
    with pytest.raises(Exception) as info:
        Filter("amount >")
    assert "amount >" in str(info.value)
    with pytest.raises(Exception) as info:
        Cast({"amount": "money"})
    assert "money" in str(info.value)


class Upper(TransformationStep):
    """The seed's interface: a name and process(records) -> records."""

    name = "upper"

    def process(self, records):
        return [{**r, "title": r["title"].upper()} for r in records]


def test_the_seeds_transformation_step_and_pipeline_still_work():
    step = Upper()
    assert step.name == "upper" and step.process([{"title": "a"}]) == [{"title": "A"}]
    pipeline = Pipeline()
    assert pipeline.add_step(step) is pipeline  # add_step chains
    pipeline.add_step(lambda r: None if r["id"] == 0 else r).add_step(steps_pkg.FilterStep("id < 3"))
    out = pipeline.execute(articles())
    assert sorted(r["title"] for r in out) == ["T1", "T2", "T5", "T6", "T9"]
    assert Pipeline is StepChain and osmosis_beam.Pipeline is StepChain and osmosis_beam.TransformationStep is TransformationStep


def test_the_seeds_step_runs_as_a_transform_over_records():
    out = Collect()
    with beam.Pipeline() as p:
        p | beam.Create(articles()[:3]) | steps_pkg.StepTransform.of(Upper()) | out.sink("rows")
    assert sorted(r["title"] for r in out["rows"]) == ["T0", "T1", "T2"]


def test_the_beam_pipeline_name_clash_is_explained():
    # osmosis's Pipeline is a chain of steps (a PTransform), not a beam.Pipeline; the docs say so
    assert issubclass(StepChain, beam.PTransform) and not issubclass(StepChain, beam.Pipeline)
    for doc in (StepChain.__doc__, steps_pkg.__doc__):
        assert "beam.Pipeline" in doc or "apache_beam.Pipeline" in doc

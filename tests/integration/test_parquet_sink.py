"""The Parquet sink: schema derivation, widening and conflicts, staging and publish, and real sync runs.

Output is read back with pyarrow and compared value for value (Decimal, timestamps, JSON columns).
"""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to

from osmosis_beam.config import parse_pipeline
from osmosis_beam.core.errors import ConfigError, RunError
from osmosis_beam.io.files.jsonl import iter_output_files, read_jsonl_dir
from osmosis_beam.io.files.parquet import (
    ParquetSink,
    read_parquet_dir,
    read_parquet_table,
)
from osmosis_beam.runners.options import in_process_pipeline
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.sync.runner import SyncRunner

SYNTH = "tests.integration.synthetic:SyntheticConnector"
UTC = dt.timezone.utc
HI = dt.datetime(2024, 2, 1, tzinfo=UTC)
PLUS2 = dt.timezone(dt.timedelta(hours=2))


def write(sink, run_id, batches, *, expect_dead=None):
    """Run the sink's write over ``batches`` (a list of record lists) on the in-process runner."""
    sink.prepare(run_id)
    with in_process_pipeline() as p:
        out = p | beam.Create(batches, reshuffle=False) | sink.write(run_id)
        if expect_dead is not None:
            dead = out["dead_letter"] | beam.Map(lambda d: (d["step"], d["record"].get("id"), d["error"]))
            assert_that(dead, equal_to(expect_dead))


def published_files(path):
    return list(iter_output_files(path, ".parquet"))


def test_values_round_trip_exactly(tmp_path):
    records = [
        {
            "id": 1,
            "amount": Decimal("12.50"),
            "big": 2**70,
            "ratio": 0.25,
            "ok": True,
            "at": dt.datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=PLUS2),
            "local": dt.datetime(2024, 1, 1, 8, 30),
            "day": dt.date(2024, 1, 31),
            "wait": dt.timedelta(minutes=90, microseconds=5),
            "title": "Ünïcödé ✓",
            "blob": b"\x00\xff",
            "meta": {"k": [1, "two", None], "price": Decimal("0.10"), "at": dt.datetime(2024, 1, 1, tzinfo=UTC)},
            "tags": ["a", "b"],
            "missing_later": "x",
            "nothing": None,
        },
        {
            "id": 2,
            "amount": Decimal("-0.005"),
            "big": -1,
            "ratio": 1e300,
            "ok": False,
            "at": dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
            "local": None,
            "day": None,
            "wait": None,
            "title": "",
            "blob": None,
            "meta": {},
            "tags": [],
            "nothing": None,
        },
    ]
    sink = ParquetSink({"path": str(tmp_path / "out")}, pipeline_id="rt")
    write(sink, "r1", [records])
    assert published_files(tmp_path / "out") == []  # nothing visible before publish
    sink.publish("r1", window_hi=HI)
    table = pq.read_table(tmp_path / "out")  # pyarrow's own reader skips _staging and _manifest.json
    schema = table.schema
    assert schema.field("id").type == pa.int64()
    assert schema.field("amount").type == pa.decimal128(38, 3)
    assert schema.field("big").type == pa.decimal128(38, 0)
    assert schema.field("ratio").type == pa.float64()
    assert schema.field("ok").type == pa.bool_()
    assert schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("local").type == pa.timestamp("us")
    assert schema.field("day").type == pa.date32()
    assert schema.field("wait").type == pa.duration("us")
    assert schema.field("title").type == pa.string()
    assert schema.field("blob").type == pa.binary()
    assert schema.field("meta").type == pa.string() and schema.field("meta").metadata == {b"osmosis.encoding": b"json"}
    assert schema.field("nothing").type == pa.null()
    assert schema.metadata[b"osmosis.pipeline"] == b"rt" and schema.metadata[b"osmosis.run_id"] == b"r1"

    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    assert rows[0]["amount"] == Decimal("12.500") and str(rows[1]["amount"]) == "-0.005"
    assert rows[0]["big"] == Decimal(2**70) and rows[1]["big"] == Decimal(-1)
    assert rows[0]["at"] == dt.datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert rows[0]["at"].utcoffset() == dt.timedelta(0)
    assert rows[1]["at"] == dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert rows[0]["local"] == dt.datetime(2024, 1, 1, 8, 30) and rows[0]["local"].tzinfo is None
    assert rows[0]["day"] == dt.date(2024, 1, 31) and rows[0]["wait"] == dt.timedelta(minutes=90, microseconds=5)
    assert rows[0]["title"] == "Ünïcödé ✓" and rows[0]["blob"] == b"\x00\xff" and rows[1]["ratio"] == 1e300
    assert json.loads(rows[0]["meta"]) == {"k": [1, "two", None], "price": "0.10", "at": "2024-01-01T00:00:00+00:00"}
    assert rows[1]["missing_later"] is None and rows[1]["nothing"] is None
    # read_parquet_dir decodes the JSON columns back
    decoded = sorted(read_parquet_dir(tmp_path / "out"), key=lambda r: r["id"])
    assert decoded[0]["tags"] == ["a", "b"] and decoded[1]["tags"] == [] and decoded[1]["meta"] == {}


def test_types_widen_across_batches_in_one_file(tmp_path):
    batches = [
        [{"id": 1, "n": None, "x": 1, "d": Decimal("1.5")}],
        [{"id": 2, "n": 5, "x": 2.5, "d": Decimal("100")}],
        [{"id": 3, "n": 6, "x": 3, "d": Decimal("0.125"), "new": "late"}],
    ]
    sink = ParquetSink({"path": str(tmp_path / "out")}, pipeline_id="w")
    write(sink, "r1", batches, expect_dead=[])
    sink.publish("r1", window_hi=HI)
    [file] = published_files(tmp_path / "out")  # widening before the file is written costs no new file
    table = pq.read_table(file)
    assert table.schema.field("n").type == pa.int64()
    assert table.schema.field("x").type == pa.float64()
    assert table.schema.field("d").type == pa.decimal128(38, 3)
    assert table.column_names == ["id", "n", "x", "d", "new"]
    assert sorted(table.to_pylist(), key=lambda r: r["id"]) == [
        {"id": 1, "n": None, "x": 1.0, "d": Decimal("1.500"), "new": None},
        {"id": 2, "n": 5, "x": 2.5, "d": Decimal("100.000"), "new": None},
        {"id": 3, "n": 6, "x": 3.0, "d": Decimal("0.125"), "new": "late"},
    ]


def test_widening_after_a_row_group_starts_a_new_file(tmp_path):
    batches = [
        [{"id": 1, "d": Decimal("1.5"), "v": 1}],
        [{"id": 2, "d": Decimal("2.5"), "v": 2}],
        [{"id": 3, "d": Decimal("0.001"), "v": 2.5}],
    ]
    sink = ParquetSink({"path": str(tmp_path / "out"), "row_group_size": 1}, pipeline_id="w")
    write(sink, "r1", batches, expect_dead=[])
    sink.publish("r1", window_hi=HI)
    files = published_files(tmp_path / "out")
    assert len(files) == 2
    types = sorted(str(pq.read_schema(f).field("d").type) for f in files)
    assert types == ["decimal128(38, 1)", "decimal128(38, 3)"]
    table = read_parquet_table(tmp_path / "out")
    assert table.schema.field("d").type == pa.decimal128(38, 3) and table.schema.field("v").type == pa.float64()
    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    assert [(r["d"], r["v"]) for r in rows] == [(Decimal("1.5"), 1.0), (Decimal("2.5"), 2.0), (Decimal("0.001"), 2.5)]


def test_conflicting_values_go_to_the_dead_letter(tmp_path):
    batches = [
        [{"id": 1, "n": 1, "d": Decimal("1.5"), "at": dt.datetime(2024, 1, 1, tzinfo=UTC), "meta": {"a": 1}}],
        [
            {"id": 2, "n": "two", "d": Decimal("2"), "at": None},
            {"id": 3, "n": 3, "d": 3.5},
            {"id": 4, "n": 4, "at": dt.datetime(2024, 1, 1)},
            {"id": 5, "n": 5, "meta": "just text"},  # any value fits a JSON column
            {"id": 6, "d": Decimal("NaN")},
            {"id": 7, "n": object()},
            {"id": 8, "n": 8, "wait": dt.timedelta(days=999_999_999)},  # passes the type rules, pyarrow refuses it
            {"id": 9, "n": 9, "wait": dt.timedelta(seconds=1)},
        ],
    ]
    sink = ParquetSink({"path": str(tmp_path / "out")}, pipeline_id="c")
    expected = [
        ("sink: parquet", 2, "field 'n' is int in this file but this record has a str (string); cast it, or pin the column in sink.schema"),
        ("sink: parquet", 3, "field 'd' is decimal(2,1) in this file but this record has a float (float); cast it, or pin the column in sink.schema"),
        ("sink: parquet", 4, "field 'at' is timestamp in this file but this record has a datetime (timestamp_naive); cast it, or pin the column in sink.schema"),
        ("sink: parquet", 6, "field 'd': NaN cannot be stored in a decimal column"),
        ("sink: parquet", 7, "field 'n': a object cannot be stored in Parquet; convert it with a cast or map step"),
        ("sink: parquet", 8, "cannot write the record: Timedelta too large to fit in 64-bit integer"),
    ]
    write(sink, "r1", batches, expect_dead=expected)
    sink.publish("r1", window_hi=HI)
    rows = sorted(read_parquet_dir(tmp_path / "out"), key=lambda r: r["id"])
    assert [(r["id"], r["n"], r["meta"]) for r in rows] == [(1, 1, {"a": 1}), (5, 5, "just text"), (9, 9, None)]
    assert rows[2]["wait"] == dt.timedelta(seconds=1)


def test_pinned_schema_fixes_types_in_every_file(tmp_path):
    options = {"path": str(tmp_path / "out"), "row_group_size": 1,
               "schema": {"amount": "decimal(12,2)", "at": "timestamp", "extra": "json", "n": "float"}}
    sink = ParquetSink(options, pipeline_id="p")
    batches = [
        [{"id": 1, "amount": Decimal("1.5"), "n": 1}],
        [{"id": 2, "amount": Decimal("1.005")}, {"id": 3, "amount": 7, "at": dt.datetime(2024, 1, 1, tzinfo=PLUS2)}],
        [{"id": 4, "amount": Decimal("12345678901.00")}],
    ]
    expected = [
        ("sink: parquet", 2, "field 'amount' is decimal(12,2) in this file but this record has a Decimal (decimal(4,3)); cast it, or pin the column in sink.schema"),
        ("sink: parquet", 3, "field 'amount' is decimal(12,2) in this file but this record has a int (int); cast it, or pin the column in sink.schema"),
        ("sink: parquet", 4, "field 'amount' is decimal(12,2) in this file but this record has a Decimal (decimal(13,2)); cast it, or pin the column in sink.schema"),
    ]
    write(sink, "r1", batches, expect_dead=expected)
    sink.publish("r1", window_hi=HI)
    [file] = published_files(tmp_path / "out")
    schema = pq.read_schema(file)
    assert schema.field("amount").type == pa.decimal128(12, 2) and schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("extra").metadata == {b"osmosis.encoding": b"json"} and schema.field("n").type == pa.float64()
    assert pq.read_table(file).to_pylist() == [{"amount": Decimal("1.50"), "at": None, "extra": None, "n": 1.0, "id": 1}]


def test_pinned_schema_and_compression_are_validated():
    with pytest.raises(ConfigError) as info:
        ParquetSink({"path": "/tmp/x", "schema": {"a": "decimal(90,2)", "b": "strng", "c": "decimal"}, "compression": "zip"})
    problems = info.value.problems
    assert any(p.startswith("sink.compression: must be one of snappy, zstd") for p in problems), problems
    assert "sink.schema.a: decimal(P,S) needs 1 <= P <= 76 and S <= P, got 'decimal(90,2)'" in problems
    assert any(p.startswith("sink.schema.b: unknown type 'strng' (did you mean 'string'?)") for p in problems), problems
    assert "sink.schema.c: give decimal(P,S), e.g. decimal(18,2)" in problems


def test_staging_publish_abort_and_full_refresh(tmp_path):
    root = tmp_path / "out"
    sink = ParquetSink({"path": str(root), "compression": "zstd"}, pipeline_id="s")
    write(sink, "run-a", [[{"id": 1}], [{"id": 2}]])
    staged = list((root / "_staging" / "run-a").iterdir())
    assert staged and all(p.name.startswith("part-") and p.suffix == ".parquet" for p in staged)
    assert not sink.is_published("run-a") and published_files(root) == []
    info = sink.publish("run-a", window_hi=HI)
    target = root / "20240201T000000000000Z-run-a"
    assert info == {"files": len(staged), "path": str(target)} and sink.is_published("run-a")
    manifest = json.loads((target / "_manifest.json").read_text())
    assert manifest["run_id"] == "run-a" and sorted(manifest["files"]) == sorted(p.name for p in staged)
    assert not (root / "_staging").exists()
    assert pq.ParquetFile(published_files(root)[0]).metadata.row_group(0).column(0).compression == "ZSTD"

    write(sink, "run-b", [[{"id": 3}]])
    sink.abort("run-b")
    assert not (root / "_staging").exists() and not sink.is_published("run-b")

    write(sink, "run-c", [[{"id": 4}]])
    sink.publish("run-c", window_hi=HI + dt.timedelta(days=1), full_refresh=True)
    assert [r["id"] for r in read_parquet_dir(root)] == [4]
    assert sorted(p.name for p in root.iterdir()) == ["20240202T000000000000Z-run-c"]

    sink.prepare("run-d")  # a run with no records publishes nothing
    assert sink.publish("run-d", window_hi=HI) == {"files": 0, "path": None} and not sink.is_published("run-d")


# -- through real sync runs ------------------------------------------------------------------------
def make_spec(tmp_path, *, source=None, sink=None, **extra):
    data = {
        "id": "pq",
        "source": {"type": SYNTH, "count": 60, "clock": "2024-01-01T00:00:30Z", **(source or {})},
        "incremental": {"start": "2024-01-01T00:00:00Z"},
        "read": {"splits": 4, "batch_size": 7},
        "steps": [
            {"map": {"amount": "Decimal(value) / 8", "meta": "{'even': id % 2 == 0, 'tags': ['t'] * (id % 3)}",
                     "odd": "1 // (id % 13)"}},
        ],
        "sink": {"type": "parquet", "path": "out", **(sink or {})},
        **extra,
    }
    return parse_pipeline(data, path=str(tmp_path / "pq.yaml"))


def runner(spec, home, **kw):
    return SyncRunner(spec, SQLiteStateStore(home / "state.db"), home=home, **kw)


def test_sync_runs_write_parquet_incrementally(tmp_path, home):
    run1 = runner(make_spec(tmp_path), home).run()
    assert (run1.records_read, run1.records_written, run1.dead_letter) == (30, 27, 3)  # ids 0, 13, 26 divide by zero
    run2 = runner(make_spec(tmp_path, source={"clock": "2024-01-01T00:01:00Z"}), home).run()
    assert (run2.records_read, run2.records_written, run2.dead_letter) == (30, 28, 2)  # 39, 52
    out = tmp_path / "out"
    runs = sorted(p.name for p in out.iterdir())
    assert len(runs) == 2 and runs[0].endswith(run1.run_id) and runs[1].endswith(run2.run_id)
    table = pq.read_table(out)
    assert table.num_rows == 55 and table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    rows = {r["id"]: r for r in read_parquet_dir(out)}
    assert sorted(rows) == [i for i in range(60) if i % 13]
    assert rows[5]["amount"] == Decimal("6.25") and rows[5]["ts"] == dt.datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert rows[5]["meta"] == {"even": False, "tags": ["t", "t"]} and rows[6]["meta"] == {"even": True, "tags": []}
    dead = list(read_jsonl_dir(home / "dead_letter" / "pq"))
    assert sorted(d["record"]["id"] for d in dead) == [0, 13, 26, 39, 52] and {d["step"] for d in dead} == {"1: map"}


def test_failed_sync_leaves_no_parquet_and_full_refresh_replaces(tmp_path, home):
    with pytest.raises(RunError):
        runner(make_spec(tmp_path, source={"fail_after": 3}), home).run()
    out = tmp_path / "out"
    assert published_files(out) == [] and not any(out.glob("_staging/*"))
    runner(make_spec(tmp_path), home).run()
    run = runner(make_spec(tmp_path), home, full_refresh=True).run()
    assert run.records_written == 27
    assert [p.name.endswith(run.run_id) for p in out.iterdir()] == [True]
    assert sorted(r["id"] for r in read_parquet_dir(out)) == [i for i in range(30) if i % 13]


def test_pipeline_validation_checks_the_parquet_sink(tmp_path):
    # (``osmosis validate`` prints these same problems; its subprocess path is tested in test_pipeline_steps.)
    data = {"id": "v", "source": {"type": SYNTH},
            "sink": {"type": "parquet", "path": "out", "compresion": "zstd", "schema": {"amount": "decimal(12)"}}}
    with pytest.raises(ConfigError) as info:
        parse_pipeline(data, path=str(tmp_path / "v.yaml"))
    problems = info.value.problems
    assert any(p.startswith("sink.compresion: unknown option (did you mean 'compression'?)") for p in problems), problems
    assert any(p.startswith("sink.schema.amount: unknown type 'decimal(12)'") for p in problems), problems

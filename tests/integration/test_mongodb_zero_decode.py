"""MongoDB -> JSONL on the zero-decode path against the typed path: the same lines, value for value.

The zero-decode read decodes raw BSON batches without the typed path's type registry and encodes them with
orjson; documents with rare BSON types or NaN go through the typed code. Each test reads the same documents
both ways through Beam's in-process runner into JSONL part files and compares the files' lines, the dead
letters and the key order, on CongoDB (every BSON type) and FerretDB (the types it has).
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import textwrap
import uuid
from pathlib import Path

import apache_beam as beam
import pytest
from bson import (
    Binary,
    Code,
    DBRef,
    Decimal128,
    Int64,
    MaxKey,
    MinKey,
    ObjectId,
    Regex,
    Timestamp,
)
from bson.datetime_ms import DatetimeMS

from osmosis_beam.core.records import EncodedBatch
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.io.files.jsonl_write import WriteJSONL
from osmosis_beam.io.mongodb.encoded import FieldPlan, decimal128_text
from osmosis_beam.io.read import ReadWindow
from tests.integration.mongo_support import UTC, at, mongo_db, only_on, own_congodb, watch_cursors  # noqa: F401  (fixture)
from tests.integration.pg_support import _Store, pipeline

NO_FERRETDB_TYPES = "FerretDB 1.x has no Decimal128, Code, MinKey/MaxKey, DBRef or nested arrays"
WINDOW = SyncWindow(at(-10), at(10_000))


def _read_to_jsonl(connector, window: SyncWindow, out: Path, *, splits: int, batch_size: int = 7):
    """Read ``window`` through Beam into JSONL part files: (lines, dead letters, batch kinds)."""
    dead, kinds = _Store(), _Store()
    with pipeline() as p:
        read = p | "Read" >> ReadWindow(connector, window, splits=splits, batch_size=batch_size)
        read.records | "Kinds" >> beam.Map(lambda b: kinds.add("encoded" if isinstance(b, EncodedBatch) else "typed"))
        written = read.records | "Write" >> WriteJSONL(str(out))
        (read.dead_letter, written["dead_letter"]) | beam.Flatten() | beam.Map(dead.add)
    lines = [line for part in sorted(out.glob("part-*.jsonl")) for line in part.read_text(encoding="utf-8").splitlines()]
    return lines, dead.take(), kinds.take()


def _both_paths(mongo_db, tmp_path, collection: str, *, splits: int = 1, fields=(), **options):
    """(typed lines, typed dead letters), (zero-decode lines, dead letters), each path's batch kinds."""
    typed = mongo_db.source(collection, **options)
    zero = mongo_db.source(collection, **options)
    assert typed.use_encoding(None) is None
    assert zero.use_encoding("json", fields) is None
    t_lines, t_dead, t_kinds = _read_to_jsonl(typed, WINDOW, tmp_path / "typed", splits=splits)
    z_lines, z_dead, z_kinds = _read_to_jsonl(zero, WINDOW, tmp_path / "zero", splits=splits)
    assert set(t_kinds) == {"typed"} and set(z_kinds) == {"encoded"}
    return (t_lines, t_dead), (z_lines, z_dead)


def _assert_same(typed, zero):
    (t_lines, t_dead), (z_lines, z_dead) = typed, zero
    # Byte for byte, so the values, their text and the key order all agree; the order of part files may differ.
    assert sorted(z_lines) == sorted(t_lines)
    assert len(set(z_lines)) == len(z_lines)
    key = lambda d: (d["step"], d["error"], json.dumps(d["record"], sort_keys=True, default=str))  # noqa: E731
    assert sorted(map(key, z_dead)) == sorted(map(key, t_dead))


def _every_bson_type(i: int, oid: ObjectId) -> list[dict]:
    """One document per kind of value (so one dead-lettered value does not hide the others), then all in one."""
    ref = ObjectId("0123456789abcdef01234567")
    values = {
        "oid": ref,
        "dec": Decimal128("12345678901234567890.000000000001"),
        "dec_forms": [Decimal128(s) for s in (
            "-0.10", "0", "-0", "1E+3", "1.5E-10", "0.000001", "0.0000001", "123456789012345678901234567890123.4",
            "9.999999999999999999999999999999999E+6144", "1E-6176", "-1E+6111", "0E-6176", "1.0", "100",
            "NaN", "-NaN", "Infinity", "-Infinity",
        )],
        "date_pre_1970": dt.datetime(1969, 7, 20, 20, 17, 40, 123000, tzinfo=UTC),
        "date_year_1": dt.datetime(1, 1, 1, tzinfo=UTC),
        "date_9999": dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        "date_after_9999": DatetimeMS(253402300800000 + 86_400_000),
        "date_before_year_1": DatetimeMS(-62135596800000 - 1),
        "i32": -(2**31),
        "i64": Int64(2**62),
        "i64_min": Int64(-(2**63)),
        "dbl": 1.5,
        "dbl_neg_zero": -0.0,
        "dbl_big": 1e300,
        "dbl_tiny": 5e-324,
        "bin0": Binary(b"\x00\x01\xfe\xff", 0),
        "bin_empty": Binary(b"", 0),
        "bin1_function": Binary(b"\x01\x02", 1),
        "bin2_old": Binary(b"\x03\x04", 2),
        "bin3_uuid_old": Binary(b"\x12" * 16, 3),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "bin5_md5": Binary(b"\x05" * 16, 5),
        "bin6_encrypted": Binary(b"\x06\x07", 6),
        "bin_user": Binary(b"\x10\x20", 0x80),
        "s": 'héllo ✓ 𝄞 "q" \\ \t\n\u0000',
        "s_empty": "",
        "t": True,
        "f": False,
        "none": None,
        "re": Regex("^ab+c", "im"),
        "code": Code("function () { return 1 }"),
        "code_scope": Code("function () { return x }", {"x": 1}),
        "stamp": Timestamp(1700000000, 5),
        "min": MinKey(),
        "max": MaxKey(),
        "ref": DBRef("other", ref),
        "ref_db": DBRef("other", 5, "otherdb"),
        "nested": {"a": {"b": {"c": [1, {"d": Decimal128("9.99"), "e": ref}, [dt.datetime(2024, 1, 1, tzinfo=UTC)]]}}},
        "arr": [1, "two", 3.0, None, [4, [5]], {}, []],
        "empty": {},
        "nan": float("nan"),
        "inf": float("inf"),
        "ninf": float("-inf"),
        "nested_nan": {"x": [1.0, float("nan")]},
    }
    docs = [{"_id": ObjectId(), "ts": at(i, ms=k), "kind": name, "v": value} for k, (name, value) in enumerate(values.items())]
    docs.append({"_id": oid, "ts": at(i + 1), "kind": "all", **{k: v for k, v in values.items() if "nan" not in k and "inf" not in k}})
    return docs


@only_on("congodb", reason=NO_FERRETDB_TYPES)
@pytest.mark.parametrize("splits", [1, 3])
def test_zero_decode_lines_equal_the_typed_path_over_every_bson_type(mongo_db, tmp_path, splits):
    docs = [d for i in range(3) for d in _every_bson_type(i * 100, ObjectId())]
    # Ties at one cursor value, across the batch edges (batches of 7) and the split points.
    docs += [{"ts": at(50), "n": n, "amount": Decimal128(f"{n}.{n:02d}")} for n in range(40)]
    mongo_db.db.types.insert_many(docs)

    typed, zero = _both_paths(mongo_db, tmp_path, "types", splits=splits)
    _assert_same(typed, zero)

    lines, dead = zero
    assert len(lines) + len(dead) == len(docs)
    # NaN and infinities go where they go on the typed path: to the dead letters, from the JSONL encoding.
    assert len(dead) == 3 * 4 and {d["step"] for d in dead} == {"sink: jsonl"}
    assert all("cannot encode as JSON" in d["error"] for d in dead)
    # Spot checks on the zero-decode output itself.
    out = {r["kind"]: r["v"] for r in map(json.loads, lines) if "kind" in r and r["kind"] != "all"}
    assert out["oid"] == "0123456789abcdef01234567"
    assert out["dec"] == "12345678901234567890.000000000001"
    assert out["dec_forms"][:4] == ["-0.10", "0", "-0", "1E+3"] and out["dec_forms"][-4:] == ["NaN", "-NaN", "Infinity", "-Infinity"]
    assert out["date_pre_1970"] == "1969-07-20T20:17:40.123000+00:00" and out["date_year_1"] == "0001-01-01T00:00:00+00:00"
    assert out["date_after_9999"] == {"$date": {"$numberLong": "253402387200000"}}
    assert out["i64"] == 2**62 and out["i64_min"] == -(2**63)
    assert out["bin0"] == "AAH+/w==" and out["uuid"] == "12345678-1234-5678-1234-567812345678"
    assert out["re"] == {"$regularExpression": {"pattern": "^ab+c", "options": "im"}}
    assert out["stamp"] == {"$timestamp": {"t": 1700000000, "i": 5}} and out["min"] == {"$minKey": 1}
    assert out["ref"] == {"$ref": "other", "$id": {"$oid": "0123456789abcdef01234567"}}


def test_a_batch_is_encoded_in_one_call_and_a_document_holding_its_separator_alone(mongo_db, tmp_path):
    """A batch is one orjson call split at a random separator; a document that holds the separator (as an array
    element, the one place it could appear unescaped) sends its batch document by document: same lines."""
    from osmosis_beam.io.mongodb import encoded

    token = encoded._TOKEN
    docs = [{"ts": at(i), "n": i, "tags": ["a", {"b": [i, {}]}, {}], "s": f',"{token}",'} for i in range(30)]
    docs[11]["tags"] = ["x", token, "y"]  # the separator's very bytes, unescaped, in a batch of 7 (batch_size)
    docs[12][token] = token
    mongo_db.db.sep.insert_many(docs)
    typed, zero = _both_paths(mongo_db, tmp_path, "sep", splits=1, batch_size=7)
    _assert_same(typed, zero)
    assert len(zero[0]) == 30 and not zero[1]
    assert {json.loads(line)["n"]: json.loads(line)["tags"] for line in zero[0]}[11] == ["x", token, "y"]
    # Without a document holding it, the split gives the documents one by one, as one call each would.
    plain = [{"n": i, "s": f',"{token}",', "l": [{}, [], "x"]} for i in range(5)]
    lines, failed = encoded.fast_lines(plain)
    import orjson

    assert lines == [orjson.dumps(d) for d in plain] and failed == []
    assert encoded.fast_lines([{"l": ["x", token, "y"]}, {"n": 1}])[0] == [orjson.dumps({"l": ["x", token, "y"]}), b'{"n":1}']


def test_zero_decode_equals_typed_on_every_server(mongo_db, tmp_path):
    """The common types on both CongoDB and FerretDB, with the `_id` dropped by the projection option."""
    docs = [
        {"ts": at(i // 3, ms=i % 3), "n": i, "s": f"row {i} ✓", "f": i / 7, "b": i % 2 == 0, "none": None,
         "d": dt.datetime(1960 + i % 80, 1 + i % 12, 1, tzinfo=UTC), "bin": Binary(bytes([i % 256]) * 3, 0),
         "u": uuid.UUID(int=i), "big": Int64(2**40 + i), "doc": {"k": [i, "x", {"y": i % 5}]}, "oid": ObjectId()}
        for i in range(120)
    ]
    mongo_db.db.common.insert_many(docs)
    typed, zero = _both_paths(mongo_db, tmp_path, "common", splits=2)
    _assert_same(typed, zero)
    assert len(zero[0]) == 120 and not zero[1]
    no_id = _both_paths(mongo_db, tmp_path / "no_id", "common", projection={"_id": 0, "doc": 0})
    _assert_same(*no_id)
    first = json.loads(sorted(no_id[1][0])[0])
    assert "_id" not in first and "doc" not in first and "n" in first


@pytest.mark.parametrize(
    "fields",
    [
        (("select", ["n", "ts", "missing", "doc"]),),
        (("drop", ["s", "_id", "doc"]), ("rename", {"n": "number", "ts": "at"})),
        (("rename", {"n": "s", "s": "n"}), ("select", ["s", "n", "a.b"])),
        (("select", ["a.b", "n"]),),  # a dotted name: a key of that name, as the step reads it
    ],
)
def test_field_steps_on_the_zero_decode_path_equal_the_steps(mongo_db, tmp_path, fields):
    docs = [{"ts": at(i // 4), "n": i, "s": str(i), "doc": {"x": i}, "a.b": i * 2, "a": {"b": -i}} for i in range(60)]
    if mongo_db.kind == "ferretdb":  # FerretDB refuses a field name with a dot
        for doc in docs:
            del doc["a.b"]
    mongo_db.db.fields.insert_many(docs)
    zero = _both_paths(mongo_db, tmp_path, "fields", splits=2, fields=fields)[1]
    # The typed path with the same steps run as steps.
    from osmosis_beam.core.encoding import dumps

    plan = FieldPlan.of(fields, "ts")
    typed_src = mongo_db.source("fields")
    typed_src.connect()
    try:
        records = list(typed_src.read_window(WINDOW.lo, WINDOW.hi))
    finally:
        typed_src.disconnect()
    expected = [dumps(r) for r in plan.apply(records)]
    assert sorted(zero[0]) == sorted(expected) and not zero[1]


def test_select_and_drop_push_a_projection_to_the_server():
    select = FieldPlan.of((("select", ["n", "a.b", "_id"]), ("rename", {"n": "m"})), "ts").projection()
    assert select is None  # a dotted name is a key for the step, a path for MongoDB: not pushed
    assert FieldPlan.of((("select", ["n", "s"]),), "ts").projection() == {"n": 1, "s": 1, "_id": 1, "ts": 1}
    assert FieldPlan.of((("select", ["n"]),), "_id").projection() == {"n": 1, "_id": 1}
    assert FieldPlan.of((("drop", ["s", "_id", "ts", "x.y"]),), "ts").projection() == {"s": 0}
    assert FieldPlan.of((("drop", ["meta"]),), "meta.updated_at").projection() is None
    assert FieldPlan.of((("rename", {"a": "b"}),), "ts").projection() is None


def test_the_zero_decode_read_resumes_a_lost_cursor_after_the_last_batch(mongo_db):
    mongo_db.db.events.insert_many([{"ts": at(ms=i // 3), "i": i} for i in range(200)])
    src = mongo_db.source("events", batch_size=10)
    assert src.use_encoding("json") is None
    # killed by the fetch thread itself after the 2nd getMore (30 documents fetched), between two getMores
    listener = watch_cursors(src, mongo_db.uri, kill_after=2)
    try:
        got = [json.loads(line)["i"] for batch in src.read_window_batches(at(0), at(1), 1000) for line in batch.lines]
    finally:
        src.disconnect()
    assert listener.killed == listener.ids[:1] and listener.ids[0] != 0
    assert listener.finds == 2
    assert got == list(range(200))


def test_decimal128_text_is_the_drivers_decimal_text():
    import random

    rng = random.Random(14)
    values = [Decimal128(s) for s in ("NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "-0", "0E+6111", "1E-6176")]
    for _ in range(20000):
        coefficient, exponent = rng.randrange(10 ** rng.randint(1, 34)), rng.randint(-6176, 6111)
        values.append(Decimal128(decimal.Decimal(f"{rng.choice('+-')}{coefficient}E{exponent}")))
        values.append(Decimal128(decimal.Decimal(f"{rng.randrange(10**9)}E{rng.randint(-15, 5)}")))
        high, low = rng.getrandbits(64), rng.getrandbits(64)  # any bits: second form, non-canonical, NaN payloads
        values.append(Decimal128.from_bid(low.to_bytes(8, "little") + high.to_bytes(8, "little")))
    mismatches = [v for v in values if decimal128_text(v) != str(v.to_decimal())]
    assert mismatches == []


def _pipeline_yaml(path: Path, uri: str, database: str, out: Path, extra: str = "") -> Path:
    path.write_text(textwrap.dedent(f"""\
        id: mongo_zero
        source:
          type: mongodb
          uri: {uri}
          database: {database}
          collection: events
          cursor_field: ts
        incremental:
          safety_lag: 0s
        sink:
          type: jsonl
          path: {out}
        """) + extra)
    return path


def test_cli_says_which_path_ran_and_both_write_the_same(mongo_db, tmp_path, osmosis_cli):
    now = dt.datetime.now(UTC).replace(microsecond=0)
    ferret = mongo_db.kind == "ferretdb"  # FerretDB 1.x stores neither NaN nor Decimal128
    docs = [{"ts": now - dt.timedelta(minutes=5, milliseconds=i), "n": i,
             "amount": f"{i}.50" if ferret else Decimal128(f"{i}.50"),
             "nan": float("nan") if i == 7 and not ferret else 1.0} for i in range(300)]
    written, dead = (300, 0) if ferret else (299, 1)
    mongo_db.db.events.insert_many(docs)
    steps = "steps:\n  - drop: [_id]\n  - rename: {n: number}\n"
    runs, outputs = {}, {}
    for path in ("auto", "typed"):
        extra = steps + ("read: {path: typed}\n" if path == "typed" else "")
        yaml_path = _pipeline_yaml(tmp_path / f"{path}.yaml", mongo_db.uri, mongo_db.name, tmp_path / path, extra)
        result = osmosis_cli("-v", "run", yaml_path, home_dir=tmp_path / f"home-{path}")
        assert result.returncode == 0, result.stderr
        runs[path] = result
        outputs[path] = sorted(x for f in (tmp_path / path).rglob("part-*.jsonl") for x in f.read_text().splitlines())
    assert "zero-decode json path (no step needs Python values (drop, rename done by the source)" in runs["auto"].stderr
    assert "typed path (read.path is typed)" in runs["typed"].stderr
    assert outputs["auto"] == outputs["typed"] and len(outputs["auto"]) == written
    assert json.loads(outputs["auto"][0]).keys() == {"ts", "number", "amount", "nan"}
    for result in runs.values():
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["records_written"] == written and summary["dead_letter"] == dead
        assert summary["records_read"] == 300  # the NaN document is read on both paths, then dead-lettered


@pytest.mark.parametrize("encoding", [None, "json"])
def test_a_server_that_stops_answering_fails_the_read_at_query_timeout(encoding, monkeypatch):
    """A real server frozen mid-read (SIGSTOP): the next getMore gets no reply, and the read fails, retriable,
    after ``query_timeout`` instead of hanging. It always freezes a CongoDB of its own, never the server of
    $OSMOSIS_TEST_MONGO_URI."""
    import os
    import signal
    import time

    from osmosis_beam.core.errors import RetriableConnectorError
    from osmosis_beam.io.mongodb.source import MongoDBConnector

    with own_congodb(monkeypatch) as server:
        # 20 batches: the fetch thread runs at most 3 batches ahead of the reader (2 queued, 1 in hand), so
        # it cannot have fetched them all before the freeze
        server.client()["d"]["events"].insert_many([{"ts": at(ms=i), "i": i} for i in range(200)])
        src = MongoDBConnector({"uri": server.uri, "database": "d", "collection": "events", "cursor_field": "ts",
                                "batch_size": 10, "query_timeout": "1500ms", "timeout": "2s"})
        assert src.use_encoding(encoding) is None
        reader = iter(src.read_window_batches(at(0), at(1), 10))
        assert len(next(reader)) == 10
        os.kill(server._proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            with pytest.raises(RetriableConnectorError) as err:
                list(reader)
        finally:
            os.kill(server._proc.pid, signal.SIGCONT)
        assert time.monotonic() - started < 30
        assert "sent no reply within query_timeout (1.5s)" in str(err.value)
        src.disconnect()


@only_on("congodb", reason="FerretDB 1.x does not store NaN")
@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_a_dynamic_split_emits_each_nan_dead_letter_once(mongo_db, fraction):
    """Documents the sink cannot encode (a NaN) on both sides of a dynamic split of the zero-decode read:
    the primary's and the residual's outputs hold each line once and each dead letter once."""
    from apache_beam.io.restriction_trackers import OffsetRange

    from osmosis_beam.core.timefmt import to_micros
    from osmosis_beam.io.read import _ReadTask, _ReadWindowFn
    from tests.integration.transforms_support import drive_letters

    mongo_db.db.events.insert_many([{"ts": at(i // 2), "i": i, "x": float("nan") if i % 5 == 0 else i / 4}
                                    for i in range(240)])
    src = mongo_db.source("events", batch_size=10)
    assert src.use_encoding("json") is None
    task = _ReadTask(to_micros(at(0)), to_micros(at(200)), ())
    fn = _ReadWindowFn(src, batch_size=7)

    def drive(restriction, split_after=None):
        return drive_letters(fn, task, restriction, split_after, fraction, id_field="i")

    fn.setup()
    try:
        whole_ids, whole_letters, _ = drive(OffsetRange(task.lo, task.hi))
        first_ids, first_letters, residual = drive(OffsetRange(task.lo, task.hi), split_after=40)
        assert residual is not None
        rest_ids, rest_letters, _ = drive(residual)
    finally:
        fn.teardown()
    assert sorted(whole_ids) == [i for i in range(240) if i % 5] and len(whole_letters) == 48
    assert sorted(first_ids + rest_ids) == sorted(whole_ids)  # every line once
    assert first_letters and rest_letters  # NaN documents on both sides of the split
    assert sorted(first_letters + rest_letters) == sorted(whole_letters)  # every dead letter once

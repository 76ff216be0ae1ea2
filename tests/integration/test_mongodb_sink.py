"""The MongoDB sink against real MongoDB-wire servers: CongoDB (or $OSMOSIS_TEST_MONGO_URI) and FerretDB.

Each test that uses ``mongo_db`` runs on both, except where ``only_on`` says what the other lacks. FerretDB
keeps BSON types on update and enforces unique indexes, so the tests of those run on FerretDB only (and on
a real mongod, when ``$OSMOSIS_TEST_MONGO_URI`` points ``congodb`` at one); CongoDB hosts Decimal128,
Code, MinKey/MaxKey, which FerretDB 1.x lacks.
"""
from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from bson import (
    Binary,
    Code,
    Decimal128,
    Int64,
    MaxKey,
    MinKey,
    ObjectId,
    Regex,
    Timestamp,
)

from osmosis_beam.core.errors import ConfigError, SinkError
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.io.mongodb.sink import MongoDBSink
from osmosis_beam.io.mongodb.transforms import WriteToMongoDB
from osmosis_beam.io.read import ReadWindow
from tests.integration.mongo_support import UTC, at, mongo_db, only_on, own_congodb, run_beam  # noqa: F401  (fixture)

NO_DECIMAL128 = "FerretDB 1.x has no Decimal128 (it closes the connection)"
NO_FERRETDB_TYPES = "FerretDB 1.x has no Decimal128, Code or MinKey/MaxKey"

PASSWORD = "s3cr3t-Pa55"


def write(sink, batches, run_id="run-1", dead=None):
    """Runs ``batches`` through the sink's write transform; returns the osmosis counters."""
    sink.prepare(run_id)

    def build(p):
        out = p | "Batches" >> beam.Create(batches, reshuffle=False) | "Write" >> sink.write(run_id)
        if dead is not None:
            assert_that(out.dead_letter | beam.Map(lambda d: (d["step"], d["error"])), dead, label="dead letters")

    counters = run_beam(build)
    sink.publish(run_id, window_hi=at(100))
    return counters


def snapshot(collection, sort="_id"):
    return list(collection.find({}, sort=[(sort, 1)]))


def orders(n, version=1):
    return [
        {"order_id": i, "status": f"v{version}", "total": decimal.Decimal(f"{i}.{version:02d}"),
         "updated_at": at(i), "lines": [{"sku": f"S{i}", "qty": version}]}
        for i in range(n)
    ]


# -- upserts -------------------------------------------------------------------------------------------


@only_on("congodb", reason=NO_DECIMAL128)
def test_upsert_by_key_and_a_rerun_leaves_the_collection_as_one_run_would(mongo_db):
    sink = mongo_db.sink("orders", key=["order_id"], batch_size=7)
    records = orders(50)
    counters = write(sink, [records[:20], records[20:]], run_id="run-1")
    assert counters["records_written"] == 50
    once = snapshot(mongo_db.db.orders)
    assert len(once) == 50 and all(isinstance(d["_id"], ObjectId) for d in once)

    write(sink, [records[:20], records[20:]], run_id="run-2")  # the same window, read again
    assert snapshot(mongo_db.db.orders) == once

    doc = mongo_db.db.orders.find_one({"order_id": 7})
    assert doc["total"] == Decimal128("7.01") and doc["updated_at"] == at(7) and doc["lines"] == [{"sku": "S7", "qty": 1}]


@only_on("congodb", reason=NO_DECIMAL128)
def test_upsert_updates_documents_in_place(mongo_db):
    sink = mongo_db.sink("orders", key=["order_id"])
    write(sink, [orders(10)])
    ids_before = {d["order_id"]: d["_id"] for d in snapshot(mongo_db.db.orders)}
    write(sink, [orders(15, version=2)[5:]], run_id="run-2")  # 5 updates, 5 inserts
    docs = snapshot(mongo_db.db.orders)
    assert len(docs) == 15
    by_key = {d["order_id"]: d for d in docs}
    assert all(by_key[i]["_id"] == ids_before[i] for i in range(10))
    assert [by_key[i]["status"] for i in range(15)] == ["v1"] * 5 + ["v2"] * 10


def test_composite_and_dotted_keys(mongo_db):
    sink = mongo_db.sink("lines", key=["order.id", "line"])
    records = [{"order": {"id": o, "region": "eu"}, "line": ln, "qty": o * ln} for o in range(3) for ln in range(3)]
    write(sink, [records])
    write(sink, [[{**r, "qty": -1} for r in records if r["line"] == 0]], run_id="run-2")
    docs = snapshot(mongo_db.db.lines)
    assert len(docs) == 9
    assert sorted((d["order"]["id"], d["line"], d["qty"]) for d in docs) == sorted(
        (o, ln, -1 if ln == 0 else o * ln) for o in range(3) for ln in range(3)
    )


def test_a_records_id_becomes_the_id_of_the_document_it_inserts(mongo_db):
    source_id = ObjectId()
    sink = mongo_db.sink("customers", key=["email"])
    write(sink, [[{"_id": str(source_id), "email": "a@x", "name": "A"}]])
    assert snapshot(mongo_db.db.customers) == [{"_id": source_id, "email": "a@x", "name": "A"}]  # hex -> ObjectId
    write(sink, [[{"_id": str(source_id), "email": "a@x", "name": "A2"}]], run_id="run-2")
    assert snapshot(mongo_db.db.customers) == [{"_id": source_id, "email": "a@x", "name": "A2"}]


def test_replace_drops_fields_the_source_dropped_and_merge_keeps_fields_others_added(mongo_db):
    # (CongoDB's $set turns Decimal128, Int64 and Binary values into plain objects, so the merge
    # test below sticks to types that survive it; a real MongoDB has no such limit.)
    replace = mongo_db.sink("replaced", key=["id"])
    write(replace, [[{"id": 1, "a": 1, "b": 2}]])
    mongo_db.db.replaced.update_one({"id": 1}, {"$set": {"added_elsewhere": True}})
    write(replace, [[{"id": 1, "a": 10}]], run_id="run-2")
    assert [{k: v for k, v in d.items() if k != "_id"} for d in snapshot(mongo_db.db.replaced)] == [{"id": 1, "a": 10}]

    merge = mongo_db.sink("merged", key=["id"], update="merge")
    write(merge, [[{"id": 1, "a": 1, "b": 2, "at": at(1)}]])
    mongo_db.db.merged.update_one({"id": 1}, {"$set": {"added_elsewhere": True}})
    once_id = mongo_db.db.merged.find_one()["_id"]
    for run_id in ("run-2", "run-3"):
        write(merge, [[{"id": 1, "a": 10, "at": at(2)}]], run_id=run_id)
    assert snapshot(mongo_db.db.merged) == [
        {"_id": once_id, "id": 1, "a": 10, "b": 2, "at": at(2), "added_elsewhere": True}
    ]


# -- append ---------------------------------------------------------------------------------------------


def test_append_inserts_each_record_once_even_when_re_run(mongo_db):
    sink = mongo_db.sink("events", mode="append", batch_size=4)
    with_ids = [{"_id": str(ObjectId()), "kind": "click", "n": i} for i in range(5)]
    without_ids = [{"kind": "view", "n": i, "at": at(i)} for i in range(6)]
    write(sink, [with_ids, without_ids])
    once = snapshot(mongo_db.db.events)
    assert len(once) == 11
    assert {str(d["_id"]) for d in once if d["kind"] == "click"} == {r["_id"] for r in with_ids}

    again = write(sink, [without_ids, with_ids], run_id="run-2")
    assert snapshot(mongo_db.db.events) == once
    assert again.get("dead_letter", 0) == 0 and again["records_written"] == 11  # "already stored" is no error
    # append never updates: a record that changed is not written over the stored one
    changed = write(sink, [[{**with_ids[0], "n": 99}]], run_id="run-3")
    assert changed.get("dead_letter", 0) == 0
    assert mongo_db.db.events.find_one({"_id": ObjectId(with_ids[0]["_id"])})["n"] == 0


# -- values and dead letters -----------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"


@only_on("congodb", reason=NO_FERRETDB_TYPES)
def test_native_values_are_stored_as_bson(mongo_db):
    uid = uuid.uuid4()
    record = {
        "id": 1,
        "dec": decimal.Decimal("-12.3400"),
        "ts": dt.datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC),
        "ts_plus2": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "day": dt.date(2024, 5, 1),
        "clock": dt.time(10, 30),
        "took": dt.timedelta(minutes=1, seconds=30),
        "uid": uid,
        "raw": b"\x00\xff",
        "tags": ("x", "y"),
        "color": Color.RED,
        "nested": {"list": [decimal.Decimal("1.5"), {"d": dt.date(2020, 1, 1)}]},
        "re": {"$regularExpression": {"pattern": "^a", "options": "i"}},
        "stamp": {"$timestamp": {"t": 5, "i": 1}},
        "lo": {"$minKey": 1},
    }
    write(mongo_db.sink("values", key=["id"]), [[record]])
    doc = mongo_db.db.values.find_one({"id": 1})
    assert doc["dec"] == Decimal128("-12.3400")
    assert doc["ts"] == record["ts"] and doc["ts_plus2"] == dt.datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert doc["day"] == dt.datetime(2024, 5, 1, tzinfo=UTC)
    assert doc["clock"] == "10:30:00" and doc["took"] == "PT1M30S"
    assert doc["uid"] == uid and doc["raw"] == b"\x00\xff"
    assert doc["tags"] == ["x", "y"] and doc["color"] == "red"
    assert doc["nested"] == {"list": [Decimal128("1.5"), {"d": dt.datetime(2020, 1, 1, tzinfo=UTC)}]}
    assert doc["re"] == Regex("^a", "i") and doc["stamp"] == Timestamp(5, 1) and doc["lo"] == MinKey()


def test_records_that_cannot_be_stored_go_to_dead_letter_and_the_rest_is_written(mongo_db):
    batch = [
        {"order_id": 1, "v": "ok"},
        {"v": "no key"},
        {"order_id": None, "v": "null key"},
        {"order_id": 2, "v": object()},
        {"order_id": 3, "v": 2**70},
        {"order_id": 4, "v": decimal.Decimal("1." + "1" * 40)},
        {"order_id": 5, "v": "ok"},
    ]

    def check(got):
        errors = sorted(error for _, error in got)
        assert len(errors) == 5, errors
        for expected in ("no value for key field 'order_id'", "key field 'order_id' is null", "cannot store object",
                         "does not fit a 64-bit", "does not fit a BSON Decimal128"):
            assert any(expected in e for e in errors), (expected, errors)
        assert all(step == "sink: mongodb" for step, _ in got)

    counters = write(mongo_db.sink("orders", key=["order_id"], batch_size=3), [batch], dead=check)
    assert counters["records_written"] == 2 and counters["dead_letter"] == 5
    assert sorted(d["order_id"] for d in mongo_db.db.orders.find()) == [1, 5]


class _ScriptedCollection:
    """Stands in for a pymongo collection: answers each ``bulk_write`` from a script (server errors on demand)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def bulk_write(self, requests, ordered=True):
        from pymongo.errors import BulkWriteError

        self.calls.append(([(type(r).__name__, getattr(r, "_doc", None)) for r in requests], ordered))
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, Exception):
            raise answer
        if answer:
            raise BulkWriteError({"writeErrors": answer, "writeConcernErrors": [], "nInserted": 0})


def _fn(collection, **options):
    from osmosis_beam.io.mongodb.write import _WriteMongoFn

    options.setdefault("mode", "upsert")
    options.setdefault("key", ("k",))
    fn = _WriteMongoFn(f"mongodb://app:{PASSWORD}@db.example:27017/", "d", "c", options["mode"], options["key"], 100,
                       dt.timedelta(seconds=1), options.get("update", "replace"))
    fn._coll = collection
    return fn


def _dead(outputs):
    return [o.value["error"] for o in outputs if getattr(o, "tag", None) == "dead_letter"]


def test_write_errors_dead_letter_one_record_and_the_ordered_write_resumes_after_it():
    coll = _ScriptedCollection([{"index": 1, "code": 2, "errmsg": "bad value"}], None)
    dead = _dead(_fn(coll).process([{"k": 1}, {"k": 2}, {"k": 3}]))
    assert dead == ["write error 2: bad value"]
    assert [[d["k"] for _, d in ops] for ops, _ in coll.calls] == [[1, 2, 3], [3]]
    assert all(ordered for _, ordered in coll.calls)


def test_a_stored_document_keeps_its_own_id_when_a_record_brings_another():
    # A real MongoDB refuses to change _id (error 66); CongoDB does not, so the answer is scripted here.
    source_id = ObjectId()
    coll = _ScriptedCollection([{"index": 0, "code": 66, "errmsg": "the (immutable) field '_id' was found to have been altered"}], None)
    dead = _dead(_fn(coll, key=("email",)).process([{"_id": str(source_id), "email": "a@x", "name": "B"}]))
    assert dead == []
    (first, _), (retry, _) = coll.calls
    assert first == [("ReplaceOne", {"_id": source_id, "email": "a@x", "name": "B"})]
    assert retry == [("ReplaceOne", {"email": "a@x", "name": "B"})]


def test_appends_ignore_duplicate_ids_and_dead_letter_other_errors():
    coll = _ScriptedCollection(
        [
            {"index": 0, "code": 11000, "errmsg": "E11000 duplicate key error collection: d.c index: _id_ dup key"},
            {"index": 2, "code": 11000, "errmsg": "dup", "keyPattern": {"email": 1}},
        ]
    )
    dead = _dead(_fn(coll, mode="append", key=()).process([{"n": 1}, {"n": 2}, {"n": 3}]))
    assert dead == ["write error 11000: dup"]
    ((ops, ordered),) = coll.calls
    assert not ordered and [name for name, _ in ops] == ["InsertOne"] * 3


def test_a_lost_connection_fails_the_bundle_without_the_password():
    from pymongo.errors import AutoReconnect

    coll = _ScriptedCollection(AutoReconnect(f"db.example:27017: connection reset (app:{PASSWORD})"))
    with pytest.raises(SinkError) as err:
        list(_fn(coll).process([{"k": 1}]))
    assert "db.example:27017" in str(err.value) and PASSWORD not in str(err.value)


def test_a_server_that_stops_answering_fails_the_write_at_write_timeout(monkeypatch):
    """A real server frozen between two bulk writes (SIGSTOP): the next write gets no reply, and the bundle fails
    after ``write_timeout`` with an error that says so, instead of hanging. It freezes a CongoDB of its own."""
    import os
    import signal
    import time

    with own_congodb(monkeypatch) as server:
        sink = MongoDBSink({"uri": server.uri, "database": "d", "collection": "c", "key": ["id"],
                            "timeout": "2s", "write_timeout": "1500ms"})
        sink.prepare("run-1")
        fn = sink.write("run-1")._fn
        fn.setup()
        try:
            assert _dead(fn.process([{"id": 1}, {"id": 2}])) == []
            os.kill(server._proc.pid, signal.SIGSTOP)
            started = time.monotonic()
            try:
                with pytest.raises(SinkError) as err:
                    list(fn.process([{"id": 3}]))
            finally:
                os.kill(server._proc.pid, signal.SIGCONT)
            assert time.monotonic() - started < 30
        finally:
            fn.teardown()
        assert "sink d.c: MongoDB at mongodb://127.0.0.1:" in str(err.value)
        assert "sent no reply within write_timeout (1.5s)" in str(err.value)
        # The first write is stored; the frozen one may yet be, once the server wakes (upserts: a re-run rewrites it).
        assert {1, 2} <= {d["id"] for d in server.client()["d"]["c"].find()}


def test_write_timeout_is_checked_with_the_other_options():
    with pytest.raises(ConfigError, match="sink.write_timeout"):
        MongoDBSink({"uri": "mongodb://h", "database": "d", "collection": "c", "key": ["id"], "write_timeout": "soon"})
    with pytest.raises(ConfigError, match="sink.write_timeout: must be a positive duration"):
        WriteToMongoDB(uri="mongodb://h", database="d", collection="c", key=["id"], write_timeout=dt.timedelta(0))


# -- end to end --------------------------------------------------------------------------------------------


@only_on("congodb", reason=NO_FERRETDB_TYPES)
def test_mongodb_to_mongodb_round_trip_keeps_every_bson_type(mongo_db):
    source = mongo_db.db.source
    source.insert_many(
        [
            {
                "ts": at(i), "n": i, "dec": Decimal128(f"{i}.10"), "big": Int64(2**62), "bin": Binary(b"\x01\x02", 0x80),
                "uid": uuid.UUID(int=i), "re": Regex("^x", "m"), "code": Code("f()"), "stamp": Timestamp(i + 1, 2),
                "hi": MaxKey(), "nested": {"oid": ObjectId(), "arr": [at(i), None, Decimal128("0.5")]},
            }
            for i in range(30)
        ]
    )
    connector = mongo_db.source("source", batch_size=8)
    sink = mongo_db.sink("copy", key=["n"], batch_size=5)

    def run(run_id):
        sink.prepare(run_id)

        def build(p):
            out = p | "Read" >> ReadWindow(connector, SyncWindow(at(0), at(30)), splits=3, batch_size=10)
            written = out.records | "Write" >> sink.write(run_id)
            assert_that(written.dead_letter, equal_to([]), label="no sink dead letters")

        return run_beam(build)

    counters = run("run-1")
    assert counters["records_read"] == 30 and counters["records_written"] == 30
    copied = snapshot(mongo_db.db.copy, sort="n")
    expected = snapshot(source, sort="n")
    for doc in expected:  # an ObjectId other than _id arrives as its hex string (documented)
        doc["nested"]["oid"] = str(doc["nested"]["oid"])
    assert copied == expected  # same _ids, same values, same BSON types
    assert {k: type(v) for k, v in copied[3].items()} == {k: type(v) for k, v in expected[3].items()}
    run("run-2")
    assert snapshot(mongo_db.db.copy, sort="n") == copied


@only_on("congodb", reason=NO_DECIMAL128)
def test_a_sync_run_copies_a_collection_and_the_next_run_reads_only_what_changed(mongo_db, tmp_path):
    from osmosis_beam.config import parse_pipeline
    from osmosis_beam.state.sqlite import SQLiteStateStore
    from osmosis_beam.sync.runner import SyncRunner

    def server_clock():
        return mongo_db.client.admin.command("hello")["localTime"].replace(tzinfo=UTC)

    old = server_clock() - dt.timedelta(minutes=5)
    mongo_db.db.orders.insert_many(
        [{"updated_at": old - dt.timedelta(seconds=i), "order_id": i, "total": Decimal128(f"{i}.50")} for i in range(200)]
    )
    spec = parse_pipeline(
        {
            "id": "mongo-copy",
            "source": {"type": "mongodb", "uri": mongo_db.uri, "database": mongo_db.name, "collection": "orders"},
            "incremental": {"cursor_field": "updated_at", "safety_lag": "1s"},
            "read": {"splits": 3, "batch_size": 50},
            "sink": {"type": "mongodb", "uri": mongo_db.uri, "database": mongo_db.name, "collection": "copy",
                     "key": ["order_id"]},
        }
    )
    store = SQLiteStateStore(str(tmp_path / "state.db"))
    first = SyncRunner(spec, store, home=tmp_path).run()
    assert (first.status, first.records_read, first.records_written, first.dead_letter) == ("succeeded", 200, 200, 0)
    assert first.window.hi <= server_clock() - dt.timedelta(seconds=1)  # the server's clock, minus the safety lag

    changed = {"updated_at": first.window.hi, "order_id": 3, "total": Decimal128("3.75")}  # changed since
    mongo_db.db.orders.replace_one({"order_id": 3}, changed)  # (replace: CongoDB's $set garbles Decimal128)
    second = SyncRunner(spec, store, home=tmp_path).run()
    assert second.window.lo == first.window.hi and second.records_read == 1
    assert snapshot(mongo_db.db.copy, sort="order_id") == snapshot(mongo_db.db.orders, sort="order_id")
    assert mongo_db.db.copy.find_one({"order_id": 3})["total"] == Decimal128("3.75")


# -- configuration and connection errors ---------------------------------------------------------------------


def test_config_errors_are_reported_together_without_the_password():
    with pytest.raises(ConfigError) as err:
        MongoDBSink({"uri": f"http://app:{PASSWORD}@h/", "database": "d", "collection": "c", "mode": "merge", "batch_size": 0})
    text = "\n".join(err.value.problems)
    assert "sink.uri: must start with mongodb://" in text
    assert "sink.mode: must be one of upsert, append" in text
    assert "sink.batch_size: must be at least 1" in text
    assert PASSWORD not in str(err.value)

    with pytest.raises(ConfigError, match="key: required when mode is upsert"):
        MongoDBSink({"uri": "mongodb://h", "database": "d", "collection": "c"})
    with pytest.raises(ConfigError, match="key: only used when mode is upsert"):
        MongoDBSink({"uri": "mongodb://h", "database": "d", "collection": "c", "mode": "append", "key": ["id"]})
    with pytest.raises(ConfigError, match=r"key: '\$bad' is not a field name"):
        WriteToMongoDB(uri="mongodb://h", database="d", collection="c", key=["$bad"])
    sink = MongoDBSink({"uri": f"mongodb://app:{PASSWORD}@h/", "database": "d", "collection": "c", "key": "id"})
    assert sink.key == ("id",) and PASSWORD not in str(sink.display())


def test_wrong_uri_fails_prepare_and_write_clearly_without_the_password():
    uri = f"mongodb://app:{PASSWORD}@127.0.0.1:1/?directConnection=true"
    sink = MongoDBSink({"uri": uri, "database": "d", "collection": "c", "key": ["id"], "timeout": "300ms"})
    with pytest.raises(SinkError) as err:
        sink.prepare("run-1")
    text = str(err.value)
    assert "cannot reach MongoDB" in text and "127.0.0.1:1" in text and "app:***@" in text and PASSWORD not in text

    with pytest.raises(Exception) as err:
        run_beam(lambda p: p | beam.Create([[{"id": 1}]]) | sink.write("run-1"))
    assert "127.0.0.1:1" in str(err.value) and PASSWORD not in str(err.value)


def test_prepare_creates_a_unique_index_on_the_key_once(mongo_db):
    sink = mongo_db.sink("orders", key=["tenant", "order_id"])
    sink.prepare("run-1")
    sink.prepare("run-2")
    keys = [list(ix["key"].items()) for ix in mongo_db.db.orders.list_indexes()]
    assert keys.count([("tenant", 1), ("order_id", 1)]) == 1
    (index,) = [ix for ix in mongo_db.db.orders.list_indexes() if ix["name"].startswith("osmosis_key")]
    assert index["unique"] is True
    assert sink.is_published("run-1") is False
    assert sink.publish("run-1", window_hi=at(1)) == {"collection": f"{mongo_db.name}.orders", "mode": "upsert"}
    sink.abort("run-1")  # nothing staged: a no-op


# -- types kept through updates, unique indexes enforced (what CongoDB cannot host runs on FerretDB only) -------

FAITHFUL = (
    "CongoDB reads int64 values up to 2**53 back as floats, garbles Int64 and Binary on $set and does not enforce unique indexes"
)


def typed(value):
    """``value`` with the exact type of every part, so that ``==`` also compares BSON types (1 != 1.0 != Int64(1))."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, Binary):
        return (Binary, value.subtype, bytes(value))
    return (type(value), value)


def rich_record(i, version):
    """A record of every type FerretDB 1.x holds (not Decimal128), its values changing with ``version``."""
    return {
        "sku": f"S{i:03d}",
        "at": at(i, ms=version),
        "day": dt.date(2024, 1, version),
        "ref": ObjectId(f"{version:012x}{i:012x}"),
        "raw": b"\x00\xff" + bytes([version]),
        "blob": Binary(bytes([i, version]), 0x80),
        "uid": uuid.UUID(int=i * 100 + version),
        "big": 2**40 + version,
        "small": version,
        "ratio": version + 0.5,
        "flag": version % 2 == 0,
        "gone": None,
        "re": {"$regularExpression": {"pattern": f"^v{version}", "options": "i"}},
        "stamp": {"$timestamp": {"t": 1700000000 + version, "i": i}},
        "nested": {"by": {"user": ObjectId(f"{i:024x}"), "when": at(version)}, "tags": ["x", "y", "z"][:version]},
        "lines": [{"n": n, "uid": uuid.UUID(int=n), "at": at(n, ms=version)} for n in range(version)],
    }


def rich_stored(i, version):
    """What ``rich_record(i, version)`` is once stored: BSON values, as pymongo reads them back."""
    doc = rich_record(i, version)
    doc.update(day=dt.datetime(2024, 1, version, tzinfo=UTC), big=Int64(2**40 + version), re=Regex(f"^v{version}", "i"),
               stamp=Timestamp(1700000000 + version, i))
    return doc


def without_id(doc):
    return {k: v for k, v in doc.items() if k != "_id"}


@only_on("ferretdb", reason=FAITHFUL)
def test_upsert_by_key_keeps_every_bson_type_exactly_through_updates_and_reruns(mongo_db):
    sink = mongo_db.sink("items", key=["sku"], batch_size=6)
    write(sink, [[rich_record(i, 1) for i in range(20)]], run_id="run-1", dead=equal_to([]))
    ids_before = {d["sku"]: d["_id"] for d in snapshot(mongo_db.db.items)}
    assert len(ids_before) == 20

    window = [[rich_record(i, 2) for i in range(10, 20)], [rich_record(i, 2) for i in range(20, 30)]]
    counters = write(sink, window, run_id="run-2", dead=equal_to([]))  # 10 updates, 10 inserts
    assert counters["records_written"] == 20
    once = snapshot(mongo_db.db.items, sort="sku")
    assert [typed(without_id(d)) for d in once] == [
        typed(rich_stored(i, 1 if i < 10 else 2)) for i in range(30)
    ]
    assert all(d["_id"] == ids_before[d["sku"]] for d in once if d["sku"] in ids_before)  # updated in place

    write(sink, window, run_id="run-3", dead=equal_to([]))  # the same window again changes nothing
    assert [typed(d) for d in snapshot(mongo_db.db.items, sort="sku")] == [typed(d) for d in once]


@only_on("ferretdb", reason=FAITHFUL)
def test_merge_sets_rich_values_keeps_other_fields_and_types(mongo_db):
    sink = mongo_db.sink("items", key=["sku"], update="merge")
    first = {**rich_record(1, 1), "_id": "65f000000000000000000001", "only_v1": Binary(b"\x07", 0x80)}
    write(sink, [[first]], dead=equal_to([]))
    other = {"note": {"by": ObjectId(), "at": at(99), "blob": Binary(b"\x01\x02", 0x81), "n": Int64(2**35)}}
    mongo_db.db.items.update_one({"sku": "S001"}, {"$set": other})  # another writer's fields

    second = {**rich_record(1, 3), "_id": "65f0000000000000000000ff"}  # another _id: the stored one stays
    del second["gone"]  # a field the record no longer has is kept by merge
    for run_id in ("run-2", "run-3"):
        write(sink, [[second]], run_id=run_id, dead=equal_to([]))
    (doc,) = snapshot(mongo_db.db.items)
    expected = {**rich_stored(1, 3), "gone": None, "only_v1": Binary(b"\x07", 0x80), **other}
    assert doc["_id"] == ObjectId("65f000000000000000000001")
    assert typed(without_id(doc)) == typed(expected)
    assert list(doc["nested"]) == ["by", "tags"] and doc["nested"]["tags"] == ["x", "y", "z"]  # $set of a field: whole value


@only_on("ferretdb", reason=FAITHFUL)
def test_the_unique_key_index_is_enforced_and_a_rerun_leaves_one_document_per_key(mongo_db):
    from pymongo.errors import DuplicateKeyError

    sink = mongo_db.sink("orders", key=["tenant", "order_id"], batch_size=4)
    sink.prepare("run-0")
    records = [{"tenant": t, "order_id": n, "v": 1, "at": at(n)} for t in ("a", "b") for n in range(10)]
    records += [{**r, "v": 2} for r in records[::3]]  # some keys twice in a window: the later record wins
    for run_id in ("run-1", "run-2"):
        write(sink, [records[:15], records[15:]], run_id=run_id, dead=equal_to([]))
        docs = snapshot(mongo_db.db.orders, sort="at")
        assert len(docs) == 20 and len({(d["tenant"], d["order_id"]) for d in docs}) == 20
    assert sorted((d["tenant"], d["order_id"]) for d in docs if d["v"] == 2) == sorted(
        (r["tenant"], r["order_id"]) for r in records[::3][:7]
    )
    with pytest.raises(DuplicateKeyError):  # the server, not just the sink, keeps one document per key
        mongo_db.db.orders.insert_one({"tenant": "a", "order_id": 3, "v": "another writer"})
    mongo_db.db.orders.insert_one({"tenant": "c", "order_id": 3})  # another key is fine
    assert mongo_db.db.orders.count_documents({}) == 21


def test_concurrent_writers_of_one_window_never_duplicate_a_key(mongo_db):
    # Two upserts of one new key can race: both miss, both insert, and the unique index refuses the second
    # (E11000). mongod >= 4.2 retries such an upsert itself; FerretDB 1.x does not, and its reply lacks
    # nModified, so pymongo raises KeyError('nModified') and the writer's bundle fails (the run would be
    # retried); CongoDB runs one command at a time and never races. Either way, no key is ever stored twice,
    # and writing the window again converges.
    import random
    import threading

    from osmosis_beam.io.mongodb.write import _WriteMongoFn

    sink = mongo_db.sink("orders", key=["order_id"])
    sink.prepare("run-1")
    records = [{"order_id": n, "at": at(n), "ref": ObjectId(f"{n:024x}")} for n in range(150)]
    dead, failed = [], []

    def writer(seed):
        fn = _WriteMongoFn(mongo_db.uri, mongo_db.name, "orders", "upsert", ("order_id",), 10, dt.timedelta(seconds=5))
        fn.setup()
        try:
            dead.extend(_dead(fn.process(random.Random(seed).sample(records, len(records)))))
            return True
        except Exception as exc:  # noqa: BLE001 - checked below
            failed.append(repr(exc))
            return False
        finally:
            fn.teardown()

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert dead == [] and set(failed) <= {"KeyError('nModified')"}, failed
    assert mongo_db.db.orders.count_documents({}) == len({d["order_id"] for d in mongo_db.db.orders.find()})
    assert writer(99)  # the window written again, alone
    assert dead == [] and [without_id(d) for d in snapshot(mongo_db.db.orders, sort="order_id")] == records


def test_prepare_fails_when_the_key_is_not_unique_in_the_collection(mongo_db):
    mongo_db.db.orders.insert_many([{"order_id": 1, "v": "a"}, {"order_id": 1, "v": "b"}, {"order_id": 2}])
    sink = mongo_db.sink("orders", key=["order_id"])
    with pytest.raises(SinkError, match=r"orders: .*key index|cannot create a unique index on \['order_id'\]"):
        sink.prepare("run-1")
    assert [ix["name"] for ix in mongo_db.db.orders.list_indexes()] == ["_id_"]
    mongo_db.sink("orders", key=["order_id"], create_index=False).prepare("run-1")  # the way out the error names


def test_mongodb_to_mongodb_copy_follows_set_updates_in_the_source_with_types_intact(mongo_db):
    source = mongo_db.db.source
    source.insert_many([{"ts": at(i), "n": i, "big": Int64(2**40 + i), "bin": Binary(bytes([i]), 0x80),
                         "uid": uuid.UUID(int=i), "nested": {"at": at(i), "arr": [Int64(2**41 + i), None]}} for i in range(20)])
    connector = mongo_db.source("source", batch_size=7)
    sink = mongo_db.sink("copy", key=["n"], batch_size=5)

    def run(run_id, lo, hi):
        sink.prepare(run_id)

        def build(p):
            out = p | "Read" >> ReadWindow(connector, SyncWindow(lo, hi), splits=2, batch_size=6)
            written = out.records | "Write" >> sink.write(run_id)
            assert_that(written.dead_letter, equal_to([]), label="no sink dead letters")

        return run_beam(build)

    run("run-1", at(0), at(30))
    for n in range(0, 20, 4):  # other writers change some documents in place ($set: what CongoDB garbles)
        source.update_one({"n": n}, {"$set": {"ts": at(40 + n), "big": Int64(-(2**50)), "bin": Binary(b"\xff", 0x81),
                                             "nested.arr": [Int64(2**42 + n), {"k": Binary(b"\x00", 0x80)}]}})
    counters = run("run-2", at(30), at(70))
    assert counters["records_read"] == 5 and counters["records_written"] == 5
    copied, expected = snapshot(mongo_db.db.copy, sort="n"), snapshot(source, sort="n")
    # same _ids, values and BSON types (Int64 values beyond int32: int32 versus int64 follows the size, documented)
    assert [typed(d) for d in copied] == [typed(d) for d in expected]

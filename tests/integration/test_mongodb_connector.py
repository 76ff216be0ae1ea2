"""The MongoDB connector against real MongoDB-wire servers: CongoDB (or $OSMOSIS_TEST_MONGO_URI) and FerretDB.

Each test that uses ``mongo_db`` runs on both, except where ``only_on`` says what the other lacks.
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import pickle
import uuid

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
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

from osmosis_beam.core.encoding import dumps
from osmosis_beam.core.errors import (
    ConfigError,
    FatalConnectorError,
    RetriableConnectorError,
)
from osmosis_beam.core.timefmt import to_micros
from osmosis_beam.core.window import IncrementalSpec, SyncWindow
from osmosis_beam.io.mongodb.source import MongoDBConnector
from osmosis_beam.io.mongodb.transforms import ReadFromMongoDB
from osmosis_beam.io.read import ReadWindow
from tests.integration.mongo_support import BASE, UTC, at, mongo_db, only_on, run_beam, watch_cursors  # noqa: F401  (fixture)

NO_FERRETDB_TYPES = "FerretDB 1.x has no Decimal128, Code, MinKey/MaxKey, DBRef or nested arrays"

PASSWORD = "s3cr3t-Pa55"


def ids(records):
    return [r["_id"] for r in records]


def read(connector, lo, hi):
    connector.connect()
    try:
        return list(connector.read_window(lo, hi))
    finally:
        connector.disconnect()


# -- windows ------------------------------------------------------------------------------------------


def test_ties_at_the_window_bounds_fall_in_exactly_one_window(mongo_db):
    lo, hi = at(10), at(20)
    docs = {
        "before": lo - dt.timedelta(milliseconds=1),
        "lo_1": lo, "lo_2": lo, "lo_3": lo,
        "mid": at(15),
        "last": hi - dt.timedelta(milliseconds=1),
        "hi_1": hi, "hi_2": hi,
        "after": hi + dt.timedelta(milliseconds=1),
    }
    inserted = mongo_db.db.events.insert_many([{"name": k, "ts": v} for k, v in docs.items()]).inserted_ids
    name_of = {str(i): k for i, k in zip(inserted, docs)}
    src = mongo_db.source("events")

    first = read(src, lo, hi)
    second = read(src, hi, at(30))
    assert [name_of[i] for i in ids(first)] == ["lo_1", "lo_2", "lo_3", "mid", "last"]  # ties sorted by _id
    assert [name_of[i] for i in ids(second)] == ["hi_1", "hi_2", "after"]
    assert all(r["ts"].tzinfo is not None for r in first + second)
    assert [r["ts"] for r in first] == sorted(r["ts"] for r in first)
    assert src.window_is_empty(SyncWindow(at(0), at(9))) is True
    assert src.window_is_empty(SyncWindow(lo, hi)) is False
    assert src.lower_bound(SyncWindow(None, hi)) == docs["before"]


def test_microsecond_bounds_split_millisecond_values_exactly_once(mongo_db):
    # Stored dates have milliseconds; window bounds have microseconds: 7.345 ms steps cut between them.
    mongo_db.db.events.insert_many([{"ts": at(ms=i // 2), "i": i} for i in range(120)])
    src = mongo_db.source("events", batch_size=7)
    bounds = [BASE + dt.timedelta(microseconds=7345 * k) for k in range(10)]
    seen = []
    for lo, hi in zip(bounds, bounds[1:]):
        for record in read(src, lo, hi):
            pos = src.cursor_position(record)
            assert to_micros(lo) <= pos < to_micros(hi), (record, lo, hi)
            seen.append(record["i"])
    assert sorted(seen) == list(range(120)) and len(seen) == len(set(seen))


def test_split_window_reads_every_document_exactly_once_through_beam(mongo_db):
    import random

    rng = random.Random(4)
    stamps = [at(ms=rng.randrange(0, 60_000, 200)) for _ in range(1500)]  # 300 distinct values: many ties
    inserted = mongo_db.db.events.insert_many([{"ts": t, "n": i} for i, t in enumerate(stamps)]).inserted_ids
    mongo_db.db.events.insert_many([{"ts": at(60), "n": -1}, {"ts": at(-1), "n": -2}])  # outside the window
    src = mongo_db.source("events", batch_size=37)
    read_window = ReadWindow(src, SyncWindow(at(0), at(60)), splits=7, batch_size=50)
    assert len(read_window.split_points()) == 6
    assert any(p % 1000 for p in read_window.split_points())  # split points that cut between milliseconds

    def build(p):
        out = p | "Read" >> read_window
        found = out.records | "Ids" >> beam.FlatMap(lambda batch: [r["_id"] for r in batch])
        sizes = out.records | "Sizes" >> beam.Map(len)
        assert_that(found, equal_to([str(i) for i in inserted]), label="each document once")
        assert_that(sizes, lambda got: all(0 < s <= 50 for s in got) or (_ for _ in ()).throw(AssertionError(got)),
                    label="batches")
        assert_that(out.dead_letter, equal_to([]), label="no dead letters")

    counters = run_beam(build)
    assert counters["records_read"] == 1500


def test_read_from_mongodb_transform_checks_arguments_when_built(mongo_db):
    with pytest.raises(ConfigError) as err:
        ReadFromMongoDB(since=at(0), until=at(1), uri=f"mysql://u:{PASSWORD}@h/db", database="d",
                        collection="c", cursor_field="ts")
    assert "mongodb://" in str(err.value) and PASSWORD not in str(err.value)

    mongo_db.db.events.insert_many([{"ts": at(s), "s": s} for s in range(10)])

    def build(p):
        out = p | ReadFromMongoDB(since=at(2), until=at(5), splits=2, uri=mongo_db.uri,
                                  database=mongo_db.name, collection="events", cursor_field="ts")
        assert_that(out | beam.Map(lambda r: r["s"]), equal_to([2, 3, 4]))

    run_beam(build)


def test_lost_cursor_is_resumed_after_the_last_document(mongo_db):
    mongo_db.db.events.insert_many([{"ts": at(ms=i // 3), "i": i} for i in range(200)])
    src = mongo_db.source("events", batch_size=10)
    # killed by the fetch thread itself after the 1st getMore (20 documents fetched), between two getMores
    listener = watch_cursors(src, mongo_db.uri, kill_after=1)
    try:
        got = [r["i"] for r in src.read_window(at(0), at(1))]
    finally:
        src.disconnect()
    assert listener.killed == listener.ids[:1] and listener.ids[0] != 0
    assert listener.finds == 2
    assert got == list(range(200))


# -- values -------------------------------------------------------------------------------------------


@only_on("congodb", reason=NO_FERRETDB_TYPES)
def test_every_bson_type_becomes_a_lossless_native_value(mongo_db):
    oid, ref_oid = ObjectId(), ObjectId()
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    doc = {
        "_id": oid,
        "ts": dt.datetime(2024, 3, 1, 12, 30, 45, 123000, tzinfo=UTC),
        "oid": ref_oid,
        "dec": Decimal128("12345678901234567890.000000000001"),
        "dec_neg": Decimal128("-0.10"),
        "bin": Binary(b"\x00\x01\xfe\xff", 0),
        "bin_user": Binary(b"\x10\x20", 0x80),
        "uuid": uid,
        "i32": 7,
        "i64": Int64(2**62),
        "dbl": 1.5,
        "s": "héllo ✓",
        "t": True,
        "none": None,
        "re": Regex("^ab+c", "im"),
        "code": Code("function () { return 1 }"),
        "stamp": Timestamp(1700000000, 5),
        "min": MinKey(),
        "max": MaxKey(),
        "ref": DBRef("other", ref_oid),
        "arr": [1, "two", 3.0, None, [4]],
    }
    mongo_db.db.types.insert_one(doc)
    (record,) = read(mongo_db.source("types"), at(0), dt.datetime(2025, 1, 1, tzinfo=UTC))

    assert record["_id"] == str(oid) and record["oid"] == str(ref_oid)
    assert record["ts"] == doc["ts"] and record["ts"].utcoffset() == dt.timedelta(0)
    assert record["dec"] == decimal.Decimal("12345678901234567890.000000000001")
    assert str(record["dec_neg"]) == "-0.10"  # exact, trailing zero kept
    assert record["bin"] == b"\x00\x01\xfe\xff" and type(record["bin"]) is bytes
    assert bytes(record["bin_user"]) == b"\x10\x20" and record["bin_user"].subtype == 0x80
    assert record["uuid"] == uid
    assert record["i32"] == 7
    assert record["i64"] == 2**62 and type(record["i64"]) is int
    assert record["dbl"] == 1.5 and record["s"] == "héllo ✓" and record["t"] is True and record["none"] is None
    assert record["re"] == {"$regularExpression": {"pattern": "^ab+c", "options": "im"}}
    assert record["code"] == {"$code": "function () { return 1 }"}
    assert record["stamp"] == {"$timestamp": {"t": 1700000000, "i": 5}}
    assert record["min"] == {"$minKey": 1} and record["max"] == {"$maxKey": 1}
    assert record["ref"] == {"$ref": "other", "$id": {"$oid": str(ref_oid)}}
    assert record["arr"] == [1, "two", 3.0, None, [4]]

    # What a sink writes: JSON-safe, without loss.
    import json

    encoded = json.loads(dumps(record))
    assert encoded["ts"] == "2024-03-01T12:30:45.123000+00:00"
    assert encoded["dec"] == "12345678901234567890.000000000001"
    assert base64.b64decode(encoded["bin"]) == b"\x00\x01\xfe\xff"
    assert encoded["uuid"] == str(uid)
    assert encoded["_id"] == str(oid)


@only_on("congodb", reason=NO_FERRETDB_TYPES)
def test_nested_documents_and_arrays_are_converted_recursively(mongo_db):
    inner = ObjectId()
    mongo_db.db.orders.insert_one(
        {
            "meta": {"updated_at": at(5), "by": {"user": inner, "tags": ["a", {"deep": Decimal128("1.5")}]}},
            "items": [{"sku": "A", "price": Decimal128("9.99"), "at": at(1)}, {"sku": "B", "price": Decimal128("0.01")}],
            "matrix": [[1, 2], [3, 4]],
            "empty": {"list": [], "doc": {}},
        }
    )
    mongo_db.db.orders.insert_one({"meta": {"updated_at": at(50)}})  # outside the window
    src = mongo_db.source("orders", cursor_field="meta.updated_at")
    (record,) = read(src, at(0), at(10))
    assert record["meta"]["by"]["user"] == str(inner)
    assert record["meta"]["by"]["tags"] == ["a", {"deep": decimal.Decimal("1.5")}]
    assert record["items"] == [
        {"sku": "A", "price": decimal.Decimal("9.99"), "at": at(1)},
        {"sku": "B", "price": decimal.Decimal("0.01")},
    ]
    assert record["matrix"] == [[1, 2], [3, 4]] and record["empty"] == {"list": [], "doc": {}}
    assert src.cursor_position(record) == to_micros(at(5))
    assert dumps(record)  # encodes


def test_filter_and_projection(mongo_db):
    mongo_db.db.events.insert_many(
        [{"ts": at(i), "kind": "a" if i % 2 else "b", "big": "x" * 100, "n": i, "created": at(i)} for i in range(10)]
    )
    src = mongo_db.source(
        "events",
        filter={"kind": "a", "created": {"$gte": {"$date": "2024-01-01T00:00:03Z"}}},
        projection=["n"],
    )
    records = read(src, at(0), at(10))
    assert [r["n"] for r in records] == [3, 5, 7, 9]
    assert set(records[0]) == {"_id", "n", "ts"}  # the cursor is always read

    no_id = mongo_db.source("events", projection={"big": 0, "_id": 0})
    records = read(no_id, at(0), at(3))
    assert [set(r) for r in records] == [{"ts", "kind", "n", "created"}] * 3

    with pytest.raises(ConfigError, match="excludes the cursor field"):
        mongo_db.source("events", projection={"ts": 0})


def test_id_cursor_reads_by_objectid_creation_time(mongo_db):
    def oid_at(seconds: int, n: int) -> ObjectId:
        stamp = int(at(seconds).timestamp())
        return ObjectId(stamp.to_bytes(4, "big") + n.to_bytes(8, "big"))

    docs = [{"_id": oid_at(s, n), "s": s} for s in (0, 1, 1, 2, 3) for n in range(2)]
    docs = list({d["_id"]: d for d in docs}.values())
    mongo_db.db.log.insert_many(docs)
    src = mongo_db.source("log", cursor_field="_id")
    lo = at(1) - dt.timedelta(microseconds=1)  # rounds up to the second the ObjectIds hold
    records = read(src, lo, at(3))
    assert [r["s"] for r in records] == [1, 1, 2, 2]
    assert ids(records) == sorted(ids(records))
    assert src.cursor_position(records[0]) == to_micros(at(1))
    assert src.lower_bound(SyncWindow(None, at(10))) == at(0)


def test_a_first_run_asks_for_emptiness_and_the_lower_bound_in_one_query(mongo_db):
    """With ``lo`` open, window_is_empty finds the smallest cursor, which lower_bound then gives without asking."""
    mongo_db.db.events.insert_many([{"ts": at(s), "n": s} for s in (5, 3, 9)])
    src = mongo_db.source("events")
    listener = watch_cursors(src, mongo_db.uri)
    window = SyncWindow(None, at(100))
    assert src.window_is_empty(window) is False
    assert src.lower_bound(window) == at(3)
    assert listener.finds == 1
    assert src.lower_bound(SyncWindow(None, at(4))) == at(3) and listener.finds == 2  # another window: asked
    assert src.window_is_empty(SyncWindow(None, at(1))) is True
    assert src.lower_bound(SyncWindow(None, at(1))) is None and listener.finds == 3
    assert src.window_is_empty(SyncWindow(at(6), at(9))) is True and listener.finds == 4  # lo given: no bound
    src.disconnect()


# -- empty and missing --------------------------------------------------------------------------------


def test_empty_collection(mongo_db):
    mongo_db.db.create_collection("empty")
    src = mongo_db.source("empty")
    assert read(src, None, at(100)) == []
    assert src.window_is_empty(SyncWindow(None, at(100))) is True
    assert src.lower_bound(SyncWindow(None, at(100))) is None
    assert src.get_schema()["fields"] == [] and src.get_schema()["sampled"] == 0
    assert "about 0 documents" in src.test_connection()
    assert src.fetch(at(0)) == []

    def build(p):
        out = p | ReadWindow(src, SyncWindow(at(0), at(100)), splits=3)
        assert_that(out.records, equal_to([]))

    assert run_beam(build).get("records_read", 0) == 0


def test_missing_collection_is_named_with_a_suggestion(mongo_db):
    mongo_db.db.orders.insert_one({"ts": at(0)})
    with pytest.raises(FatalConnectorError, match=r"collection 'order' does not exist.*did you mean 'orders'"):
        mongo_db.source("order").test_connection()
    with pytest.raises(FatalConnectorError, match=r"database 'nope_missing' does not exist"):
        MongoDBConnector({"uri": mongo_db.uri, "database": "nope_missing", "collection": "x", "cursor_field": "ts"}).test_connection()


# -- errors never show the password ---------------------------------------------------------------------


def test_wrong_uri_fails_clearly_without_the_password():
    uri = f"mongodb://app:{PASSWORD}@127.0.0.1:1/?directConnection=true"
    src = MongoDBConnector({"uri": uri, "database": "d", "collection": "c", "cursor_field": "ts", "timeout": "300ms"})
    for call in (src.test_connection, src.source_clock, lambda: list(src.read_window(at(0), at(1)))):
        with pytest.raises(RetriableConnectorError) as err:
            call()
        text = str(err.value)
        assert "127.0.0.1:1" in text and "cannot reach MongoDB" in text
        assert PASSWORD not in text and PASSWORD not in repr(err.value) and "app:***@" in text
        assert pickle.loads(pickle.dumps(err.value)).message == text  # crosses worker boundaries
    assert PASSWORD not in str(src.display()) and PASSWORD not in repr(src.config)


def _auth_source(server, uri, collection="events"):
    return MongoDBConnector({"uri": uri, "database": server.database, "collection": collection,
                             "cursor_field": "ts", "timeout": "3s"})


def test_the_user_and_password_read_from_an_authenticating_server(ferretdb_auth_server):
    import pymongo

    server = ferretdb_auth_server
    client = pymongo.MongoClient(server.uri, tz_aware=True)
    try:
        coll = client[server.database]["auth_reads"]
        coll.drop()
        coll.insert_many([{"_id": f"r{i}", "ts": at(i)} for i in range(3)])
        src = _auth_source(server, server.uri, "auth_reads")
        line = src.test_connection()
        assert "about 3 documents" in line and server.password not in line and "osmosis:***@" in line
        assert ids(read(src, at(0), at(2))) == ["r0", "r1"]
        assert src.source_clock().tzinfo is not None
    finally:
        client.close()


def test_a_wrong_password_fails_as_an_authentication_error_without_the_password(ferretdb_auth_server):
    server = ferretdb_auth_server
    src = _auth_source(server, server.uri_with(PASSWORD))
    for call in (src.test_connection, src.source_clock, lambda: read(src, at(0), at(1))):
        with pytest.raises(FatalConnectorError) as err:  # fatal: a retry does not fix a password
            call()
        text = str(err.value)
        assert "authentication failed" in text and "user name or password" in text, text
        assert f"127.0.0.1:{server.port}" in text and "osmosis:***@" in text
        assert PASSWORD not in text and PASSWORD not in repr(err.value) and server.password not in text
        assert pickle.loads(pickle.dumps(err.value)).message == text
    assert PASSWORD not in str(src.display())


def test_no_credentials_on_an_authenticating_server_say_not_authorized(ferretdb_auth_server):
    server = ferretdb_auth_server
    src = _auth_source(server, f"mongodb://127.0.0.1:{server.port}/?directConnection=true")
    with pytest.raises(FatalConnectorError, match=r"not authorized: .*requires authentication.*give the URI a user and password"):
        src.test_connection()


def test_invalid_uris_are_config_errors_without_the_password():
    with pytest.raises(ConfigError) as err:
        MongoDBConnector({"uri": f"postgres://app:{PASSWORD}@h/db", "database": "d", "collection": "c", "cursor_field": "ts"})
    assert "must start with mongodb://" in str(err.value) and PASSWORD not in str(err.value)

    src = MongoDBConnector(
        {"uri": f"mongodb://app:{PASSWORD}@localhost/?authSource=", "database": "d", "collection": "c", "cursor_field": "ts"}
    )
    with pytest.raises(FatalConnectorError) as err:
        src.test_connection()
    assert "authSource" in str(err.value) and PASSWORD not in str(err.value)


def test_config_errors_are_reported_together():
    with pytest.raises(ConfigError) as err:
        MongoDBConnector({"uri": "mongodb://h", "batch_size": 0, "projection": 5, "colection": "x"})
    text = "\n".join(err.value.problems)
    for expected in ("source.database: required", "source.collection: required", "source.batch_size: must be at least 1",
                     "source.projection:", "source.colection: unknown option (did you mean 'collection'?)"):
        assert expected in text, text

    with pytest.raises(ConfigError, match="cursor_field: required"):
        MongoDBConnector({"uri": "mongodb://h", "database": "d", "collection": "c"})
    with pytest.raises(ConfigError, match="differs from incremental.cursor_field"):
        MongoDBConnector({"uri": "mongodb://h", "database": "d", "collection": "c", "cursor_field": "a"},
                         incremental=IncrementalSpec(cursor_field="b"))
    src = MongoDBConnector({"uri": "mongodb://h", "database": "d", "collection": "c"},
                           incremental=IncrementalSpec(cursor_field="updated_at"))
    assert src.cursor_field == "updated_at"


def test_the_connector_pickles_without_its_client(mongo_db):
    src = mongo_db.source("events")
    src.connect()
    clone = pickle.loads(pickle.dumps(src))
    src.disconnect()
    assert clone._client is None and clone.cursor_field == "ts"


def test_the_client_polls_the_server_instead_of_streaming_hellos(mongo_db):
    """A server that answers an awaitable ``hello`` at once (CongoDB does) must not make the monitor spin.

    pymongo's default (streaming) monitor re-sends the awaitable hello as soon as it is answered: against
    CongoDB that is about a thousand hellos a second per client, taking CPU from the read and the server.
    The connector's clients poll, every heartbeat interval (10 s), so a short run sees a handful.
    """
    import time

    from pymongo import monitoring

    from osmosis_beam.io.mongodb.source import new_client

    class Beats(monitoring.ServerHeartbeatListener):
        count = 0

        def started(self, event):
            Beats.count += 1

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    def beats_in(client) -> int:
        try:
            client.admin.command("ping")
            Beats.count = 0
            time.sleep(1.0)
            return Beats.count
        finally:
            client.close()

    import pymongo

    ours = beats_in(new_client(mongo_db.uri, dt.timedelta(seconds=5), event_listeners=[Beats()]))
    assert ours <= 2, f"{ours} heartbeats in one second"
    if mongo_db.kind == "congodb":  # the server this guards against: the driver's default spins on it
        default = beats_in(pymongo.MongoClient(mongo_db.uri, serverSelectionTimeoutMS=5000, event_listeners=[Beats()]))
        assert default > 20 * max(ours, 1), (default, ours)


# -- clock, schema, connection test ---------------------------------------------------------------------


def test_source_clock_is_the_server_clock(mongo_db):
    src = mongo_db.source("events")
    hello = mongo_db.client.admin.command("hello")
    clock = src.source_clock()
    assert clock.tzinfo is not None and clock.utcoffset() == dt.timedelta(0)
    server_now = hello["localTime"].replace(tzinfo=UTC) if hello["localTime"].tzinfo is None else hello["localTime"]
    assert abs(clock - server_now) < dt.timedelta(seconds=5)
    assert clock.microsecond % 1000 == 0  # the server's millisecond clock, not this machine's


def test_get_schema_reports_paths_types_and_presence(mongo_db):
    mongo_db.db.people.insert_many(
        [
            {"ts": at(1), "name": "a", "age": 30, "address": {"city": "X", "zip": "1"}, "tags": ["x", "y"]},
            {"ts": at(2), "name": "b", "age": None, "address": {"city": "Y"}, "tags": []},
            {"ts": at(3), "name": "c", "age": 4.5, "orders": [{"sku": "A", "qty": 1}]},
            {"ts": at(4), "name": 7},
        ]
    )
    schema = mongo_db.source("people").get_schema()
    fields = {f["name"]: f for f in schema["fields"]}
    assert schema["sampled"] == 4 and schema["cursor_field"] == "ts"
    assert fields["_id"]["type"] == "objectId" and fields["_id"]["presence"] == 1.0
    assert fields["ts"]["type"] == "date" and not fields["ts"]["nullable"]
    assert fields["name"]["types"] == {"string": 3, "int": 1} and fields["name"]["type"] == "string"
    assert fields["age"]["types"] == {"double": 1, "int": 1, "null": 1} and fields["age"]["nullable"]
    assert fields["age"]["present"] == 3 and fields["age"]["presence"] == 0.75
    assert fields["address.city"]["presence"] == 0.5 and fields["address.zip"]["present"] == 1
    assert fields["tags"]["type"] == "array" and fields["tags[]"]["types"] == {"string": 1}
    assert fields["orders[].sku"]["type"] == "string" and fields["orders[].qty"]["present"] == 1


def test_test_connection_describes_the_collection_and_warns_about_unreadable_cursors(mongo_db, caplog):
    mongo_db.db.events.insert_many([{"ts": at(1)}, {"ts": "2024-01-01"}, {"other": 1}])
    text = mongo_db.source("events").test_connection()
    assert "about 3 documents" in text and mongo_db.name in text
    assert "have no date in 'ts'; they are never read" in text
    assert "no index starts with 'ts'" in text
    mongo_db.db.events.create_index([("ts", 1), ("_id", 1)])
    assert "no index" not in mongo_db.source("events").test_connection()


# -- scale --------------------------------------------------------------------------------------------


@pytest.mark.slow
@only_on("congodb", reason="it measures the connector's memory, not the server; FerretDB takes 20 s to insert 100k documents")
def test_100k_documents_stream_in_bounded_memory(mongo_db):
    import json
    import subprocess
    import sys
    from pathlib import Path

    n = 100_000
    payload = "p" * 120
    # A fresh process, so that its peak RSS is about this read only: connector -> ReadWindow -> a DoFn.
    # It imports Beam while the collection fills, then reads when told to.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.mongo_memory_probe", mongo_db.uri, mongo_db.name, "big",
         at(ms=n).isoformat(), at(0).isoformat()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    try:
        for start in range(0, n, 10_000):
            mongo_db.db.big.insert_many(
                [{"ts": at(ms=i), "n": i, "payload": payload, "nested": {"k": i, "tags": ["a", "b"]}}
                 for i in range(start, start + 10_000)],
                ordered=False,
            )
        stdout, stderr = proc.communicate("go\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    whole_window = result["per_record"] * n  # the window held in memory at once: about 100 MB
    bound = 24 * 2**20
    assert whole_window > 3 * bound, result
    assert result["beam"]["count"] == n, result
    assert result["beam"]["rss_growth"] < bound, result

"""Probe what CongoDB (or any server) supports through pymongo 4.x.

    python tests/services/congodb/probe.py [--docs N] [--uri URI]

Starts a MongoServer (CongoDB unless --uri / OSMOSIS_TEST_MONGO_URI is given),
runs each check independently and prints one line per check:
``PASS``/``FAIL``/``INFO`` name: detail.  Exit code 0 (informational).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
import traceback
import uuid
from decimal import Decimal
from pathlib import Path

from bson import Binary, Decimal128, Int64, ObjectId, Regex
from pymongo import (
    ASCENDING,
    DESCENDING,
    DeleteOne,
    InsertOne,
    MongoClient,
    ReplaceOne,
    UpdateOne,
    monitoring,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.services.mongo_server import MongoServer  # noqa: E402

RESULTS: list = []


def check(name):
    def deco(fn):
        def run(*a, **kw):
            t0 = time.monotonic()
            try:
                detail = fn(*a, **kw)
                status = "PASS"
                if isinstance(detail, tuple):
                    status, detail = detail
            except Exception as exc:  # noqa: BLE001
                status, detail = "FAIL", f"{type(exc).__name__}: {exc}"
                if "-v" in sys.argv:
                    traceback.print_exc()
            took = time.monotonic() - t0
            RESULTS.append((status, name, detail))
            print(f"{status:4} {name}: {detail} [{took:.2f}s]", flush=True)

        return run

    return deco


class GetMoreCounter(monitoring.CommandListener):
    def __init__(self):
        self.counts = {}

    def started(self, event):
        self.counts[event.command_name] = self.counts.get(event.command_name, 0) + 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


BASE = dt.datetime(2024, 1, 1)


@check("insert_many")
def p_insert_many(db):
    c = db.events
    c.drop()
    docs = [{"k": i % 3, "seq": i, "ts": BASE + dt.timedelta(minutes=i), "payload": f"p{i}"} for i in range(50)]
    r = c.insert_many(docs)
    assert len(r.inserted_ids) == 50 and all(isinstance(x, ObjectId) for x in r.inserted_ids)
    return f"50 inserted, ids are ObjectId"


@check("find range+2-key sort+batch_size+projection")
def p_find(db):
    c = db.events
    lo, hi = BASE + dt.timedelta(minutes=10), BASE + dt.timedelta(minutes=40)
    cur = (
        c.find({"ts": {"$gte": lo, "$lt": hi}}, {"_id": 0, "k": 1, "seq": 1, "ts": 1})
        .sort([("k", ASCENDING), ("seq", DESCENDING)])
        .batch_size(7)
    )
    got = list(cur)
    exp = sorted(
        ({"k": i % 3, "seq": i, "ts": BASE + dt.timedelta(minutes=i)} for i in range(10, 40)),
        key=lambda d: (d["k"], -d["seq"]),
    )
    assert got == exp, f"got {got[:3]}... expected {exp[:3]}..."
    return "30 docs, order + projection exact (_id excluded, payload excluded)"


@check("find inclusion projection keeps _id / limit / skip")
def p_find2(db):
    c = db.events
    d = c.find_one({"seq": 5}, {"payload": 1})
    assert set(d) == {"_id", "payload"}, d
    got = [x["seq"] for x in c.find({}, {"seq": 1}).sort("seq", 1).skip(3).limit(4)]
    assert got == [3, 4, 5, 6], got
    return "ok"


@check("count_documents / estimated_document_count / distinct")
def p_count(db):
    c = db.events
    n = c.count_documents({"ts": {"$gte": BASE + dt.timedelta(minutes=10)}})
    assert n == 40, n
    assert c.count_documents({}) == 50
    e = c.estimated_document_count()
    d = sorted(c.distinct("k"))
    assert d == [0, 1, 2], d
    return f"count_documents=40, estimated={e}, distinct ok"


@check("aggregate $match/$group/$sort")
def p_agg(db):
    got = list(db.events.aggregate([{"$match": {"seq": {"$lt": 30}}}, {"$group": {"_id": "$k", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]))
    assert got == [{"_id": 0, "n": 10}, {"_id": 1, "n": 10}, {"_id": 2, "n": 10}], got
    return "ok"


@check("list_collection_names / list_database_names")
def p_list(db, client):
    names = db.list_collection_names()
    assert "events" in names, names
    dbs = client.list_database_names()
    return f"collections={sorted(names)} dbs={dbs}"


@check("bulk_write UpdateOne(upsert=True) + InsertOne/ReplaceOne/DeleteOne")
def p_bulk(db):
    c = db.bulk
    c.drop()
    c.insert_one({"key": "a", "v": 0})
    r = c.bulk_write(
        [
            UpdateOne({"key": "a"}, {"$set": {"v": 1}}, upsert=True),
            UpdateOne({"key": "b"}, {"$set": {"v": 2}, "$setOnInsert": {"created": True}}, upsert=True),
            InsertOne({"key": "c", "v": 3}),
            ReplaceOne({"key": "c"}, {"key": "c", "v": 30}),
            DeleteOne({"key": "zzz"}),
        ],
        ordered=True,
    )
    docs = {d["key"]: d for d in c.find({}, {"_id": 0})}
    assert docs["a"]["v"] == 1 and docs["b"] == {"key": "b", "v": 2, "created": True} and docs["c"]["v"] == 30, docs
    counts = dict(ins=r.inserted_count, match=r.matched_count, mod=r.modified_count, ups=r.upserted_count, dele=r.deleted_count)
    exp = dict(ins=1, match=2, mod=2, ups=1, dele=0)
    if counts != exp:
        return "FAIL", f"data right but counts {counts}, expected {exp}"
    assert isinstance(list(r.upserted_ids.values())[0], ObjectId)
    # second identical upsert run: matches, no new doc
    r2 = c.bulk_write([UpdateOne({"key": "b"}, {"$set": {"v": 2}}, upsert=True)])
    assert c.count_documents({"key": "b"}) == 1 and r2.upserted_count == 0, (r2.bulk_api_result)
    return f"counts {counts}; re-upsert matched (modified={r2.modified_count})"


@check("update_many / delete_many / find_one_and_update / replace_one")
def p_upd(db):
    c = db.bulk
    r = c.update_many({}, {"$inc": {"v": 100}})
    f = c.find_one_and_update({"key": "a"}, {"$set": {"z": 1}}, return_document=True)
    assert f["z"] == 1 and f["v"] == 101, f
    d = c.delete_many({"key": {"$in": ["a", "b"]}})
    return f"update_many.modified={r.modified_count}, delete_many.deleted={d.deleted_count}"


@check("create_index / list_indexes")
def p_idx(db):
    c = db.idx
    c.drop()
    c.create_index([("a", 1), ("b", -1)], name="a_b")
    c.create_index("u", unique=True)
    names = sorted(i["name"] for i in c.list_indexes())
    return f"indexes={names}"


@check("unique index enforced")
def p_unique(db):
    from pymongo.errors import DuplicateKeyError

    c = db.idx
    c.insert_one({"u": 1})
    try:
        c.insert_one({"u": 1})
    except DuplicateKeyError:
        return "DuplicateKeyError raised"
    return "FAIL", "second insert with same unique key accepted"


@check("_id non-ObjectId (str) round trip")
def p_str_id(db):
    c = db.strid
    c.drop()
    c.insert_one({"_id": "abc", "v": 1})
    d = c.find_one({"_id": "abc"})
    if d is None or d["_id"] != "abc":
        return "FAIL", f"find_one({{'_id':'abc'}}) -> {d}; all docs: {list(c.find())}"
    c.insert_one({"_id": 7, "v": 2})
    d2 = c.find_one({"_id": 7})
    if d2 is None:
        return "FAIL", f"int _id lookup -> None"
    return "ok"


@check("server_info()")
def p_server_info(client):
    info = client.server_info()
    return f"version={info.get('version')} keys={sorted(info)[:8]}"


@check("hello command (localTime?)")
def p_hello(client):
    h = client.admin.command("hello")
    lt = h.get("localTime")
    drift = (lt - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).total_seconds() if lt else None
    return f"localTime={lt!r} (drift {drift:+.2f}s), maxWireVersion={h.get('maxWireVersion')}, version={h.get('version')}, isWritablePrimary={h.get('isWritablePrimary')}"


@check("serverStatus command (localTime?)")
def p_status(client):
    s = client.admin.command("serverStatus")
    return f"localTime={s.get('localTime')!r} uptime={s.get('uptime')} keys={sorted(s)}"


@check("buildInfo command")
def p_build(client):
    b = client.admin.command("buildInfo")
    return f"version={b.get('version')} versionArray={b.get('versionArray')} keys={sorted(b)}"


@check("ping command")
def p_ping(client):
    return str(client.admin.command("ping"))


def _roundtrip(db, name, value, compare=None):
    c = db.types
    oid = c.insert_one({"name": name, "v": value}).inserted_id
    back = c.find_one({"_id": oid})["v"]
    ok = compare(value, back) if compare else (back == value and type(back) is type(value))
    if not ok:
        raise AssertionError(f"sent {value!r} ({type(value).__name__}) got {back!r} ({type(back).__name__})")
    return back


@check("BSON round trips")
def p_types(db):
    db.types.drop()
    ms = dt.datetime(2024, 5, 6, 7, 8, 9, 123000)
    cases = {
        "datetime(ms)": ms,
        "Decimal128": Decimal128(Decimal("12345.678901234567890")),
        "Binary(0)/bytes": b"\x00\x01\xffraw",  # pymongo decodes subtype 0 to bytes
        "Binary(5)": Binary(b"\x01\x02", 5),
        "Binary(4,UUID)": Binary.from_uuid(uuid.UUID("12345678-1234-5678-1234-567812345678")),
        "ObjectId": ObjectId(),
        "nested doc": {"a": {"b": {"c": [1, {"d": "e"}]}}},
        "array": [1, "two", 3.0, None, [4]],
        "int32": 42,
        "bool": True,
        "None": None,
        "double": 3.25,
        "str unicode": "héllo ✓",
        "Regex": Regex("^ab.*c$", "i"),
    }
    fails, oks = [], []
    for name, val in cases.items():
        cmp = None
        try:
            _roundtrip(db, name, val, cmp)
            oks.append(name)
        except Exception as exc:  # noqa: BLE001
            fails.append(f"{name}: {exc}")
    # datetime with microseconds truncated to ms (like mongod)
    us = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    back = db.types.find_one({"_id": db.types.insert_one({"v": us}).inserted_id})["v"]
    note = f"; datetime µs -> {back.microsecond}µs"
    # re.Pattern compiled regex
    pat = re.compile("^x", re.I)
    back = db.types.find_one({"_id": db.types.insert_one({"v": pat}).inserted_id})["v"]
    note += f"; re.compile -> {back!r}"
    # query by the values
    q = db.types.count_documents({"v": Decimal128("12345.678901234567890")})
    note += f"; query by Decimal128 matched {q}"
    q = db.types.count_documents({"v": ms})
    note += f"; by datetime matched {q}"
    if fails:
        return "FAIL", f"ok={oks}; FAILED: {fails}{note}"
    return f"all ok: {oks}{note}"


@check("int64 round trip")
def p_int64(db):
    c = db.int64
    c.drop()
    vals = {"Int64(5)": Int64(5), "Int64(2**40+1)": Int64(2**40 + 1), "2**53+1": 2**53 + 1, "2**62+1": 2**62 + 1, "-2**40": -(2**40)}
    out, bad = [], False
    for name, v in vals.items():
        back = c.find_one({"_id": c.insert_one({"v": v, "arr": [v], "sub": {"v": v}}).inserted_id})
        b = back["v"]
        ok = b == v and isinstance(b, int) and back["arr"][0] == v and back["sub"]["v"] == v
        bad |= not ok
        out.append(f"{name}->{b!r}({type(b).__name__})")
    # stored server-side value as seen by a query and by $inc
    q = c.count_documents({"v": Int64(2**40 + 1)})
    c2 = c.find_one_and_update({"v": Int64(5)}, {"$inc": {"v": Int64(1)}}, return_document=True)["v"]
    out.append(f"query by Int64 matched {q}; $inc Int64 -> {c2!r}({type(c2).__name__})")
    return ("FAIL" if bad else "PASS"), "; ".join(out)


@check("tz-aware client datetime")
def p_tz(server):
    c = server.client(tz_aware=True)
    coll = c.probe.tz
    coll.drop()
    t = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    coll.insert_one({"t": t})
    back = coll.find_one()["t"]
    assert back == t and back.tzinfo is not None, back
    return f"{back.isoformat()}"


@check("large cursor streams via getMore")
def p_large(server, n):
    listener = GetMoreCounter()
    c = MongoClient(server.uri, event_listeners=[listener], serverSelectionTimeoutMS=5000)
    try:
        coll = c.probe.big
        coll.drop()
        t0 = time.monotonic()
        chunk = 10000
        for s in range(0, n, chunk):
            coll.insert_many(
                [{"i": i, "ts": BASE + dt.timedelta(seconds=i), "pad": "x" * 50} for i in range(s, min(n, s + chunk))],
                ordered=False,
            )
        t_ins = time.monotonic() - t0
        listener.counts.clear()
        t0 = time.monotonic()
        cur = coll.find({}, {"i": 1}).sort("i", 1).batch_size(1000)
        first = next(cur)
        t_first = time.monotonic() - t0
        seen, last = 1, first["i"]
        ordered = first["i"] == 0
        for d in cur:
            ordered &= d["i"] == last + 1
            last = d["i"]
            seen += 1
        t_all = time.monotonic() - t0
        gm = listener.counts.get("getMore", 0)
        assert seen == n, f"saw {seen} of {n}"
        # range query over whole set with batch size (no sort)
        t0 = time.monotonic()
        m = sum(1 for _ in coll.find({"ts": {"$gte": BASE, "$lt": BASE + dt.timedelta(seconds=n // 2)}}).batch_size(5000))
        t_range = time.monotonic() - t0
        assert m == n // 2, m
        return (
            f"{n} docs: insert {t_ins:.1f}s; sorted find batch_size=1000: first doc {t_first:.2f}s, all {t_all:.1f}s, "
            f"getMore calls={gm}, ordered={ordered}; range find {m} docs {t_range:.1f}s"
        )
    finally:
        c.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--uri", default=None)
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    t0 = time.monotonic()
    with MongoServer(args.uri) as server:
        print(f"server: {server!r} (ready in {time.monotonic() - t0:.2f}s)")
        client = server.client()
        client.drop_database("probe")
        db = client.probe
        p_insert_many(db)
        p_find(db)
        p_find2(db)
        p_count(db)
        p_agg(db)
        p_list(db, client)
        p_bulk(db)
        p_upd(db)
        p_idx(db)
        p_unique(db)
        p_str_id(db)
        p_server_info(client)
        p_hello(client)
        p_status(client)
        p_build(client)
        p_ping(client)
        p_types(db)
        p_int64(db)
        p_tz(server)
        if args.docs:
            p_large(server, args.docs)
        client.drop_database("probe")
    fails = [r for r in RESULTS if r[0] == "FAIL"]
    print(f"\n{len(RESULTS) - len(fails)} passed, {len(fails)} failed: {[r[1] for r in fails]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

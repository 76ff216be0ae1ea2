"""The two baselines of the PostgreSQL benchmark, run as separate processes.

    python bench/baselines.py copy DSN OUT_FILE        # COPY (SELECT row_to_json(t) ...) TO STDOUT
    python bench/baselines.py psycopg2 DSN OUT_FILE    # a plain named cursor writing JSON lines
    python bench/baselines.py pymongo URI OUT_FILE     # a pymongo loop writing bson.json_util lines
    python bench/baselines.py feedparser URL OUT_FILE  # requests + feedparser + a JSON dump of the entries
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import sys

import psycopg2
import psycopg2.extras


def _default(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    return str(value)


def copy(dsn: str, out: str) -> int:
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur, open(out, "w", encoding="utf-8") as fh:
        cur.copy_expert("COPY (SELECT row_to_json(t) FROM events t ORDER BY updated_at) TO STDOUT", fh)
    conn.close()
    return sum(1 for _ in open(out, encoding="utf-8"))


def plain(dsn: str, out: str) -> int:
    conn = psycopg2.connect(dsn)
    conn.set_session(readonly=True)
    with conn.cursor() as tz:
        tz.execute("SET TimeZone = 'UTC'")
    n = 0
    with conn, conn.cursor("bench", cursor_factory=psycopg2.extras.RealDictCursor) as cur, open(out, "w", encoding="utf-8") as fh:
        cur.itersize = 10000
        cur.execute("SELECT * FROM events ORDER BY updated_at")
        for row in cur:
            fh.write(json.dumps(row, default=_default))
            fh.write("\n")
            n += 1
    conn.close()
    return n


def mongo(uri: str, out: str) -> int:
    import pymongo
    from bson import json_util

    client = pymongo.MongoClient(uri, tz_aware=True)
    n = 0
    with open(out, "w", encoding="utf-8") as fh:
        for doc in client["bench"]["events"].find({}).sort("updated_at", 1).batch_size(5000):
            fh.write(json_util.dumps(doc))
            fh.write("\n")
            n += 1
    client.close()
    return n


def feed(url: str, out: str) -> int:
    import time

    import feedparser
    import requests

    resp = requests.get(url, timeout=30)
    parsed = feedparser.parse(resp.content, response_headers={"content-type": resp.headers.get("content-type", "")})
    n = 0
    with open(out, "w", encoding="utf-8") as fh:
        for entry in parsed.entries:
            record = dict(entry)
            for key in ("published_parsed", "updated_parsed"):
                if record.get(key):
                    record[key] = time.strftime("%Y-%m-%dT%H:%M:%SZ", record[key])
            fh.write(json.dumps(record, default=str))
            fh.write("\n")
            n += 1
    return n


if __name__ == "__main__":
    kind, dsn, out = sys.argv[1:4]
    rows = {"copy": copy, "psycopg2": plain, "pymongo": mongo, "feedparser": feed}[kind](dsn, out)
    print(json.dumps({"rows": rows}))

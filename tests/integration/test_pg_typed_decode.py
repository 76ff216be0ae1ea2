"""The typed PostgreSQL read against a real server: json and jsonb parsed a batch at a time give, value for value
and byte for byte in JSONL, what psycopg2's per-value stdlib caster gave (the reference below is that read:
a connection with the connector's casters, ``dict(zip(names, row))``), over odd documents and in every batch shape.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time

import pytest

from osmosis_beam.core.encoding import dumps_bytes
from osmosis_beam.core.errors import RetriableConnectorError
from osmosis_beam.core.records import DeadLetter
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.io.postgres.source import open_connection, register_value_types
from tests.integration.pg_support import (  # noqa: F401  (fixtures)
    T0,
    execute,
    flatten,
    pg_dsn,
    pg_module_database,
    read_all,
    read_through_beam,
    source,
    utc,
)
from tests.unit.test_pg_decode import same

# Documents as the server stores them: jsonb normalises (numbers as numeric text, keys deduplicated and
# sorted), json keeps the text as it was written.
_DOCS = [
    '{"big": 9223372036854775808, "neg": -9223372036854775809, "u64": 18446744073709551616, "ok": 9223372036854775807}',
    "123456789012345678901234567890",
    "1e400",  # jsonb: a 401-digit integer; json: the stdlib's inf
    "-1e400",
    "1e-400",  # jsonb: 0.000...1 (a float 0.0 to Python)
    "[1.7976931348623157e308, 5e-324, 2.2250738585072011e-308, 0.1, -0.0, -0, 1.0, 1E+2, 0.30000000000000004]",
    '"\\u00e9\\ud83d\\ude00 \\" \\\\ \\/ \\b\\f\\n\\r\\t \\u001f"',
    '"é☃𝄞 plain unicode"',
    '{"a": 1, "b": 2, "a": 3}',  # duplicate keys: jsonb keeps the last; json keeps the text
    '{"": {"": [[], {}]}, "nested": ' + "[" * 200 + '{"deep": true}' + "]" * 200 + "}",
    '{"id": "12345678901234567890123", "n": 1.5, "t": [null, true, false]}',  # a digit run inside a string
    '{"x": 12345678901234567, "y": -123456789012345678}',
    "null",
    '"just text"',
    "  { \"padded\" :  [ 1 ,  2.50 ] }  ",
]


def _doc(i: int) -> str:
    """Row ``i``'s document: every seventh a plain one (batches of plain documents take orjson's fast path)."""
    return _DOCS[i % len(_DOCS)] if i % 7 else '{"qty": %d, "sku": "SKU-%d", "tags": ["a", "b"]}' % (i, i)


def _table(dsn: str, rows: int) -> None:
    execute(
        dsn,
        "CREATE TABLE docs (id integer PRIMARY KEY, updated_at timestamptz NOT NULL, jb jsonb, j json, jba jsonb[], "
        "n numeric, note text)",
    )
    # Runs of 10 rows share a cursor value: batch edges fall inside ties.
    values = [(i, T0 + dt.timedelta(seconds=i // 10), _doc(i), _doc(i), [_doc(i), None] if i % 5 == 0 else None,
               str(i / 8), None if i % 3 else f"row {i}") for i in range(rows)]
    conn = open_connection(dsn, "test")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO docs VALUES (%s, %s, %s::jsonb, %s::json, %s::jsonb[], %s, %s)", values)
    finally:
        conn.close()


def _line(record: dict) -> bytes | str:
    """The record's JSONL line, or why it has none (``1e400`` in a json column is inf: a dead letter on both paths)."""
    try:
        return dumps_bytes(record)
    except (TypeError, ValueError) as exc:
        return repr(exc)


def _reference(dsn: str, where: str = "") -> list[dict]:
    """The rows as the per-value stdlib caster read them (the typed path before the batch decode)."""
    conn = open_connection(dsn, "reference")
    try:
        register_value_types(conn)
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM docs {where} ORDER BY updated_at, id")
            names = [d.name for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        conn.close()


@pytest.mark.parametrize("fetch_size", [1, 7, 1000])
def test_odd_json_reads_as_the_stdlib_caster_read_it(pg_dsn, fetch_size):
    _table(pg_dsn, 400)
    want = _reference(pg_dsn)
    got = read_all(source(pg_dsn, table="docs", fetch_size=fetch_size), None, utc(2030, 1, 1))
    assert not [g for g in got if isinstance(g, DeadLetter)]
    assert len(got) == len(want) == 400
    got_by_id = {r["id"]: r for r in got}  # rows that tie on the cursor may come in any order
    assert sorted(got_by_id) == sorted(r["id"] for r in want)
    differ = [r["id"] for r in want if not same(got_by_id[r["id"]], r)]
    assert not differ, f"rows {differ[:5]} differ from the stdlib's values"
    # A few of the values the stdlib keeps and orjson alone would not.
    assert _doc(15) == _DOCS[0] and _doc(2) == "1e400" and _doc(8).startswith('{"a": 1, "b": 2, "a"')
    assert got_by_id[15]["jb"]["u64"] == 18446744073709551616 and type(got_by_id[15]["jb"]["big"]) is int
    assert got_by_id[2]["jb"] == 10 ** 400 and got_by_id[2]["j"] == float("inf")
    assert got_by_id[8]["jb"] == {"a": 3, "b": 2} == got_by_id[8]["j"]
    assert got_by_id[5]["jb"][4] == 0.0 and str(got_by_id[5]["j"][4]) == "-0.0"  # jsonb has no -0.0; json keeps it
    # The JSONL bytes are the same too.
    assert all(_line(got_by_id[r["id"]]) == _line(r) for r in want)
    assert _line(got_by_id[2]).startswith("ValueError")


def test_through_beam_the_records_and_lines_are_the_same(pg_dsn):
    _table(pg_dsn, 600)
    want = {r["id"]: r for r in _reference(pg_dsn)}
    window = SyncWindow(utc(2024, 1, 1), utc(2030, 1, 1))
    batches, dead = read_through_beam(source(pg_dsn, table="docs", fetch_size=50), window, splits=3, batch_size=13)
    records = flatten(batches)
    assert dead == [] and len(records) == 600
    assert sorted(r["id"] for r in records) == sorted(want)
    for r in records:
        assert same(r, want[r["id"]]) and _line(r) == _line(want[r["id"]])
        assert list(r) == ["id", "updated_at", "jb", "j", "jba", "n", "note"]


def test_a_value_python_cannot_hold_after_json_rows_that_tie(pg_dsn):
    """The row-by-row re-read after a conversion error skips the tied rows already read, json included."""
    _table(pg_dsn, 60)
    execute(
        pg_dsn,
        "ALTER TABLE docs ADD COLUMN due date",
        # Rows 30-39 tie on the cursor; row 35 holds a date Python cannot represent.
        "UPDATE docs SET due = '10000-01-01' WHERE id = 35",
    )
    items = read_all(source(pg_dsn, table="docs", fetch_size=4), None, utc(2030, 1, 1))
    dead = [i for i in items if isinstance(i, DeadLetter)]
    records = [i for i in items if not isinstance(i, DeadLetter)]
    assert [d.record["id"] for d in dead] == [35] and "year 10000 is out of range" in dead[0].error
    assert sorted(r["id"] for r in records) == [i for i in range(60) if i != 35]  # none lost, none twice
    want = {r["id"]: r for r in _reference(pg_dsn, "WHERE id <> 35")}
    for r in records:
        assert same(r, want[r["id"]])


def test_jsonl_run_of_the_typed_path_writes_what_the_reference_encodes(pg_dsn, tmp_path, osmosis_cli):
    """The whole command on the typed path (a python step): every line is the reference record's line."""
    _table(pg_dsn, 300)
    execute(pg_dsn, "UPDATE docs SET j = NULL WHERE j::text LIKE '%e400'")  # inf: not JSON, a dead letter
    module = tmp_path / "typed_steps.py"
    module.write_text("def touch(record):\n    record['seen'] = True\n    return record\n")
    yaml_path = tmp_path / "p.yaml"
    yaml_path.write_text(
        "id: typed_docs\nsource:\n  type: postgres\n  dsn: ${TD_DSN}\n  table: docs\n  fetch_size: 64\n"
        "incremental:\n  cursor_field: updated_at\n  safety_lag: 0s\nread:\n  splits: 2\n  batch_size: 50\n"
        f"steps:\n  - python: typed_steps:touch\nsink:\n  type: jsonl\n  path: {tmp_path / 'out'}\n"
    )
    result = osmosis_cli("-v", "run", yaml_path, env={"TD_DSN": pg_dsn, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 0, result.stderr
    assert "typed path" in result.stderr
    lines = [line for f in sorted((tmp_path / "out").rglob("part-*.jsonl")) for line in f.read_bytes().splitlines()]
    want = {}
    for r in _reference(pg_dsn):
        r["seen"] = True
        want[r["id"]] = dumps_bytes(r)
    assert len(lines) == 300
    assert sorted(lines) == sorted(want.values())
    assert json.loads(result.stdout.strip().splitlines()[-1])["records_written"] == 300


def _fetch_threads() -> list:
    return [t for t in threading.enumerate() if t.name == "osmosis-pg-fetch"]


def test_a_fetch_that_fails_in_the_fetch_thread_fails_the_read_with_the_connectors_error(pg_dsn):
    """A FETCH past statement_timeout, raised in the thread that fetches, reaches the reader as the usual error."""
    execute(pg_dsn, "CREATE TABLE slow (id int, updated_at timestamptz NOT NULL, doc jsonb)",
            "INSERT INTO slow SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 s', '{\"g\": 1}' "
            "FROM generate_series(1, 200) g")
    query = "SELECT s.id, s.updated_at, s.doc FROM slow s CROSS JOIN LATERAL (SELECT pg_sleep(0.02 + 0 * s.id)) z"
    connector = source(pg_dsn, query=query, fetch_size=100, statement_timeout="1s")
    with pytest.raises(RetriableConnectorError, match=r"statement_timeout \(1s\)"):
        read_all(connector, None, utc(2030, 1, 1))
    assert _fetch_threads() == []
    # The same read with time enough completes, every row once.
    relaxed = source(pg_dsn, query=query, fetch_size=100, statement_timeout="60s")
    assert sorted(r["id"] for r in read_all(relaxed, None, utc(2030, 1, 1))) == list(range(1, 201))


def test_a_read_stopped_early_stops_its_fetch_thread_and_the_next_read_is_whole(pg_dsn):
    """A split can take the rest of a sub-window: the reader is closed after one batch; nothing is left running."""
    execute(pg_dsn, "CREATE TABLE many (id int, updated_at timestamptz NOT NULL, doc jsonb)",
            "INSERT INTO many SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 ms', "
            "jsonb_build_object('g', g) FROM generate_series(1, 30000) g")
    connector = source(pg_dsn, table="many", fetch_size=1000)
    connector.connect()
    try:
        batches = connector.read_window_batches(None, utc(2030, 1, 1), 500)
        first = next(batches)
        assert [r["id"] for r in first] == list(range(1, 501)) and first[0]["doc"] == {"g": 1}
        assert len(_fetch_threads()) == 1  # the next FETCH is on its way
        started = time.monotonic()
        batches.close()  # what the read does when a claim fails
        assert time.monotonic() - started < 5 and _fetch_threads() == []
        total = [r["id"] for b in connector.read_window_batches(None, utc(2030, 1, 1), 500) for r in b]
    finally:
        connector.disconnect()
    assert total == list(range(1, 30001))

"""PostgreSQL -> Parquet: the Arrow path (COPY CSV -> pyarrow) against the typed path, value for value.

Both paths run on the in-process Beam runner against a real PostgreSQL server over every column type the
Arrow path carries; their Parquet output (schema and values) and their dead letters are compared.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from osmosis_beam.core.errors import ConnectorError
from osmosis_beam.core.records import EncodedBatch
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.io.files.parquet import ParquetSink, read_parquet_table
from osmosis_beam.io.files.staged import iter_output_files
from osmosis_beam.io.read import ReadWindow
from tests.faults.pg_support import pagila_dsn  # noqa: F401  (fixture: the real pagila sample database)
from tests.integration.pg_support import (  # noqa: F401  (fixtures)
    _Store,
    every_type_yaml,
    execute,
    pg_dsn,
    pg_module_database,
    pipeline,
    source,
    utc,
)

_parquet_yaml = functools.partial(every_type_yaml, sink="parquet", pipeline_id="zero_parquet")

_TABLE = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE every_type (
    id integer PRIMARY KEY,
    updated_at timestamptz NOT NULL,
    i2 smallint, i4 integer, i8 bigint, pos positive, o oid,
    f4 real, f8 double precision,
    n122 numeric(12, 2), n3810 numeric(38, 10), n50 numeric(50, 5), n5 numeric(5),
    t text, vc varchar(20), c char(5), nm name, qc "char",
    b boolean,
    d date, tm time, ts timestamp, tstz timestamptz,
    u uuid, by bytea,
    j json, jb jsonb,
    e mood, ip inet, cidr_ cidr, mac macaddr, money_ money, bits bit(4), x xml
);
"""

_ROWS = r"""
INSERT INTO every_type VALUES
 (1, '2024-01-01 00:00:00+00', 1, 2, 3, 4, 5, 1.1, 0.1, 12.34, 1.5, 12345678901234567890123456789012345678901234.5, 7,
  'plain', 'v', 'ab', 'nm', 'q', true, '2024-02-29', '12:34:56', '2024-01-01 10:00:00', '2024-01-01 10:00:00+02',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x000102ff', '{ "a" : 1,  "b": [1, 2.5, "x"] }',
  '{"k": {"n": 1.25, "s": "é\"\\"}, "a": [true, null]}', 'happy', '10.0.0.1', '10.0.0.0/8', '08:00:2b:01:02:03',
  12.5, B'1010', '<a>x</a>'),
 -- extremes, unicode, quotes and newlines (CSV quoting), empty text against NULL
 (2, '2024-01-01 00:00:00.120000+00', -32768, -2147483648, -9223372036854775808, 1, 0, -0.0, 1e300,
  -0.01, -1234567890123456789012345678.0123456789, -0.00001, -99999, E'tab\there\nnew "q", \\ back ☃ 𝄞', '', '     ',
  '', ' ', false, '0099-12-31', '00:00:00.000001', '1999-12-31 23:59:59.999990', '1970-01-01 00:00:00+00',
  '00000000-0000-0000-0000-000000000000', decode(repeat('ab', 100), 'hex'), '[]', '{}',
  'sad', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', -0.01, B'0000', '<r/>'),
 -- the same cursor value as row 2 (a tie), every value NULL
 (3, '2024-01-01 00:00:00.120000+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 -- values the typed path cannot read or write: flagged by the server, decoded typed, dead letters on both paths
 (4, '2024-06-01 12:00:00+00', NULL, NULL, NULL, NULL, NULL, 'NaN', 'Infinity', 'NaN', NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'null', 'null', NULL, NULL, NULL, NULL, NULL,
  NULL, NULL),
 (5, '2024-06-01 12:00:01+00', NULL, NULL, NULL, NULL, NULL, NULL, '-Infinity', NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, 'infinity', '24:00:00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL),
 (6, '2024-06-01 12:00:02+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, '10000-01-01', NULL, '10000-01-01 00:00:00', '0044-03-15 12:00:00+00 BC', NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 -- cursor values far from now: positions beyond the float-exact range
 (7, '1800-01-01 00:00:00.000001+00', 7, NULL, NULL, NULL, NULL, 'NaN', 'NaN', 7.01, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, '24:00:00', NULL, NULL, NULL, NULL, NULL, '[1, {"deep": [[]]}]', NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 (8, '2200-07-04 23:59:59.999999+00', 8, NULL, NULL, NULL, NULL, NULL, NULL, 0.01, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL);
INSERT INTO every_type (id, updated_at, i4, f8, n122, n3810, t, tstz, by, jb, d)
SELECT 100 + g, timestamptz '2024-03-01 00:00:00+00' + g * interval '1.5 seconds', g, g / 7.0, g / 100.0, g / 3.0,
       'row ' || g, timestamptz '2024-03-01 00:00:00+00' + g * interval '1 millisecond', int4send(g),
       jsonb_build_object('g', g, 'h', g / 3.0, 'big', 123456789012345678901234567890), date '2024-01-01' + g
FROM generate_series(1, 2500) AS g;
"""

WINDOW = SyncWindow(utc(1800, 1, 1), utc(2300, 1, 1))
_N = 2508


def _run(connector, sink: ParquetSink, run_id: str, window: SyncWindow, *, splits: int, batch_size: int = 300):
    """One run through Beam into the sink, published; returns (dead letters, the kinds of batches read)."""
    dead, kinds = _Store(), _Store()
    sink.prepare(run_id)
    with pipeline() as p:
        read = p | "Read" >> ReadWindow(connector, window, splits=splits, batch_size=batch_size)
        read.records | "Kinds" >> beam.Map(
            lambda b: kinds.add("arrow" if isinstance(b, EncodedBatch) and not isinstance(b.lines, list) else "typed"))
        written = read.records | "Write" >> sink.write(run_id)
        (read.dead_letter, written.dead_letter) | beam.Flatten() | beam.Map(dead.add)
    sink.publish(run_id, window_hi=window.hi if isinstance(window.hi, dt.datetime) else utc(2024, 1, 1))
    return dead.take(), kinds.take()


def _paths(pg_dsn, out: Path, window: SyncWindow = WINDOW, *, splits: int = 1, batch_size: int = 300, **source_options):
    """The typed and the Arrow path over the same window: {path: (table, dead letters, batch kinds, files)}."""
    results = {}
    for path in ("typed", "arrow"):
        connector = source(pg_dsn, table="every_type", **source_options)
        sink = ParquetSink({"path": str(out / path)}, pipeline_id="t")
        sink.use_schema(connector.get_schema())
        encoding = None if path == "typed" else "arrow"
        assert connector.use_encoding(encoding) is None
        sink.use_encoding(encoding)
        dead, kinds = _run(connector, sink, f"run-{path}", window, splits=splits, batch_size=batch_size)
        files = list(iter_output_files(out / path, ".parquet"))
        results[path] = (read_parquet_table(out / path), dead, kinds, files)
    return results


def _rows(table: pa.Table) -> dict:
    json_columns = [f.name for f in table.schema if f.metadata and f.metadata.get(b"osmosis.encoding") == b"json"]
    rows = {}
    for row in table.to_pylist():
        for name in json_columns:
            if row[name] is not None:
                row[name] = json.loads(row[name])  # the JSON text's spacing may differ; its value may not
        rows[row["id"]] = row
    return rows


def _dead_key(letter: dict) -> tuple:
    record = letter["record"]
    ident = record.get("id") if isinstance(record, dict) else record.split("'id': ", 1)[1].split(",", 1)[0]
    return (str(ident), letter["step"], letter["error"])


def _same_value(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def _assert_same_rows(arrow: dict, typed: dict) -> None:
    """The same rows with the same values (NaN equal to NaN), column by column."""
    assert sorted(arrow) == sorted(typed)
    for ident, row in typed.items():
        assert list(arrow[ident]) == list(row)
        for name, value in row.items():
            assert _same_value(arrow[ident][name], value), f"row {ident} column {name}: {arrow[ident][name]!r} != {value!r}"


@pytest.mark.parametrize("splits", [1, 3])
def test_arrow_path_equals_typed_over_every_type(pg_dsn, tmp_path, splits):
    execute(pg_dsn, _TABLE, _ROWS)
    results = _paths(pg_dsn, tmp_path, splits=splits)
    typed, typed_dead, typed_kinds, _ = results["typed"]
    arrow, arrow_dead, arrow_kinds, arrow_files = results["arrow"]

    assert set(typed_kinds) == {"typed"} and "arrow" in arrow_kinds
    # The schemas: every column the same type (numeric(p,s) as decimal(p,s)), the JSON columns marked.
    assert arrow.schema.names == typed.schema.names
    for field in typed.schema:
        assert arrow.schema.field(field.name).type == field.type, field.name
        assert arrow.schema.field(field.name).metadata == field.metadata, field.name
    assert arrow.schema.field("n122").type == pa.decimal128(12, 2)
    assert arrow.schema.field("n50").type == pa.decimal256(50, 5)
    assert arrow.schema.field("tstz").type == pa.timestamp("us", tz="UTC")
    assert arrow.schema.field("ts").type == pa.timestamp("us") and arrow.schema.field("by").type == pa.binary()
    # Every file of the Arrow path has the catalog's types (no null-typed column in a file of NULLs).
    for file in arrow_files:
        schema = pq.read_schema(file)
        assert not any(pa.types.is_null(f.type) for f in schema), file
        assert schema.metadata[b"osmosis.pipeline"] == b"t" and schema.metadata[b"osmosis.run_id"] == b"run-arrow"

    # The values, row by row.
    typed_rows, arrow_rows = _rows(typed), _rows(arrow)
    assert len(typed_rows) + len(typed_dead) == _N
    _assert_same_rows(arrow_rows, typed_rows)
    # The rows the typed path cannot read or write are the same dead letters, for the same reasons.
    assert sorted(map(_dead_key, arrow_dead)) == sorted(map(_dead_key, typed_dead))
    assert {k[0] for k in map(_dead_key, typed_dead)} == {"4", "6"}  # a numeric NaN; years 10000 and 44 BC
    # Flagged rows psycopg2 does read are written as the typed path writes them ('infinity' is date.max,
    # '24:00:00' is midnight), in the Arrow path's column types.
    assert arrow_rows[5]["d"] == typed_rows[5]["d"] == dt.date(9999, 12, 31)
    assert arrow_rows[7]["tm"] == typed_rows[7]["tm"] == dt.time(0, 0)

    one, two = arrow_rows[1], arrow_rows[2]
    assert str(one["n122"]) == "12.34" and str(one["n50"]) == "12345678901234567890123456789012345678901234.50000"
    assert one["by"] == b"\x00\x01\x02\xff" and one["jb"] == {"a": [True, None], "k": {"n": 1.25, "s": 'é"\\'}}
    assert one["f4"] == 1.1 and one["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" and one["e"] == "happy"
    assert two["t"] == 'tab\there\nnew "q", \\ back ☃ 𝄞' and two["vc"] == "" and two["c"] == "     "
    assert arrow_rows[3]["t"] is None and arrow_rows[3]["vc"] is None
    assert arrow_rows[2200]["jb"]["big"] == 123456789012345678901234567890


def test_ties_cut_by_splits_and_small_batches_are_read_once(pg_dsn, tmp_path):
    execute(
        pg_dsn,
        "CREATE TABLE every_type (id integer PRIMARY KEY, updated_at timestamptz NOT NULL, v numeric(10, 4))",
        "INSERT INTO every_type SELECT g, timestamptz '2024-01-01 00:00:00+00' + (g / 7) * interval '1 second', g / 4.0 "
        "FROM generate_series(1, 3000) AS g",
    )
    window = SyncWindow(utc(2024, 1, 1), utc(2024, 1, 1, 0, 5))
    results = _paths(pg_dsn, tmp_path, window, splits=5, batch_size=64)
    arrow, dead, kinds, _ = results["arrow"]
    assert not dead and set(kinds) == {"arrow"}
    ids = sorted(arrow.column("id").to_pylist())
    assert ids == list(range(1, 2100))  # id 2100 lies at 00:05:00 = hi: the next window's
    _assert_same_rows(_rows(arrow), _rows(results["typed"][0]))


def test_types_the_arrow_path_cannot_carry_keep_the_typed_path_with_the_reason(pg_dsn):
    execute(pg_dsn, "CREATE TABLE every_type (id integer, updated_at timestamptz, free numeric, span interval, "
                    "tags text[])")
    for column, words in (("free", "unconstrained numeric"), ("span", "type oid 1186"), ("tags", "is an array")):
        connector = source(pg_dsn, table="every_type", columns=["id", "updated_at", column])
        why = connector.use_encoding("arrow")
        assert why is not None and f"column {column!r}" in why and words in why, why
        assert connector._encoded is None  # reads typed


def test_select_drop_rename_are_done_in_the_query(pg_dsn, tmp_path):
    execute(pg_dsn, _TABLE, _ROWS, "DELETE FROM every_type WHERE id IN (4, 6)")
    fields = (("select", ["id", "updated_at", "n122", "tstz", "jb", "nothing"]), ("rename", {"jb": "doc"}),
              ("drop", ["updated_at"]))
    tables = {}
    for path in ("typed", "arrow"):
        connector = source(pg_dsn, table="every_type")
        sink = ParquetSink({"path": str(tmp_path / path)}, pipeline_id="t")
        sink.use_schema(connector.get_schema())
        if path == "arrow":
            assert connector.use_encoding("arrow", fields=fields) is None
            sink.use_encoding("arrow")
            _run(connector, sink, "r", WINDOW, splits=2)
        else:
            from osmosis_beam.io.postgres.encoded import project

            # The typed path's records after the same steps (what the step chain would leave).
            assert connector.use_encoding(None) is None
            connector.connect()
            try:
                rows = [{f: (r.get(c) if c else None) for f, c in project(connector.plan.columns, fields)}
                        for r in connector.read_window(WINDOW.lo, WINDOW.hi)]
            finally:
                connector.disconnect()
            sink.prepare("r")
            from tests.integration.pg_support import write_through_beam

            assert write_through_beam(sink, "r", [rows]) == []
            sink.publish("r", window_hi=WINDOW.hi)
        tables[path] = read_parquet_table(tmp_path / path)
    assert tables["arrow"].schema.names == ["id", "n122", "tstz", "doc", "nothing"]
    for field in tables["typed"].schema:
        if field.name != "nothing":  # all NULL: typed the null type on both paths
            assert tables["arrow"].schema.field(field.name).type == field.type
    assert pa.types.is_null(tables["arrow"].schema.field("nothing").type)
    _assert_same_rows(_rows(tables["arrow"]), _rows(tables["typed"]))


def test_statement_timeout_applies_to_the_arrow_read(pg_dsn, tmp_path):
    execute(pg_dsn, "CREATE TABLE every_type (id integer, updated_at timestamptz, v integer)",
            "INSERT INTO every_type SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 s', g "
            "FROM generate_series(1, 3) AS g")
    connector = source(pg_dsn, query="SELECT id, updated_at, v FROM every_type WHERE pg_sleep(1) IS NOT NULL",
                       statement_timeout="1s")
    assert connector.use_encoding("arrow") is None
    connector.connect()
    try:
        with pytest.raises(ConnectorError) as raised:
            list(connector.read_window_batches(utc(2024, 1, 1), utc(2024, 1, 2), 100))
    finally:
        connector.disconnect()
    text = str(raised.value)
    assert "statement timeout" in text and "statement_timeout (1s)" in text, text
    assert pg_dsn.split("@")[0].split(":")[-1] not in text  # the password never shows


def test_cli_says_which_path_ran_and_the_switch_forces_typed(pg_dsn, tmp_path, osmosis_cli):
    execute(pg_dsn, _TABLE, _ROWS)
    env = {"ZD_DSN": pg_dsn}
    auto = osmosis_cli("-v", "run", _parquet_yaml(tmp_path / "auto.yaml", tmp_path / "auto"), env=env)
    assert auto.returncode == 0, auto.stderr
    assert "zero-decode arrow path (no step needs Python values: the postgres source writes arrow for the parquet sink)" \
        in auto.stderr, auto.stderr
    assert "postgres source public.every_type: Arrow columns id int, updated_at timestamp, " in auto.stderr
    assert "n122 decimal(12,2), n3810 decimal(38,10), n50 decimal(50,5)" in auto.stderr
    typed = osmosis_cli("-v", "run", _parquet_yaml(tmp_path / "typed.yaml", tmp_path / "typed", "read: {path: typed}"),
                        home_dir=tmp_path / "home2", env=env)
    assert typed.returncode == 0, typed.stderr
    assert "typed path (read.path is typed)" in typed.stderr
    assert pg_dsn.split("@")[0].split(":")[-1] not in auto.stderr + typed.stderr  # the password never shows
    _assert_same_rows(_rows(read_parquet_table(tmp_path / "auto")), _rows(read_parquet_table(tmp_path / "typed")))
    summary = json.loads(auto.stdout.strip().splitlines()[-1])
    assert summary["records_written"] == _N - 2 - 1 and summary["dead_letter"] == 2  # row 8 lies after the window

    # A column the Arrow path cannot carry: the run says so and reads typed.
    execute(pg_dsn, "ALTER TABLE every_type ADD COLUMN span interval")
    again = osmosis_cli("-v", "run", _parquet_yaml(tmp_path / "span.yaml", tmp_path / "span"),
                        home_dir=tmp_path / "home3", env=env)
    assert again.returncode == 0, again.stderr
    assert "typed path (public.every_type: column 'span' has a type the Arrow path does not carry" in again.stderr


def test_an_arrow_read_stopped_early_ends_the_copy_and_the_next_read_is_whole(pg_dsn):
    """A split can take the rest of a sub-window: the COPY stops, and the connection is fine afterwards."""
    execute(
        pg_dsn,
        "CREATE TABLE many (id integer PRIMARY KEY, updated_at timestamptz NOT NULL, v text)",
        "INSERT INTO many SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 ms', repeat('x', 50) "
        "FROM generate_series(1, 50000) AS g",
    )
    connector = source(pg_dsn, table="many")
    assert connector.use_encoding("arrow") is None
    connector.connect()
    try:
        batches = connector.read_window_batches(None, utc(2030, 1, 1), 1000)
        first = next(batches)
        assert isinstance(first, EncodedBatch) and isinstance(first.lines, pa.Table) and len(first) == 1000
        assert first.position(0) == 1704067200001000 and first.positions[-1] == 1704067201000000
        head = first.head(1704067200000500 + 1000)  # what the read keeps when a claim fails mid-batch
        assert len(head) == 1 and head.lines.column("id").to_pylist() == [1]
        batches.close()
        total = sum(len(b) for b in connector.read_window_batches(None, utc(2030, 1, 1), 1000))
    finally:
        connector.disconnect()
    assert total == 50000


def test_a_pinned_schema_keeps_the_typed_path_and_says_why(pg_dsn, tmp_path):
    from osmosis_beam.config import load_pipeline
    from osmosis_beam.sync.path import choose_path

    execute(pg_dsn, "CREATE TABLE every_type (id integer, updated_at timestamptz, v numeric(6, 2))")
    for extra, expected in (("", ("arrow", "the postgres source writes arrow for the parquet sink")),
                            ('  schema: {v: "decimal(10,2)"}\n', (None, "the parquet sink pins column types (sink.schema)"))):
        path = _parquet_yaml(tmp_path / "p.yaml", tmp_path / "out")
        path.write_text(path.read_text() + extra)
        spec = load_pipeline(path, env={"ZD_DSN": pg_dsn})
        connector = source(pg_dsn, table="every_type")
        sink = ParquetSink(spec.sink.options, pipeline_id="t")
        sink.use_schema(connector.get_schema())
        encoding, why = choose_path(spec, connector, sink)
        assert encoding == expected[0] and expected[1] in why, why
        assert sink.encoding == encoding


@pytest.mark.parametrize("cursor_type, timezone", [("timestamp", "Europe/Paris"), ("date", None), ("bigint", None)])
def test_every_cursor_kind_gives_the_typed_output(pg_dsn, tmp_path, cursor_type, timezone):
    """Positions come from the parsed cursor column: naive timestamps read in their zone, dates, integers."""
    value = {"timestamp": "timestamp '2024-03-30 12:00:00' + (g / 3) * interval '1 hour'",
             "date": "date '2024-01-01' + g / 5", "bigint": "g / 2"}[cursor_type]
    execute(pg_dsn, f"CREATE TABLE every_type (id integer, updated_at {cursor_type}, p point, tv tsvector, n numeric(8, 3))",
            f"INSERT INTO every_type SELECT g, {value}, point(g, -g), to_tsvector('simple', 'row ' || g), g / 8.0 "
            "FROM generate_series(1, 1500) AS g")
    options = {"timezone": timezone} if timezone else {}
    window = SyncWindow(0, 600) if cursor_type == "bigint" else SyncWindow(utc(2024, 1, 1), utc(2024, 4, 10))
    results = _paths(pg_dsn, tmp_path, window, splits=3, batch_size=100, **options)
    arrow, dead, kinds, _ = results["arrow"]
    typed = results["typed"][0]
    assert not dead and set(kinds) == {"arrow"}
    assert arrow.schema == typed.schema
    _assert_same_rows(_rows(arrow), _rows(typed))
    # The window end holds: ids 1..1199 below 600 (g / 2); 100 days of g / 5 days; g / 3 hours after 2024-03-30 12:00 in Paris (UTC+2
    # after the DST change) below 2024-04-10 00:00 UTC: 253 hours, g <= 761.
    expected = {"bigint": 1199, "date": 499, "timestamp": 761}[cursor_type]
    assert arrow.num_rows == expected and _rows(arrow)[1]["p"] == "(1,-1)"


@pytest.mark.parametrize("table, cursor, columns", [
    ("payment", "payment_date", None),  # numeric(5,2), a partitioned table
    ("rental", "rental_date", None),  # a nullable timestamptz
    ("film", "last_update", ["film_id", "title", "description", "release_year", "language_id", "rental_duration",
                             "rental_rate", "length", "replacement_cost", "rating", "fulltext", "last_update"]),
    ("customer", "last_update", None),  # text, boolean, date, integer activebool/active
])
def test_pagila_tables_give_the_typed_output(pagila_dsn, tmp_path, table, cursor, columns):
    """The real pagila sample: every row of each table the same on both paths (film without its text[] column)."""
    results = {}
    for path in ("typed", "arrow"):
        options = {"columns": columns} if columns else {}
        connector = source(pagila_dsn, cursor=cursor, table=f"public.{table}", **options)
        sink = ParquetSink({"path": str(tmp_path / path)}, pipeline_id="pagila")
        sink.use_schema(connector.get_schema())
        encoding = None if path == "typed" else "arrow"
        assert connector.use_encoding(encoding) is None
        sink.use_encoding(encoding)
        dead, kinds = _run(connector, sink, f"run-{path}", SyncWindow(None, utc(2030, 1, 1)), splits=2, batch_size=2000)
        assert dead == [] and set(kinds) == {path}
        results[path] = read_parquet_table(tmp_path / path)
    key = {"payment": "payment_id", "rental": "rental_id", "film": "film_id", "customer": "customer_id"}[table]
    assert results["arrow"].schema == results["typed"].schema
    typed = {r[key]: r for r in results["typed"].to_pylist()}
    arrow = {r[key]: r for r in results["arrow"].to_pylist()}
    assert len(typed) > 500 and arrow == typed

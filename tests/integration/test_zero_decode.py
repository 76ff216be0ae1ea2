"""The zero-decode path against the typed path: the same output, value for value, over every supported type.

PostgreSQL -> JSONL: the server builds each JSON line; PostgreSQL -> PostgreSQL: COPY rows into the sink's
stage. Both run on the in-process Beam runner against a real PostgreSQL server, and their output is compared
with the typed path's, row by row, including the rows the typed path dead-letters.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import apache_beam as beam
import pytest

from osmosis_beam.core.records import EncodedBatch
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.io.files.jsonl_write import WriteJSONL
from osmosis_beam.io.postgres.sink import PostgresSink
from osmosis_beam.io.read import ReadWindow
from tests.integration.pg_support import (  # noqa: F401  (fixtures)
    _Store,
    every_type_yaml,
    execute,
    fetch,
    pg_dsn,
    pg_module_database,
    pipeline,
    source,
    sync_once,
    utc,
)

_TABLE = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE every_type (
    id integer PRIMARY KEY,
    updated_at timestamptz NOT NULL,
    i2 smallint, i4 integer, i8 bigint, pos positive, o oid,
    f4 real, f8 double precision,
    n numeric, n122 numeric(12, 2),
    t text, vc varchar(20), c char(5), nm name, qc "char",
    b boolean,
    d date, tm time, ts timestamp, tstz timestamptz,
    u uuid, by bytea,
    j json, jb jsonb,
    e mood, ip inet, cidr_ cidr, mac macaddr, money_ money, bits bit(4), x xml,
    ia integer[], ta text[], na numeric[], fa double precision[], da date[], tsa timestamptz[], tsn timestamp[],
    tma time[], ba bytea[], ua uuid[], jba jsonb[], ea mood[], ba2 boolean[], i2d integer[]
);
"""

_ROWS = r"""
INSERT INTO every_type VALUES
 (1, '2024-01-01 00:00:00+00', 1, 2, 3, 4, 5, 1.5, 0.1, 1.50, 12.34, 'plain', 'v', 'ab', 'nm', 'q', true,
  '2024-02-29', '12:34:56', '2024-01-01 10:00:00', '2024-01-01 10:00:00+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '\x000102ff', '{ "a" : 1,  "b": [1, 2.5, "x"] }', '{"k": {"n": 1.25, "s": "é\"\\"}, "a": [true, null]}',
  'happy', '10.0.0.1', '10.0.0.0/8', '08:00:2b:01:02:03', 12.5, B'1010', '<a>x</a>',
  '{1,NULL,3}', '{"a","b c",NULL,"d\"e"}', '{1.50,NULL,-2}', '{1.5,NULL,-0.25}', '{2024-01-01,NULL}',
  '{"2024-01-01 00:00:00.5+00","2024-01-01 00:00:00+00",NULL}', '{"2024-01-01 01:02:03.000100"}',
  '{"01:02:03","01:02:03.25",NULL}', '{"\\x00ff",NULL,"\\x"}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
  ARRAY['{"x": 1}'::jsonb, NULL], '{sad,ok}', '{true,false,NULL}', '{{1,2},{3,4}}'),
 -- microseconds with trailing zeros, unicode, long bytea (base64 line breaks), empty arrays
 (2, '2024-01-01 00:00:00.120000+00', -32768, -2147483648, -9223372036854775808, 1, 0, -0.0, 1e300,
  123456789012345678901234567890.123456789, -0.01, E'tab\there\nnew "q" \\ back ☃ 𝄞', '', '     ', '', ' ',
  false, '0099-12-31', '00:00:00.000001', '1999-12-31 23:59:59.999990', '1970-01-01 00:00:00+00',
  '00000000-0000-0000-0000-000000000000', decode(repeat('ab', 100), 'hex'), '[]', '{}',
  'sad', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', -0.01, B'0000', '<r/>',
  '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}'),
 -- the same cursor value as row 2 (a tie)
 (3, '2024-01-01 00:00:00.120000+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 -- values the typed path writes differently from the server's text: sent typed, so both paths agree
 (4, '2024-06-01 12:00:00+00', NULL, NULL, NULL, NULL, NULL, 'NaN', 'Infinity', 0.0000001, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, '{0.00000010}', '{NaN}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (5, '2024-06-01 12:00:01+00', NULL, NULL, NULL, NULL, NULL, NULL, '-Infinity', 'NaN', NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, 'infinity', '24:00:00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, '{infinity}', '{{"2024-01-01 00:00:00+00"},{"2024-01-02 00:00:00+00"}}', NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (6, '2024-06-01 12:00:02+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0.0000000000, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, '10000-01-01', NULL, '10000-01-01 00:00:00', '0044-03-15 12:00:00+00 BC', NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '[0:1]={1,2}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 -- cursor values far from now: positions beyond the float-exact range are computed exactly too
 (7, '1800-01-01 00:00:00.000001+00', 7, NULL, NULL, NULL, NULL, NULL, NULL, 7.000001, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (8, '2200-07-04 23:59:59.999999+00', 8, NULL, NULL, NULL, NULL, NULL, NULL, 0.000001, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO every_type (id, updated_at, i4, n122, t, tstz, jb)
SELECT 100 + g, timestamptz '2024-03-01 00:00:00+00' + g * interval '1.5 seconds', g, g / 100.0, 'row ' || g,
       timestamptz '2024-03-01 00:00:00+00' + g * interval '1 millisecond', jsonb_build_object('g', g, 'h', g / 3.0)
FROM generate_series(1, 2500) AS g;
"""

WINDOW = SyncWindow(None, utc(2300, 1, 1))


def _read_to_jsonl(connector, window: SyncWindow, out: Path, *, splits: int) -> tuple[list[dict], list[dict], list[str]]:
    """Read ``window`` through Beam into JSONL part files; return (records, dead letters, batch kinds)."""
    dead, kinds = _Store(), _Store()
    with pipeline() as p:
        read = p | "Read" >> ReadWindow(connector, window, splits=splits, batch_size=300)
        read.records | "Kinds" >> beam.Map(lambda b: kinds.add("encoded" if isinstance(b, EncodedBatch) else "typed"))
        written = read.records | "Write" >> WriteJSONL(str(out))
        (read.dead_letter, written["dead_letter"]) | beam.Flatten() | beam.Map(dead.add)
    records = []
    for part in sorted(out.glob("part-*.jsonl")):
        records += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines()]
    return records, dead.take(), kinds.take()


def _dead_key(letter: dict) -> tuple:
    record = letter["record"]
    ident = record.get("id") if isinstance(record, dict) else record.split("'id': ", 1)[1].split(",", 1)[0]
    return (str(ident), letter["step"], letter["error"])


@pytest.mark.parametrize("splits", [1, 3])
def test_jsonl_zero_decode_equals_typed_over_every_type(pg_dsn, tmp_path, splits):
    execute(pg_dsn, _TABLE, _ROWS)
    typed = source(pg_dsn, table="every_type")
    zero = source(pg_dsn, table="every_type")
    assert typed.use_encoding(None) is None
    assert zero.use_encoding("json") is None  # every column type here has a server-side encoding
    split_from = utc(1800, 1, 1)
    window = SyncWindow(split_from, WINDOW.hi)

    typed_records, typed_dead, typed_kinds = _read_to_jsonl(typed, window, tmp_path / "typed", splits=splits)
    zero_records, zero_dead, zero_kinds = _read_to_jsonl(zero, window, tmp_path / "zero", splits=splits)

    assert set(typed_kinds) == {"typed"} and set(zero_kinds) == {"encoded"}
    assert len(typed_records) + len(typed_dead) == 2508
    by_id = {r["id"]: r for r in typed_records}
    assert len(by_id) == len(typed_records) == len(zero_records)
    for record in zero_records:
        assert record == by_id[record["id"]], f"row {record['id']} differs"
        assert list(record) == list(by_id[record["id"]])  # the same key order
    # The rows the typed path cannot read or encode are dead letters on both paths, for the same reason.
    assert sorted(map(_dead_key, zero_dead)) == sorted(map(_dead_key, typed_dead))
    assert {k[0] for k in map(_dead_key, typed_dead)} == {"4", "5", "6"}

    # Spot checks of the encoding rules on the zero-decode output itself.
    one, two = by_id[1], by_id[2]
    assert one["n"] == "1.50" and one["n122"] == "12.34" and one["na"] == ["1.50", None, "-2"]
    assert one["tstz"] == "2024-01-01T08:00:00+00:00" and one["ts"] == "2024-01-01T10:00:00"
    assert one["by"] == "AAEC/w==" and one["jb"] == {"a": [True, None], "k": {"n": 1.25, "s": 'é"\\'}}
    assert one["tsa"] == ["2024-01-01T00:00:00.500000+00:00", "2024-01-01T00:00:00+00:00", None]
    assert two["updated_at"] == "2024-01-01T00:00:00.120000+00:00" and two["d"] == "0099-12-31"
    assert two["c"] == "     " and two["tm"] == "00:00:00.000001" and "\n" not in two["by"]


def test_every_row_is_read_once_when_splits_cut_ties(pg_dsn, tmp_path):
    """Many rows share each cursor value; sub-windows and small batches never lose or double one."""
    execute(
        pg_dsn,
        "CREATE TABLE ties (id integer PRIMARY KEY, updated_at timestamptz NOT NULL, v numeric)",
        "INSERT INTO ties SELECT g, timestamptz '2024-01-01 00:00:00+00' + (g / 7) * interval '1 second', g / 4.0 "
        "FROM generate_series(1, 3000) AS g",
    )
    zero = source(pg_dsn, table="ties")
    assert zero.use_encoding("json") is None
    records, dead, kinds = _read_to_jsonl(zero, SyncWindow(utc(2024, 1, 1), utc(2024, 1, 1, 0, 5)), tmp_path / "z", splits=5)
    assert not dead and set(kinds) == {"encoded"}
    assert sorted(r["id"] for r in records) == list(range(1, 2100))  # id 2100 lies at 00:05:00 = hi: next window
    # A batch cut where a split moved the stop keeps exactly the lines before it (ties stay together).
    zero.connect()
    try:
        batch = next(iter(zero.read_window_batches(utc(2024, 1, 1), utc(2024, 1, 1, 0, 5), 1000)))
    finally:
        zero.disconnect()
    stop = batch.position(500)
    head = batch.head(stop)
    ids = [json.loads(line)["id"] for line in head.lines]
    assert ids == list(range(1, len(ids) + 1)) and all(p < stop for p in head.positions)
    assert batch.position(len(head)) == stop and list(head.positions) == list(batch.positions)[: len(head)]


def test_unsupported_types_stay_typed_with_the_reason(pg_dsn):
    execute(pg_dsn, "CREATE TABLE spans (id integer, updated_at timestamptz, span interval, r int4range)")
    connector = source(pg_dsn, table="spans")
    why = connector.use_encoding("json")
    assert why is not None and "column 'span'" in why
    assert connector._encoded is None  # reads typed


def _pg_table(dsn: str, table: str) -> list[tuple]:
    return fetch(dsn, f"SELECT * FROM {table} ORDER BY id")


@pytest.mark.parametrize("mode", ["upsert", "append"])
def test_postgres_copy_path_equals_typed(pg_dsn, mode, caplog):
    """PostgreSQL -> PostgreSQL: COPY rows through the stage give the table the typed path gives (the COPY
    rows staged in one part per sub-window read)."""
    # Without the values the typed path cannot read (rows 4-6) or write (jsonb[] of objects, uuid[] and enum[]: the typed sink sends them as text[]).
    execute(pg_dsn, _TABLE, _ROWS, "DELETE FROM every_type WHERE id IN (4, 5, 6)", "ALTER TABLE every_type DROP COLUMN jba, DROP COLUMN ua, DROP COLUMN ea")
    results = {}
    for path in ("typed", "pgcopy"):
        connector = source(pg_dsn, table="every_type")
        sink = PostgresSink({"dsn": pg_dsn, "table": f"out_{path}", "key": ["id"] if mode == "upsert" else None,
                             "mode": mode})
        sink.use_schema(connector.get_schema())
        encoding = None if path == "typed" else "pgcopy"
        assert connector.use_encoding(encoding) is None
        sink.use_encoding(encoding)
        caplog.clear()
        caplog.set_level("INFO", logger="osmosis_beam.io.postgres.sink")
        details, dead = sync_once(connector, sink, WINDOW, f"run-{path}", splits=3, split_from=utc(1800, 1, 1))
        assert dead == []
        parts = re.findall(r"publishing the stage's (\d+) parts", caplog.text)
        assert parts == ([] if path == "typed" else ["3"])  # one per sub-window
        assert details.get("records") == (None if (mode, path) == ("upsert", "typed") else 2505)
        results[path] = _pg_table(pg_dsn, f"out_{path}")
    assert len(results["pgcopy"]) == 2505
    assert results["pgcopy"] == results["typed"]
    leftovers = fetch(pg_dsn, "SELECT relname FROM pg_class WHERE relname LIKE '_osmosis_stage_%'")
    assert leftovers == []
    # Run again (a re-read window): upserts leave the table as it was, the staged COPY included.
    if mode == "upsert":
        connector = source(pg_dsn, table="every_type")
        sink = PostgresSink({"dsn": pg_dsn, "table": "out_pgcopy", "key": ["id"]})
        assert connector.use_encoding("pgcopy") is None
        sink.use_encoding("pgcopy")
        sync_once(connector, sink, WINDOW, "run-again", splits=2)
        assert _pg_table(pg_dsn, "out_pgcopy") == results["typed"]


def test_cli_says_which_path_ran_and_the_switch_forces_typed(pg_dsn, tmp_path, osmosis_cli):
    execute(pg_dsn, _TABLE, _ROWS)
    env = {"ZD_DSN": pg_dsn}
    auto = osmosis_cli("-v", "run", every_type_yaml(tmp_path / "auto.yaml", tmp_path / "auto"), env=env)
    assert auto.returncode == 0, auto.stderr
    assert "zero-decode json path (no step needs Python values" in auto.stderr
    typed = osmosis_cli(
        "-v", "run", every_type_yaml(tmp_path / "typed.yaml", tmp_path / "typed", "read: {path: typed}"),
        home_dir=tmp_path / "home2", env=env,
    )
    assert typed.returncode == 0, typed.stderr
    assert "typed path (read.path is typed)" in typed.stderr
    assert pg_dsn.split("@")[0].split(":")[-1] not in auto.stderr + typed.stderr  # the password never shows

    def output(root: Path) -> dict:
        lines = [json.loads(x) for f in sorted(root.rglob("part-*.jsonl")) for x in f.read_text().splitlines()]
        return {r["id"]: r for r in lines}

    assert output(tmp_path / "auto") == output(tmp_path / "typed")
    assert len(output(tmp_path / "auto")) == 2504  # row 8 lies in 2200, after the window
    summary = json.loads(auto.stdout.strip().splitlines()[-1])
    assert summary["records_written"] == 2504 and summary["dead_letter"] == 3
    # The same counts on both paths: a row the sink cannot encode (a float NaN) is read, then dead-lettered.
    typed_summary = json.loads(typed.stdout.strip().splitlines()[-1])
    counts = ("records_read", "records_written", "dead_letter")
    assert {k: summary[k] for k in counts} == {k: typed_summary[k] for k in counts}


def test_select_drop_rename_are_done_in_the_query(pg_dsn, tmp_path, osmosis_cli):
    """Field steps keep the zero-decode path: the server builds the records the steps would leave."""
    # Rows 5 and 6 hold values psycopg2 cannot read in columns the steps drop: the typed path dead-letters
    # them at the read, the zero-decode path never decodes those columns (so it writes them).
    execute(pg_dsn, _TABLE, _ROWS, "DELETE FROM every_type WHERE id IN (5, 6)")
    steps = ("steps:\n  - select: [id, updated_at, n, f8, tsa, jb, nothing]\n  - rename: {n: amount, jb: doc}\n"
             "  - drop: [f8]\n")
    env = {"ZD_DSN": pg_dsn}
    runs = {}
    for path in ("auto", "typed"):
        extra = steps + ("read: {path: typed}\n" if path == "typed" else "")
        yaml_path = tmp_path / f"{path}.yaml"
        yaml_path.write_text(every_type_yaml(tmp_path / "x.yaml", tmp_path / path).read_text() + extra)
        result = osmosis_cli("-v", "run", yaml_path, home_dir=tmp_path / f"home-{path}", env=env)
        assert result.returncode == 0, result.stderr
        runs[path] = result
    assert "zero-decode json path (no step needs Python values (select, rename, drop done by the source)" in runs["auto"].stderr
    assert "typed path (read.path is typed)" in runs["typed"].stderr

    def output(root: Path) -> list[dict]:
        return [json.loads(x) for f in sorted(root.rglob("part-*.jsonl")) for x in f.read_text().splitlines()]

    zero = sorted(output(tmp_path / "auto"), key=lambda r: r["id"])
    typed = sorted(output(tmp_path / "typed"), key=lambda r: r["id"])
    assert zero == typed and len(zero) == 2505
    assert list(zero[0]) == ["id", "updated_at", "amount", "tsa", "doc", "nothing"]
    four = next(r for r in zero if r["id"] == 4)
    assert four["amount"] == "1E-7" and four["nothing"] is None  # a flagged row, encoded by the typed code


def test_a_copy_read_stopped_early_ends_cleanly_and_the_next_read_is_whole(pg_dsn):
    """A split can take the rest of a sub-window: the COPY stops, and the connection is fine afterwards."""
    execute(
        pg_dsn,
        "CREATE TABLE many (id integer PRIMARY KEY, updated_at timestamptz NOT NULL, v text)",
        "INSERT INTO many SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 ms', repeat('x', 50) "
        "FROM generate_series(1, 50000) AS g",
    )
    connector = source(pg_dsn, table="many")
    assert connector.use_encoding("pgcopy") is None
    connector.connect()
    try:
        batches = connector.read_window_batches(None, utc(2030, 1, 1), 1000)
        first = next(batches)
        assert isinstance(first, EncodedBatch) and len(first) == 1000
        assert first.position(0) == 1704067200001000 and first.head(1704067200000500 + 1000).positions is None
        batches.close()  # what the read does when a claim fails
        total = sum(len(b) for b in connector.read_window_batches(None, utc(2030, 1, 1), 1000))
    finally:
        connector.disconnect()
    assert total == 50000


_AWKWARD = r"""
CREATE TABLE awkward (
    id integer PRIMARY KEY, updated_at timestamptz NOT NULL, t text, j json, jb jsonb, ta text[], n numeric,
    c char(3), by bytea, ip inet
);
INSERT INTO awkward VALUES
 (1, '2024-01-01 00:00:00+00', E'back\\slash \\\\ "quoted" tab\there new\nline cr\rend \b\f\v \u0001 ☃ 𝄞',
  E'{\n\t"a" :\r\n [1, "x\\ty", "\\\\"]\n}', '{"k": "v\\\\w \"q\" \\n", "n": 1.0}', ARRAY[E'a\tb', 'c"d', E'e\\f', NULL, ''],
  1.5, 'ab', '\x5c09', '10.0.0.1'),
 -- flagged (a decimal Python writes as 1E-7): the typed columns come as one record, with every character the
 -- record format quotes
 (2, '2024-01-01 00:00:01+00', E'(paren), "quote" \\ back, comma,  spaces \t\n ☃', '{"x": [1, 2]}',
  '{"(": ")", "\\\\": ","}', ARRAY['(', ')', ',', '"', E'\\', ' ', '', NULL], 0.0000001, '  ', '\x28295c', '::1'),
 (3, '2024-01-01 00:00:01+00', '', 'null', 'null', '{}', 0.00000015, NULL, '\x', NULL),
 (4, '2024-01-01 00:00:02.5+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""


def test_copy_transport_gives_the_servers_lines_byte_for_byte(pg_dsn, tmp_path):
    """COPY's text escaping is undone exactly: each line is the server's JSON text, byte for byte, and a
    flagged row's typed record (quotes, commas, parentheses, backslashes, empty and NULL values) decodes
    to what the typed read gets, so its line is the typed path's line."""
    execute(pg_dsn, _AWKWARD)
    zero = source(pg_dsn, table="awkward")
    assert zero.use_encoding("json") is None and zero._encoded.fallback
    window = SyncWindow(utc(2024, 1, 1), utc(2024, 1, 2))
    zero.connect()
    try:
        batches = list(zero.read_window_batches(window.lo, window.hi, 2))
        params = zero._params(window.lo, window.hi)
        with zero._conn().cursor() as cur:  # the same statement, rows as psycopg2 returns them (no COPY)
            cur.execute(zero._encoded.select["window"], params)
            reference = cur.fetchall()
        zero._conn().rollback()
    finally:
        zero.disconnect()
    assert all(isinstance(b, EncodedBatch) for b in batches)
    positions = [p for b in batches for p in b.positions]
    lines = [line for b in batches for line in b.lines]
    assert positions == [row[0] for row in reference]
    flagged = [i for i, row in enumerate(reference) if row[1].startswith("\x01(")]  # 0x01 marks a typed record
    assert flagged == [1, 2]  # rows 2 and 3 (1E-7, 1.5E-7)
    for i, row in enumerate(reference):
        if i not in flagged:
            assert lines[i] == row[1].encode("utf-8"), f"row {i + 1} differs"
    assert b"\n" not in lines[0] and b"\r" not in lines[0]  # a json value's raw line breaks would cut the JSONL line
    first = json.loads(lines[0])
    assert first["t"].startswith("back\\slash \\\\ \"quoted\" tab\there new\nline") and first["j"]["a"] == [1, "x\ty", "\\"]

    typed = source(pg_dsn, table="awkward")
    typed.use_encoding(None)
    typed.connect()
    try:
        records = list(typed.read_window(window.lo, window.hi))
    finally:
        typed.disconnect()
    from osmosis_beam.core.encoding import dumps_bytes

    for i in flagged:
        assert lines[i] == dumps_bytes(records[i]), f"flagged row {i + 1} differs from the typed path"
    assert json.loads(lines[1])["ta"] == ["(", ")", ",", '"', "\\", " ", "", None]
    assert json.loads(lines[1])["n"] == "1E-7" and json.loads(lines[2])["n"] == "1.5E-7"
    assert json.loads(lines[1])["by"] == "KClc" and json.loads(lines[2])["t"] == "" and json.loads(lines[2])["by"] == ""

    # And through the sink: the part file is exactly the lines.
    records_out, dead, kinds = _read_to_jsonl(zero, window, tmp_path / "z", splits=1)
    assert not dead and set(kinds) == {"encoded"}
    written = b"".join(p.read_bytes() for p in sorted((tmp_path / "z").glob("part-*.jsonl")))
    assert written == b"\n".join(lines) + b"\n"


def test_split_points_follow_the_rows(pg_dsn, tmp_path):
    """The table's statistics place the cuts: a year-long window whose rows sit in one hour splits evenly."""
    execute(
        pg_dsn,
        "CREATE TABLE skewed (id integer PRIMARY KEY, updated_at timestamptz NOT NULL, v text)",
        "INSERT INTO skewed SELECT g, timestamptz '2024-06-01 00:00:00+00' + g * interval '100 ms', 'v' || g "
        "FROM generate_series(1, 30000) AS g",
        "CREATE INDEX ON skewed (updated_at)",
        "ANALYZE skewed",
    )
    zero = source(pg_dsn, table="skewed")
    assert zero.use_encoding("json") is None
    window = SyncWindow(utc(2024, 1, 1), utc(2025, 1, 1))
    read = ReadWindow(zero, window, splits=3)
    tasks = read.tasks()
    assert len(tasks) == 3
    counts = [fetch(pg_dsn, "SELECT count(*) FROM skewed WHERE updated_at >= to_timestamp(%s / 1e6) "
                            "AND updated_at < to_timestamp(%s / 1e6)", (t.lo, t.hi))[0][0] for t in tasks]
    assert sum(counts) == 30000 and min(counts) > 30000 // 6, counts  # even cuts put every row in one split
    records, dead, _ = _read_to_jsonl(zero, window, tmp_path / "z", splits=3)
    assert not dead and sorted(r["id"] for r in records) == list(range(1, 30001))
    # A query has no statistics: the window is cut into equal spans of time, as before.
    query = source(pg_dsn, query="SELECT * FROM skewed")
    assert query.split_points(window.lo_micros, window.hi_micros, 3) is None


def test_splits_read_on_two_threads_give_the_same_output(pg_dsn, tmp_path, osmosis_cli):
    """The zero-decode read on two worker threads (two connections at once) writes what one thread writes; with
    no runner options the direct runner chooses the threads itself (one per split, at most one per core)."""
    import os

    execute(pg_dsn, _TABLE, _ROWS, "ANALYZE every_type")
    env = {"ZD_DSN": pg_dsn}
    outputs = {}
    for workers in (1, 2, "default"):
        yaml_path = every_type_yaml(tmp_path / f"w{workers}.yaml", tmp_path / f"out{workers}",
                                   "read: {splits: 2, batch_size: 100}")
        if workers != "default":
            yaml_path.write_text(yaml_path.read_text() + "runner: {name: direct, options: "
                                 f"{{workers: {workers}, direct_running_mode: multi_threading}}}}\n")
        result = osmosis_cli("-v", "run", yaml_path, home_dir=tmp_path / f"home{workers}", env=env)
        assert result.returncode == 0, result.stderr
        assert "zero-decode json path" in result.stderr
        chose = "the direct runner reads the 2 splits on 2 threads" in result.stderr
        assert chose == (workers == "default" and len(os.sched_getaffinity(0)) >= 2), result.stderr
        lines = [x for f in (tmp_path / f"out{workers}").rglob("part-*.jsonl") for x in f.read_bytes().splitlines()]
        outputs[workers] = sorted(lines)
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["records_written"] == 2504 and summary["dead_letter"] == 3
    assert outputs[1] == outputs[2] == outputs["default"] and len(outputs[2]) == 2504


def test_a_zero_decode_copy_past_statement_timeout_fails_clearly(pg_dsn):
    """The COPY of a sub-window is one statement: past statement_timeout the server cancels it, and the read
    fails with the deadline named (a retriable error), never hangs; the connection stays usable."""
    from osmosis_beam.core.errors import RetriableConnectorError

    execute(
        pg_dsn,
        "CREATE TABLE slow (id integer PRIMARY KEY, updated_at timestamptz NOT NULL)",
        "INSERT INTO slow SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 s' FROM generate_series(1, 400) g",
    )
    connector = source(pg_dsn, query="SELECT id, updated_at, pg_sleep(0.01) IS NULL AS slept FROM slow",
                       statement_timeout="1s")
    assert connector.use_encoding("json") is None
    connector.connect()
    try:
        with pytest.raises(RetriableConnectorError) as caught:
            for _ in connector.read_window_batches(utc(2024, 1, 1), utc(2024, 1, 2), 50):
                pass
        assert "statement_timeout (1s)" in str(caught.value) and pg_dsn.split("@")[0].split(":")[-1] not in str(caught.value)
        assert connector._query("SELECT 1") == [(1,)]
    finally:
        connector.disconnect()


def test_a_latin1_database_gives_utf8_lines_equal_to_the_typed_path(pg_server, pg_dsn, tmp_path):
    """A server that sends another encoding than UTF-8: the lines are transcoded, so the file is UTF-8 as the
    typed path writes it."""
    execute(pg_dsn, "CREATE DATABASE zd_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    try:
        dsn = pg_server.dsn_for("zd_latin1")
        execute(
            dsn,
            "CREATE TABLE words (id integer PRIMARY KEY, updated_at timestamptz NOT NULL, w text, n numeric)",
            "INSERT INTO words VALUES (1, '2024-01-01 00:00:00+00', 'café naïve ß', 1.5), "
            "(2, '2024-01-01 00:00:01+00', 'back\\slash é', 0.0000001)",  # row 2 is flagged (1E-7)
        )
        window = SyncWindow(utc(2024, 1, 1), utc(2024, 1, 2))
        results = {}
        for path in ("typed", "zero"):
            connector = source(dsn, table="words")
            assert connector.use_encoding(None if path == "typed" else "json") is None
            _, dead, _ = _read_to_jsonl(connector, window, tmp_path / path, splits=1)
            assert not dead
            results[path] = b"".join(p.read_bytes() for p in sorted((tmp_path / path).glob("part-*.jsonl")))
        assert [json.loads(x) for x in results["zero"].splitlines()] == [json.loads(x) for x in results["typed"].splitlines()]
        first = json.loads(results["zero"].splitlines()[0])
        assert first["w"] == "café naïve ß" and json.loads(results["zero"].splitlines()[1])["n"] == "1E-7"
    finally:
        execute(pg_dsn, "DROP DATABASE IF EXISTS zd_latin1 WITH (FORCE)")  # a worker may still hold a connection


_EDGES = r"""
CREATE TABLE edges (
    id integer PRIMARY KEY, updated_at timestamptz NOT NULL,
    ts timestamp, tz timestamptz, d date, n122 numeric(12, 2), n2010 numeric(20, 10), n6 numeric(8, 6)
);
INSERT INTO edges VALUES
 -- the cursor itself: BC and -infinity (only a read without a lower bound meets them), years below 1000,
 -- before 1970 (negative positions), fractions ending in zeros and whole seconds
 (1, '-infinity', NULL, NULL, NULL, NULL, NULL, NULL),
 (2, '0044-03-15 12:00:00.5+00 BC', NULL, NULL, NULL, NULL, NULL, NULL),
 (3, '0099-06-01 12:00:00.120000+00', '0999-12-31 23:59:59.9', '0001-01-01 00:00:00+00', '0999-01-01', 1.10, 0.0000001, 0.000001),
 (4, '1901-12-13 20:45:52.000010+00', '0001-01-01 00:00:00', '0001-01-01 00:00:00.000001+00', '0001-01-01', -0.10, 0.00000015, 0.000010),
 (5, '1969-12-31 23:59:59.990000+00', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.99999+00', '9999-12-31', 0.00, 1.0000000000, -0.100000),
 (6, '1970-01-01 00:00:00+00', '10000-01-01 00:00:00', '10000-01-01 00:00:00+00', '10000-01-01', 12.30, 0, 0),
 (7, '1970-01-01 00:00:00.1+00', '0044-03-15 12:00:00 BC', '0044-03-15 12:00:00+00 BC', '0044-03-15 BC', 1, NULL, NULL),
 (8, '2024-01-01 00:00:00+00', 'infinity', 'infinity', 'infinity', NULL, NULL, NULL),
 (9, '2024-01-01 00:00:00.100000+00', '-infinity', '-infinity', '-infinity', NULL, NULL, NULL),
 (10, '2024-01-01 00:00:01.000100+00', '2024-02-29 23:59:59.5', '2024-02-29 23:59:59.5-03:30', '2024-02-29', NULL, NULL, NULL),
 (11, '2024-01-01 00:00:01.999990+00', '2024-01-01 00:00:00.01', '2024-01-01 05:30:00.000100+05:30', NULL, NULL, NULL, NULL),
 (12, '2200-01-01 00:00:00.000001+00', '2024-01-01 00:00:00', '2024-01-01 00:00:00-03:30', NULL, NULL, NULL, NULL),
 (13, '9999-12-31 23:59:59.999990+00', NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO edges (id, updated_at, ts, tz, n122)
SELECT 100 + g, timestamptz '1969-12-31 23:59:00+00' + g * interval '10 milliseconds',
       timestamp '1969-12-31 23:59:00' + g * interval '250 milliseconds', timestamptz '2024-01-01 00:00:00+00' + g * interval '1.01 seconds',
       g / 100.0
FROM generate_series(1, 12000) AS g;
"""


def _in_zone(dsn: str, zone: str) -> str:
    """``dsn`` whose sessions start in time zone ``zone`` (libpq ``options``)."""
    return dsn + ("&" if "?" in dsn else "?") + "options=" + f"-c TimeZone={zone}".replace(" ", "%20").replace("=", "%3D")


@pytest.mark.parametrize("lo, splits", [(None, 1), (utc(50, 1, 1), 3)])
def test_timestamp_dates_and_decimals_at_their_edges_equal_the_typed_path(pg_dsn, tmp_path, lo, splits):
    """Fractions that end in zeros, whole seconds, years below 1000 and at 9999, BC, +-infinity, a cursor
    before 1970 (negative positions, also within one batch) and a session that starts in a time zone with
    a half-hour offset: the zero-decode lines equal the typed path's, and the same rows are dead letters."""
    execute(pg_dsn, _EDGES)
    dsn = _in_zone(pg_dsn, "America/St_Johns")
    typed, zero = source(dsn, table="edges"), source(dsn, table="edges")
    assert typed.use_encoding(None) is None and zero.use_encoding("json") is None
    window = SyncWindow(lo, utc(9999, 12, 31, 23, 59, 59, 999999))
    typed_records, typed_dead, _ = _read_to_jsonl(typed, window, tmp_path / "typed", splits=splits)
    zero_records, zero_dead, zero_kinds = _read_to_jsonl(zero, window, tmp_path / "zero", splits=splits)
    assert set(zero_kinds) == {"encoded"}
    by_id = {r["id"]: r for r in typed_records}
    assert sorted(r["id"] for r in zero_records) == sorted(by_id) and len(zero_records) == len(typed_records)
    for record in zero_records:
        assert record == by_id[record["id"]], f"row {record['id']} differs"
    assert sorted(map(_dead_key, zero_dead)) == sorted(map(_dead_key, typed_dead))
    # The cursor values Python cannot hold lie below any lower bound, so only the open read meets them:
    # psycopg2 reads -infinity as Python's smallest datetime, a BC year is a dead letter.
    dead_ids = {k[0] for k in map(_dead_key, typed_dead)}
    assert dead_ids == ({"2", "6", "7"} if lo is None else {"6", "7"})
    assert len(by_id) + len(dead_ids) == 12013 - (0 if lo is None else 2)
    if lo is None:
        assert by_id[1]["updated_at"] == "0001-01-01T00:00:00+00:00"
    three, ten = by_id[3], by_id[10]
    assert three["updated_at"] == "0099-06-01T12:00:00.120000+00:00" and three["ts"] == "0999-12-31T23:59:59.900000"
    assert three["n122"] == "1.10" and three["n2010"] == "1.000E-7" and three["n6"] == "0.000001"
    assert by_id[4]["n2010"] == "1.500E-7" and by_id[4]["updated_at"] == "1901-12-13T20:45:52.000010+00:00"
    assert ten["tz"] == "2024-03-01T03:29:59.500000+00:00" and by_id[12]["tz"] == "2024-01-01T03:30:00+00:00"
    assert by_id[8]["updated_at"] == "2024-01-01T00:00:00+00:00" and by_id[9]["updated_at"] == "2024-01-01T00:00:00.100000+00:00"


def test_the_read_window_needs_no_exotic_check_on_its_cursor_and_a_scaled_numeric_none(pg_dsn):
    """Inside a window's bounds the cursor is a value Python holds, and a numeric(12,2) never writes an
    exponent: the server tests neither on each row (the open read still tests the cursor's lower end)."""
    execute(pg_dsn, "CREATE TABLE plain (id integer, updated_at timestamptz NOT NULL, amount numeric(12, 2), "
                    "small numeric(20, 10), free numeric)")
    zero = source(pg_dsn, table="plain", columns=["id", "updated_at", "amount"])
    assert zero.use_encoding("json") is None
    window, open_lo = zero._encoded.select["window"], zero._encoded.select["from"]
    assert "chr(1)" not in window and "scale(" not in window
    assert "chr(1)" in open_lo and "scale(" not in open_lo and "'0001-01-01 00:00:00+00'" in open_lo
    both = source(pg_dsn, table="plain")
    assert both.use_encoding("json") is None
    for statement in both._encoded.select.values():
        assert statement.count("scale(") == 2  # numeric(20,10) and numeric: a value below 1e-6 is written as 1E-7

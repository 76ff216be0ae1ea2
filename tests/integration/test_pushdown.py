"""``filter`` and ``cast`` steps done in the PostgreSQL source's query give what the typed path gives.

Each case runs the same steps twice against a real PostgreSQL server: typed (the rows read as Python values,
then the steps through the real step chain on Beam) and pushed (the zero-decode read with the steps in its
SQL). Output lines, dead letters (step, error, record) and the number of rows read must be identical, over
NULLs, NaN, infinities, empty and non-ASCII text, ties on the cursor and values the typed path cannot read.
Expressions without an exact SQL twin must stay typed, with a reason naming the step.
"""
from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest
from apache_beam.io.restriction_trackers import OffsetRange

from osmosis_beam.config import StepSpec
from osmosis_beam.core.records import DeadLetter, EncodedBatch
from osmosis_beam.core.timefmt import to_micros
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.io.base import BaseConnector
from osmosis_beam.io.files.jsonl import typed_line
from osmosis_beam.io.postgres.sink import PostgresSink
from osmosis_beam.io.read import _ReadTask, _ReadWindowFn, _WindowRestrictionProvider
from osmosis_beam.steps.base import StepContext, error_text
from osmosis_beam.steps.pipeline import StepChain, build_step
from tests.integration.pg_support import (  # noqa: F401  (fixtures)
    execute,
    fetch,
    pg_dsn,
    pg_module_database,
    source,
    sync_once,
    utc,
    write_through_beam,
)

_TABLE = """
CREATE TABLE pd (
    id integer PRIMARY KEY,
    updated_at timestamptz NOT NULL,
    i4 integer, i8 bigint NOT NULL, n numeric, n2 numeric(12, 2), f8 double precision,
    t text, vc varchar(30), b boolean, d date, ts timestamptz, nn integer NOT NULL
);
INSERT INTO pd
SELECT g,
       timestamptz '2024-01-01 00:00:00+00' + (g / 3) * interval '1 second',
       CASE WHEN g % 7 = 0 THEN NULL ELSE g % 50 - 25 END,
       g::bigint * 1000000000000,
       CASE g % 11 WHEN 0 THEN NULL WHEN 1 THEN 'NaN' ELSE (g - 200) / 8.0 END,
       (g % 97) * 1.25 - 50,
       CASE g % 13 WHEN 0 THEN NULL WHEN 1 THEN 'NaN' WHEN 2 THEN 'Infinity' WHEN 3 THEN '-0' WHEN 4 THEN '-Infinity'
                   ELSE (g - 200) / 3.0 END,
       CASE g % 9 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'Émile' WHEN 3 THEN 'zebra' WHEN 4 THEN 'Zebra'
                  WHEN 5 THEN 'ab' || chr(128512) WHEN 6 THEN 'row ' || g || 'a' ELSE 'row ' || g END,
       CASE g % 4 WHEN 0 THEN NULL ELSE 'v' || (g % 6) END,
       CASE g % 5 WHEN 0 THEN NULL ELSE g % 2 = 0 END,
       CASE WHEN g % 17 = 0 THEN NULL ELSE date '2024-01-01' + g END,
       CASE WHEN g % 19 = 0 THEN NULL ELSE timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour 0.5 second' END,
       g % 10
FROM generate_series(1, 400) AS g;
-- values at the edges: huge and tiny numerics (exponent form in Python), a date Python cannot hold
INSERT INTO pd VALUES
 (1001, '2024-01-02 00:00:00+00', 1, 1, 1e30, 9999999999.99, 1e300, 'x', 'v', true, '2024-01-01', NULL, 9),
 (1002, '2024-01-02 00:00:00+00', 2, 2, 0.0000001, -0.01, -1e-300, 'y', 'v', false, '2024-01-01', NULL, 8),
 (1003, '2024-01-02 00:00:01+00', 3, 3, 2.5, 0.5, 0.5, 'z', 'v', true, '10000-01-01', NULL, 7),
 (1004, '2024-01-02 00:00:01+00', 4, 4, -2.5, -0.5, 2.5, 'é', 'v', NULL, '0044-03-15 BC', NULL, 6);
"""

LO, HI = utc(2023, 1, 1), utc(2025, 1, 1)

# (steps, pushed?) -- each pushed case must equal the typed path; the others must stay typed.
_FILTERS = [
    "i4 > 3", "i4 is not None and i4 > 3", "i4 == 5", "i4 != 5", "i4 is None", "not (i4 is None)",
    "nn >= 5", "1 < nn <= 7", "nn in [1, 2, 3]", "nn not in (1, 2)", "nn == 3 or nn == 4", "nn",
    "i8 > 150000000000000", "i8 >= 1.5e14", "nn < 2.5",
    "n > 0", "n is not None and n <= 0.125", "n == 2.5", "n != -2.5", "n", "n in [1, 2]",
    "n2 >= 10", "n2 > 0.1", "n2",
    "f8 > 0", "f8 != 0.5", "f8 == 0", "f8 is not None and f8 < 1e308", "f8 <= 2", "f8",
    "t == 'Émile'", "t > 'Zebra'", "t is not None and t >= 'row 5'", "t", "not t", "t in ['zebra', '']",
    "t is not None and t.startswith('row 1')", "t is not None and len(t) > 4", "t.endswith('a')",
    "vc < 'v3'", "vc == 'v1' or vc is None",
    "b", "b == True", "not b", "b is None or b", "b != False",
    "d > date(2024, 3, 1)", "d is not None and d <= date(2024, 2, 1)",
    "ts >= timestamp('2024-01-05T00:00:00+00:00')", "ts is not None and ts < datetime(2024, 1, 10, tzinfo=UTC)",
    "nn > 5 and (i4 is None or i4 < 0)", "True", "nn > 5 and t",
]
_TYPED_FILTERS = {
    "nn * 2 > 5": "arithmetic", "t.lower() == 'zebra'": "no exact SQL twin", "record['nn'] > 1": "Subscript",
    "nn > 'a'": "a comparison between int and str", "missing > 1": "'missing' is not a field",
    "re.match('row', t)": "no exact SQL twin", "f8 > n": "float field compared", "ts > d": "between ts and date",
    "d > datetime(2024, 1, 1)": "naive datetime",
}
_CASTS = [
    [{"cast": {"nn": "str"}}], [{"cast": {"n2": "int"}}], [{"cast": {"n": "int"}}], [{"cast": {"i4": "decimal"}}],
    [{"cast": {"n2": "decimal(3,1)"}}], [{"cast": {"n": "decimal(10,8)"}}], [{"cast": {"n": "decimal(40,2)"}}],
    [{"cast": {"t": "str", "i8": "string", "n": "decimal"}}],
    [{"cast": {"n2": "int"}}, {"filter": "n2 > 3"}],
    [{"filter": "nn > 2"}, {"cast": {"n": "int"}, "on_error": "dead_letter"}, {"filter": "n is None or n < 10"}],
    [{"select": ["id", "updated_at", "nn", "t", "nothing"]}, {"rename": {"nn": "k"}}, {"filter": "k > 4"},
     {"drop": ["t"]}],
    [{"cast": {"nothing": "int"}}, {"select": ["id", "updated_at", "nothing"]}, {"filter": "nothing is None"}],
    [{"cast": {"b": "str", "d": "str", "ts": "str", "n": "str", "n2": "string"}}],
    [{"cast": {"b": "int", "nn": "bool", "ts": "date", "d": "datetime"}}, {"filter": "ts is None or ts > date(2024, 1, 20)"}],
    [{"cast": {"ts": "date(UTC)", "d": "timestamp", "updated_at": "datetime(Europe/Berlin)", "b": "boolean"}}],
    [{"cast": {"d": "date", "i4": "integer", "t": "text"}}, {"filter": "d is not None and d < date(2024, 3, 1)"}],
]
_COPY_FILTERS = ["nn > 4", "i4 is not None and i4 > 4 or t == 'zebra'", "b is None or not b"]
_TYPED_CASTS = {
    "float": [{"cast": {"f8": "str"}}], "text to int": [{"cast": {"t": "int"}}],
    "date in a zone": [{"cast": {"ts": "date(Europe/Berlin)"}}], "text to json": [{"cast": {"t": "json"}}],
    "compare after str": [{"cast": {"n": "str"}}, {"filter": "n == '1'"}],
    "a map": [{"map": {"x": "nn + 1"}}],
}


def _specs(steps: list) -> list[StepSpec]:
    out = []
    for index, item in enumerate(steps, 1):
        item = dict(item)
        on_error = item.pop("on_error", "dead_letter")
        (name, config), = item.items()
        out.append(StepSpec(index, name, config, on_error))
    return out


def _fields(specs: list[StepSpec]) -> tuple:
    return tuple((s.name, s.config, s.label, s.on_error) for s in specs)


def _letter(letter) -> tuple:
    if isinstance(letter, DeadLetter):
        letter = letter.to_dict()
    return (letter["step"], letter["error"], json.dumps(letter["record"], default=str, sort_keys=True))


@pytest.fixture(scope="module")
def table(pg_module_database):
    execute(pg_module_database, "DROP TABLE IF EXISTS pd", _TABLE)
    typed = source(pg_module_database, table="pd")
    typed.connect()
    rows, dead = [], []
    try:
        for batch in typed.read_window_batches(LO, HI, 5000):
            (dead.append(batch.to_dict()) if isinstance(batch, DeadLetter) else rows.extend(batch))
    finally:
        typed.disconnect()
    assert len(rows) == 402 and len(dead) == 2  # rows 1003, 1004: dates Python cannot hold
    return pg_module_database, rows, dead


def _key(steps: list) -> str:
    return json.dumps(steps, sort_keys=True)


def _through_steps(rows: list[dict], steps: list) -> tuple[list[dict], list[dict]]:
    """The typed path's step runner on each record: the built steps in order; a step that raises makes the
    record a dead letter with the step's label and error (what the Beam step does to a failing batch)."""
    context = StepContext(pipeline_id="pd", cursor_field="updated_at")
    built = [(spec, build_step(spec, None, context)) for spec in _specs(steps)]
    kept, dead = [], []
    for record in rows:
        out = [dict(record)]
        for spec, step in built:
            try:
                out = step.process(out)
            except Exception as exc:  # noqa: BLE001
                dead.append(DeadLetter(spec.label, error_text(exc), out[0]).to_dict())
                out = []
            if not out:
                break
        kept += out
    return kept, dead


@pytest.fixture(scope="module")
def typed(table):
    """The typed path's result of every case: kept records, their JSON lines, dead letters, rows read."""
    _, rows, read_dead = table
    cases = [[{"filter": e}] for e in _FILTERS] + _CASTS + [[{"filter": e}] for e in _COPY_FILTERS]
    results = {}
    for steps in cases:
        kept, dead = _through_steps(rows, steps)
        lines, sink_dead = [], []
        for record in kept:  # as the jsonl sink encodes them (a float NaN is its dead letter)
            line = typed_line(record)
            (sink_dead.append(line.to_dict()) if isinstance(line, DeadLetter) else lines.append(json.loads(line)))
        results[_key(steps)] = (kept, lines, sorted(map(_letter, read_dead + dead + sink_dead)), len(rows))
    return results


def test_the_reference_is_what_the_step_chain_does_on_beam(table, typed):
    """The per-record reference above gives what the real StepChain gives on the in-process runner."""
    _, rows, read_dead = table
    for steps in ([{"filter": "i4 > 3"}], _CASTS[9]):
        chain = StepChain()
        for spec in _specs(steps):
            chain.add_step(build_step(spec, None, StepContext()), label=spec.label, on_error=spec.on_error)
        out = chain.execute(rows, batch_size=50)
        kept, _, dead, _ = typed[_key(steps)]
        assert sorted(map(repr, out)) == sorted(map(repr, kept))
        assert sorted(map(_letter, read_dead + chain.last_dead_letters)) == [
            d for d in dead if not d[0].startswith("sink")
        ]


def _pushed(dsn, specs, encoding="json", table="pd", window=(LO, HI)):
    zero = source(dsn, table=table)
    why = zero.use_encoding(encoding, fields=_fields(specs))
    if why is not None:
        return why
    zero.connect()
    lines, dead, read = [], [], 0
    try:
        for batch in zero.read_window_batches(*window, 37):
            if isinstance(batch, DeadLetter):
                dead.append(batch)
                continue
            assert isinstance(batch, EncodedBatch)
            read += batch.read_count
            lines += [json.loads(x) for x in batch.lines]
    finally:
        zero.disconnect()
    return lines, sorted(map(_letter, dead)), read


def _same(typed, pushed) -> None:
    lines, dead, read = pushed
    _, want_lines, want_dead, want_read = typed
    assert sorted(lines, key=lambda r: r["id"] if "id" in r else 0) == sorted(want_lines, key=lambda r: r["id"] if "id" in r else 0)
    assert [list(r) for r in lines] == [list(r) for r in want_lines]  # the same key order (and count)
    assert dead == want_dead
    assert read == want_read


@pytest.mark.parametrize("expression", _FILTERS)
def test_a_pushed_filter_equals_the_typed_path(table, typed, expression):
    pushed = _pushed(table[0], _specs([{"filter": expression}]))
    assert not isinstance(pushed, str), f"{expression!r} was not pushed: {pushed}"
    _same(typed[_key([{"filter": expression}])], pushed)


@pytest.mark.parametrize("expression", sorted(_TYPED_FILTERS))
def test_a_filter_without_an_exact_sql_twin_stays_typed_and_says_why(table, expression):
    dsn, _, _ = table
    why = _pushed(dsn, _specs([{"filter": expression}]))
    assert isinstance(why, str) and "step 1: filter" in why and _TYPED_FILTERS[expression] in why, why


@pytest.mark.parametrize("steps", _CASTS, ids=lambda s: json.dumps(s)[:70])
def test_pushed_casts_and_mixed_steps_equal_the_typed_path(table, typed, steps):
    pushed = _pushed(table[0], _specs(steps))
    assert not isinstance(pushed, str), f"{steps!r} was not pushed: {pushed}"
    _same(typed[_key(steps)], pushed)


@pytest.mark.parametrize("name", sorted(_TYPED_CASTS))
def test_a_cast_whose_encoding_could_differ_stays_typed(table, name):
    dsn, _, _ = table
    why = _pushed(dsn, _specs(_TYPED_CASTS[name]))
    assert isinstance(why, str) and ("step 1" in why or "step 2: filter" in why or "step map" in why), why


def test_filters_in_the_copy_path_only_where_no_row_needs_python(table):
    dsn, _, _ = table
    zero = source(dsn, table="pd")
    assert zero.use_encoding("pgcopy", fields=_fields(_specs([{"filter": "nn > 4"}]))) is None
    why = zero.use_encoding("pgcopy", fields=_fields(_specs([{"filter": "i4 > 4"}])))
    assert why is not None and "step 1: filter" in why and "guard it" in why
    guarded = zero.use_encoding("pgcopy", fields=_fields(_specs([{"filter": "i4 is not None and i4 > 4"}])))
    assert guarded is None
    why = zero.use_encoding("pgcopy", fields=_fields(_specs([{"cast": {"nn": "str"}}])))
    assert why is not None and "step 1: cast" in why


@pytest.mark.parametrize("expression", _COPY_FILTERS)
def test_postgres_copy_path_with_a_pushed_filter_equals_typed(table, typed, expression):
    """PostgreSQL -> PostgreSQL: the COPY path with the filter in its query writes the table the typed path writes."""
    dsn = table[0]
    specs = _specs([{"filter": expression}])
    window = SyncWindow(LO, HI)
    typed_rows = typed[_key([{"filter": expression}])][0]
    results = {}
    run = uuid.uuid4().hex[:8]  # each run id publishes once per target table
    for path in ("typed", "pgcopy"):
        execute(dsn, f"DROP TABLE IF EXISTS out_{path}")
        connector = source(dsn, table="pd")
        sink = PostgresSink({"dsn": dsn, "table": f"out_{path}", "mode": "append"})
        sink.use_schema(connector.get_schema())
        if path == "typed":
            sink.prepare(f"typed-{run}")
            assert write_through_beam(sink, f"typed-{run}", [typed_rows]) == []
            sink.publish(f"typed-{run}", window_hi=HI)
        else:
            assert connector.use_encoding("pgcopy", fields=_fields(specs)) is None
            sink.use_encoding("pgcopy")
            _, dead = sync_once(connector, sink, window, f"pgcopy-{run}", splits=3)
            # Rows 1003 and 1004 hold dates the typed read cannot convert; COPY moves them as text.
            assert dead == []
        results[path] = [repr(r) for r in fetch(dsn, f"SELECT * FROM out_{path} WHERE id < 1003 ORDER BY id")]
    assert results["pgcopy"] == results["typed"] and 0 < len(results["pgcopy"]) < 400


def _yaml(path: Path, out: Path, steps: str, extra: str = "") -> Path:
    path.write_text(textwrap.dedent(f"""\
        id: pushdown
        source:
          type: postgres
          dsn: ${{PD_DSN}}
          table: pd
        incremental:
          cursor_field: updated_at
          start: "2023-01-01T00:00:00Z"
          safety_lag: 0s
        read: {{splits: 3, batch_size: 50{extra}}}
        dead_letter: {{max_ratio: 1}}
        sink:
          type: jsonl
          path: {out}
        """) + steps)
    return path


def test_a_run_with_pushed_steps_counts_and_writes_what_the_typed_run_does(table, tmp_path, osmosis_cli):
    """End to end on Beam: the same summary (read, written, dead letters) and output; -v names the path."""
    dsn, _, _ = table
    steps = "steps:\n  - cast: {n2: int}\n  - filter: \"i4 > 3 and n2 > -40\"\n  - drop: [vc]\n"
    runs = {}
    for path in ("auto", "typed"):
        extra = ", path: typed" if path == "typed" else ""
        result = osmosis_cli("-v", "run", _yaml(tmp_path / f"{path}.yaml", tmp_path / path, steps, extra),
                             home_dir=tmp_path / f"home-{path}", env={"PD_DSN": dsn})
        assert result.returncode == 0, result.stderr
        runs[path] = result
    assert "zero-decode json path (no step needs Python values (cast, filter, drop done by the source)" in runs["auto"].stderr
    assert "typed path (read.path is typed)" in runs["typed"].stderr

    def summary(result) -> dict:
        return json.loads(result.stdout.strip().splitlines()[-1])

    def output(root: Path) -> list[dict]:
        return sorted((json.loads(x) for f in root.rglob("part-*.jsonl") for x in f.read_text().splitlines()),
                      key=lambda r: r["id"])

    auto, typed = summary(runs["auto"]), summary(runs["typed"])
    for key in ("records_read", "records_written", "dead_letter"):
        assert auto[key] == typed[key], key
    assert typed["records_read"] == 402 and 0 < typed["records_written"] < 402 and typed["dead_letter"] > 2
    assert output(tmp_path / "auto") == output(tmp_path / "typed")

    # A filter without an exact twin: the run reads typed, and -v says which step and why.
    other = osmosis_cli("-v", "run", _yaml(tmp_path / "o.yaml", tmp_path / "o", "steps:\n  - filter: \"nn * 2 > 5\"\n"),
                        home_dir=tmp_path / "home-o", env={"PD_DSN": dsn})
    assert other.returncode == 0, other.stderr
    assert "typed path (public.pd: step 1: filter 'nn * 2 > 5': arithmetic is not pushed" in other.stderr


def test_on_error_fail_fails_the_read_as_the_typed_step_fails_the_run(table):
    """A row the Python step raises on, with on_error: fail, stops the pushed read with the typed path's error."""
    from osmosis_beam.steps.base import StepFailed

    dsn = table[0]
    specs = _specs([{"filter": "i4 > 3", "on_error": "fail"}])
    with pytest.raises(StepFailed, match=r"step 1: filter failed: TypeError: '>' not supported between instances of 'NoneType' and 'int'"):
        _pushed(dsn, specs)


class _EncodedWithDrops(BaseConnector):
    """300 rows, 3 per cursor position; every 4th row dropped by a (pushed) filter: read, but no line."""

    type_name = "encoded_drops"
    cursor_fields = ("ts",)
    reads_batches = True

    def read_window_batches(self, lo, hi, batch_size):
        rows = [(i, _T0_US + (i // 3) * 10) for i in range(300)]
        rows = [(i, p) for i, p in rows if (lo is None or p >= to_micros(lo)) and p < to_micros(hi)]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            kept = [(i, p) for i, p in chunk if i % 4]
            yield EncodedBatch("json", [json.dumps({"id": i}) for i, _ in kept], [p for _, p in kept],
                               dropped=[p for i, p in chunk if not i % 4])


_T0_US = 1_704_067_200_000_000


@pytest.mark.parametrize("fraction", [0.0, 0.4, 0.9])
def test_a_dynamic_split_counts_each_dropped_row_once_and_never_writes_it(fraction):
    """The read claims and counts the rows a pushed filter dropped as it does kept ones, across a split, and
    tags each batch with the start of the restriction that read it (the residual's own start after the split)."""
    task = _ReadTask(_T0_US, _T0_US + 10_000, ())
    fn = _ReadWindowFn(_EncodedWithDrops({}), batch_size=7)
    counts: list[int] = []
    fn._read_inc = counts.append  # the number of rows the read counts as read, per emitted batch
    provider = _WindowRestrictionProvider()

    def drive(restriction, split_after=None):
        tracker = provider.create_tracker(restriction)
        lines, residual = [], None
        for item in fn.process(task, tracker=tracker):
            assert isinstance(item, EncodedBatch) and item.dropped is None and item.lines  # sinks get lines only
            assert item.origin == restriction.start  # the restriction it was read in (a sink's stage part)
            lines += [json.loads(x)["id"] for x in item.lines]
            if split_after is not None and residual is None and len(lines) >= split_after:
                split = tracker.try_split(fraction)
                if split:
                    residual = split[1]
        tracker.check_done()
        return lines, residual

    first, residual = drive(OffsetRange(task.lo, task.hi), split_after=40)
    assert residual is not None
    rest, _ = drive(residual)
    assert sorted(first + rest) == [i for i in range(300) if i % 4]  # every kept row exactly once
    assert sum(counts) == 300  # every row read once, dropped ones included, as the typed path counts them


@pytest.mark.parametrize("steps", [
    [{"filter": "id % 2 == 0 or True"}],  # not pushed: arithmetic (the comparison below runs typed)
    [{"filter": "id != 2 and (i4 is None or i4 < 100)"}],
    [{"filter": "t is not None and t > 'a'"}, {"drop": ["f8"]}],
    [{"cast": {"n122": "int", "i8": "str"}}, {"filter": "b is None or b"}],
], ids=["typed", "filter", "filter-drop", "cast-filter"])
def test_every_column_type_through_pushed_steps_equals_typed(table, steps):
    """The 46 column types of test_zero_decode with pushed steps: rows sent typed carry every column."""
    from tests.integration.test_zero_decode import _ROWS, _TABLE as EVERY_TYPE

    dsn = table[0]
    execute(dsn, "DROP TABLE IF EXISTS every_type; DROP TYPE IF EXISTS mood; DROP DOMAIN IF EXISTS positive",
            EVERY_TYPE, _ROWS)
    try:
        reader = source(dsn, table="every_type")
        reader.connect()
        rows, read_dead = [], []
        for batch in reader.read_window_batches(utc(1800, 1, 1), utc(2300, 1, 1), 5000):
            (read_dead.append(batch.to_dict()) if isinstance(batch, DeadLetter) else rows.extend(batch))
        reader.disconnect()
        kept, dead = _through_steps(rows, steps)
        want_lines, sink_dead = [], []
        for record in kept:
            line = typed_line(record)
            (sink_dead.append(line.to_dict()) if isinstance(line, DeadLetter) else want_lines.append(json.loads(line)))
        pushed = _pushed(dsn, _specs(steps), table="every_type", window=(utc(1800, 1, 1), utc(2300, 1, 1)))
        if steps[0].get("filter", "").startswith("id % 2"):
            assert isinstance(pushed, str) and "arithmetic" in pushed
            return
        assert not isinstance(pushed, str), pushed
        lines, dead_pushed, read = pushed
        by_id = {r["id"]: r for r in want_lines}
        assert len(lines) == len(want_lines) > 20
        for line in lines:
            assert line == by_id[line["id"]] and list(line) == list(by_id[line["id"]])
        assert dead_pushed == sorted(map(_letter, read_dead + dead + sink_dead))
        assert read == len(rows)
    finally:
        execute(dsn, "DROP TABLE every_type; DROP TYPE mood; DROP DOMAIN positive")

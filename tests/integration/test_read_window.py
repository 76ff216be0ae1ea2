"""The splittable read: initial splits, dynamic splits never cutting ties, ordering checks, batching."""
from __future__ import annotations

import datetime as dt

import apache_beam as beam
import pytest
from apache_beam.io.restriction_trackers import OffsetRange

from osmosis_beam.core.errors import FatalConnectorError
from osmosis_beam.core.records import DeadLetter
from osmosis_beam.core.timefmt import from_micros, parse_timestamp, to_micros
from osmosis_beam.core.window import IncrementalSpec, SyncWindow
from osmosis_beam.io.base import BaseConnector
from osmosis_beam.io.read import (
    ReadWindow,
    _ReadTask,
    _ReadWindowFn,
    _WindowRestrictionProvider,
)
from osmosis_beam.runners.options import in_process_pipeline
from tests.integration.synthetic import SyntheticConnector
from tests.integration.transforms_support import drive_letters

T0 = parse_timestamp("2024-01-01T00:00:00Z")


def synth(**options):
    return SyntheticConnector({"clock": "2024-01-02T00:00:00Z", **options})


def collect(connector, window, **kw):
    # The in-process runner pickles functions; _Collector keeps its target list in this process.
    from osmosis_beam.steps.pipeline import _Collector

    records, dead = _Collector(), _Collector()
    try:
        with in_process_pipeline() as p:
            out = p | ReadWindow(connector, window, **kw)
            out.records | "r" >> beam.Map(records.add_batch)
            out.dead_letter | "d" >> beam.Map(dead.add)
        return list(records.items), list(dead.items)
    finally:
        records.close()
        dead.close()


def test_initial_splits_cover_window_without_gaps():
    provider = _WindowRestrictionProvider()
    read = ReadWindow(synth(), SyncWindow(T0, T0 + dt.timedelta(hours=1)), splits=4)
    task = _ReadTask(to_micros(T0), to_micros(T0) + 3_600_000_000, read.split_points())
    parts = list(provider.split(task, provider.initial_restriction(task)))
    assert len(parts) == 4
    assert parts[0].start == task.lo and parts[-1].stop == task.hi
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))


def test_unsplittable_connector_is_read_whole():
    class Whole(SyntheticConnector):
        splittable = False

    read = ReadWindow(Whole({}), SyncWindow(T0, T0 + dt.timedelta(hours=1)), splits=8)
    assert read.split_points() == ()
    provider = _WindowRestrictionProvider()
    task = _ReadTask(1, 100, (), False, False)
    tracker = provider.create_tracker(provider.initial_restriction(task))
    assert tracker.try_split(0.5) is None  # refuses dynamic splits too


def test_open_window_splits_only_from_a_known_lower_bound():
    window = SyncWindow(None, T0 + dt.timedelta(hours=1))
    assert ReadWindow(synth(), window, splits=4).split_points() == ()
    points = ReadWindow(synth(), window, splits=4, split_from=T0).split_points()
    assert len(points) == 3 and points[0] > to_micros(T0)


def test_read_through_beam_with_ties_and_batches():
    connector = synth(count=1000, ties=4, step_us=1000)
    window = SyncWindow(T0, T0 + dt.timedelta(seconds=1))
    records, dead = collect(connector, window, splits=7, batch_size=33)
    assert sorted(r["id"] for r in records) == list(range(1000))
    assert dead == []


def _drive(fn, task, restriction, split_after=None, fraction=0.5):
    """Run the DoFn on one restriction like a runner would; optionally split mid-read."""
    provider = _WindowRestrictionProvider()
    tracker = provider.create_tracker(restriction)
    out, residual, seen = [], None, 0
    for item in fn.process(task, tracker=tracker):
        if isinstance(item, list):
            out.extend(item)
            seen += len(item)
            if split_after is not None and residual is None and seen >= split_after:
                split = tracker.try_split(fraction)
                if split:
                    residual = split[1]
    tracker.check_done()
    return out, residual


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.9])
def test_dynamic_split_never_cuts_ties_and_loses_nothing(fraction):
    connector = synth(count=600, ties=6, step_us=10)  # 100 cursor values, 6 records each
    lo = to_micros(T0)
    task = _ReadTask(lo, lo + 10_000, ())
    fn = _ReadWindowFn(connector, batch_size=5)
    first, residual = _drive(fn, task, OffsetRange(task.lo, task.hi), split_after=50, fraction=fraction)
    assert residual is not None
    rest, _ = _drive(fn, task, residual)
    ids = [r["id"] for r in first + rest]
    assert sorted(ids) == list(range(600))  # exactly once
    first_ts = {r["ts"] for r in first}
    assert not first_ts & {r["ts"] for r in rest}  # no cursor value split between the two halves


class _Unordered(BaseConnector):
    type_name = "unordered"
    cursor_fields = ("ts",)

    def read_window(self, lo, hi):
        yield {"ts": T0 + dt.timedelta(seconds=2)}
        yield {"ts": T0 + dt.timedelta(seconds=1)}


def test_out_of_order_records_fail_clearly():
    fn = _ReadWindowFn(_Unordered({}), batch_size=10)
    task = _ReadTask(to_micros(T0), to_micros(T0) + 10_000_000, ())
    with pytest.raises(FatalConnectorError, match="out of cursor order"):
        _drive(fn, task, OffsetRange(task.lo, task.hi))


class _Sloppy(BaseConnector):
    """Returns one record past hi and one without a cursor value."""

    type_name = "sloppy"
    cursor_fields = ("ts",)

    def read_window(self, lo, hi):
        yield {"id": 1, "ts": None}
        yield {"id": 2, "ts": lo}
        yield DeadLetter("read", "bad row", {"id": 3})
        yield {"id": 4, "ts": hi}


def test_records_outside_window_are_not_emitted_and_missing_cursor_dead_letters():
    window = SyncWindow(T0, T0 + dt.timedelta(seconds=5))
    records, dead = collect(_Sloppy({}), window, splits=1)
    assert [r["id"] for r in records] == [2]
    assert sorted(d["record"]["id"] for d in dead) == [1, 3]
    assert any("no value in cursor field 'ts'" in d["error"] for d in dead)


def test_naive_cursor_is_rejected():
    class Naive(_Sloppy):
        def read_window(self, lo, hi):
            yield {"ts": dt.datetime(2024, 1, 1, 0, 0, 1)}

    fn = _ReadWindowFn(Naive({}), batch_size=10)
    task = _ReadTask(to_micros(T0), to_micros(T0) + 10_000_000, ())
    with pytest.raises(FatalConnectorError, match="naive timestamp"):
        _drive(fn, task, OffsetRange(task.lo, task.hi))


def test_integer_cursor_window():
    class Ids(BaseConnector):
        type_name = "ids"
        cursor_fields = ("id",)

        def source_clock(self):
            return 1000

        def read_window(self, lo, hi):
            start = 0 if lo is None else lo
            for i in range(start, min(hi, 1000)):
                yield {"id": i}

    records, _ = collect(Ids({}), SyncWindow(100, 900), splits=4)
    assert sorted(r["id"] for r in records) == list(range(100, 900))


def test_fetch_reads_in_process_without_beam():
    connector = synth(count=10, clock="2024-01-01T00:00:05Z")
    assert [r["id"] for r in connector.fetch()] == [0, 1, 2, 3, 4]
    assert [r["id"] for r in connector.fetch(T0 + dt.timedelta(seconds=3))] == [3, 4]


# -- dead letters across a dynamic split, on a real PostgreSQL server ---------------------------------

from tests.integration.pg_support import execute, pg_dsn, pg_module_database, source  # noqa: E402,F401  (fixtures)

_DEAD_TABLE = """
CREATE TABLE dl (id integer PRIMARY KEY, updated_at timestamptz NOT NULL, d date, f8 double precision);
INSERT INTO dl
SELECT g, timestamptz '2024-01-01 00:00:00+00' + (g / 2) * interval '1 second',  -- ties: two rows a second
       CASE WHEN g % 9 = 0 THEN '0044-03-15 BC' WHEN g % 9 = 4 THEN '10000-01-01' ELSE date '2024-01-01' + g END,
       CASE WHEN g % 5 = 0 THEN 'NaN' ELSE g / 4.0 END
FROM generate_series(1, 240) AS g;
"""


def _dead_split_connector(dsn, path):
    from osmosis_beam.io.postgres.source import PostgresConnector

    class RecordByRecord(PostgresConnector):
        reads_batches = False  # the splittable read's record-by-record path (_read_claiming)

    if path == "records":
        return RecordByRecord({"dsn": dsn, "table": "dl", "fetch_size": 10}, incremental=IncrementalSpec(cursor_field="updated_at"),
                              pipeline_id="t")
    connector = source(dsn, table="dl", fetch_size=10)
    if path == "json":
        assert connector.use_encoding("json", fields=()) is None  # the zero-decode path
    return connector


@pytest.mark.parametrize("fraction", [0.0, 0.5])
@pytest.mark.parametrize("path", ["typed", "records", "json"])
def test_a_dynamic_split_emits_each_dead_letter_once(pg_dsn, path, fraction):
    """Rows with unreadable values (a date BC or in year 10000; on the json path also a float NaN the
    sink cannot encode) on both sides of a dynamic split: each record and each dead letter comes out once."""
    execute(pg_dsn, _DEAD_TABLE)
    lo = to_micros(parse_timestamp("2024-01-01T00:00:00Z"))
    task = _ReadTask(lo, lo + 200_000_000, ())
    fn = _ReadWindowFn(_dead_split_connector(pg_dsn, path), batch_size=7)
    counted: list[int] = []
    fn._read_inc = counted.append  # rows the read counts as read
    fn.setup()
    try:
        whole_ids, whole_letters, _ = drive_letters(fn, task, OffsetRange(task.lo, task.hi))
        read_whole = sum(counted)
        counted.clear()
        first_ids, first_letters, residual = drive_letters(fn, task, OffsetRange(task.lo, task.hi),
                                                            split_after=40, fraction=fraction)
        assert residual is not None
        rest_ids, rest_letters, _ = drive_letters(fn, task, residual)
    finally:
        fn.teardown()
    unreadable = [g for g in range(1, 241) if g % 9 in (0, 4)]
    if path == "json":
        unreadable += [g for g in range(1, 241) if g % 5 == 0 and g % 9 not in (0, 4)]  # NaN: the sink's dead letter
    assert sorted(whole_ids) == sorted(set(range(1, 241)) - set(unreadable))
    assert len(whole_letters) == len(unreadable)
    assert sorted(first_ids + rest_ids) == sorted(whole_ids)  # every record once
    assert first_letters and rest_letters  # dead rows on both sides of the split
    assert sorted(first_letters + rest_letters) == sorted(whole_letters)  # every dead letter once
    # Rows read: each once (a NaN row counts as read on the json path, as the typed path counts it).
    assert sum(counted) == read_whole


class _LettersFirst(BaseConnector):
    """300 rows, 3 per cursor position, in chunks of 50 whose dead letters come first (more of them than a
    batch holds: the read claims up to them early); every 4th row and the last ten are dead."""

    type_name = "letters_first"
    cursor_fields = ("ts",)

    def _items(self, lo, hi, size):
        start, stop = (to_micros(lo) if lo is not None else 0), to_micros(hi)
        rows = [(i, _DL_T0 + (i // 3) * 10) for i in range(300)]
        rows = [(i, p) for i, p in rows if start <= p < stop]
        for c in range(0, len(rows), 50):
            chunk = rows[c : c + 50]
            yield from (DeadLetter("read", f"row {i} is unreadable", {"id": i}, p)
                        for i, p in chunk if i % 4 == 0 or i >= 290)
            kept = [{"id": i, "ts": from_micros(p)} for i, p in chunk if i % 4 and i < 290]
            yield from (kept[k : k + size] for k in range(0, len(kept), size))

    def read_window(self, lo, hi):
        for item in self._items(lo, hi, 1000):
            yield from ([item] if isinstance(item, DeadLetter) else item)

    def read_window_batches(self, lo, hi, batch_size):
        yield from self._items(lo, hi, batch_size)


_DL_T0 = 1_704_067_200_000_000


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("batches", [False, True], ids=["records", "batches"])
def test_held_dead_letters_stay_bounded_and_come_out_once_across_a_split(batches, fraction):
    """Dead letters ahead of their rows, more than a batch, and at the window's end: claimed early, drained
    up to the new stop after a refused claim; the split's two halves hold each record and letter once."""
    connector = type("Conn", (_LettersFirst,), {"reads_batches": batches})({})
    task = _ReadTask(_DL_T0, _DL_T0 + 1_000, ())
    fn = _ReadWindowFn(connector, batch_size=5)
    counted: list[int] = []
    fn._read_inc = counted.append
    whole_ids, whole_letters, _ = drive_letters(fn, task, OffsetRange(task.lo, task.hi))
    read_whole, counted[:] = sum(counted), []
    first_ids, first_letters, residual = drive_letters(fn, task, OffsetRange(task.lo, task.hi),
                                                        split_after=10, fraction=fraction)
    assert residual is not None
    rest_ids, rest_letters, _ = drive_letters(fn, task, residual)
    assert sorted(whole_ids) == [i for i in range(290) if i % 4] and len(whole_letters) == 300 - len(whole_ids)
    assert sorted(first_ids + rest_ids) == sorted(whole_ids)
    assert sorted(first_letters + rest_letters) == sorted(whole_letters)
    assert rest_letters  # the residual's letters come from the residual
    assert sum(counted) == read_whole

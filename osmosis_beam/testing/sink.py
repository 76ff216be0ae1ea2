"""The sink contract suite: what every sink promises the commit protocol, as pytest tests.

A sink author writes a harness and subclasses :class:`SinkContract`::

    import pytest
    from osmosis_beam.testing import SinkContract, SinkHarness

    class FilesHarness(SinkHarness):
        staged = True                     # output appears only at publish (False: idempotent upserts)
        full_refresh_replaces = True      # a full refresh replaces the output (False: it upserts over it)
        upserts = False                   # records are keyed by "id" (True) or appended (False)
        def sink(self): ...               # a new sink over the same output each call
        def read_back(self): ...          # the published records, as dicts with "id" and "value"
        def leftovers(self): ...          # staging areas left behind (names), [] when clean

    class TestFilesContract(SinkContract):
        @pytest.fixture
        def harness(self, tmp_path):
            return FilesHarness(tmp_path)

Each test drives the sink as ``osmosis run`` does: ``prepare(run_id)`` on the launcher, ``write(run_id)`` in a
Beam job on the in-process runner, then ``publish`` or ``abort``. The contract: a published run is complete;
a failed run re-run leaves the output as one run would; publishing a run twice (a repair) or, for upsert
sinks, writing a window twice changes nothing; abort leaves nothing (staged sinks) and no staging area;
publication is atomic (nothing of a staged run is visible before publish); a full refresh works as declared.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from osmosis_beam.io.base import BaseSink

__all__ = ["SinkHarness", "SinkContract", "write_run", "publish_run"]

UTC = dt.timezone.utc
HI = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


class SinkHarness:
    """What the suite needs from a sink's author. Override the methods; see the module docstring."""

    staged: bool = True
    full_refresh_replaces: bool = True
    upserts: bool = False

    def sink(self) -> BaseSink:
        raise NotImplementedError

    def read_back(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def leftovers(self) -> list[str]:
        return []


def records(ids, value: str = "v") -> list[dict[str, Any]]:
    return [{"id": i, "value": f"{value}{i}"} for i in ids]


def write_run(sink: BaseSink, run_id: str, rows: list[dict[str, Any]], *, full_refresh: bool = False,
              batch_size: int = 3) -> None:
    """``prepare`` and a Beam job writing ``rows`` in batches, as a sync run does (no publish)."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from osmosis_beam.io.write import WriteToSink
    from osmosis_beam.testing.collect import Collected

    sink.prepare(run_id, full_refresh=full_refresh)
    dead = Collected()
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(batches, reshuffle=False) | WriteToSink.for_run(sink, run_id)
        out.dead_letter | dead.sink()
    assert dead.items() == [], dead.items()


def publish_run(sink: BaseSink, run_id: str, *, full_refresh: bool = False, hi: dt.datetime = HI) -> dict:
    return sink.publish(run_id, window_hi=hi, full_refresh=full_refresh)


def _pairs(rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return sorted((int(r["id"]), str(r["value"])) for r in rows)


class SinkContract:
    """The contract tests; subclass it as ``Test...`` and give a ``harness`` fixture."""

    def test_a_published_run_is_complete(self, harness):
        sink = harness.sink()
        write_run(sink, "run-a", records(range(1, 11)))
        publish_run(sink, "run-a")
        assert _pairs(harness.read_back()) == _pairs(records(range(1, 11)))
        assert harness.leftovers() == []
        if harness.staged:
            assert harness.sink().is_published("run-a") is True  # what crash repair asks
            assert harness.sink().is_published("run-never") is False

    def test_a_failed_run_re_run_leaves_the_output_as_one_run_would(self, harness):
        sink = harness.sink()
        write_run(sink, "run-failed", records(range(1, 11)))
        sink.abort("run-failed")  # the job failed after writing some or all of the window
        again = harness.sink()  # the next run, in a new process
        write_run(again, "run-retry", records(range(1, 11)))
        publish_run(again, "run-retry")
        assert _pairs(harness.read_back()) == _pairs(records(range(1, 11)))
        assert harness.leftovers() == []

    def test_publishing_twice_or_writing_a_window_twice_changes_nothing(self, harness):
        sink = harness.sink()
        write_run(sink, "run-a", records(range(1, 8)))
        publish_run(sink, "run-a")
        publish_run(harness.sink(), "run-a")  # a repair that publishes the same run again
        assert _pairs(harness.read_back()) == _pairs(records(range(1, 8)))
        if not harness.staged:  # upserts: the same window written again by a new run
            again = harness.sink()
            write_run(again, "run-b", records(range(1, 8)))
            publish_run(again, "run-b")
            assert _pairs(harness.read_back()) == _pairs(records(range(1, 8)))

    def test_abort_leaves_nothing(self, harness):
        sink = harness.sink()
        write_run(sink, "run-a", records(range(1, 6)))
        sink.abort("run-a")
        assert harness.leftovers() == []
        if harness.staged:
            assert harness.read_back() == []
            assert harness.sink().is_published("run-a") is False
        else:  # direct upserts stay: they are the window's rows, rewritten identically by the re-run
            assert set(_pairs(harness.read_back())) <= set(_pairs(records(range(1, 6))))

    def test_publication_is_atomic(self, harness):
        write_run(harness.sink(), "run-old", records(range(1, 4), "old"))
        publish_run(harness.sink(), "run-old")
        sink = harness.sink()
        write_run(sink, "run-new", records(range(3, 9), "new"))
        if harness.staged:
            # written but not published: readers still see exactly the previous output
            assert _pairs(harness.read_back()) == _pairs(records(range(1, 4), "old"))
        publish_run(sink, "run-new")
        old, new = _pairs(records(range(1, 4), "old")), _pairs(records(range(3, 9), "new"))
        if harness.upserts:  # keyed by id: the newer version of id 3 replaces the older
            expected = sorted({**dict(old), **dict(new)}.items())
        else:  # appends keep both versions
            expected = sorted(old + new)
        assert _pairs(harness.read_back()) == expected

    def test_full_refresh(self, harness):
        write_run(harness.sink(), "run-a", records(range(1, 7), "old"))
        publish_run(harness.sink(), "run-a")
        sink = harness.sink()
        write_run(sink, "run-full", records(range(4, 9), "new"), full_refresh=True)
        publish_run(sink, "run-full", full_refresh=True, hi=HI + dt.timedelta(days=1))
        got = _pairs(harness.read_back())
        if harness.full_refresh_replaces:
            assert got == _pairs(records(range(4, 9), "new"))
        else:  # upserts over the old output; documents the run did not write stay
            assert got == _pairs(records(range(1, 4), "old") + records(range(4, 9), "new"))
        assert harness.leftovers() == []

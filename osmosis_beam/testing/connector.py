"""The connector contract suite: what every connector promises the sync runner, as pytest tests.

A connector author writes a harness (how to put records into the source, and three broken configurations)
and subclasses :class:`ConnectorContract` in a test module; pytest then runs every contract test against it::

    import pytest
    from osmosis_beam.testing import ConnectorContract, ConnectorHarness

    class NumbersHarness(ConnectorHarness):
        def connector(self, rows):            # rows: [{"id": "r1", "at": aware datetime}, ...]
            ...                                # store them in the source; return a connector reading them
        def record_id(self, record):
            return record["id"]
        def unreachable(self, secret): ...     # a connector whose host does not answer (secret: its password)
        def wrong_password(self, secret): ...  # a connector whose password is wrong (or None, with a reason)
        def missing_table(self, secret): ...   # a connector naming a table/collection/page that is not there

    class TestNumbersContract(ConnectorContract):
        @pytest.fixture
        def harness(self):
            return NumbersHarness()

The contract: the window ``[lo, hi)`` is half open (ties at ``hi`` belong to the next window, never to
both); an empty window reads nothing; records come in cursor order; the schema names the cursor field; a
read through Beam with splits gives each record once; a bad host, password or table fails with a clear
:class:`~osmosis_beam.core.errors.OsmosisError` that never shows the password, and soon (no hang).
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from osmosis_beam.core.errors import OsmosisError
from osmosis_beam.core.records import DeadLetter
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.io.base import BaseConnector

__all__ = ["ConnectorHarness", "ConnectorContract", "T0", "at", "read_window"]

UTC = dt.timezone.utc
#: The time the suite's records are placed around (``at(minutes)``).
T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
#: A failing connection must fail within this many seconds.
ERROR_DEADLINE = 30.0


def at(minutes: float) -> dt.datetime:
    """``T0`` plus ``minutes``."""
    return T0 + dt.timedelta(minutes=minutes)


def read_window(connector: BaseConnector, lo, hi) -> list[Any]:
    """What one run reads of ``[lo, hi)`` in this process: connect, begin the run, read, disconnect."""
    connector.connect()
    try:
        connector.begin_run({})
        return list(connector.read_window(lo, hi))
    finally:
        connector.disconnect()


class ConnectorHarness:
    """What the suite needs from a connector's author. Override the methods; see the module docstring."""

    #: Why ``wrong_password`` returns None (the test then says so as its skip reason).
    no_password_reason: str = ""

    def connector(self, rows: list[dict[str, Any]]) -> BaseConnector:
        """Store ``rows`` (``{"id": str, "at": aware datetime}``) in the source; a connector whose cursor is ``at``."""
        raise NotImplementedError

    def record_id(self, record: dict[str, Any]) -> str:
        """The ``id`` a stored row came back with."""
        raise NotImplementedError

    def unreachable(self, secret: str) -> BaseConnector:
        """A connector whose host does not answer, holding ``secret`` as its password (or a token header).

        Each of the three may return ``(connector, hidden)`` instead, when the connector must hold another
        secret (a missing table on a real server needs the real password): ``hidden`` must not be shown.
        """
        raise NotImplementedError

    def wrong_password(self, secret: str) -> BaseConnector | None:
        raise NotImplementedError

    def missing_table(self, secret: str) -> BaseConnector:
        raise NotImplementedError


# ids and cursor minutes: ties at 2 (three rows) and at 4 (two rows)
ROWS = [("a", 0), ("b", 1), ("c1", 2), ("c2", 2), ("c3", 2), ("d", 3), ("e1", 4), ("e2", 4), ("f", 5)]
SECRET = "Contract-s3cret-pw"


def _rows() -> list[dict[str, Any]]:
    return [{"id": i, "at": at(m)} for i, m in ROWS]


def _ids(harness: ConnectorHarness, items: list[Any]) -> list[str]:
    assert not [i for i in items if isinstance(i, DeadLetter)], items
    return [harness.record_id(r) for r in items]


class ConnectorContract:
    """The contract tests; subclass it as ``Test...`` and give a ``harness`` fixture."""

    def test_the_window_is_half_open(self, harness):
        src = harness.connector(_rows())
        got = _ids(harness, read_window(src, at(1), at(3)))
        assert sorted(got) == ["b", "c1", "c2", "c3"]  # lo included, hi excluded

    def test_ties_at_hi_fall_in_the_next_window_only(self, harness):
        src = harness.connector(_rows())
        first = _ids(harness, read_window(src, at(0), at(2)))
        second = _ids(harness, read_window(src, at(2), at(6)))
        assert sorted(first) == ["a", "b"]
        assert sorted(second) == ["c1", "c2", "c3", "d", "e1", "e2", "f"]
        assert sorted(first + second) == sorted(i for i, _ in ROWS)  # nothing lost, nothing doubled

    def test_an_empty_window_reads_nothing(self, harness):
        src = harness.connector(_rows())
        assert read_window(src, at(10), at(20)) == []
        src.connect()
        try:
            src.begin_run({})
            assert src.window_is_empty(SyncWindow(at(10), at(20))) in (True, None)
            assert src.window_is_empty(SyncWindow(at(0), at(6))) in (False, None)
        finally:
            src.disconnect()

    def test_records_come_in_cursor_order(self, harness):
        src = harness.connector(list(reversed(_rows())))  # stored out of order
        items = read_window(src, None, at(6))
        positions = [src.cursor_position(r) for r in items]
        assert None not in positions and positions == sorted(positions)
        assert sorted(_ids(harness, items)) == sorted(i for i, _ in ROWS)

    def test_the_schema_names_the_cursor_field(self, harness):
        src = harness.connector(_rows())
        src.connect()
        try:
            schema = src.get_schema()
        finally:
            src.disconnect()
        names = [f["name"] for f in schema["fields"]]
        assert names and all(isinstance(n, str) and n for n in names)
        assert schema.get("cursor_field") == src.cursor_field
        assert src.cursor_field in names

    def test_a_split_read_through_beam_gives_each_record_once(self, harness):
        import apache_beam as beam
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        from osmosis_beam.io.read import ReadWindow
        from osmosis_beam.testing.collect import Collected

        src = harness.connector(_rows())
        src.connect()
        try:
            src.begin_run({})
        finally:
            src.disconnect()
        found = Collected()
        with beam.Pipeline(runner=FnApiRunner()) as p:
            out = p | ReadWindow(src, SyncWindow(at(0), at(6)), splits=3, batch_size=2)
            out.records | beam.FlatMap(iter) | found.sink()
            out.dead_letter | "Dead" >> found.sink("dead")
        assert sorted(harness.record_id(r) for r in found.items()) == sorted(i for i, _ in ROWS)
        assert found.items("dead") == []

    @pytest.mark.parametrize("case", ["unreachable", "wrong_password", "missing_table"])
    def test_a_bad_host_password_or_table_fails_clearly_without_the_secret(self, harness, case):
        src = getattr(harness, case)(SECRET)
        if src is None:
            pytest.skip(f"{case}: {harness.no_password_reason or 'not applicable to this connector'}")
        hidden = SECRET
        if isinstance(src, tuple):  # (connector, the secret it holds) when it cannot hold SECRET
            src, hidden = src
        started = time.monotonic()
        with pytest.raises(OsmosisError) as info:
            src.test_connection()
            read_window(src, at(0), at(6))
        assert time.monotonic() - started < ERROR_DEADLINE  # a deadline, not a hang
        text = f"{info.value} {info.value!r} {info.value.args!r}"
        assert hidden not in text
        assert len(str(info.value)) > 10  # says what is wrong
        assert hidden not in repr(src.display())

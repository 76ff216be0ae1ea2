"""The splittable read: a connector read over the window ``[lo, hi)`` as a Beam splittable DoFn.

The restriction is the window as an ``OffsetRange`` of epoch microseconds (or of the integer cursor);
it is split into ``splits`` sub-windows up front, and the reader claims cursor positions in order
(once per batch), so a dynamic split can never cut a group of records that tie on the cursor.

Example::

    import apache_beam as beam
    from osmosis_beam.connectors.read import ReadWindow
    with beam.Pipeline() as p:
        out = p | "Read orders" >> ReadWindow(connector, SyncWindow(lo, hi), splits=4)
        out.records, out.dead_letter
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider

from osmosis_beam.batches import RecordBatch
from osmosis_beam.connectors.base import DEAD_LETTER_TAG, METRICS_NAMESPACE, BaseConnector, DeadLetter
from osmosis_beam.exceptions import FatalConnectorError
from osmosis_beam.timefmt import MIN_MICROS, from_micros, to_micros
from osmosis_beam.types import Record, SyncWindow

__all__ = ["ReadWindow"]


@dataclasses.dataclass(frozen=True)
class _ReadTask:
    """The one element the read starts from: the window and where to split it."""

    lo: int
    hi: int
    split_points: tuple[int, ...] = ()
    integer: bool = False
    splittable: bool = True


class _NoSplitTracker(OffsetRestrictionTracker):
    """The tracker for connectors that cannot split: refuses every dynamic split."""

    def try_split(self, fraction_of_remainder):  # noqa: D401 - Beam API
        return None


class _WholeRange(OffsetRange):
    """The restriction of a connector that cannot split."""


class _WindowRestrictionProvider(RestrictionProvider):
    def initial_restriction(self, element: _ReadTask) -> OffsetRange:
        if element.splittable:
            return OffsetRange(element.lo, element.hi)
        return _WholeRange(element.lo, element.hi)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        if isinstance(restriction, _WholeRange):
            return _NoSplitTracker(restriction)
        return OffsetRestrictionTracker(restriction)

    def split(self, element: _ReadTask, restriction: OffsetRange):
        if not element.splittable or not element.split_points:
            yield restriction
            return
        bounds = [restriction.start]
        bounds += [p for p in element.split_points if restriction.start < p < restriction.stop]
        bounds.append(restriction.stop)
        for start, stop in zip(bounds, bounds[1:]):
            if stop > start:
                yield OffsetRange(start, stop)

    def restriction_size(self, element: _ReadTask, restriction: OffsetRange) -> int:
        # Sizes are relative weights for the runner; an open lower bound must not overflow.
        return max(1, min(restriction.size(), 1 << 52))


class _ReadWindowFn(beam.DoFn):
    """Reads one sub-window with the connector; emits batches of records."""

    def __init__(self, connector: BaseConnector, batch_size: int) -> None:
        self._connector = connector
        self._batch_size = batch_size
        self._read = Metrics.counter(METRICS_NAMESPACE, "records_read")
        self._dead = Metrics.counter(METRICS_NAMESPACE, "dead_letter")

    def setup(self) -> None:
        self._connector.connect()

    def _dead_letter(self, letter: DeadLetter):
        self._dead.inc()
        return beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, letter.to_dict())

    def teardown(self) -> None:
        self._connector.disconnect()

    def process(self, task: _ReadTask, tracker=beam.DoFn.RestrictionParam(_WindowRestrictionProvider())):
        restriction = tracker.current_restriction()
        connector = self._connector
        if task.integer:
            lo = None if restriction.start <= MIN_MICROS else restriction.start
            hi = restriction.stop
        else:
            lo = None if restriction.start <= MIN_MICROS else from_micros(restriction.start)
            hi = from_micros(restriction.stop)
        if connector.splittable:
            if connector.reads_batches:
                yield from self._read_batches_claiming(task, tracker, restriction, lo, hi)
            else:
                yield from self._read_claiming(task, tracker, restriction, lo, hi)
            return
        # A connector that cannot split owns the whole window once it claims its start.
        if not tracker.try_claim(restriction.start):
            return
        size = self._batch_size
        batch: list[Record] = []
        for item in connector.read_window(lo, hi):
            if isinstance(item, DeadLetter):
                yield self._dead_letter(item)
                continue
            batch.append(item)
            if len(batch) >= size:
                self._read.inc(len(batch))
                yield batch
                batch = []
        if batch:
            self._read.inc(len(batch))
            yield batch
        tracker.try_claim(restriction.stop)  # marks the restriction done

    def _read_claiming(self, task, tracker, restriction, lo, hi):
        """Reads a splittable window, claiming once per batch (at the batch's last cursor position).

        Claiming position p means owning every position up to p, so one claim per batch keeps the
        exactly-once guarantee: when a claim fails (a dynamic split moved the stop, or the connector
        returned records past ``hi``), the records before the current stop are still ours and are
        emitted; the rest belong to the residual. Ties are never cut: a split point always lies
        after the last claimed position.
        """
        connector = self._connector
        position = connector.cursor_position
        size = self._batch_size
        start = restriction.start
        claimed: int | None = None
        prev: int | None = None
        batch: list[Record] = []
        positions: list[int] = []
        for item in connector.read_window(lo, hi):
            if isinstance(item, DeadLetter):
                yield self._dead_letter(item)
                continue
            pos = position(item)
            if pos is None:
                yield self._dead_letter(
                    DeadLetter("read", f"record has no value in cursor field {connector.cursor_field!r}", item)
                )
                continue
            if prev is None:
                if pos < start:
                    raise FatalConnectorError(
                        f"{connector.type_name} returned a record before the window start "
                        f"({_show(pos, task.integer)} < {_show(start, task.integer)})"
                    )
            elif pos < prev:
                raise FatalConnectorError(
                    f"{connector.type_name} returned records out of cursor order "
                    f"({_show(pos, task.integer)} after {_show(prev, task.integer)}); "
                    "read_window must sort by the cursor"
                )
            prev = pos
            batch.append(item)
            positions.append(pos)
            if len(batch) >= size:
                out, claimed, done = self._claim(tracker, batch, positions, claimed)
                if out:
                    self._read.inc(len(out))
                    yield out
                if done:
                    return
                batch, positions = [], []
        if batch:
            out, claimed, done = self._claim(tracker, batch, positions, claimed)
            if out:
                self._read.inc(len(out))
                yield out
            if done:
                return
        tracker.try_claim(restriction.stop)  # marks the restriction done

    def _read_batches_claiming(self, task, tracker, restriction, lo, hi):
        """The fast path for connectors that read in batches: checks and claims at batch edges only."""
        connector = self._connector
        position = connector.cursor_position
        start = restriction.start
        claimed: int | None = None
        prev: int | None = None
        for batch in connector.read_window_batches(lo, hi, self._batch_size):
            if isinstance(batch, DeadLetter):
                yield self._dead_letter(batch)
                continue
            if not batch:
                continue
            first, last = position(batch[0]), position(batch[-1])
            if first is None or last is None:
                raise FatalConnectorError(
                    f"{connector.type_name} returned a record without a value in cursor field {connector.cursor_field!r}"
                )
            if (prev is None and first < start) or (prev is not None and first < prev) or last < first:
                raise FatalConnectorError(
                    f"{connector.type_name} returned records out of cursor order or before the window start "
                    f"({_show(first, task.integer)}..{_show(last, task.integer)} after "
                    f"{_show(prev if prev is not None else start, task.integer)})"
                )
            prev = last
            if claimed is not None and last <= claimed:
                out, done = batch, False
            elif tracker.try_claim(last):
                out, claimed, done = batch, last, False
            else:
                stop = tracker.current_restriction().stop
                out, done = [r for r in batch if position(r) < stop], True
            if out:
                self._read.inc(len(out))
                yield out
            if done:
                return
        tracker.try_claim(restriction.stop)  # marks the restriction done

    @staticmethod
    def _claim(tracker, batch, positions, claimed):
        """Claim ``batch``; returns (records to emit, highest claimed position, whether reading is over)."""
        last = positions[-1]
        if claimed is not None and last <= claimed:
            return batch, claimed, False  # all ties at a position we already own
        if tracker.try_claim(last):
            return batch, last, False
        stop = tracker.current_restriction().stop
        return [r for r, p in zip(batch, positions) if p < stop], claimed, True


def _show(pos: int, integer: bool) -> str:
    return str(pos) if integer else from_micros(pos).isoformat()


class ReadWindow(beam.PTransform):
    """Reads ``window`` from ``connector`` as a PCollection of record batches (lists of dicts).

    Dead letters from the read come out on the ``dead_letter`` tag:
    ``result = p | ReadWindow(...)``; ``result.records``, ``result.dead_letter``.
    """

    def __init__(
        self,
        connector: BaseConnector,
        window: SyncWindow,
        *,
        splits: int = 4,
        batch_size: int = 2000,
        split_from: dt.datetime | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(connector, BaseConnector):
            raise TypeError(f"ReadWindow needs a BaseConnector, got {type(connector).__name__}")
        if splits < 1 or batch_size < 1:
            raise ValueError("splits and batch_size must be at least 1")
        self._connector = connector
        self._window = window
        self._splits = splits
        self._batch_size = batch_size
        self._split_from = split_from

    def split_points(self) -> tuple[int, ...]:
        if not self._connector.splittable or self._splits <= 1:
            return ()
        lo = self._window.lo_micros
        if self._split_from is not None:
            bound = self._split_from if isinstance(self._split_from, int) else to_micros(self._split_from)
            lo = max(lo, bound)
        hi = self._window.hi_micros
        if lo <= MIN_MICROS or hi - lo < self._splits:
            return ()
        step = (hi - lo) / self._splits
        return tuple(sorted({int(lo + step * i) for i in range(1, self._splits)}))

    def expand(self, pbegin):
        task = _ReadTask(
            self._window.lo_micros,
            self._window.hi_micros,
            self.split_points(),
            self._window.is_integer,
            self._connector.splittable,
        )
        return (
            pbegin
            | "Window" >> beam.Create([task])
            | "Read window"
            >> beam.ParDo(_ReadWindowFn(self._connector, self._batch_size))
            .with_output_types(RecordBatch)
            .with_outputs(
                DEAD_LETTER_TAG, main="records"
            )
        )

    def display_data(self) -> dict[str, Any]:
        return {
            "connector": self._connector.type_name,
            "window": str(self._window),
            "splits": self._splits,
        }

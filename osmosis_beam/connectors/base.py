"""BaseConnector and the splittable read: a source read over the window ``[lo, hi)``.

A connector author subclasses :class:`BaseConnector`, declares ``type_name`` and
``options``, and implements two methods: ``source_clock()`` (the source's "now") and
``read_window(lo, hi)`` (records whose cursor is in ``[lo, hi)``, in cursor order).
The Beam plumbing (restriction, tracker, splitting, batching, metrics) lives here::

    import apache_beam as beam
    from osmosis_beam.connectors.base import ReadWindow
    from osmosis_beam.types import SyncWindow

    with beam.Pipeline() as p:
        batches = p | "Read" >> ReadWindow(connector, SyncWindow(lo, hi), splits=4)

The restriction is the window as an ``OffsetRange`` of epoch microseconds; it is split
into ``splits`` sub-windows up front, and the reader claims each cursor position in order,
so a dynamic split can never cut a group of records that tie on the cursor.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any, ClassVar, Iterable, Iterator, Mapping

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider

from osmosis_beam.config import IncrementalSpec, Option
from osmosis_beam.exceptions import ConnectorError, FatalConnectorError
from osmosis_beam.secrets import Secret
from osmosis_beam.timefmt import MIN_MICROS, UTC, from_micros, to_micros, utcnow
from osmosis_beam.types import DataConnector, Record, SyncWindow

__all__ = ["BaseConnector", "DeadLetter", "ReadWindow", "DEAD_LETTER_TAG", "METRICS_NAMESPACE"]

log = logging.getLogger(__name__)
METRICS_NAMESPACE = "osmosis"
DEAD_LETTER_TAG = "dead_letter"


@dataclasses.dataclass
class DeadLetter:
    """A record that could not be read or processed, with the reason. Yield it from ``read_window``."""

    step: str
    error: str
    record: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "error": self.error, "record": self.record}


class BaseConnector(DataConnector):
    """The base of every connector: options, the sync hooks, and ``fetch`` built on ``read_window``.

    Class attributes a connector sets:
      - ``type_name``: its registry name; ``options``: its declared :class:`Option` s.
      - ``splittable``: False when a window cannot be read in parts (one feed document).
      - ``cursor_fields``: the cursor fields it supports (first is the default), or None for any.
      - ``default_safety_lag``: the lag to use when the pipeline does not set ``safety_lag``.
    """

    type_name: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    splittable: ClassVar[bool] = True
    cursor_fields: ClassVar[tuple[str, ...] | None] = None
    default_safety_lag: ClassVar[dt.timedelta] = dt.timedelta(0)

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        *,
        incremental: IncrementalSpec | None = None,
        pipeline_id: str = "",
        **kwargs: Any,
    ) -> None:
        from osmosis_beam.config import validate_options
        from osmosis_beam.exceptions import ConfigError

        merged = dict(options or {})
        merged.update(kwargs)
        problems: list[str] = []
        self.config = validate_options(merged, self.options, "source", problems)
        self.incremental = incremental or IncrementalSpec()
        cursor = self.incremental.cursor_field
        if self.cursor_fields is not None:
            if cursor is None:
                cursor = self.cursor_fields[0]
            elif cursor not in self.cursor_fields:
                problems.append(
                    f"incremental.cursor_field: {self.type_name} supports {', '.join(self.cursor_fields)}, got {cursor!r}"
                )
        if problems:
            raise ConfigError(problems=problems)
        self.cursor_field = cursor
        self.pipeline_id = pipeline_id
        self._client: Any = None

    # -- pickling: live clients never travel to workers -------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    # -- sync hooks (called on the launcher) ---------------------------------------------------
    def begin_run(self, state: Mapping[str, Any]) -> None:
        """Called on the launcher before the window is fixed, with the state ``end_state`` left last time."""

    def unchanged(self) -> bool:
        """True when the source reports that nothing changed since the last commit (e.g. HTTP 304)."""
        return False

    def source_clock(self) -> dt.datetime | int:
        """The source's "now", UTC-aware. The window's ``hi`` is taken from it (minus ``safety_lag``).

        A connector with an integer cursor returns the next position instead (e.g. ``max(id) + 1``).
        """
        return utcnow()

    def window_is_empty(self, window: SyncWindow) -> bool | None:
        """Optional: True when the source knows ``window`` holds no records (the run skips Beam)."""
        return None

    def lower_bound(self, window: SyncWindow) -> dt.datetime | int | None:
        """Optional: the smallest cursor in ``window``, used only to place split points when ``lo`` is open."""
        return None

    def end_state(self, window: SyncWindow) -> dict[str, Any] | None:
        """The connector state to store with the watermark when the run commits (no secrets)."""
        return None

    # -- the read (runs on workers) -----------------------------------------------------------------
    def read_window(self, lo: dt.datetime | None, hi: dt.datetime) -> Iterable[Record | DeadLetter]:
        """Yield the records whose cursor lies in ``[lo, hi)`` in cursor order (``lo`` None: no lower bound)."""
        raise NotImplementedError(f"{type(self).__name__} must implement read_window(lo, hi)")

    def cursor_position(self, record: Record) -> int | None:
        """The record's cursor as epoch microseconds (None when the record has no cursor value)."""
        value = record.get(self.cursor_field) if self.cursor_field else None
        return cursor_micros(value, self.cursor_field)

    # -- the seed interface ----------------------------------------------------------------------
    def test_connection(self) -> str:
        self.connect()
        return f"{self.type_name}: connected"

    def get_schema(self) -> dict[str, Any]:
        return {"fields": [], "cursor_field": self.cursor_field}

    def fetch(self, last_sync_timestamp: dt.datetime | None = None) -> list[Record]:
        """Read ``[last_sync_timestamp, source clock)`` in this process, without Beam."""
        self.connect()
        try:
            self.begin_run({})
            window = SyncWindow(last_sync_timestamp, self.source_clock())
            return [r for r in self.read_window(window.lo, window.hi) if not isinstance(r, DeadLetter)]
        finally:
            self.disconnect()

    def display(self) -> dict[str, Any]:
        """The connector's options with secrets shown as ``***`` (for logs and display data)."""
        return {k: (repr(v) if isinstance(v, Secret) else _plain(v)) for k, v in self.config.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def cursor_micros(value: Any, field: str | None = None) -> int | None:
    """Epoch microseconds of a cursor value: an aware datetime, a date (midnight UTC) or an int."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise FatalConnectorError(
                f"cursor field {field!r} holds a naive timestamp {value.isoformat()}: declare the source's timezone"
            )
        return to_micros(value)
    if isinstance(value, dt.date):
        return to_micros(dt.datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise FatalConnectorError(f"cursor field {field!r} holds {type(value).__name__} {value!r}; expected a timestamp")


# ---------------------------------------------------------------------------------------------
# The Beam plumbing
# ---------------------------------------------------------------------------------------------


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
            yield from self._read_claiming(task, tracker, restriction, lo, hi)
            return
        # A connector that cannot split owns the whole window once it claims its start.
        if not tracker.try_claim(restriction.start):
            return
        size = self._batch_size
        batch: list[Record] = []
        for item in connector.read_window(lo, hi):
            if isinstance(item, DeadLetter):
                self._dead.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, item.to_dict())
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
                self._dead.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, item.to_dict())
                continue
            pos = position(item)
            if pos is None:
                self._dead.inc()
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTER_TAG,
                    DeadLetter("read", f"record has no value in cursor field {connector.cursor_field!r}", item).to_dict(),
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
            >> beam.ParDo(_ReadWindowFn(self._connector, self._batch_size)).with_outputs(
                DEAD_LETTER_TAG, main="records"
            )
        )

    def display_data(self) -> dict[str, Any]:
        return {
            "connector": self._connector.type_name,
            "window": str(self._window),
            "splits": self._splits,
        }

"""The splittable read: a connector read over the window ``[lo, hi)`` as a Beam splittable DoFn.

The restriction is the window as an ``OffsetRange`` of epoch microseconds (or of the integer cursor);
it is cut into ``splits`` sub-windows up front, one element each (so a distributed runner reads them on
different workers), and the reader claims cursor positions in order (once per batch), so a dynamic
split can never cut a group of records that tie on the cursor.

Example::

    import apache_beam as beam
    from osmosis_beam.io.read import ReadWindow
    with beam.Pipeline() as p:
        out = p | "Read orders" >> ReadWindow(connector, SyncWindow(lo, hi), splits=4)
        out.records, out.dead_letter
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from typing import Any, Mapping

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider

from osmosis_beam.core.errors import ConfigError, FatalConnectorError, RecordError
from osmosis_beam.core.progress import live_add
from osmosis_beam.core.records import (
    DEAD_LETTER_TAG,
    METRICS_NAMESPACE,
    DeadLetter,
    EncodedBatch,
    Record,
)
from osmosis_beam.core.timefmt import (
    MIN_MICROS,
    from_micros,
    parse_duration,
    parse_timestamp,
    to_micros,
)
from osmosis_beam.core.window import IncrementalSpec, SyncWindow, compute_window
from osmosis_beam.io.base import BaseConnector
from osmosis_beam.io.batches import RecordBatch

__all__ = ["ReadWindow", "ReadFromSource", "fail_on_dead_letters"]


@dataclasses.dataclass(frozen=True)
class _ReadTask:
    """One element the read starts from: a sub-window (and where to split it further, if anywhere)."""

    lo: int
    hi: int
    split_points: tuple[int, ...] = ()
    integer: bool = False
    splittable: bool = True
    progress_lo: int | None = None  # where the window's progress counts from (None: the first record's position)


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

    def __init__(self, connector: BaseConnector, batch_size: int, progress_key: str | None = None) -> None:
        self._connector = connector
        self._batch_size = batch_size
        self._key = progress_key
        self._read_counter = Metrics.counter(METRICS_NAMESPACE, "records_read")
        self._dead_counter = Metrics.counter(METRICS_NAMESPACE, "dead_letter")
        self._done = Metrics.counter(METRICS_NAMESPACE, "window_done")

    def _read_inc(self, n: int) -> None:
        self._read_counter.inc(n)
        live_add(self._key, "records_read", n)

    def _advance(self, mark: list, to: int) -> None:
        """Count the window read up to cursor position ``to`` (``mark`` holds where this restriction counted to)."""
        if mark[0] is None:
            mark[0] = to
            return
        delta = to - mark[0]
        if delta > 0:
            mark[0] = to
            self._done.inc(delta)
            live_add(self._key, "window_done", delta)

    def setup(self) -> None:
        self._connector.connect()

    def _dead_letter(self, letter: DeadLetter):
        self._dead_counter.inc()
        live_add(self._key, "dead_letter", 1)
        return beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, letter.to_dict())

    def teardown(self) -> None:
        self._connector.disconnect()

    def process(self, task: _ReadTask, tracker=beam.DoFn.RestrictionParam(_WindowRestrictionProvider())):
        restriction = tracker.current_restriction()
        connector = self._connector
        # How far this restriction's progress is counted: from its start, or, under an open lower bound,
        # from where the window's records begin (else from the first claimed position).
        base = restriction.start if restriction.start > MIN_MICROS else task.progress_lo
        if base is not None and task.progress_lo is not None:
            base = max(base, task.progress_lo)
        mark = [base]
        if task.integer:
            lo = None if restriction.start <= MIN_MICROS else restriction.start
            hi = restriction.stop
        else:
            lo = None if restriction.start <= MIN_MICROS else from_micros(restriction.start)
            hi = from_micros(restriction.stop)
        if connector.splittable:
            if connector.reads_batches:
                yield from self._read_batches_claiming(task, tracker, restriction, lo, hi, mark)
            else:
                yield from self._read_claiming(task, tracker, restriction, lo, hi, mark)
            self._advance(mark, tracker.current_restriction().stop)  # this (possibly split) restriction is read
            return
        # A connector that cannot split owns the whole window once it claims its start.
        if not tracker.try_claim(restriction.start):
            return
        size = self._batch_size
        if connector.reads_batches:  # batches (or pre-encoded lines) as the connector cut them
            for item in connector.read_window_batches(lo, hi, size):
                if isinstance(item, DeadLetter):
                    yield self._dead_letter(item)
                elif item:
                    self._read_inc(len(item))
                    yield item
            tracker.try_claim(restriction.stop)  # marks the restriction done
            self._advance(mark, restriction.stop)
            return
        batch: list[Record] = []
        for item in connector.read_window(lo, hi):
            if isinstance(item, DeadLetter):
                yield self._dead_letter(item)
                continue
            batch.append(item)
            if len(batch) >= size:
                self._read_inc(len(batch))
                yield batch
                batch = []
        if batch:
            self._read_inc(len(batch))
            yield batch
        tracker.try_claim(restriction.stop)  # marks the restriction done
        self._advance(mark, restriction.stop)

    def _letter_position(self, letter: DeadLetter, start: int) -> int | None:
        """Where a dead letter lies on the cursor: the position the source gave it, else its record's cursor.

        None (the letter is emitted when it is read, as it always was) when neither is known, or when it
        lies before the restriction's start (a connector returning rows there fails on its next record).
        """
        at = letter.position
        if at is None and isinstance(letter.record, dict):
            try:
                at = self._connector.cursor_position(letter.record)
            except FatalConnectorError:  # the cursor value itself was unreadable: no position
                at = None
        if not isinstance(at, int) or isinstance(at, bool) or at < start:
            return None
        return at

    def _letters(self, held: list, stop: int | None):
        """Emit the held dead letters before ``stop`` (all when None); the others are the residual's."""
        for at, letter in held:
            if stop is None or at < stop:
                yield self._dead_letter(letter)

    def _read_claiming(self, task, tracker, restriction, lo, hi, mark):
        """Reads a splittable window, claiming once per batch (at the batch's last cursor position).

        Claiming position p means owning every position up to p, so one claim per batch keeps the
        exactly-once guarantee: when a claim fails (a dynamic split moved the stop, or the connector
        returned records past ``hi``), the records before the current stop are still ours and are
        emitted; the rest belong to the residual. Ties are never cut: a split point always lies
        after the last claimed position. A dead letter with a cursor position is held until the claim
        that covers it (at most one batch of them), so it is emitted by the reader owning its row, once.
        """
        connector = self._connector
        position = connector.cursor_position
        size = self._batch_size
        start = restriction.start
        claimed: int | None = None
        prev: int | None = None
        stop_at: int | None = None  # after a failed claim: the new stop; what lies before it is still ours
        batch: list[Record] = []
        positions: list[int] = []
        held: list[tuple[int, DeadLetter]] = []  # positioned dead letters no claim covers yet
        for item in connector.read_window(lo, hi):
            if isinstance(item, DeadLetter):
                at = self._letter_position(item, start)
                if at is None or (claimed is not None and at <= claimed):
                    yield self._dead_letter(item)
                elif stop_at is not None:
                    if at < stop_at:
                        yield self._dead_letter(item)
                elif len(held) + 1 >= size:  # bounded: claim up to the held letters now
                    held.append((at, item))
                    point = max([*positions[-1:], *(p for p, _ in held)])
                    claimed, stop = self._claim_to(tracker, point, claimed)
                    yield from self._emit_claimed(batch, positions, held, stop, claimed, mark)
                    batch, positions, held = [], [], []
                    if stop is not None:
                        if prev is not None and prev >= stop:
                            return
                        stop_at = stop
                else:
                    held.append((at, item))
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
            if stop_at is not None:  # draining up to the stop a failed claim left
                if pos >= stop_at:
                    break
                batch.append(item)
                if len(batch) >= size:
                    self._read_inc(len(batch))
                    yield batch
                    batch = []
                continue
            batch.append(item)
            positions.append(pos)
            if len(batch) >= size:
                point = max([positions[-1], *(p for p, _ in held)])
                claimed, stop = self._claim_to(tracker, point, claimed)
                yield from self._emit_claimed(batch, positions, held, stop, claimed, mark)
                if stop is not None:
                    if prev >= stop:
                        return
                    stop_at = stop
                batch, positions, held = [], [], []
        if stop_at is not None:
            if batch:
                self._read_inc(len(batch))
                yield batch
            return
        if batch or held:
            point = max([*positions[-1:], *(p for p, _ in held)])
            claimed, stop = self._claim_to(tracker, point, claimed)
            yield from self._emit_claimed(batch, positions, held, stop, None, mark)
            if stop is not None:
                return
        tracker.try_claim(restriction.stop)  # marks the restriction done

    def _emit_claimed(self, batch, positions, held, stop, claimed, mark):
        """After a claim: the held letters and records it covers (those before ``stop`` when it failed)."""
        yield from self._letters(held, stop)
        out = batch if stop is None else [r for r, p in zip(batch, positions) if p < stop]
        if out:
            self._read_inc(len(out))
            if claimed is not None:
                self._advance(mark, claimed)
            yield out

    @staticmethod
    def _claim_to(tracker, point: int, claimed: int | None) -> tuple[int | None, int | None]:
        """Claim every position up to ``point``: (highest claimed position, None), or (.., the new stop) when refused."""
        if claimed is not None and point <= claimed:
            return claimed, None  # a position we already own (ties at it included)
        if tracker.try_claim(point):
            return point, None
        return claimed, tracker.current_restriction().stop

    def _read_batches_claiming(self, task, tracker, restriction, lo, hi, mark):
        """The fast path for connectors that read in batches: checks and claims at batch edges only.

        A dead letter with a cursor position is held until a batch's claim covers it, or, at the end or
        when a batch's worth is held, claimed up to itself; one the residual owns is left to it. The
        connector yields a positioned letter before any batch whose rows all lie after it (in cursor
        order, as the PostgreSQL and MongoDB sources do): after a refused claim nothing later is read.
        """
        connector = self._connector
        position = connector.cursor_position
        start = restriction.start
        claimed: int | None = None
        prev: int | None = None
        stop_at: int | None = None  # after a failed claim of held letters: the new stop
        held: list[tuple[int, DeadLetter]] = []
        for batch in connector.read_window_batches(lo, hi, self._batch_size):
            if isinstance(batch, DeadLetter):
                at = self._letter_position(batch, start)
                if at is None or (claimed is not None and at <= claimed):
                    yield self._dead_letter(batch)
                elif stop_at is not None:
                    if at < stop_at:
                        yield self._dead_letter(batch)
                else:
                    held.append((at, batch))
                    if len(held) >= self._batch_size:  # bounded: claim up to the held letters now
                        claimed, stop_at = self._claim_to(tracker, max(p for p, _ in held), claimed)
                        yield from self._letters(held, stop_at)
                        held = []
                continue
            if not batch:
                continue
            encoded = isinstance(batch, EncodedBatch)  # the zero-decode path: positions come with the lines
            if encoded:
                first, last = batch.bounds()  # with the rows a filter in the query dropped: read and claimed
            else:
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
            if stop_at is not None:
                done = last >= stop_at
                out = (batch.head(stop_at) if encoded else [r for r in batch if position(r) < stop_at]) if done else batch
            else:
                claimed, stop = self._claim_to(tracker, last, claimed)
                if stop is None:
                    out, done = batch, False
                    covered = [h for h in held if h[0] <= last]
                    if covered:
                        held = [h for h in held if h[0] > last]
                        yield from self._letters(covered, None)
                else:
                    out = batch.head(stop) if encoded else [r for r in batch if position(r) < stop]
                    done = True
                    yield from self._letters(held, stop)  # later items lie at or after ``last``: the residual's
            if out:
                self._read_inc(out.read_count if encoded else len(out))
                if claimed is not None:
                    self._advance(mark, claimed)
                if encoded:
                    out = out.written()
                    out.origin = start  # the batches of one restriction come in cursor order
                if out:
                    yield out
            if done:
                return
        if stop_at is not None:
            return
        if held:
            claimed, stop = self._claim_to(tracker, max(p for p, _ in held), claimed)
            yield from self._letters(held, stop)
            if stop is not None:
                return
        tracker.try_claim(restriction.stop)  # marks the restriction done


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
        progress_key: str | None = None,
        progress_to: dt.datetime | int | None = None,
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
        self._progress_key = progress_key  # a run id: workers in this process count into core.progress.LIVE
        self._progress_to = progress_to  # the window's largest cursor, when the source told it (lo open)

    def progress_range(self) -> tuple[int, int] | None:
        """The cursor range the read's ``window_done`` counter covers, or None when its start is unknown."""
        lo = self._window.lo_micros
        if lo <= MIN_MICROS:
            if self._split_from is None:
                return None
            lo = self._split_from if isinstance(self._split_from, int) else to_micros(self._split_from)
        hi = self._window.hi_micros
        if self._progress_to is not None:
            # The records end at the largest cursor, often long before hi (a first run up to now over old
            # rows): the share is counted over the records' span, so it grows as they are read.
            top = self._progress_to if isinstance(self._progress_to, int) else to_micros(self._progress_to)
            hi = min(hi, top + 1)
        return (lo, hi) if hi > lo else None

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
        even = self._connector.split_points(lo, hi, self._splits)  # where the records are, if it knows
        if even:
            return tuple(sorted({p for p in even if lo < p < hi}))
        step = (hi - lo) / self._splits
        return tuple(sorted({int(lo + step * i) for i in range(1, self._splits)}))

    def tasks(self) -> list[_ReadTask]:
        """One element per sub-window of the window (one in all when it does not split)."""
        window, splittable = self._window, self._connector.splittable
        progress_lo = (self.progress_range() or (None,))[0]
        bounds = [window.lo_micros, *self.split_points(), window.hi_micros]
        tasks = [_ReadTask(lo, hi, (), window.is_integer, splittable, progress_lo)
                 for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
        return tasks or [_ReadTask(window.lo_micros, window.hi_micros, (), window.is_integer, splittable, progress_lo)]

    def expand(self, pbegin):
        # One element per sub-window: beam.Create reshuffles several elements, so a distributed runner
        # (Flink, Spark) reads the sub-windows on different workers. One element whose restriction is split
        # stays on one worker there (Flink's batch translation does not redistribute initial splits). Each
        # element stays splittable for runners that split dynamically.
        return (
            pbegin
            | "Window" >> beam.Create(self.tasks())
            | "Read window"
            >> beam.ParDo(_ReadWindowFn(self._connector, self._batch_size, self._progress_key))
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


class _RaiseDeadLetterFn(beam.DoFn):
    """Fails the pipeline on the first dead letter (Beam's default: an unreadable record is an error)."""

    def __init__(self, label: str) -> None:
        self._label = label

    def process(self, letter):
        exc = RecordError(
            f"{self._label}: a record could not be read ({letter.get('step')}: {letter.get('error')}); "
            "use .with_exception_handling() to get such records as a second output instead"
        )
        exc._tagged_with_step = True  # Beam re-raises it as it is instead of logging a traceback
        raise exc


def fail_on_dead_letters(dead_letters, label: str):
    """Make ``dead_letters`` fail the pipeline with a clear error naming ``label`` (no silent drops)."""
    return dead_letters | f"Fail on dead letters ({label})" >> beam.ParDo(_RaiseDeadLetterFn(label))


def _bound(value: Any, what: str, problems: list[str]) -> dt.datetime | int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    try:
        return parse_timestamp(value)
    except (TypeError, ValueError) as exc:
        problems.append(f"{what}: {exc} (give an aware datetime, ISO-8601 text with an offset, or an int cursor)")
        return None


def _duration(value: Any, what: str, problems: list[str]) -> dt.timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except (TypeError, ValueError) as exc:
        problems.append(f"{what}: {exc}")
        return None


class ReadFromSource(beam.PTransform):
    """The public read of a connector: the window ``[since, until)`` as records, one element each.

    Subclasses set ``connector_class`` (``ReadFromPostgres``, ``ReadFromMongoDB``, ...). Keyword arguments
    are the connector's options, as in the pipeline YAML, plus:

    - ``since``: the window's lower bound, the ``lastSyncTimestamp`` restriction (an aware datetime,
      ISO-8601 text, or an int for integer cursors; None reads from the start). ``lookback`` is taken
      off it.
    - ``until``: the upper bound; by default the source's clock minus ``safety_lag``, asked once when the
      pipeline is built (on the machine that builds it, never on a worker).
    - ``cursor_field``, ``lookback``, ``safety_lag``: as in the YAML's ``incremental:`` section.
    - ``splits``: sub-windows read in parallel; ``batch_size``: records per batch inside the read.
    - ``batched=True``: emit lists of records (the fast path ``osmosis run`` uses) instead of one per element.
    - ``state``: the connector state a previous read left (``end_state()``), e.g. ETags and seen ids.

    Arguments are checked here, all problems at once (a :class:`~osmosis_beam.core.errors.ConfigError`).
    After the pipeline is built, ``window`` is the window that was read and ``end_state()`` the state to
    keep for the next read. A record that cannot be read fails the pipeline; ``with_exception_handling()``
    returns ``(records, dead_letters)`` instead, each dead letter a dict ``{step, error, record}``.

    Example::

        read = ReadFromPostgres(dsn=DSN, table="orders", cursor_field="updated_at", since=last_hi)
        rows = p | read
        ...
        p.run().wait_until_finish(); store(read.window.hi)
    """

    connector_class: type[BaseConnector] = BaseConnector

    def __init__(
        self,
        *,
        since: Any = None,
        until: Any = None,
        cursor_field: str | None = None,
        lookback: Any = None,
        safety_lag: Any = None,
        splits: int = 4,
        batch_size: int = 2000,
        batched: bool = False,
        state: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        problems: list[str] = []
        since_value = _bound(since, f"{name}.since", problems)
        until_value = _bound(until, f"{name}.until", problems)
        incremental = IncrementalSpec(
            cursor_field=cursor_field,
            lookback=_duration(lookback, f"{name}.lookback", problems) or dt.timedelta(0),
            safety_lag=_duration(safety_lag, f"{name}.safety_lag", problems),
        )
        for what, value in (("splits", splits), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}.{what}: must be a whole number of at least 1, got {value!r}")
        if "batch_size" in {o.name for o in self.connector_class.options}:
            options.setdefault("batch_size", batch_size)
        connector = None
        try:
            connector = self.connector_class(options, incremental=incremental)
        except ConfigError as exc:
            problems.extend(exc.problems or [exc.message])
        if problems:
            raise ConfigError(problems=problems, source=name)
        self.connector: BaseConnector = connector
        self._since, self._until = since_value, until_value
        self._splits, self._batch_size, self._batched = splits, batch_size, batched
        self._state = dict(state or {})
        self._handle_errors = False
        self._split_from: Any = None
        self._progress_to: Any = None
        self._progress_key: str | None = None
        self.window: SyncWindow | None = None

    @classmethod
    def of_window(
        cls, connector: BaseConnector, window: SyncWindow, *, splits: int = 4, batch_size: int = 2000,
        batched: bool = True, split_from: Any = None, progress_key: str | None = None, progress_to: Any = None,
    ) -> "ReadFromSource":
        """The read of a connector whose run is already open (``begin_run`` called) and window fixed.

        This is how ``osmosis run`` reads: it opens the window itself, under its lease, from the watermark.
        """
        read = cls.__new__(cls)
        beam.PTransform.__init__(read)
        read.connector = connector
        read._since, read._until = window.lo, window.hi
        read._splits, read._batch_size, read._batched = splits, batch_size, batched
        read._state, read._handle_errors, read._split_from = {}, False, split_from
        read._progress_key = progress_key
        read._progress_to = progress_to
        read.window = window
        return read

    def with_exception_handling(self) -> "ReadFromSource":
        """A copy whose output is ``(records, dead_letters)`` instead of failing on an unreadable record."""
        other = copy.copy(self)
        other._handle_errors = True
        return other

    def progress_range(self) -> tuple[int, int] | None:
        """The cursor range of the window the read's ``window_done`` counter covers (after the build)."""
        if self.window is None:
            return None
        return ReadWindow(self.connector, self.window, split_from=self._split_from,
                          progress_to=self._progress_to).progress_range()

    def end_state(self) -> dict[str, Any] | None:
        """The connector state to keep after the pipeline succeeded (pass it as ``state=`` next time)."""
        if self.window is None:
            raise RuntimeError(f"{type(self).__name__}.end_state(): the pipeline has not been built yet")
        return self.connector.end_state(self.window)

    def _open(self) -> SyncWindow:
        """Fix the window on the machine that builds the pipeline: connect, begin the run, ask the clock."""
        if self.window is not None:
            return self.window
        connector = self.connector
        connector.connect()
        try:
            connector.begin_run(self._state)
            if connector.unchanged():  # e.g. HTTP 304: nothing to read since the stored state
                lo = self._since if self._since is not None else connector.source_clock()
                window = SyncWindow(lo, lo)
            elif self._until is not None:
                lo = self._since
                if lo is not None and not isinstance(lo, int):
                    lo = lo - connector.incremental.lookback
                window = SyncWindow(lo, self._until)
            else:
                window = compute_window(
                    connector.incremental, self._since, connector.source_clock(),
                    default_safety_lag=connector.default_safety_lag, what=type(self).__name__,
                )
            if window.lo is None and connector.splittable and not window.is_empty:
                self._split_from = connector.lower_bound(window)
                self._progress_to = connector.upper_bound(window) if self._split_from is not None else None
        finally:
            connector.disconnect()  # workers connect on their own; what begin_run fetched stays
        self.window = window
        return window

    def expand(self, pbegin):
        window = self._open()
        read = pbegin | "Read window" >> ReadWindow(
            self.connector, window, splits=self._splits, batch_size=self._batch_size, split_from=self._split_from,
            progress_key=self._progress_key, progress_to=self._progress_to,
        )
        records, dead = read.records, read[DEAD_LETTER_TAG]
        if not self._batched:
            records = records | "One record per element" >> beam.FlatMap(iter).with_output_types(dict)
        if self._handle_errors:
            return records, dead
        fail_on_dead_letters(dead, self.label)
        return records

    def display_data(self) -> dict[str, Any]:
        shown = {k: str(v) for k, v in self.connector.display().items()}
        return {**shown, "connector": self.connector.type_name, "window": str(self.window) if self.window else "unset"}

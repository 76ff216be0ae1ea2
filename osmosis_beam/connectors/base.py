"""BaseConnector: what a connector author writes (Beam-free; the splittable read is in ``read.py``).

A connector author subclasses :class:`BaseConnector`, declares ``type_name`` and ``options``, and
implements two methods: ``source_clock()`` (the source's "now") and ``read_window(lo, hi)`` (records
whose cursor is in ``[lo, hi)``, in cursor order). The Beam plumbing (restriction, tracker, splitting,
batching, metrics) lives in :mod:`osmosis_beam.connectors.read`::

    import apache_beam as beam
    from osmosis_beam.connectors.read import ReadWindow
    from osmosis_beam.types import SyncWindow

    with beam.Pipeline() as p:
        batches = p | "Read" >> ReadWindow(connector, SyncWindow(lo, hi), splits=4)

This module does not import Beam, so commands that only talk to the source (``osmosis test``,
``osmosis schema``, a run whose window is empty) start fast.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any, ClassVar, Iterable, Mapping

from osmosis_beam.config import IncrementalSpec, Option
from osmosis_beam.exceptions import FatalConnectorError
from osmosis_beam.secrets import Secret
from osmosis_beam.timefmt import UTC, to_micros, utcnow
from osmosis_beam.types import DataConnector, Record, SyncWindow

__all__ = ["BaseConnector", "DeadLetter", "DEAD_LETTER_TAG", "METRICS_NAMESPACE", "cursor_micros"]

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
        from osmosis_beam.config import add_check_problems, validate_options
        from osmosis_beam.exceptions import ConfigError

        merged = dict(options or {})
        merged.update(kwargs)
        problems: list[str] = []
        self.config = validate_options(merged, self.options, "source", problems)
        add_check_problems(type(self), self.config, "source", problems)
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

    #: Set by connectors that implement :meth:`read_window_batches` natively.
    reads_batches: ClassVar[bool] = False

    def read_window_batches(self, lo, hi, batch_size: int) -> Iterable[list[Record] | DeadLetter]:
        """Optional fast path: yield lists of records (and DeadLetter objects on their own).

        A connector that sets ``reads_batches = True`` implements this instead of paying per-record
        overhead in the read loop. It promises what a database ``WHERE cursor >= lo AND cursor < hi
        ORDER BY cursor`` gives: every record has a cursor value in the window and records come in
        cursor order (checked at batch edges only).
        """
        raise NotImplementedError

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


# The Beam plumbing moved to read.py; these names stay importable from here.
_READ_NAMES = ("ReadWindow", "_ReadTask", "_ReadWindowFn", "_WindowRestrictionProvider", "_NoSplitTracker", "_WholeRange")


def __getattr__(name: str):
    if name in _READ_NAMES:
        from osmosis_beam.connectors import read

        return getattr(read, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

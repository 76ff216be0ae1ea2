"""The two plug-in bases: :class:`BaseConnector` (a source) and :class:`BaseSink` (a sink). Beam-free.

A connector author subclasses :class:`BaseConnector`, declares ``type_name`` and ``options``, and
implements two methods: ``source_clock()`` (the source's "now") and ``read_window(lo, hi)`` (records
whose cursor is in ``[lo, hi)``, in cursor order). The Beam plumbing (restriction, tracker, splitting,
batching, metrics) lives in :mod:`osmosis_beam.io.read`, so an author never touches a tracker::

    from osmosis_beam.io.base import BaseConnector
    from osmosis_beam.core.options import Option

    class Numbers(BaseConnector):
        type_name = "numbers"
        options = (Option("count", "int", default=10),)
        def read_window(self, lo, hi):
            ...

A sink author subclasses :class:`BaseSink` and implements ``write(run_id)`` (a PTransform over record
batches); every hook the sync runner calls (``use_schema``, ``prepare``, ``publish``, ``abort``,
``is_published``, ``wants_schema``, ``writes_files``) is declared here with its default.

This module does not import Beam, so commands that only talk to the source (``osmosis test``,
``osmosis schema``, a run whose window is empty) start fast.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.models import DataConnector
from osmosis_beam.core.options import (
    Option,
    add_check_problems,
    display_options,
    validate_options,
)
from osmosis_beam.core.records import DeadLetter, Record
from osmosis_beam.core.timefmt import utcnow
from osmosis_beam.core.window import IncrementalSpec, SyncWindow, cursor_micros

if TYPE_CHECKING:  # Beam is imported only where a job is built
    import apache_beam as beam

__all__ = ["BaseConnector", "BaseSink"]

log = logging.getLogger(__name__)


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

    def upper_bound(self, window: SyncWindow) -> dt.datetime | int | None:
        """Optional: the largest cursor in ``window``, asked with :meth:`lower_bound` when ``lo`` is open.

        Used only for the live progress: the share of the window read is counted over the records' own
        span, not up to ``hi`` (a first run over old rows would otherwise show 0% until its end).
        """
        return None

    def split_points(self, lo: int, hi: int, splits: int) -> tuple[int, ...] | None:
        """Optional: up to ``splits - 1`` cursor positions in ``(lo, hi)`` that cut the records into even parts.

        Positions are epoch microseconds (or the integer cursor). None (the default) cuts the window into
        equal spans of time instead. Only where the read is cut changes; every record is still read once.
        """
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

    #: The pre-encoded forms the connector can read instead of Python values (the zero-decode path).
    encodings: ClassVar[tuple[str, ...]] = ()

    def use_encoding(self, encoding: str | None, fields: tuple = ()) -> str | None:
        """Launcher side: read ``encoding`` (one of ``encodings``) instead of records, or None to read typed.

        ``fields`` are the pipeline's steps as ``(step name, config, label, on_error)``, which the encoded
        records must already reflect: ``select``/``drop``/``rename``, and ``filter``/``cast`` that the source
        does exactly. Returns why it cannot, naming the step (the run then reads typed), or None. A connector
        that accepts yields :class:`~osmosis_beam.core.records.EncodedBatch` objects from
        :meth:`read_window_batches`.
        """
        if encoding is None:
            return None
        return f"the {self.type_name} source reads Python values only"

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
        return display_options(self.config)


class BaseSink:
    """The base of every sink. Set ``type_name`` and ``options``; implement ``write``."""

    type_name: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    #: True when the sink wants the source's schema (``get_schema()``) before ``prepare`` (see ``use_schema``).
    wants_schema: ClassVar[bool] = False
    #: True when workers write files on their own disks that the launcher then publishes (refused on Dataflow).
    writes_files: ClassVar[bool] = False
    #: The pre-encoded forms the sink stores as they are (see ``BaseConnector.encodings``), best first.
    encodings: ClassVar[tuple[str, ...]] = ()
    #: The encoding the run chose (``use_encoding``), or None for records.
    encoding: str | None = None
    #: Why this sink takes records only, though its type has ``encodings`` (e.g. a pinned schema), for ``-v``.
    typed_only: str | None = None

    def use_encoding(self, encoding: str | None) -> None:
        """Launcher side, before ``write``: the batches will be ``encoding`` (one of ``encodings``), or records."""
        self.encoding = encoding

    def __init__(self, options: Mapping[str, Any] | None = None, *, pipeline_id: str = "", **kwargs: Any) -> None:
        merged = dict(options or {})
        merged.update(kwargs)
        problems: list[str] = []
        self.config = validate_options(merged, self.options, "sink", problems)
        add_check_problems(type(self), self.config, "sink", problems)
        if problems:
            raise ConfigError(problems=problems)
        self.pipeline_id = pipeline_id

    @classmethod
    def placement_problems(
        cls, values: Mapping[str, Any], *, home: Any = None, pipeline_file: Any = None
    ) -> list[str]:
        """Problems with where the sink writes, given the osmosis home and the pipeline file (file sinks
        refuse a path that is, or contains, either); checked by ``validate`` and before every run."""
        return []

    def clean_stale_staging(self) -> int:
        """Launcher side, holding the pipeline's lease: remove staging that dead or failed runs of this
        pipeline left behind (never another pipeline's). Returns how many were removed."""
        return 0

    def use_schema(self, schema: dict[str, Any] | None) -> None:
        """Launcher side, before ``prepare``: the source's schema (``get_schema()``), when it has one."""

    def prepare(self, run_id: str, *, full_refresh: bool = False) -> None:
        """Launcher side, before the job: create staging areas, tables, ...

        ``full_refresh`` says the run rereads the source from the start and should replace the output.
        """

    def write(self, run_id: str) -> beam.PTransform:
        """The PTransform that stores a PCollection of record batches."""
        raise NotImplementedError

    def publish(self, run_id: str, *, window_hi: dt.datetime, full_refresh: bool = False) -> dict[str, Any]:
        """Launcher side, after DONE: make the run's output visible, atomically. Returns details for the log."""
        return {}

    def abort(self, run_id: str) -> None:
        """Launcher side, on failure: remove whatever the run staged."""

    def is_published(self, run_id: str) -> bool:
        """Whether ``publish`` completed for ``run_id`` (for repairing a crash before the commit)."""
        return False

    def display(self) -> dict[str, Any]:
        """The sink's options with secrets shown as ``***`` (for logs and display data)."""
        return display_options(self.config)

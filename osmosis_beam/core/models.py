"""The seed's types: connectors, steps, windows, sync jobs and sync runs.

Example::

    from osmosis_beam.core.models import TransformationStep

    class Upper(TransformationStep):
        name = "upper"
        def process(self, records):
            return [{**r, "title": r["title"].upper()} for r in records]

    Upper().process([{"title": "hi"}])          # [{'title': 'HI'}]
"""
from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import uuid
from typing import Any

from osmosis_beam.core.records import Record
from osmosis_beam.core.timefmt import format_timestamp, utcnow
from osmosis_beam.core.window import SyncWindow

__all__ = [
    "new_run_id",
    "DataConnector",
    "TransformationStep",
    "SyncJob",
    "SyncRun",
    "RUN_STATUSES",
]


def new_run_id() -> str:
    """A run id: UTC time to the second and 8 random hex digits (sorts by start time)."""
    return f"{utcnow().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


class DataConnector(abc.ABC):
    """The seed's connector interface.

    ``fetch`` is the simple, in-process way to read; inside a sync run the same
    connector is read through Beam by :class:`osmosis_beam.io.base.BaseConnector`.
    """

    type_name: str = ""

    def connect(self) -> None:
        """Open what the connector needs (a client, a session). Idempotent."""

    def disconnect(self) -> None:
        """Release what ``connect`` opened. Idempotent."""

    @abc.abstractmethod
    def test_connection(self) -> str:
        """Check the source can be read; return a one-line description, or raise ConnectorError."""

    @abc.abstractmethod
    def fetch(self, last_sync_timestamp: dt.datetime | None = None) -> list[Record]:
        """Every record whose cursor is at or after ``last_sync_timestamp`` (all when None)."""

    @abc.abstractmethod
    def get_schema(self) -> dict[str, Any]:
        """The source's fields: ``{"fields": [{"name", "type", "nullable"}...], ...}``."""

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()


class TransformationStep:
    """One step between source and sink: ``process`` maps a batch of records to a batch.

    Records travel in batches; return a new list (records may be dropped or added).
    Raising for a record sends that record to the dead-letter output when the step
    runs record by record (see ``osmosis_beam.steps``).
    """

    name: str = "step"

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name

    def process(self, records: list[Record]) -> list[Record]:
        return list(records)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


@dataclasses.dataclass
class SyncJob:
    """A scheduled pipeline (the seed's SyncJob): what runs, how often, when it last and next runs."""

    pipeline_id: str
    source_id: str
    interval_minutes: float | None = None
    cron: str | None = None
    timezone: str = "UTC"
    last_run: dt.datetime | None = None
    next_run: dt.datetime | None = None
    status: str = "idle"
    consecutive_failures: int = 0
    spec_path: str | None = None

    @property
    def interval_seconds(self) -> float | None:
        return None if self.interval_minutes is None else self.interval_minutes * 60

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["last_run"] = format_timestamp(self.last_run)
        data["next_run"] = format_timestamp(self.next_run)
        return data


RUN_STATUSES = ("running", "succeeded", "failed")


@dataclasses.dataclass
class SyncRun:
    """One row of sync history."""

    run_id: str
    pipeline_id: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    window: SyncWindow | None = None
    records_read: int = 0
    records_written: int = 0
    dead_letter: int = 0
    error: str | None = None
    runner: str | None = None
    full_refresh: bool = False
    note: str | None = None

    def summary(self) -> dict[str, Any]:
        """The JSON summary ``osmosis run`` prints as its last line."""
        return {
            "pipeline": self.pipeline_id,
            "run_id": self.run_id,
            "status": self.status,
            "records_read": self.records_read,
            "records_written": self.records_written,
            "dead_letter": self.dead_letter,
            "window": self.window.to_dict() if self.window else {"lo": None, "hi": None},
        }

    def to_dict(self) -> dict[str, Any]:
        """The summary plus ``started_at``, ``finished_at``, ``error`` (``osmosis history --json``)."""
        data = self.summary()
        data.update(
            started_at=format_timestamp(self.started_at),
            finished_at=format_timestamp(self.finished_at),
            error=self.error,
            note=self.note,
        )
        return data



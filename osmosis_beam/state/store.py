"""The state store interface, shared by the SQLite (default) and PostgreSQL back ends.

The launcher process owns state; Beam workers never touch it.

Example::

    store = open_store(home="/var/lib/osmosis")
    lease = store.acquire_lease("orders", ttl=60)
    if lease:
        wm = store.get_watermark("orders")       # Watermark(value=None or aware datetime, state={...})
"""
from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import os
import socket
import uuid
from pathlib import Path
from typing import Any, Sequence

from osmosis_beam.core.models import SyncJob, SyncRun
from osmosis_beam.core.window import SyncWindow

__all__ = ["StateStore", "Lease", "Watermark", "open_store", "resolve_home", "new_holder_id", "SourceRecord"]


@dataclasses.dataclass(frozen=True)
class Watermark:
    """The committed watermark of a pipeline (``hi`` of its last committed window) and connector state."""

    value: dt.datetime | int | None
    state: dict[str, Any]
    updated_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Lease:
    pipeline_id: str
    holder: str
    acquired_at: dt.datetime
    expires_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class SourceRecord:
    """A persisted source: its id, connector type and config with secrets redacted."""

    id: str
    type: str
    config: dict[str, Any]
    pipeline_path: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


def new_holder_id() -> str:
    """Who holds a lease: ``host:pid:random`` (the pid lets a same-host launcher break a dead holder's lease)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(holder: str) -> bool:
    """True when ``holder`` names a process on this host that no longer exists."""
    try:
        host, pid_text, _ = holder.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # A zombie (exited, not yet reaped) is dead too.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class StateStore(abc.ABC):
    """What every state back end provides. All timestamps are UTC-aware."""

    location: str = ""

    # sources
    @abc.abstractmethod
    def put_source(self, source_id: str, type_name: str, config: dict[str, Any], pipeline_path: str | None) -> None: ...
    @abc.abstractmethod
    def get_source(self, source_id: str) -> SourceRecord | None: ...
    @abc.abstractmethod
    def list_sources(self) -> list[SourceRecord]: ...
    @abc.abstractmethod
    def remove_source(self, source_id: str) -> bool: ...

    # sync jobs
    @abc.abstractmethod
    def put_job(self, job: SyncJob) -> None: ...
    @abc.abstractmethod
    def get_job(self, pipeline_id: str) -> SyncJob | None: ...
    @abc.abstractmethod
    def list_jobs(self) -> list[SyncJob]: ...

    # watermarks
    @abc.abstractmethod
    def get_watermark(self, pipeline_id: str) -> Watermark: ...
    @abc.abstractmethod
    def reset_watermark(self, pipeline_id: str) -> None: ...

    # history
    @abc.abstractmethod
    def start_run(self, run: SyncRun, holder: str) -> None: ...
    @abc.abstractmethod
    def commit_run(self, run: SyncRun, watermark: dt.datetime | None, state: dict[str, Any] | None) -> None:
        """In one transaction: set the watermark (when given) and state, and mark ``run`` succeeded."""
    @abc.abstractmethod
    def set_pending_state(self, run_id: str, state: dict[str, Any] | None, counts: dict[str, int] | None = None) -> None:
        """Save the connector state ``run_id`` will commit, before its output is published, with the run's
        counts (``records_read``, ``records_written``, ``dead_letter``), so a repair records them too."""
    @abc.abstractmethod
    def get_pending_state(self, run_id: str) -> dict[str, Any] | None: ...
    @abc.abstractmethod
    def fail_run(self, run: SyncRun) -> None: ...
    @abc.abstractmethod
    def list_runs(self, pipeline_id: str | None = None, limit: int | None = None) -> list[SyncRun]: ...
    @abc.abstractmethod
    def get_run(self, run_id: str) -> SyncRun | None: ...
    @abc.abstractmethod
    def running_runs(self, pipeline_id: str | None = None) -> list[tuple[SyncRun, str]]:
        """Runs still marked running, with the lease holder that started them."""

    # leases
    @abc.abstractmethod
    def acquire_lease(self, pipeline_id: str, holder: str, ttl: float) -> Lease | None:
        """Take the lease when free, expired or held by a dead process on this host; None when held."""
    @abc.abstractmethod
    def renew_lease(self, pipeline_id: str, holder: str, ttl: float) -> bool: ...
    @abc.abstractmethod
    def release_lease(self, pipeline_id: str, holder: str) -> None: ...
    @abc.abstractmethod
    def get_lease(self, pipeline_id: str) -> Lease | None: ...

    # -- operations: state commands, the dashboard, metrics (osmosis_beam.state.commands, osmosis_beam.ui) --
    @abc.abstractmethod
    def change_watermark(
        self, pipeline_id: str, value: dt.datetime | int | None, state: dict[str, Any] | None, record: SyncRun, who: str
    ) -> None:
        """In one transaction: set the watermark to ``value`` with connector ``state`` (``value`` None and
        ``state`` None: remove it, so the next run is a full read) and add ``record`` (finished) to the history,
        with ``who`` in its holder column."""
    @abc.abstractmethod
    def query_runs(
        self,
        pipeline_id: str | None = None,
        status: str | Sequence[str] | None = None,
        since: dt.datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SyncRun]:
        """Runs newest first, filtered by pipeline, status (one or several) and start time; one indexed query."""
    @abc.abstractmethod
    def count_runs(
        self, pipeline_id: str | None = None, status: str | Sequence[str] | None = None, since: dt.datetime | None = None
    ) -> int: ...
    @abc.abstractmethod
    def set_paused(self, pipeline_id: str, paused: bool) -> bool:
        """Pause or resume a sync job (the launcher starts no run of a paused job); False when there is no such job."""
    @abc.abstractmethod
    def paused_pipelines(self) -> set[str]: ...

    def close(self) -> None:
        """Release connections."""

    def default_home(self) -> Path:
        """The home (dead letters, ...) for runs on this store when none is given: ``$OSMOSIS_HOME`` or ``./.osmosis``."""
        return resolve_home(None)


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """``--home DIR``, else ``$OSMOSIS_HOME``, else ``./.osmosis``."""
    chosen = home or os.environ.get("OSMOSIS_HOME") or ".osmosis"
    return Path(chosen).expanduser().resolve()


def status_list(status: str | Sequence[str] | None) -> list[str]:
    """``status`` of :meth:`StateStore.query_runs` as a list (empty: any status)."""
    if status is None:
        return []
    return [status] if isinstance(status, str) else list(status)


def window_of(lo: str | None, hi: str | None) -> SyncWindow | None:
    from osmosis_beam.core.window import parse_bound

    if hi is None:
        return None
    return SyncWindow(parse_bound(lo), parse_bound(hi))

"""State commands: look at a pipeline's watermark, rewind or advance it, or clear it for a full read.

The library side of ``osmosis state show | set | clear``. A change takes the pipeline's lease (so it never
races a run's commit) and is written in the same transaction as a history row with status ``state``,
saying who (``user@host``) changed what and when.

Example::

    from osmosis_beam.state.factory import open_store
    from osmosis_beam.state.commands import describe_state, set_watermark, clear_state
    store = open_store(home=".osmosis")
    describe_state(store, "tech_news")["watermark"]          # '2024-06-01T00:00:00+00:00'
    set_watermark(store, "tech_news", "2024-05-01T00:00:00Z")  # the next run re-reads May
    clear_state(store, "tech_news")                           # the next run reads from incremental.start
"""
from __future__ import annotations

import datetime as dt
import getpass
import socket
import uuid
from typing import Any

from osmosis_beam.core.errors import ConfigError, LeaseHeldError
from osmosis_beam.core.models import SyncRun
from osmosis_beam.core.timefmt import (
    format_timestamp,
    parse_duration,
    parse_timestamp,
    utcnow,
)
from osmosis_beam.core.window import SyncWindow, format_bound
from osmosis_beam.state.store import StateStore, holder_is_dead, new_holder_id

__all__ = [
    "STATE_STATUS", "RUN_STATUSES_REAL", "who", "known_pipelines", "describe_state", "parse_hi", "set_watermark",
    "clear_state", "latest_run", "parse_since", "freshness_seconds",
]

STATE_STATUS = "state"  # the history status of a manual state change
RUN_STATUSES_REAL = ("running", "succeeded", "failed")  # statuses of real runs (not state changes)
_LEASE_TTL = 30.0


def who() -> str:
    """``user@host`` of this process, for the history."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in the environment or passwd
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def known_pipelines(store: StateStore) -> list[str]:
    """Pipelines the store knows: those with a sync job or a source."""
    return sorted({j.pipeline_id for j in store.list_jobs()} | {s.id for s in store.list_sources()})


def _check_known(store: StateStore, pipeline_id: str) -> None:
    known = known_pipelines(store)
    if pipeline_id in known or store.get_watermark(pipeline_id).value is not None or store.count_runs(pipeline_id):
        return
    raise ConfigError(f"unknown pipeline {pipeline_id!r}; known: {', '.join(known) or 'none'}")


def latest_run(store: StateStore, pipeline_id: str, status: str | tuple[str, ...] = RUN_STATUSES_REAL) -> SyncRun | None:
    runs = store.query_runs(pipeline_id, status=status, limit=1)
    return runs[0] if runs else None


def freshness_seconds(value: Any, now: dt.datetime | None = None) -> float | None:
    """Now minus the committed watermark, in seconds (None without a time watermark)."""
    if not isinstance(value, dt.datetime):
        return None
    return ((now or utcnow()) - value).total_seconds()


def describe_state(store: StateStore, pipeline_id: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """The watermark, the window that committed it, the connector state, pending states and the lease."""
    _check_known(store, pipeline_id)
    now = now or utcnow()
    wm = store.get_watermark(pipeline_id)
    committed = latest_run(store, pipeline_id, ("succeeded", STATE_STATUS))
    pending = []
    for run, holder in store.running_runs(pipeline_id):
        pending.append({
            "run_id": run.run_id, "holder": holder, "started_at": format_timestamp(run.started_at),
            "window": run.window.to_dict() if run.window else None, "state": store.get_pending_state(run.run_id),
        })
    lease = store.get_lease(pipeline_id)
    lease_info = None
    if lease is not None:
        lease_info = {
            "holder": lease.holder, "acquired_at": format_timestamp(lease.acquired_at),
            "expires_at": format_timestamp(lease.expires_at),
            "live": lease.expires_at > now and not holder_is_dead(lease.holder),
        }
    return {
        "pipeline": pipeline_id,
        "watermark": format_bound(wm.value),
        "updated_at": format_timestamp(wm.updated_at),
        "freshness_seconds": freshness_seconds(wm.value, now),
        "window": committed.window.to_dict() if committed and committed.window else None,
        "committed_by": None if committed is None else {
            "run_id": committed.run_id, "status": committed.status, "note": committed.note,
            "finished_at": format_timestamp(committed.finished_at),
        },
        "state": wm.state,
        "pending": pending,
        "lease": lease_info,
    }


def parse_hi(text: str, current: Any = None) -> dt.datetime | int:
    """``--hi``: an ISO-8601 time with an offset (``Z`` allowed), or an integer for integer cursors."""
    raw = str(text).strip()
    if raw.lstrip("-").isdigit():
        value: dt.datetime | int = int(raw)
    else:
        try:
            value = parse_timestamp(raw)
        except ValueError as exc:
            raise ConfigError(f"--hi {raw!r}: {exc} (write e.g. 2024-06-01T00:00:00Z)") from None
    if current is not None and isinstance(current, int) != isinstance(value, int):
        kind = "an integer" if isinstance(current, int) else "a timestamp"
        raise ConfigError(f"--hi {raw!r}: the pipeline's watermark is {kind} ({format_bound(current)}); give {kind}")
    return value


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``--since``: a duration back from now (``2h``, ``7d``) or an ISO-8601 time."""
    try:
        return (now or utcnow()) - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_timestamp(text)
    except ValueError:
        raise ConfigError(f"--since {text!r}: give a duration (30m, 2h, 7d) or a time (2024-06-01T00:00:00Z)") from None


def _change(store: StateStore, pipeline_id: str, value, state, note: str, by: str | None) -> SyncRun:
    holder = new_holder_id()
    if store.acquire_lease(pipeline_id, holder, _LEASE_TTL) is None:
        lease = store.get_lease(pipeline_id)
        held = f" ({lease.holder} until {format_timestamp(lease.expires_at)})" if lease else ""
        raise LeaseHeldError(f"pipeline {pipeline_id}: a run holds its lease{held}; try again when it has finished")
    try:
        now = utcnow()
        by = by or who()
        record = SyncRun(
            run_id=f"{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}", pipeline_id=pipeline_id,
            status=STATE_STATUS, started_at=now, finished_at=now,
            window=SyncWindow(None, value) if value is not None else None,
            runner="osmosis state", note=note.format(by=by),
        )
        store.change_watermark(pipeline_id, value, state, record, by)
        return record
    finally:
        store.release_lease(pipeline_id, holder)


def set_watermark(store: StateStore, pipeline_id: str, hi: str | dt.datetime | int, by: str | None = None) -> SyncRun:
    """Set the watermark to ``hi`` (the connector state is kept); returns the history row of the change."""
    _check_known(store, pipeline_id)
    current = store.get_watermark(pipeline_id)
    value = hi if isinstance(hi, (dt.datetime, int)) else parse_hi(hi, current.value)
    old = format_bound(current.value) if current.value is not None else "none"
    return _change(store, pipeline_id, value, current.state, f"watermark set from {old} to {format_bound(value)} by {{by}}", by)


def clear_state(store: StateStore, pipeline_id: str, by: str | None = None) -> SyncRun:
    """Remove the watermark and connector state: the next run reads from ``incremental.start``."""
    _check_known(store, pipeline_id)
    current = store.get_watermark(pipeline_id)
    old = format_bound(current.value) if current.value is not None else "none"
    return _change(store, pipeline_id, None, None, f"state cleared by {{by}} (watermark was {old}); the next run is a full read", by)

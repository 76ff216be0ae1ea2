"""What the dashboard shows, read from the state store (and the pipeline files, without their secrets).

Pipeline files are read as raw YAML (``${ENV}`` references stay references) and every config shown goes
through :func:`osmosis_beam.state.sources.redact_config`; errors in the history were redacted when stored.

Example::

    from osmosis_beam.ui.data import Dashboard
    board = Dashboard(store, home)
    board.pipelines()[0]["freshness_seconds"]
    board.run("20240601T000000-abcd1234")["dead_letters"][:3]
"""
from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

from osmosis_beam.config import load_yaml
from osmosis_beam.core.errors import ConfigError, LeaseHeldError, OsmosisError
from osmosis_beam.core.models import SyncRun
from osmosis_beam.core.secrets import redact_text
from osmosis_beam.core.timefmt import format_timestamp, utcnow
from osmosis_beam.core.window import format_bound
from osmosis_beam.scheduler.launcher import describe_jobs
from osmosis_beam.state.commands import (
    RUN_STATUSES_REAL,
    STATE_STATUS,
    freshness_seconds,
)
from osmosis_beam.state.sources import redact_config
from osmosis_beam.state.store import StateStore, holder_is_dead

__all__ = ["Dashboard", "STATUSES", "PAGE_SIZE"]

STATUSES = (*RUN_STATUSES_REAL, STATE_STATUS)
PAGE_SIZE = 50
DEAD_LETTERS_SHOWN = 20


def _raw_yaml(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        data = load_yaml(Path(path).read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, ConfigError):
        return {}
    return data if isinstance(data, dict) else {}


def _run_view(run: SyncRun) -> dict[str, Any]:
    seconds = None
    if run.finished_at and run.started_at and run.status != STATE_STATUS:
        seconds = (run.finished_at - run.started_at).total_seconds()
    return {
        "run_id": run.run_id, "pipeline": run.pipeline_id, "status": run.status,
        "started_at": run.started_at, "finished_at": run.finished_at, "duration_seconds": seconds,
        "window_lo": format_bound(run.window.lo) if run.window else None,
        "window_hi": format_bound(run.window.hi) if run.window else None,
        "records_read": run.records_read, "records_written": run.records_written, "dead_letter": run.dead_letter,
        "error": redact_text(run.error) if run.error else None, "note": run.note, "runner": run.runner,
        "full_refresh": run.full_refresh,
    }


class Dashboard:
    """The dashboard's reads and actions over one state store."""

    def __init__(self, store: StateStore, home: str | Path) -> None:
        self.store = store
        self.home = Path(home)
        self._actions: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self.messages: dict[str, str] = {}  # pipeline -> the outcome of its last "run now"

    # -- pages ----------------------------------------------------------------------------------
    def pipelines(self, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        now = now or utcnow()
        out = []
        for job in describe_jobs(self.store, now):
            pid = job["pipeline"]
            source = self.store.get_source(pid)
            raw = _raw_yaml(job["spec_path"])
            sink = redact_config(raw.get("sink") or {}) if isinstance(raw.get("sink"), dict) else {}
            wm = self.store.get_watermark(pid).value
            out.append({
                **job,
                "source_type": source.type if source else (raw.get("source") or {}).get("type", "-"),
                "source_config": source.config if source else {},
                "sink_type": sink.get("type", "-"),
                "sink_config": sink,
                "watermark": format_bound(wm),
                "freshness_seconds": freshness_seconds(wm, now),
            })
        return out

    def pipeline(self, pipeline_id: str) -> dict[str, Any]:
        for item in self.pipelines():
            if item["pipeline"] == pipeline_id:
                lease = self.store.get_lease(pipeline_id)
                live = lease is not None and lease.expires_at > utcnow() and not holder_is_dead(lease.holder)
                item["lease"] = {"holder": lease.holder, "expires_at": format_timestamp(lease.expires_at)} if live else None
                runs = list(reversed(self.store.query_runs(pipeline_id, status=("succeeded", "failed"), limit=100)))
                item["plot_runs"] = [_run_view(r) for r in runs if r.finished_at]
                item["recent"] = [_run_view(r) for r in self.store.query_runs(pipeline_id, limit=10)]
                item["message"] = self.messages.get(pipeline_id)
                return item
        raise ConfigError(f"unknown pipeline {pipeline_id!r}")

    def runs(self, pipeline_id: str | None, status: str | None, page: int) -> dict[str, Any]:
        page = max(page, 1)
        status = status if status in STATUSES else None
        total = self.store.count_runs(pipeline_id or None, status=status)
        runs = self.store.query_runs(pipeline_id or None, status=status, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        return {
            "runs": [_run_view(r) for r in runs], "total": total, "page": page,
            "pages": max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1), "pipeline": pipeline_id or "", "status": status or "",
        }

    def run(self, run_id: str) -> dict[str, Any]:
        run = self.store.get_run(run_id)
        if run is None:
            raise ConfigError(f"unknown run {run_id!r}")
        view = _run_view(run)
        view["dead_letters"] = self.dead_letters(run)
        return view

    def dead_letter_root(self, pipeline_id: str) -> Path:
        job = self.store.get_job(pipeline_id)
        raw = _raw_yaml(job.spec_path if job else None)
        configured = raw.get("dead_letter")
        if isinstance(configured, dict):  # dead_letter: {path, max_ratio, max_count}
            configured = configured.get("path")
        if isinstance(configured, str) and "${" not in configured and job and job.spec_path:
            path = Path(configured).expanduser()
            return path if path.is_absolute() else Path(job.spec_path).parent / path
        return self.home / "dead_letter" / pipeline_id

    def dead_letters(self, run: SyncRun, limit: int = DEAD_LETTERS_SHOWN) -> list[dict[str, Any]]:
        """The first dead letters of ``run``: the published ``<hi>-<run id>/part-*.jsonl`` files."""
        out: list[dict[str, Any]] = []
        root = self.dead_letter_root(run.pipeline_id)
        for folder in sorted(root.glob(f"*-{run.run_id}")):
            for part in sorted(folder.glob("part-*.jsonl")):
                with open(part, encoding="utf-8") as fh:
                    for line in fh:
                        if not line.strip():
                            continue
                        try:
                            item = json.loads(line)
                        except ValueError:
                            item = {"error": "unreadable line", "record": line[:500]}
                        out.append({
                            "step": item.get("step", "-"), "error": redact_text(str(item.get("error", ""))),
                            "record": json.dumps(item.get("record"), ensure_ascii=False, sort_keys=True, default=str),
                        })
                        if len(out) >= limit:
                            return out
        return out

    # -- actions ------------------------------------------------------------------------------------
    def set_paused(self, pipeline_id: str, paused: bool) -> str:
        if not self.store.set_paused(pipeline_id, paused):
            raise ConfigError(f"unknown pipeline {pipeline_id!r}")
        return f"{pipeline_id} {'paused: the launcher starts no run of it until it is resumed' if paused else 'resumed'}"

    def run_now(self, pipeline_id: str) -> str:
        """Start one run in a background thread, under the pipeline's lease like the launcher's runs."""
        from osmosis_beam.config import load_pipeline

        job = self.store.get_job(pipeline_id)
        if job is None or not job.spec_path:
            raise ConfigError(f"pipeline {pipeline_id}: no pipeline file is known for it")
        lease = self.store.get_lease(pipeline_id)
        if lease is not None and lease.expires_at > utcnow() and not holder_is_dead(lease.holder):
            raise LeaseHeldError(
                f"{pipeline_id} is running now ({lease.holder} holds its lease until "
                f"{format_timestamp(lease.expires_at)}); try again when that run has finished"
            )
        with self._lock:
            running = self._actions.get(pipeline_id)
            if running is not None and running.is_alive():
                raise LeaseHeldError(f"{pipeline_id}: a run started from the dashboard is still going")
            spec = load_pipeline(job.spec_path)
            secrets = spec.secret_values()

            def work() -> None:
                from osmosis_beam.sync.runner import SyncRunner

                try:
                    run = SyncRunner(spec, self.store, home=self.home).run()
                    self.messages[pipeline_id] = f"run {run.run_id} {run.status}: read {run.records_read}, written {run.records_written}"
                except LeaseHeldError as exc:
                    self.messages[pipeline_id] = redact_text(exc.message, secrets)
                except OsmosisError as exc:
                    self.messages[pipeline_id] = "run failed: " + redact_text(exc.message, secrets)
                except Exception as exc:  # noqa: BLE001 - shown on the page, never a traceback
                    self.messages[pipeline_id] = "run failed: " + redact_text(f"{type(exc).__name__}: {exc}", secrets)

            thread = threading.Thread(target=work, name=f"ui-run-{pipeline_id}", daemon=True)
            self._actions[pipeline_id] = thread
            self.messages[pipeline_id] = "run started"
            thread.start()
        return f"{pipeline_id}: run started"

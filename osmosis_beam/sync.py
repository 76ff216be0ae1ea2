"""SyncRunner: one sync run, exactly as DESIGN.md's seven steps.

1. take the pipeline's lease (skip when another process holds it);
2. read the watermark W, ask the source for its clock; window = [W - lookback, clock - safety_lag);
3. record a ``running`` row in the sync history;
4. build the Beam pipeline (read -> steps -> sink, dead letters aside) and run it;
5. wait for the runner to report DONE;
6. publish the staged output, then in one state transaction set watermark = hi and mark the run
   succeeded with the counts from Beam metrics;
7. on any failure leave the watermark, mark the run failed with a redacted error, remove staged output.

Runs a previous process left ``running`` are repaired at the next start: committed when their output
was published, else marked failed (abandoned).

Example::

    from osmosis_beam.config import load_pipeline
    from osmosis_beam.state import open_store
    from osmosis_beam.sync import SyncRunner
    run = SyncRunner(load_pipeline("pipelines/tech_news.yaml"), open_store()).run()
    run.summary()      # {"pipeline": "tech_news", "status": "succeeded", "records_read": 12, ...}
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.runner import PipelineState

from osmosis_beam.config import PipelineSpec
from osmosis_beam.connectors.base import DEAD_LETTER_TAG, METRICS_NAMESPACE, BaseConnector, ReadWindow
from osmosis_beam.exceptions import ConfigError, LeaseHeldError, OsmosisError, RunError
from osmosis_beam.pipeline.pipeline import Pipeline, build_step
from osmosis_beam.runners import make_pipeline
from osmosis_beam.secrets import redact_text
from osmosis_beam.sinks.base import BaseSink
from osmosis_beam.sinks.jsonl import JSONLSink, WriteJSONL
from osmosis_beam.sources import DataSourceManager
from osmosis_beam.state.store import StateStore, new_holder_id
from osmosis_beam.timefmt import format_timestamp, utcnow
from osmosis_beam.types import SyncJob, SyncRun, SyncWindow

__all__ = ["SyncRunner", "run_pipeline", "compute_window"]

log = logging.getLogger(__name__)
DEFAULT_LEASE_TTL = 60.0


def compute_window(
    spec: PipelineSpec,
    connector: BaseConnector,
    watermark: dt.datetime | int | None,
    clock: dt.datetime | int,
) -> SyncWindow:
    """The window ``[lo, hi)`` for this run (pure: the clock is an argument).

    ``hi = clock - safety_lag`` (capped at ``lo + max_window``), ``lo = watermark - lookback``, or
    ``incremental.start`` on the first run. ``hi`` never falls below the watermark.
    """
    inc = spec.incremental
    if isinstance(clock, int):
        if watermark is not None and not isinstance(watermark, int):
            raise ConfigError(
                f"pipeline {spec.id}: the stored watermark is a timestamp but the cursor is an integer; "
                "rerun with --full-refresh"
            )
        lo = watermark
        hi = max(clock, lo) if lo is not None else clock
        return SyncWindow(lo, hi)
    if watermark is not None and isinstance(watermark, int):
        raise ConfigError(
            f"pipeline {spec.id}: the stored watermark is an integer but the cursor is a timestamp; "
            "rerun with --full-refresh"
        )
    if clock.tzinfo is None:
        raise RunError(f"connector {connector.type_name} returned a naive clock; it must be UTC-aware")
    lag = inc.safety_lag if inc.safety_lag is not None else connector.default_safety_lag
    hi = clock - lag
    if watermark is not None:
        lo = watermark - inc.lookback
        hi = max(hi, watermark)
    else:
        lo = inc.start
    if inc.max_window is not None and lo is not None:
        hi = min(hi, max(lo + inc.max_window, watermark or lo))
    if lo is not None and hi < lo:
        hi = lo
    return SyncWindow(lo, hi)


class _Heartbeat(threading.Thread):
    """Renews the lease while the run is in progress."""

    def __init__(self, store: StateStore, pipeline_id: str, holder: str, ttl: float) -> None:
        super().__init__(name=f"lease-{pipeline_id}", daemon=True)
        self._store, self._pid, self._holder, self._ttl = store, pipeline_id, holder, ttl
        self._stop = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            try:
                if not self._store.renew_lease(self._pid, self._holder, self._ttl):
                    self.lost = True
                    log.error("pipeline %s: lost its lease to another process", self._pid)
                    return
            except OsmosisError as exc:
                log.warning("pipeline %s: could not renew the lease: %s", self._pid, exc)

    def stop(self) -> None:
        self._stop.set()


class SyncRunner:
    """Runs one sync of ``spec`` against ``store``. ``run()`` returns the finished :class:`SyncRun`."""

    def __init__(
        self,
        spec: PipelineSpec,
        store: StateStore,
        *,
        home: str | Path | None = None,
        runner: str | None = None,
        runner_options: dict[str, Any] | None = None,
        beam_args: Sequence[str] = (),
        full_refresh: bool = False,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        registry=None,
        cancel_event: threading.Event | None = None,
    ) -> None:
        self.spec = spec
        self.store = store
        self.home = Path(home) if home else Path(store.location).parent
        self.runner = runner or spec.runner.name
        self.runner_options = dict(spec.runner.options)
        self.runner_options.update(runner_options or {})
        self.beam_args = list(beam_args)
        self.full_refresh = full_refresh
        self.lease_ttl = lease_ttl
        self.registry = registry
        self.cancel_event = cancel_event
        self.holder = new_holder_id()
        self._secrets = spec.secret_values()

    # -- public ------------------------------------------------------------------------------
    def run(self) -> SyncRun:
        spec, store = self.spec, self.store
        lease = store.acquire_lease(spec.id, self.holder, self.lease_ttl)
        if lease is None:
            held = store.get_lease(spec.id)
            who = f" by {held.holder} until {format_timestamp(held.expires_at)}" if held else ""
            raise LeaseHeldError(f"pipeline {spec.id}: skipped, another run holds its lease{who}")
        heartbeat = _Heartbeat(store, spec.id, self.holder, self.lease_ttl)
        heartbeat.start()
        try:
            connector = spec.build_connector(self.registry)
            sink = spec.build_sink(self.registry)
            DataSourceManager(store, self.registry).save(spec)
            self._save_job()
            self._repair(sink)
            return self._run(connector, sink, heartbeat)
        finally:
            heartbeat.stop()
            try:
                store.release_lease(spec.id, self.holder)
            except OsmosisError as exc:  # the lease expires by itself
                log.warning("pipeline %s: could not release the lease: %s", spec.id, exc)

    # -- the steps ----------------------------------------------------------------------------
    def _save_job(self) -> None:
        schedule = self.spec.schedule
        job = self.store.get_job(self.spec.id) or SyncJob(pipeline_id=self.spec.id, source_id=self.spec.id)
        if schedule is not None:
            job.interval_minutes = schedule.every.total_seconds() / 60 if schedule.every else None
            job.cron = schedule.cron
            job.timezone = schedule.timezone
        job.spec_path = self.spec.path
        self.store.put_job(job)

    def _repair(self, sink: BaseSink) -> None:
        """Finish runs a dead process left ``running`` (we hold the lease, so their process is gone)."""
        for run, holder in self.store.running_runs(self.spec.id):
            if run.window is not None and sink.is_published(run.run_id):
                run.status = "succeeded"
                run.finished_at = utcnow()
                run.note = "committed at the next start: the process stopped after publishing its output"
                self.store.commit_run(run, run.window.hi, self.store.get_pending_state(run.run_id))
                log.warning("pipeline %s: run %s was published but not committed; committed it now", self.spec.id, run.run_id)
            else:
                sink.abort(run.run_id)
                self._dead_letter_sink().abort(run.run_id)
                run.status = "failed"
                run.finished_at = utcnow()
                run.error = f"abandoned: the process running it ({holder}) stopped before it committed"
                self.store.fail_run(run)
                log.warning("pipeline %s: run %s was abandoned by %s; marked failed", self.spec.id, run.run_id, holder)

    def _dead_letter_sink(self) -> JSONLSink:
        path = self.spec.dead_letter_path or str(self.home / "dead_letter" / self.spec.id)
        return JSONLSink({"path": path}, pipeline_id=self.spec.id)

    def _run(self, connector: BaseConnector, sink: BaseSink, heartbeat: _Heartbeat) -> SyncRun:
        spec, store = self.spec, self.store
        run = SyncRun(
            run_id=f"{utcnow().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}",
            pipeline_id=spec.id,
            status="running",
            started_at=utcnow(),
            runner=self.runner,
            full_refresh=self.full_refresh,
        )
        started = time.monotonic()
        dead_sink = self._dead_letter_sink()
        recorded = published = False
        try:
            watermark = store.get_watermark(spec.id)
            wm_value, wm_state = (None, {}) if self.full_refresh else (watermark.value, watermark.state)
            connector.connect()
            connector.begin_run(wm_state)
            unchanged = connector.unchanged()
            window = compute_window(spec, connector, wm_value, connector.source_clock())
            if unchanged:
                # Nothing was read: keep the watermark where it is (no window was covered).
                window = SyncWindow(wm_value, wm_value) if wm_value is not None else None
            run.window = window
            store.start_run(run, self.holder)
            recorded = True
            log.info("pipeline %s: run %s started, window %s", spec.id, run.run_id, window)
            skip = (
                unchanged
                or window is None
                or window.is_empty
                or (wm_value is not None and window.hi_micros <= SyncWindow(None, wm_value).hi_micros and not spec.incremental.lookback)
            )
            if not skip and connector.window_is_empty(window) is True:
                skip = True
            if skip:
                run.note = "source unchanged (not modified)" if unchanged else "empty window: Beam job skipped"
            else:
                sink.prepare(run.run_id)
                dead_sink.prepare(run.run_id)
                counts = self._run_beam(connector, sink, dead_sink, window, run.run_id)
                run.records_read = counts.get("records_read", 0)
                run.records_written = counts.get("records_written", 0)
                run.dead_letter = counts.get("dead_letter", 0)
            if heartbeat.lost:
                raise RunError(f"pipeline {spec.id}: lost the lease during the run; not committing")
            new_state = connector.end_state(window) if (window is not None and not unchanged) else None
            if window is not None:
                store.set_pending_state(run.run_id, new_state)
                sink.publish(run.run_id, window_hi=_as_datetime(window.hi), full_refresh=self.full_refresh)
                dead_sink.publish(run.run_id, window_hi=_as_datetime(window.hi))
                published = True
            run.status = "succeeded"
            run.finished_at = utcnow()
            self._commit(run, None if (window is None or unchanged) else window.hi, new_state)
            log.info(
                "pipeline %s: run %s succeeded, window %s, read %d, written %d, dead letters %d, %.2fs",
                spec.id, run.run_id, window, run.records_read, run.records_written, run.dead_letter,
                time.monotonic() - started,
            )
            return run
        except BaseException as exc:
            if published:
                # The output is visible; marking the run failed would make the next run read the
                # window again and publish it twice. Leave it 'running': the next start commits it.
                log.error(
                    "pipeline %s: run %s published its output but could not commit (%s); "
                    "the next run of this pipeline will commit it",
                    spec.id, run.run_id, redact_text(_describe(exc), self._secrets),
                )
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                raise RunError(
                    f"pipeline {spec.id}: run {run.run_id} published its output but the state commit failed "
                    f"({redact_text(_describe(exc), self._secrets)}); the next run commits it"
                ) from None
            run.status = "failed"
            run.finished_at = utcnow()
            run.error = redact_text(_describe(exc), self._secrets)
            for target in (sink, dead_sink):
                try:
                    target.abort(run.run_id)
                except Exception as cleanup_exc:  # noqa: BLE001 - the original error matters more
                    log.warning("pipeline %s: cleanup after failure failed: %s", spec.id, cleanup_exc)
            try:
                if recorded:
                    store.fail_run(run)
                else:
                    store.start_run(run, self.holder)
                    store.fail_run(run)
            except OsmosisError as state_exc:
                log.error("pipeline %s: could not record the failed run: %s", spec.id, state_exc)
            log.error("pipeline %s: run %s failed: %s", spec.id, run.run_id, run.error)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if isinstance(exc, LeaseHeldError):
                raise
            raise RunError(f"pipeline {spec.id}: run {run.run_id} failed: {run.error}") from None
        finally:
            try:
                connector.disconnect()
            except Exception:  # noqa: BLE001
                pass

    def _commit(self, run: SyncRun, watermark, state) -> None:
        """Commit with a few retries: a busy state store must not turn a published run into a failure."""
        delay = 0.2
        for attempt in range(5):
            try:
                self.store.commit_run(run, watermark, state)
                return
            except OsmosisError:
                if attempt == 4:
                    raise
                time.sleep(delay)
                delay *= 2

    def _run_beam(self, connector, sink, dead_sink, window: SyncWindow, run_id: str) -> dict[str, int]:
        spec = self.spec
        p = make_pipeline(self.runner, self.runner_options, self.beam_args)
        split_from = connector.lower_bound(window) if window.lo is None and connector.splittable else None
        read = p | f"Read {spec.source.type}" >> ReadWindow(
            connector, window, splits=spec.read.splits, batch_size=spec.read.batch_size, split_from=split_from
        )
        batches = read.records
        dead = [read[DEAD_LETTER_TAG]]
        if spec.steps:
            chain = Pipeline()
            for step_spec in spec.steps:
                chain.add_step(build_step(step_spec, self.registry), label=step_spec.label, on_error=step_spec.on_error)
            out = batches | "Steps" >> chain
            batches = out["records"]
            dead.append(out[DEAD_LETTER_TAG])
        written = batches | f"Write {spec.sink.type}" >> sink.write(run_id)
        sink_dead = _tagged(written, DEAD_LETTER_TAG)
        if sink_dead is not None:
            dead.append(sink_dead)
        (
            tuple(dead)
            | "Dead letters" >> beam.Flatten()
            | "Batch dead letters" >> beam.BatchElements(min_batch_size=1, max_batch_size=500)
            | "Write dead letters" >> WriteJSONL(str(dead_sink.staging_dir(run_id)), counter="dead_letter_written", lenient=True)
        )
        result = p.run()
        state = self._wait(result)
        if state != PipelineState.DONE:
            raise RunError(f"the {self.runner} runner finished in state {state}, not DONE")
        return _counts(result)

    def _wait(self, result) -> str:
        if self.cancel_event is None:
            return result.wait_until_finish()
        while True:
            try:
                state = result.wait_until_finish(duration=500)
            except TypeError:  # runners whose wait takes no duration
                return result.wait_until_finish()
            if state in (PipelineState.DONE, PipelineState.FAILED, PipelineState.CANCELLED, PipelineState.UPDATED):
                return state
            if result.state in (PipelineState.DONE, PipelineState.FAILED, PipelineState.CANCELLED):
                return result.state
            if self.cancel_event.is_set():
                try:
                    result.cancel()
                finally:
                    raise RunError("cancelled")


def _tagged(output: Any, tag: str):
    try:
        return output[tag]
    except (KeyError, TypeError, AttributeError):
        return None


def _as_datetime(value) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else utcnow()


def _counts(result) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        metrics = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except Exception as exc:  # noqa: BLE001 - some runners report no metrics
        log.warning("could not read Beam metrics: %s", exc)
        return counts
    for item in metrics.get("counters", []):
        value = item.committed if item.committed is not None else item.attempted
        counts[item.key.metric.name] = counts.get(item.key.metric.name, 0) + int(value or 0)
    return counts


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OsmosisError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    # Beam wraps worker errors; the original message is the useful part.
    text = str(exc).strip()
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line and not line.startswith(("File ", "Traceback", "[while running")):
            text = line
            break
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_pipeline(spec: PipelineSpec, store: StateStore, **kwargs: Any) -> SyncRun:
    """Shorthand for ``SyncRunner(spec, store, **kwargs).run()``."""
    return SyncRunner(spec, store, **kwargs).run()

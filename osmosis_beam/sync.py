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
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

from osmosis_beam.config import PipelineSpec
from osmosis_beam.connectors.base import DEAD_LETTER_TAG, METRICS_NAMESPACE, BaseConnector
from osmosis_beam.exceptions import ConfigError, LeaseHeldError, OsmosisError, RunError
from osmosis_beam.secrets import redact_text
from osmosis_beam.sinks.base import BaseSink
from osmosis_beam.sources import DataSourceManager
from osmosis_beam.state.store import StateStore, new_holder_id
from osmosis_beam.timefmt import format_duration, format_timestamp, utcnow
from osmosis_beam.types import SyncJob, SyncRun, SyncWindow

__all__ = ["SyncRunner", "run_pipeline", "compute_window"]

log = logging.getLogger(__name__)
DEFAULT_LEASE_TTL = 60.0
_CANCEL_GRACE = 10.0  # seconds to wait for a cancelled remote job to report that it stopped
CANCELLED = "cancelled: the launcher is shutting down and aborted the run before it committed"



def _runners():
    """The runners module, imported when a job is built (it imports Beam, which takes about a second)."""
    from osmosis_beam import runners

    return runners


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
        on_start: Callable[[SyncRun], None] | None = None,
        on_done: Callable[[SyncRun | None, BaseException | None], None] | None = None,
    ) -> None:
        self.spec = spec
        self.store = store
        self.home = Path(home) if home else store.default_home()
        self.runner = runner or spec.runner.name
        # The YAML's runner options belong to the YAML's runner: `--runner direct` leaves dataflow's out.
        self.runner_options = dict(spec.runner.options) if self.runner == spec.runner.name else {}
        self.runner_options.update(runner_options or {})
        self.beam_args = list(beam_args)
        self.full_refresh = full_refresh
        self.lease_ttl = lease_ttl
        self.registry = registry
        self.cancel_event = cancel_event
        # Hooks for the launcher: ``on_start(run)`` once the run is in the history (its window known);
        # ``on_done(run, error)`` after it ends, while the lease is still held (``run`` is the failed run,
        # or None when it failed before it began; ``error`` is None on success). Hook errors are logged.
        self.on_start = on_start
        self.on_done = on_done
        self.current_run: SyncRun | None = None  # the run in progress (or last run) of this runner
        self.holder = new_holder_id()
        self._secrets = spec.secret_values()
        self.last_job: dict[str, Any] | None = None  # the job a Dataflow dry run built (describe_dataflow_job)
        self._sink_obj: BaseSink | None = None

    # -- public ------------------------------------------------------------------------------
    def run(self) -> SyncRun:
        spec, store = self.spec, self.store
        if self.runner == "dataflow" and _runners().is_dry_run(_runners().pipeline_options(self.runner, self.runner_options, self.beam_args)):
            return self._dry_run()
        lease = store.acquire_lease(spec.id, self.holder, self.lease_ttl)
        if lease is None:
            held = store.get_lease(spec.id)
            who = f" by {held.holder} until {format_timestamp(held.expires_at)}" if held else ""
            raise LeaseHeldError(f"pipeline {spec.id}: skipped, another run holds its lease{who}")
        heartbeat = _Heartbeat(store, spec.id, self.holder, self.lease_ttl)
        heartbeat.start()
        done: SyncRun | None = None
        error: BaseException | None = None
        try:
            connector = spec.build_connector(self.registry)
            if self.runner != "direct" or self.runner_options or self.beam_args:
                self._prepare_job(connector, self._sink())
            DataSourceManager(store, self.registry).save(spec)
            self._save_job()
            self._repair()
            done = self._run(connector, heartbeat)
            return done
        except BaseException as exc:
            error = exc
            raise
        finally:
            heartbeat.stop()
            self._hook(self.on_done, done or self.current_run, error)
            try:
                store.release_lease(spec.id, self.holder)
            except OsmosisError as exc:  # the lease expires by itself
                log.warning("pipeline %s: could not release the lease: %s", spec.id, exc)

    def repair(self) -> bool:
        """Repair runs a dead process left ``running`` (see ``_repair``), without running the pipeline.

        Returns False (and touches nothing) when another process holds the lease: that live process
        repaired them when it took the lease.
        """
        spec, store = self.spec, self.store
        if store.acquire_lease(spec.id, self.holder, self.lease_ttl) is None:
            return False
        try:
            self._repair()
            return True
        finally:
            try:
                store.release_lease(spec.id, self.holder)
            except OsmosisError as exc:
                log.warning("pipeline %s: could not release the lease: %s", spec.id, exc)

    def _hook(self, hook: Callable | None, *args: Any) -> None:
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:  # noqa: BLE001 - a hook never changes the run's outcome
            log.exception("pipeline %s: hook %r failed", self.spec.id, hook)

    def _cancelled(self) -> bool:
        return self.cancel_event is not None and self.cancel_event.is_set()

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

    def _sink(self) -> BaseSink:
        """The pipeline's sink, built when first needed (a run whose window is empty never needs it)."""
        if self._sink_obj is None:
            self._sink_obj = self.spec.build_sink(self.registry)
        return self._sink_obj

    def _repair(self) -> None:
        """Finish runs a dead process left ``running`` (we hold the lease, so their process is gone)."""
        for run, holder in self.store.running_runs(self.spec.id):
            sink = self._sink()
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

    def _dead_letter_sink(self):
        from osmosis_beam.sinks.jsonl import JSONLSink

        path = self.spec.dead_letter_path or str(self.home / "dead_letter" / self.spec.id)
        return JSONLSink({"path": path}, pipeline_id=self.spec.id)

    def _new_run(self, status: str) -> SyncRun:
        return SyncRun(
            run_id=f"{utcnow().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}",
            pipeline_id=self.spec.id,
            status=status,
            started_at=utcnow(),
            runner=self.runner,
            full_refresh=self.full_refresh,
        )

    def _open_window(self, connector: BaseConnector) -> tuple[Any, SyncWindow]:
        """Read the watermark, open the source for this run, and fix the window from the source's clock."""
        watermark = self.store.get_watermark(self.spec.id)
        wm_value, wm_state = (None, {}) if self.full_refresh else (watermark.value, watermark.state)
        connector.connect()
        connector.begin_run(wm_state)
        return wm_value, compute_window(self.spec, connector, wm_value, connector.source_clock())

    def _run(self, connector: BaseConnector, heartbeat: _Heartbeat) -> SyncRun:
        spec, store = self.spec, self.store
        run = self._new_run("running")
        self.current_run = run
        started = time.monotonic()
        sink: BaseSink | None = None
        dead_sink = None
        recorded = published = job_ran = False
        try:
            wm_value, window = self._open_window(connector)
            unchanged = connector.unchanged()
            if unchanged:
                # Nothing was read: keep the watermark where it is (no window was covered).
                window = SyncWindow(wm_value, wm_value) if wm_value is not None else None
            run.window = window
            store.start_run(run, self.holder)
            recorded = True
            log.info("pipeline %s: run %s started, window %s", spec.id, run.run_id, window)
            self._hook(self.on_start, run)
            if self._cancelled():
                raise RunError(CANCELLED)
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
                sink = self._sink()
                dead_sink = self._dead_letter_sink()
                schema = connector.get_schema() if getattr(sink, "wants_schema", False) else None
                sink.use_schema(schema)
                sink.prepare(run.run_id, full_refresh=self.full_refresh)
                dead_sink.prepare(run.run_id)
                job_ran = True
                counts = self._run_beam(connector, sink, dead_sink, window, run.run_id)
                run.records_read = counts.get("records_read", 0)
                run.records_written = counts.get("records_written", 0)
                run.dead_letter = counts.get("dead_letter", 0)
            if heartbeat.lost:
                raise RunError(f"pipeline {spec.id}: lost the lease during the run; not committing")
            if self._cancelled():
                raise RunError(CANCELLED)
            new_state = connector.end_state(window) if (window is not None and not unchanged) else None
            if window is not None and (job_ran or self.full_refresh):
                if sink is None:  # a full refresh of an empty source still replaces the output
                    sink = self._sink()
                    sink.prepare(run.run_id, full_refresh=True)
                store.set_pending_state(run.run_id, new_state)
                sink.publish(run.run_id, window_hi=_as_datetime(window.hi), full_refresh=self.full_refresh)
                if dead_sink is not None:
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
                if target is None:
                    continue
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
        import apache_beam as beam
        from apache_beam.runners.runner import PipelineState

        from osmosis_beam.connectors.read import ReadWindow
        from osmosis_beam.pipeline.pipeline import CANCEL_EVENTS, CancelCheck, Pipeline, StepContext, build_step
        from osmosis_beam.sinks.jsonl import WriteJSONL

        spec = self.spec
        p = _runners().make_pipeline(
            self.runner, self.runner_options, self.beam_args,
            job_name=_runners().job_name(spec.id, run_id), labels=_runners().job_labels(spec.id, run_id),
        )
        split_from = connector.lower_bound(window) if window.lo is None and connector.splittable else None
        read = p | f"Read {spec.source.type}" >> ReadWindow(
            connector, window, splits=spec.read.splits, batch_size=spec.read.batch_size, split_from=split_from
        )
        batches = read.records
        token = None
        if self.cancel_event is not None:
            token = uuid.uuid4().hex
            CANCEL_EVENTS[token] = self.cancel_event
            batches = batches | "Check cancel" >> CancelCheck(token, CANCELLED)
        dead = [read[DEAD_LETTER_TAG]]
        if spec.steps:
            chain = Pipeline()
            context = StepContext(pipeline_id=spec.id, cursor_field=connector.cursor_field, batch_size=spec.read.batch_size)
            for step_spec in spec.steps:
                chain.add_step(build_step(step_spec, self.registry, context), label=step_spec.label, on_error=step_spec.on_error)
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
        if _runners().is_remote(self.runner):
            _runners().check_no_secrets(p, self._secrets, self.runner)
        try:
            if self._cancelled():
                raise RunError(CANCELLED)
            try:
                result = p.run()  # the in-process runner returns when the job is done
                if self.runner == "dataflow" and _runners().is_dry_run(p.options):
                    self._dry_run_built(result, p.options)
                    return {}
                if _runners().is_remote(self.runner):
                    log.info("pipeline %s: run %s submitted to %s as job %s", spec.id, run_id, self.runner, _job_id(result))
                state = self._wait(result)
            except Exception:
                if self._cancelled():
                    raise RunError(CANCELLED) from None
                raise
        finally:
            if token is not None:
                CANCEL_EVENTS.pop(token, None)
        if state != PipelineState.DONE:
            raise RunError(f"the {self.runner} runner finished in state {state}, not DONE")
        return _counts(result)

    def _wait(self, result) -> str:
        """Wait for the job; cancel it when the run is cancelled, passes ``job_timeout``, or is interrupted.

        ``wait_until_finish`` runs once, on a helper thread (runners differ in whether a timed wait can
        be repeated), and this thread watches the cancel event and the deadline meanwhile. A remote job
        is cancelled too when this process is interrupted: its output would never be committed.
        """
        remote = _runners().is_remote(self.runner)
        if self.cancel_event is None and not remote:
            return result.wait_until_finish()  # the in-process runner has finished already
        timeout = _runners().job_timeout(self.runner_options, self.beam_args) if remote else None
        deadline = time.monotonic() + timeout if timeout else None
        outcome: dict[str, Any] = {}

        def wait() -> None:
            try:
                outcome["state"] = result.wait_until_finish()
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                outcome["error"] = exc

        waiter = threading.Thread(target=wait, name=f"wait-{self.spec.id}", daemon=True)
        waiter.start()
        try:
            while waiter.is_alive():
                waiter.join(0.2)
                if not waiter.is_alive():
                    break
                if self._cancelled():
                    self._cancel_job(result, waiter, "the run was cancelled")
                    raise RunError(CANCELLED)
                if deadline is not None and time.monotonic() >= deadline:
                    self._cancel_job(result, waiter, "job_timeout passed")
                    raise RunError(
                        f"the {self.runner} job {_job_id(result)} did not finish within "
                        f"{format_duration(dt.timedelta(seconds=timeout))} (runner option job_timeout); cancelled it"
                    )
        except (KeyboardInterrupt, SystemExit):
            if remote:
                self._cancel_job(result, waiter, "interrupted")
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome["state"]

    def _cancel_job(self, result, waiter: threading.Thread, why: str) -> None:
        """Cancel the job and give the runner a moment to confirm; log what happened."""
        job = _job_id(result)
        try:
            result.cancel()
        except Exception as exc:  # noqa: BLE001 - the run fails either way
            log.warning(
                "pipeline %s: could not cancel the %s job %s (%s): %s; cancel it in the runner's UI",
                self.spec.id, self.runner, job, why, redact_text(str(exc), self._secrets),
            )
            return
        waiter.join(_CANCEL_GRACE)
        if waiter.is_alive():
            log.warning("pipeline %s: asked the %s to cancel job %s (%s); it has not stopped yet", self.spec.id, self.runner, job, why)
        else:
            log.warning("pipeline %s: cancelled the %s job %s (%s)", self.spec.id, self.runner, job, why)

    # -- runner checks and dry runs --------------------------------------------------------------
    def _prepare_job(self, connector: BaseConnector, sink: BaseSink) -> None:
        """Before anything is recorded: check the runner options, make secrets travel by name only."""
        _runners().pipeline_options(self.runner, self.runner_options, self.beam_args)  # every option problem, at once
        if self.runner == "dataflow" and callable(getattr(sink, "staging_dir", None)):
            # File sinks stage on a local path the launcher then renames: Dataflow workers share no disk with it.
            raise ConfigError(
                f"sink.type: the {sink.type_name} sink writes files on the machine that runs it, and Dataflow workers "
                "share no disk with the launcher; use a database sink (postgres, mongodb), or flink/portable with "
                "a path the launcher and the workers share"
            )
        store = _runners().secret_store(self.runner_options, self.beam_args) if _runners().is_remote(self.runner) else None
        _runners().prepare_for_workers(self.runner, store=store, source=connector, sink=sink)
        if _runners().is_remote(self.runner):
            foreign = sorted({type(o).__module__ for o in (connector, sink)} - {""})
            foreign = [m for m in foreign if not m.startswith("osmosis_beam.")]
            if self.runner == "dataflow":
                log.warning(
                    "pipeline %s: Dataflow workers write dead letters to their own disks, which are discarded; "
                    "on dataflow only the dead-letter count reaches the history", self.spec.id,
                )
            if foreign:
                log.info(
                    "pipeline %s: %s not part of the osmosis-beam package; workers outside this process need "
                    "them installed (--extra_package or their container image)", self.spec.id, ", ".join(foreign),
                )

    def _dry_run(self) -> SyncRun:
        """Build the Dataflow job for the next window without submitting it; no state is written."""
        spec = self.spec
        connector = spec.build_connector(self.registry)
        sink = self._sink()
        self._prepare_job(connector, sink)
        run = self._new_run("dry_run")
        try:
            _, run.window = self._open_window(connector)
            self._run_beam(connector, sink, self._dead_letter_sink(), run.window, run.run_id)
        finally:
            try:
                connector.disconnect()
            except Exception:  # noqa: BLE001
                pass
        run.finished_at = utcnow()
        run.note = "dry run: the job was built, not submitted; nothing was read, written or committed"
        return run

    def _dry_run_built(self, result, options) -> None:
        """Keep the job a dry run built (``last_job``); write it to ``--dataflow_job_file`` when given."""
        self.last_job = _runners().describe_dataflow_job(result)
        path = options.get_all_options().get("dataflow_job_file")
        if self.last_job is not None and path:
            Path(path).write_text(json.dumps(self.last_job, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        staged = ", ".join(s["name"] for s in (self.last_job or {}).get("staged", ())) or "nothing"
        log.info(
            "pipeline %s: dry run built dataflow job %s (staged: %s)%s", self.spec.id,
            (self.last_job or {}).get("job", {}).get("name", "?"), staged, f"; described in {path}" if path else "",
        )

def _job_id(result) -> str:
    """The runner's id for a submitted job (Dataflow job id, job service id), for logs and errors."""
    job_id = getattr(result, "job_id", None)
    if callable(job_id):
        try:
            job_id = job_id()
        except Exception:  # noqa: BLE001
            job_id = None
    return str(job_id or getattr(result, "_job_id", None) or "?")


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
        from apache_beam.metrics.metric import MetricsFilter

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

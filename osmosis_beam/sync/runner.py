"""SyncRunner: one sync run, exactly as DESIGN.md's seven steps, split by phase.

1. take the pipeline's lease (skip when another process holds it) and repair what a dead run left
   (:mod:`~osmosis_beam.sync.repair`);
2. read the watermark W, ask the source for its clock; window = [W - lookback, clock - safety_lag)
   (:mod:`~osmosis_beam.sync.window`);
3. record a ``running`` row in the sync history (:mod:`~osmosis_beam.sync.attempt`);
4. build the Beam pipeline from the public transforms (:mod:`~osmosis_beam.sync.graph`) and run it;
5. wait for the runner to report DONE, cancelling on shutdown or ``job_timeout`` (:mod:`~osmosis_beam.sync.job`);
6. publish the staged output, then in one state transaction set watermark = hi and mark the run
   succeeded with the counts from Beam metrics;
7. on any failure leave the watermark, mark the run failed with a redacted error, remove staged output.

Example::

    from osmosis_beam.config import load_pipeline
    from osmosis_beam.state.factory import open_store
    from osmosis_beam.sync.runner import SyncRunner
    run = SyncRunner(load_pipeline("pipelines/tech_news.yaml"), open_store()).run()
    run.summary()      # {"pipeline": "tech_news", "status": "succeeded", "records_read": 12, ...}
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

from osmosis_beam.config import PipelineSpec
from osmosis_beam.core.errors import AlreadyRanError, ConfigError, LeaseHeldError, OsmosisError, RunError
from osmosis_beam.core.models import SyncJob, SyncRun
from osmosis_beam.core.progress import LIVE, LiveCounts, ProgressReporter
from osmosis_beam.core.timefmt import format_timestamp, utcnow
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.io.base import BaseConnector, BaseSink
from osmosis_beam.io.files.jsonl import JSONLSink
from osmosis_beam.state.sources import DataSourceManager
from osmosis_beam.state.store import StateStore, new_holder_id
from osmosis_beam.sync.attempt import CANCELLED, Attempt, new_run
from osmosis_beam.sync.repair import repair_runs
from osmosis_beam.sync.window import open_window

__all__ = ["SyncRunner", "CANCELLED"]

log = logging.getLogger(__name__)
DEFAULT_LEASE_TTL = 60.0


def _runners():
    """The runner options module, imported when a job is built (it imports Beam, which takes about a second)."""
    import osmosis_beam.runners

    return osmosis_beam.runners


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
        progress: dict[str, Any] | None = None,
        still_due: Callable[[], str | None] | None = None,
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
        # Live progress while the job runs (None: none): ``{"interval": 5.0, "live": None, "stream": None}``,
        # the keywords of core.progress.ProgressReporter (live=None: a live line when the stream is a terminal).
        self.progress = progress
        self.last_progress: ProgressReporter | None = None
        # For the launcher: called once the lease is held; a text (why not) skips the run, e.g. because
        # another launcher ran it between this one's decision and taking the lease.
        self.still_due = still_due
        self.current_run: SyncRun | None = None  # the run in progress (or last run) of this runner
        self.holder = new_holder_id()
        self._secrets = spec.secret_values()
        self.last_job: dict[str, Any] | None = None  # the job a Dataflow dry run built (describe_dataflow_job)
        self._sink_obj: BaseSink | None = None
        #: False for a replay of dead letters (they may fail again; they stay dead letters, counted).
        self.budget_applies = True

    # -- public ------------------------------------------------------------------------------
    def run(self) -> SyncRun:
        spec, store = self.spec, self.store
        if self.runner == "dataflow" and _runners().is_dry_run(_runners().pipeline_options(self.runner, self.runner_options, self.beam_args)):
            return self._dry_run()
        self._check_placement()
        lease = store.acquire_lease(spec.id, self.holder, self.lease_ttl)
        if lease is None:
            held = store.get_lease(spec.id)
            who = f" by {held.holder} until {format_timestamp(held.expires_at)}" if held else ""
            raise LeaseHeldError(f"pipeline {spec.id}: skipped, another run holds its lease{who}")
        why_not = self.still_due() if self.still_due is not None else None
        if why_not:
            try:
                store.release_lease(spec.id, self.holder)
            except OsmosisError as exc:  # the lease expires by itself
                log.warning("pipeline %s: could not release the lease: %s", spec.id, exc)
            raise AlreadyRanError(f"pipeline {spec.id}: skipped, {why_not}")
        heartbeat = _Heartbeat(store, spec.id, self.holder, self.lease_ttl)
        heartbeat.start()
        done: SyncRun | None = None
        error: BaseException | None = None
        try:
            connector = spec.build_connector(self.registry)
            if self.runner != "direct" or self.runner_options or self.beam_args:
                self._prepare_job(connector, self.sink())
            DataSourceManager(store, self.registry).save(spec)
            self._save_job()
            self._repair()
            attempt = Attempt(self, connector, lease_lost=lambda: heartbeat.lost)
            self.current_run = attempt.run_row
            done = attempt.run()
            return done
        except BaseException as exc:
            error = exc
            raise
        finally:
            heartbeat.stop()
            self.call_hook(self.on_done, done or self.current_run, error)
            try:
                store.release_lease(spec.id, self.holder)
            except OsmosisError as exc:  # the lease expires by itself
                log.warning("pipeline %s: could not release the lease: %s", spec.id, exc)

    def replay(self, run_id: str | None = None) -> SyncRun | None:
        """Push the kept dead letters (of ``run_id``, else every run's not replayed yet) through the
        steps and the sink again, exactly once (:mod:`~osmosis_beam.sync.replay`). None: nothing to replay."""
        from osmosis_beam.sync.replay import Replay

        spec, store = self.spec, self.store
        self._check_placement()
        if store.acquire_lease(spec.id, self.holder, self.lease_ttl) is None:
            held = store.get_lease(spec.id)
            who = f" by {held.holder} until {format_timestamp(held.expires_at)}" if held else ""
            raise LeaseHeldError(f"pipeline {spec.id}: another run holds its lease{who}; replay when it is done")
        heartbeat = _Heartbeat(store, spec.id, self.holder, self.lease_ttl)
        heartbeat.start()
        self.budget_applies = False
        try:
            self._repair()
            return Replay(self, run_id).run()
        finally:
            heartbeat.stop()
            try:
                store.release_lease(spec.id, self.holder)
            except OsmosisError as exc:
                log.warning("pipeline %s: could not release the lease: %s", spec.id, exc)

    def repair(self) -> bool:
        """Repair runs a dead process left ``running``, without running the pipeline.

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

    def _check_placement(self) -> None:
        """A file sink never writes into a folder that is, or contains, the home or the pipeline file."""
        problems = self.sink().placement_problems(self.sink().config, home=self.home, pipeline_file=self.spec.path)
        if problems:
            raise ConfigError(problems=[f"sink.{p}" for p in problems], source=self.spec.path)

    # -- what the phases share ---------------------------------------------------------------------
    @property
    def secrets(self) -> list[Any]:
        return self._secrets

    def call_hook(self, hook: Callable | None, *args: Any) -> None:
        """Call a launcher hook; its errors are logged and never change the run's outcome."""
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:  # noqa: BLE001 - a hook never changes the run's outcome
            log.exception("pipeline %s: hook %r failed", self.spec.id, hook)

    def cancelled(self) -> bool:
        return self.cancel_event is not None and self.cancel_event.is_set()

    def sink(self) -> BaseSink:
        """The pipeline's sink, built when first needed (a run whose window is empty never needs it)."""
        if self._sink_obj is None:
            self._sink_obj = self.spec.build_sink(self.registry)
        return self._sink_obj

    def dead_letter_sink(self) -> JSONLSink:
        path = self.spec.dead_letter_path or str(self.home / "dead_letter" / self.spec.id)
        return JSONLSink({"path": path}, pipeline_id=self.spec.id)

    def _save_job(self) -> None:
        schedule = self.spec.schedule
        job = self.store.get_job(self.spec.id) or SyncJob(pipeline_id=self.spec.id, source_id=self.spec.id)
        if schedule is not None:
            job.interval_minutes = schedule.every.total_seconds() / 60 if schedule.every else None
            job.cron = schedule.cron
            job.timezone = schedule.timezone
        job.spec_path = self.spec.path
        self.store.put_job(job)

    def _repair(self) -> None:
        repair_runs(self.spec.id, self.store, self.sink, self.dead_letter_sink)

    def run_beam(self, connector: BaseConnector, sink: BaseSink, dead_sink: BaseSink, window: SyncWindow, run_id: str) -> dict[str, int]:
        """Build the run's Beam job, run it to DONE, and return its counters."""
        from osmosis_beam.runners.lean import import_beam

        import_beam(self.runner)
        from osmosis_beam.steps.pipeline import CANCEL_EVENTS
        from osmosis_beam.sync.graph import build_graph
        from osmosis_beam.sync.job import JobRunner

        spec, runners = self.spec, _runners()
        p = runners.make_pipeline(
            self.runner, self.runner_options, self.beam_args,
            job_name=runners.job_name(spec.id, run_id), labels=runners.job_labels(spec.id, run_id),
        )
        token = uuid.uuid4().hex if self.cancel_event is not None else None
        watch = self.progress is not None and not (self.runner == "dataflow" and runners.is_dry_run(p.options))
        span = build_graph(
            p, spec, connector, sink, dead_sink, window, run_id,
            registry=self.registry, cancel_token=token, cancel_message=CANCELLED,
            progress_key=run_id if watch else None,
        )
        if self.runner == "direct":
            threads = runners.direct_read_threads(self.runner_options, self.beam_args,
                                                  encoded=sink.encoding is not None,
                                                  splits=spec.read.splits if connector.splittable else 1)
            if threads > 1:
                runners.thread_direct_reads(p.options, threads)
                log.info("pipeline %s: the direct runner reads the %d splits on %d threads (zero-decode path; "
                         "runner option workers: 1 keeps one)", spec.id, spec.read.splits, threads)
        job = JobRunner(
            self.runner, self.runner_options, self.beam_args, pipeline_id=spec.id, secrets=self._secrets,
            cancelled=self.cancelled if self.cancel_event is not None else None, cancel_message=CANCELLED,
        )
        if token is not None:
            CANCEL_EVENTS[token] = self.cancel_event
        reporter = self._watch(run_id, span, job, p.options) if watch else None
        try:
            try:
                result = job.submit(p)  # the in-process runner returns when the job is done
                if reporter is not None:
                    reporter.remote_result = result
                if self.runner == "dataflow" and runners.is_dry_run(p.options):
                    self._dry_run_built(result, p.options)
                    return {}
                return job.wait(result)
            except Exception:
                if self.cancelled():
                    raise RunError(CANCELLED) from None
                raise
        finally:
            if token is not None:
                CANCEL_EVENTS.pop(token, None)
            if reporter is not None:
                reporter.stop()
                LIVE.pop(run_id, None)

    def _watch(self, run_id: str, span: tuple[int, int] | None, job, options) -> ProgressReporter:
        """Start reporting the run's progress: from this process's workers, and from a remote job's metrics."""
        counts = LIVE[run_id] = LiveCounts()
        reporter: ProgressReporter
        log.info("pipeline %s: live progress comes from %s", self.spec.id, job.progress_source(options))

        def probe() -> dict[str, Any]:
            here = counts.snapshot()
            result = getattr(reporter, "remote_result", None)
            if result is None or not job.remote:
                return here
            there = job.running_counts(result)
            merged: dict[str, Any] = {k: max(v, here.get(k, 0)) if isinstance(v, int) else v for k, v in there.items()}
            return {**here, **merged}

        options = dict(self.progress or {})
        reporter = ProgressReporter(self.spec.id, run_id, probe, (span[1] - span[0]) if span else None, **options)
        self.last_progress = reporter  # what it reported stays in ``last_progress.reports``
        return reporter.start()

    # -- runner checks and dry runs --------------------------------------------------------------
    def _prepare_job(self, connector: BaseConnector, sink: BaseSink) -> None:
        """Before anything is recorded: check the runner options, make secrets travel by name only."""
        from osmosis_beam.runners.lean import import_beam

        import_beam(self.runner)  # without the GCP, Hadoop, S3, Azure and pandas parts a non-Dataflow job never uses
        _runners().pipeline_options(self.runner, self.runner_options, self.beam_args)  # every option problem, at once
        if self.runner == "dataflow" and sink.writes_files:
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
        sink = self.sink()
        self._prepare_job(connector, sink)
        run = new_run(self, "dry_run")
        try:
            run.window = open_window(spec, self.store, connector, full_refresh=self.full_refresh).window
            self.run_beam(connector, sink, self.dead_letter_sink(), run.window, run.run_id)
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


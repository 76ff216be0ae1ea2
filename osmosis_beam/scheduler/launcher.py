"""The launcher: a long-running loop that runs pipelines when their schedule says they are due.

Each run is one :class:`~osmosis_beam.sync.SyncRunner` on a thread of this process (up to
``concurrency`` at once). The sync jobs (last run, next run, failures in a row) live in the state
store, so a restarted launcher continues where it stopped, and the pipeline lease keeps two
launchers on one home from running the same pipeline at once.

Example::

    from osmosis_beam.scheduler.launcher import SyncScheduler, load_specs
    from osmosis_beam.state.factory import open_store
    scheduler = SyncScheduler(load_specs(["pipelines/tech_news.yaml"]), open_store(home=".osmosis"))
    with scheduler.stop_on_signals():         # SIGTERM / SIGINT: finish within the grace period, exit
        result = scheduler.run(max_runs=3)    # LaunchResult(runs=3, succeeded=3, ...)

Behaviour:

- due runs start oldest-due first; missed ticks coalesce into one run (see ``schedule.next_run``);
- a due run whose lease another process holds is skipped, logged, and tried again at its next tick;
- a failing pipeline backs off exponentially (``backoff`` doubling up to ``max_backoff``) and never
  runs sooner than its schedule; the other pipelines keep their schedule;
- ``stop()`` (SIGTERM, SIGINT): no new runs; running ones get ``grace`` to finish, then they are
  cancelled and fail without committing; a second signal cancels at once, and runs that do not stop
  within a second are left ``running`` (nothing committed) for the next start to repair;
- ``run(once=True)``: returns once every pipeline due at the start has run here, has run on another
  launcher sharing the state store, or is held by a live lease (``LaunchResult.elsewhere`` / ``held``);
- at start, runs left ``running`` by a launcher that died are marked failed (or committed, when
  their output was already published), but only when their process is gone.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from osmosis_beam.config import PipelineSpec, ScheduleSpec, load_pipeline
from osmosis_beam.core.errors import AlreadyRanError, ConfigError, LeaseHeldError, OsmosisError, ScheduleError
from osmosis_beam.core.models import SyncJob, SyncRun
from osmosis_beam.core.timefmt import format_duration, format_timestamp, utcnow
from osmosis_beam.scheduler.alerts import Notifier
from osmosis_beam.scheduler.schedule import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BACKOFF,
    backoff_delay,
    next_attempt,
    next_run,
)
from osmosis_beam.state.store import StateStore, holder_is_dead

__all__ = ["SyncScheduler", "LaunchResult", "load_specs", "describe_jobs", "DEFAULT_GRACE"]

log = logging.getLogger(__name__)
DEFAULT_GRACE = dt.timedelta(seconds=30)
ALERT_DRAIN = 60.0  # seconds the launcher waits at exit for alerts still being delivered
_TICK = 0.2  # longest sleep between looks at signals, finished runs and the store (seconds)
_ABORT_NOW = 1.0  # after a second signal: how long cancelled runs may take before the launcher leaves them
DEFAULT_ABORT_TIMEOUT = 5.0  # after the grace period: how long cancelled runs may take to stop cleanly


# -- loading ------------------------------------------------------------------------------------------
def load_specs(paths: Sequence[str | Path] = (), directory: str | Path | None = None) -> list[PipelineSpec]:
    """The pipelines named by ``paths`` and the ``*.yaml`` / ``*.yml`` files in ``directory``.

    Every file is validated; the problems of all files are reported at once. Pipeline ids must be
    unique. Raises :class:`ConfigError`.
    """
    files = [Path(p) for p in paths]
    if directory is not None:
        folder = Path(directory)
        if not folder.is_dir():
            raise ConfigError(f"--dir {folder}: not a folder")
        found = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not found:
            raise ConfigError(f"--dir {folder}: no pipeline files (*.yaml, *.yml) in it")
        files += found
    if not files:
        raise ConfigError("launch: give pipeline files or --dir DIR")
    specs: list[PipelineSpec] = []
    problems: list[str] = []
    for path in files:
        try:
            specs.append(load_pipeline(str(path)))
        except ConfigError as exc:
            problems += [f"{path}: {p}" for p in exc.problems] or [exc.message]
    seen: dict[str, PipelineSpec] = {}
    for spec in specs:
        if spec.id in seen:
            problems.append(f"{spec.path}: pipeline id {spec.id!r} is also used by {seen[spec.id].path}; ids must be unique")
        seen[spec.id] = spec
    if problems:
        raise ConfigError(problems=problems)
    return specs


def _schedule_fields(schedule: ScheduleSpec) -> tuple[float | None, str | None, str]:
    minutes = schedule.every.total_seconds() / 60 if schedule.every is not None else None
    return minutes, schedule.cron, schedule.timezone


def _same_schedule(job: SyncJob, schedule: ScheduleSpec) -> bool:
    minutes, cron, timezone = _schedule_fields(schedule)
    if (job.interval_minutes is None) != (minutes is None):
        return False
    if minutes is not None and abs(job.interval_minutes - minutes) > 1e-9:
        return False
    return job.cron == cron and (job.timezone or "UTC") == timezone


def _job_schedule(job: SyncJob) -> dict[str, Any] | None:
    if job.cron:
        return {"cron": job.cron, "timezone": job.timezone}
    if job.interval_minutes is not None:
        return {"every": format_duration(dt.timedelta(minutes=job.interval_minutes))}
    return None


def describe_jobs(store: StateStore, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The sync jobs as ``osmosis jobs`` shows them: pipeline, schedule, last run, next run, status.

    ``status`` is ``running`` while a run holds the pipeline's lease, else ``paused`` for a paused job;
    otherwise the status of the latest run, whether the launcher or ``osmosis run`` made it (``idle``
    before the first run, then ``succeeded``, ``failed`` or ``cancelled``). ``last_run`` is the start of
    that latest run.
    """
    now = now or utcnow()
    paused = store.paused_pipelines()
    out = []
    for job in store.list_jobs():
        lease = store.get_lease(job.pipeline_id)
        running = lease is not None and lease.expires_at > now and not holder_is_dead(lease.holder)
        last_run, status = job.last_run, job.status
        # Manual runs (`osmosis run`) do not touch the job's last run: the history has them.
        latest = store.query_runs(job.pipeline_id, status=("running", "succeeded", "failed"), limit=1)
        if latest and (last_run is None or latest[0].started_at > last_run):
            last_run = latest[0].started_at
            if latest[0].status != "running":
                status = latest[0].status
        out.append({
            "pipeline": job.pipeline_id,
            "schedule": _job_schedule(job),
            "last_run": format_timestamp(last_run),
            "next_run": format_timestamp(job.next_run),
            "status": "running" if running else "paused" if job.pipeline_id in paused else status,
            "consecutive_failures": job.consecutive_failures,
            "paused": job.pipeline_id in paused,
            "spec_path": job.spec_path,
        })
    return out


# -- the loop -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class LaunchResult:
    """What one :meth:`SyncScheduler.run` did. ``runs`` counts finished runs (not skipped ones)."""

    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0
    stopped: bool = False  # stopped by stop() / a signal
    unfinished: int = 0  # runs still going when the launcher gave up waiting for their cancellation
    elsewhere: list[str] = dataclasses.field(default_factory=list)  # --once: due pipelines another launcher ran
    held: list[str] = dataclasses.field(default_factory=list)  # --once: due pipelines a live lease held elsewhere

    @property
    def runs(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    @property
    def exit_code(self) -> int:
        """0, or 1 when a run failed (runs cancelled by a shutdown do not count)."""
        return 1 if self.failed else 0


@dataclasses.dataclass
class _Done:
    spec: PipelineSpec
    outcome: str  # succeeded | failed | cancelled | skipped
    run: SyncRun | None = None
    error: BaseException | None = None


class SyncScheduler:
    """Runs ``specs`` when they are due, each through a :class:`~osmosis_beam.sync.SyncRunner` on a thread.

    Args:
        specs: the pipelines; those without a ``schedule`` are ignored (with a warning).
        store: the state store (sync jobs, leases, history).
        home: the osmosis home (dead letters go under it); default: the store's folder.
        concurrency: how many runs at once.
        grace: how long running runs may take to finish after :meth:`stop`.
        backoff: the wait after a pipeline's first failure; it doubles with each failure in a row.
        max_backoff: the cap of that wait.
        runner: override every pipeline's Beam runner.
        clock: ``now`` as a UTC-aware datetime (tests pass their own).
        abort_timeout: after the grace period, how long to wait for cancelled runs to stop (after a second
            signal: one second). Runs that do not stop are left to the next start's repair, never committed.
        metrics: an :class:`osmosis_beam.scheduler.metrics.LauncherMetrics`, told of every finished run.
        notifier: an :class:`osmosis_beam.scheduler.alerts.Notifier` (its ``default`` is the launcher-wide
            webhook); by default one that sends each pipeline's ``notify:`` alerts.
        progress: live progress of each run as log lines (``{"interval": 60.0}``, see SyncRunner); None: none.
    """

    def __init__(
        self,
        specs: Sequence[PipelineSpec],
        store: StateStore,
        *,
        home: str | Path | None = None,
        concurrency: int = 1,
        grace: dt.timedelta = DEFAULT_GRACE,
        backoff: dt.timedelta = DEFAULT_BACKOFF,
        max_backoff: dt.timedelta = DEFAULT_MAX_BACKOFF,
        runner: str | None = None,
        registry=None,
        clock: Callable[[], dt.datetime] = utcnow,
        abort_timeout: float = DEFAULT_ABORT_TIMEOUT,
        metrics: Any = None,
        notifier: Any = None,
        progress: dict[str, Any] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {concurrency}")
        if max_backoff < backoff:
            raise ConfigError(f"--max-backoff ({format_duration(max_backoff)}) must not be less than --backoff ({format_duration(backoff)})")
        self.specs = [s for s in specs if s.schedule is not None]
        for spec in specs:
            if spec.schedule is None:
                log.warning("pipeline %s has no schedule; the launcher ignores it (add schedule: {every: 15m})", spec.id)
        if not self.specs:
            raise ConfigError("launch: none of the pipelines has a schedule (add e.g. schedule: {every: 15m})")
        # A schedule with no next tick (cron 0 0 30 2 *) fails here, once, rather than in the loop each tick.
        problems = []
        for spec in self.specs:
            try:
                now = clock()
                next_run(spec.schedule, now, now)
            except ScheduleError as exc:
                problems.append(f"{spec.path or spec.id}: schedule: {exc.message}")
        if problems:
            raise ConfigError(problems=problems)
        self.store = store
        self.home = Path(home) if home else store.default_home()
        self.concurrency = concurrency
        self.grace = grace
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.runner = runner
        self.registry = registry
        self.abort_timeout = abort_timeout
        self.metrics = metrics
        self.notifier = notifier if notifier is not None else Notifier()
        # Runs share the launcher's stderr: progress is always log lines there, never a live terminal line.
        self.progress = {**progress, "live": False} if progress is not None else None
        self._clock = clock
        self._by_id = {s.id: s for s in self.specs}
        self._running: dict[str, threading.Thread] = {}
        self._not_before: dict[str, dt.datetime] = {}  # after a skip: not before the next tick
        self._done: queue.Queue[_Done] = queue.Queue()
        self._wake = threading.Event()  # set by finishing runs
        self._cancel = threading.Event()  # set when the grace period is over: running runs abort
        # Set from signal handlers: plain flags only (taking a lock in a handler can deadlock).
        self._stop_requested = False
        self._abort_requested = False
        self.stopped_by: int | None = None  # the first signal that stopped the loop (stop_on_signals)
        # --once: each due pipeline's last run when the launcher started, and what became of those it did not run.
        self._once_seen: dict[str, dt.datetime | None] = {}
        self._once_outcome: dict[str, str] | None = None

    # -- control ------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Take no new runs; give running ones the grace period. Safe to call from a signal handler."""
        self._stop_requested = True

    def abort(self) -> None:
        """Take no new runs and cancel the running ones now. Safe to call from a signal handler."""
        self._stop_requested = True
        self._abort_requested = True

    @contextlib.contextmanager
    def stop_on_signals(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
        """While inside, the first signal calls :meth:`stop`, a second one :meth:`abort` (main thread only)."""

        def handle(signum, frame) -> None:  # noqa: ARG001
            self.stopped_by = self.stopped_by or signum
            if self._stop_requested:
                self.abort()
            else:
                self.stop()

        previous = {s: signal.signal(s, handle) for s in signals}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    # -- start-up -----------------------------------------------------------------------------------
    def sweep_abandoned(self) -> int:
        """Repair runs left ``running`` by a dead launcher; returns how many pipelines were repaired.

        Only pipelines with a run whose holder is a dead process on this host are touched, and only
        under their lease: a run whose process is alive (or unknown, on another host) is left alone;
        its own next run repairs it once its lease has expired.
        """
        repaired = 0
        for spec in self.specs:
            stale = [(run, holder) for run, holder in self.store.running_runs(spec.id) if holder_is_dead(holder)]
            if not stale:
                continue
            try:
                if self._sync_runner(spec).repair():
                    repaired += 1
                else:
                    log.info("pipeline %s: abandoned runs left for the process that holds its lease", spec.id)
            except OsmosisError as exc:
                log.error("pipeline %s: could not repair abandoned runs: %s", spec.id, exc)
        return repaired

    def register(self) -> list[SyncJob]:
        """Create or update the sync job of every pipeline; a job whose schedule changed is rescheduled."""
        now = self._clock()
        jobs = []
        for spec in self.specs:
            job = self.store.get_job(spec.id)
            changed = False
            if job is None:
                job = SyncJob(pipeline_id=spec.id, source_id=spec.id)
                changed = True
            if not _same_schedule(job, spec.schedule):
                job.interval_minutes, job.cron, job.timezone = _schedule_fields(spec.schedule)
                job.next_run = None
                changed = True
            if job.spec_path != spec.path:
                job.spec_path = spec.path
                changed = True
            if job.next_run is None:
                # A pipeline run before by hand (`osmosis run`) keeps its cadence from that run.
                last = job.last_run
                if last is None:
                    latest = self.store.list_runs(spec.id, limit=1)
                    last = latest[0].started_at if latest else None
                job.next_run = next_attempt(
                    spec.schedule, last, now, failures=job.consecutive_failures, base=self.backoff, cap=self.max_backoff
                )
                changed = True
            if changed:
                self.store.put_job(job)
            jobs.append(job)
        return jobs

    # -- the loop -----------------------------------------------------------------------------------
    def run(self, *, once: bool = False, max_runs: int | None = None) -> LaunchResult:
        """Run due pipelines until stopped; ``once``: the ones due now, then return; ``max_runs``: return after N runs."""
        if max_runs is not None and max_runs < 1:
            raise ConfigError(f"--max-runs must be at least 1, got {max_runs}")
        result = LaunchResult()
        self.sweep_abandoned()
        self.register()
        log.info(
            "launcher started: %d pipelines, concurrency %d%s%s",
            len(self.specs), self.concurrency, ", once" if once else "", f", max runs {max_runs}" if max_runs else "",
        )
        pending_once: set[str] | None = None
        if once:
            now = self._clock()
            paused = self.store.paused_pipelines()
            jobs = self._jobs()
            pending_once = {j.pipeline_id for j in jobs.values() if self._due(j, now) and j.pipeline_id not in paused}
            # What each due job looked like: a job whose last run changes was run by another launcher.
            self._once_seen = {pid: jobs[pid].last_run for pid in pending_once}
            self._once_outcome = {}
            if not pending_once:
                log.info("nothing is due now")
        trouble: str | None = None
        retries = 0
        try:
            while True:
                self._reap(result)
                if self._stop_requested:
                    break
                if max_runs is not None and result.runs >= max_runs and not self._running:
                    break
                if pending_once is not None and not pending_once and not self._running:
                    break
                try:
                    wait = self._start_due(result, pending_once, max_runs)
                    trouble = None
                except OsmosisError as exc:  # e.g. the state store is busy: runs in progress go on
                    # Back off (1s doubling to 60s) and say it once per distinct problem, never spin.
                    retries = retries + 1 if trouble == str(exc) else 1
                    if trouble != str(exc):
                        log.warning("could not read the sync jobs (%s); trying again with backoff", exc)
                    trouble = str(exc)
                    wait = min(60.0, 2.0 ** (retries - 1))
                self._wake.wait(max(wait, 0.01))
                self._wake.clear()
        except BaseException:
            # A bug or a KeyboardInterrupt without signal handlers: cancel the runs cleanly first.
            log.error("launcher stopping on an unexpected error; aborting %d running runs", len(self._running))
            self.abort()
            self._drain(result)
            raise
        if self._stop_requested:
            result.stopped = True
            self._drain(result)
        self.notifier.drain(ALERT_DRAIN)
        if once and self._once_outcome:
            result.elsewhere = sorted(p for p, o in self._once_outcome.items() if o.startswith("ran"))
            result.held = sorted(p for p, o in self._once_outcome.items() if o.startswith("held"))
            for pid in sorted(self._once_outcome):
                log.info("once: %s %s", pid, self._once_outcome[pid])
        log.info(
            "launcher stopped: %d runs (%d succeeded, %d failed, %d cancelled), %d skipped",
            result.runs, result.succeeded, result.failed, result.cancelled, result.skipped,
        )
        return result

    def _start_due(self, result: LaunchResult, pending_once: set[str] | None, max_runs: int | None) -> float:
        """Start the due pipelines there is room for (oldest due first); return how long to sleep."""
        now = self._clock()
        jobs = self._jobs()
        paused = self.store.paused_pipelines()  # paused jobs (osmosis ui) start no run until resumed
        wait = _TICK
        budget = None if max_runs is None else max_runs - result.runs - len(self._running)
        due = []
        for spec in self.specs:
            if spec.id in self._running or spec.id in paused:
                continue
            if pending_once is not None and spec.id not in pending_once:
                continue
            job = jobs.get(spec.id)
            if job is None:  # removed under us (e.g. by hand): register again
                self.register()
                job = self._jobs().get(spec.id)
                if job is None:
                    continue
            if pending_once is not None and self._settled_elsewhere(spec.id, job, now):
                pending_once.discard(spec.id)
                continue
            if self._due(job, now):
                due.append((self._when(job), spec, job))
            else:
                wait = min(wait, max((self._when(job) - now).total_seconds(), 0.0))
        due.sort(key=lambda item: item[0])
        for _, spec, job in due:
            if len(self._running) >= self.concurrency or (budget is not None and budget <= 0):
                break
            if pending_once is not None:
                pending_once.discard(spec.id)
            self._start(spec, job)
            if budget is not None:
                budget -= 1
        return wait

    def _settled_elsewhere(self, pipeline_id: str, job: SyncJob, now: dt.datetime) -> bool:
        """For ``--once``: whether a due pipeline needs no run from this launcher, because another launcher
        ran it since this one started, or holds its lease now (and is alive). Records which, to say so."""
        if job.last_run != self._once_seen.get(pipeline_id):
            self._once_outcome[pipeline_id] = f"ran on another launcher ({job.status} at {format_timestamp(job.last_run)})"
            return True
        if self._due(job, now):
            return False  # due: start it (a lease held elsewhere then skips it, and says so)
        lease = self.store.get_lease(pipeline_id)
        if lease is not None and lease.expires_at > now and not holder_is_dead(lease.holder):
            self._once_outcome[pipeline_id] = f"held by a live lease ({lease.holder} until {format_timestamp(lease.expires_at)})"
            return True
        return False

    def _jobs(self) -> dict[str, SyncJob]:
        return {j.pipeline_id: j for j in self.store.list_jobs() if j.pipeline_id in self._by_id}

    def _when(self, job: SyncJob) -> dt.datetime:
        when = job.next_run or self._clock()
        not_before = self._not_before.get(job.pipeline_id)
        return max(when, not_before) if not_before else when

    def _due(self, job: SyncJob, now: dt.datetime) -> bool:
        return self._when(job) <= now

    def _drain(self, result: LaunchResult) -> None:
        if self._running:
            log.warning(
                "stopping: no new runs; waiting up to %s for %d running (%s)",
                format_duration(self.grace), len(self._running), ", ".join(sorted(self._running)),
            )
        deadline = time.monotonic() + self.grace.total_seconds()
        while self._running and not self._abort_requested and time.monotonic() < deadline:
            self._wake.wait(min(_TICK, max(deadline - time.monotonic(), 0.0)))
            self._wake.clear()
            self._reap(result)
        if not self._running:
            return
        log.warning("aborting %d runs without committing: %s", len(self._running), ", ".join(sorted(self._running)))
        self._cancel.set()
        # Cancelled runs get abort_timeout to stop cleanly; after a second signal, only a moment (_ABORT_NOW).
        start = time.monotonic()
        while self._running:
            limit = _ABORT_NOW if self._abort_requested else self.abort_timeout
            left = start + limit - time.monotonic()
            if left <= 0:
                break
            self._wake.wait(min(_TICK, left))
            self._wake.clear()
            self._reap(result)
        if self._running:
            result.unfinished = len(self._running)
            log.error(
                "%d runs did not stop in time (%s); left as they are: their history rows stay 'running', nothing "
                "of them is committed, and the next start repairs them", len(self._running), ", ".join(sorted(self._running)),
            )

    def _reap(self, result: LaunchResult) -> None:
        while True:
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                return
            self._running.pop(done.spec.id, None)
            setattr(result, done.outcome, getattr(result, done.outcome) + 1)
            if self.metrics is not None:
                self.metrics.observe(done.spec.id, done.outcome, done.run)

    # -- one run ------------------------------------------------------------------------------------
    def _sync_runner(self, spec: PipelineSpec, **hooks: Any):
        from osmosis_beam.sync.runner import SyncRunner

        return SyncRunner(
            spec, self.store, home=self.home, runner=self.runner, registry=self.registry,
            cancel_event=self._cancel, progress=self.progress, **hooks,
        )

    def _start(self, spec: PipelineSpec, job: SyncJob) -> None:
        slot = job.next_run or self._clock()
        self._not_before.pop(spec.id, None)
        thread = threading.Thread(target=self._execute, args=(spec, slot, job.last_run), name=f"run-{spec.id}", daemon=True)
        self._running[spec.id] = thread
        thread.start()

    def _execute(self, spec: PipelineSpec, slot: dt.datetime, last_run: dt.datetime | None = None) -> None:
        """One run on its own thread; reports to the loop through ``_done``."""
        began = time.monotonic()
        attempt = self._clock()
        finished = {"job": False}

        def on_start(run: SyncRun) -> None:
            log.info("start %s run %s window %s", spec.id, run.run_id, run.window if run.window else "(none)")

        def on_done(run: SyncRun | None, error: BaseException | None) -> None:
            # Still under the lease: another launcher sees the new next run before it can take the lease.
            self._finish_job(spec, slot, attempt, run, error, time.monotonic() - began)
            finished["job"] = True

        def still_due() -> str | None:
            # Under the lease: another launcher may have run it between our look at the jobs and now.
            job = self.store.get_job(spec.id)
            if job is not None and job.last_run != last_run:
                return f"another launcher ran it meanwhile ({job.status} at {format_timestamp(job.last_run)})"
            return None

        done = _Done(spec, "failed")
        sync = None
        try:
            sync = self._sync_runner(spec, on_start=on_start, on_done=on_done, still_due=still_due)
            run = sync.run()
            done = _Done(spec, "succeeded", run=run)
        except AlreadyRanError as exc:
            log.info("skip %s: %s", spec.id, exc.message.split("skipped, ", 1)[-1])
            if self._once_outcome is not None:
                self._once_outcome[spec.id] = "ran on another launcher (" + exc.message.split("(", 1)[-1]
            done = _Done(spec, "skipped", error=exc)
        except LeaseHeldError as exc:
            now = self._clock()
            self._not_before[spec.id] = next_run(spec.schedule, now, now)
            held = self._lease_text(spec.id)
            log.info("skip %s: another run holds its lease%s; next try %s", spec.id, held, format_timestamp(self._not_before[spec.id]))
            if self._once_outcome is not None:
                self._once_outcome[spec.id] = f"held by a live lease{held}"
            done = _Done(spec, "skipped", error=exc)
        except BaseException as exc:  # noqa: BLE001 - a run's failure never stops the launcher
            outcome = "cancelled" if self._cancel.is_set() else "failed"
            done = _Done(spec, outcome, run=sync.current_run if sync is not None else None, error=exc)
            if not finished["job"]:
                # Failed before it held the lease (e.g. the state store was unreachable).
                try:
                    self._finish_job(spec, slot, attempt, None, exc, time.monotonic() - began)
                except Exception as state_exc:  # noqa: BLE001
                    log.error("pipeline %s: could not update its sync job: %s", spec.id, state_exc)
        finally:
            self._done.put(done)
            self._wake.set()

    def _lease_text(self, pipeline_id: str) -> str:
        try:
            lease = self.store.get_lease(pipeline_id)
        except OsmosisError:
            return ""
        return f" ({lease.holder} until {format_timestamp(lease.expires_at)})" if lease else ""

    def _finish_job(
        self, spec: PipelineSpec, slot: dt.datetime, attempt: dt.datetime,
        run: SyncRun | None, error: BaseException | None, seconds: float,
    ) -> None:
        now = self._clock()
        job = self.store.get_job(spec.id) or SyncJob(pipeline_id=spec.id, source_id=spec.id, spec_path=spec.path)
        job.interval_minutes, job.cron, job.timezone = _schedule_fields(spec.schedule)
        job.last_run = run.started_at if run is not None else attempt
        failures_before = job.consecutive_failures
        message = None
        run_id = run.run_id if run is not None else "-"
        window = run.window if run is not None and run.window is not None else "(none)"
        if error is None:
            job.status, job.consecutive_failures = "succeeded", 0
            job.next_run = next_attempt(spec.schedule, slot, now)
            log.info(
                "end %s run %s succeeded window %s read %d written %d dead %d in %.2fs; next %s",
                spec.id, run_id, window, run.records_read, run.records_written, run.dead_letter, seconds,
                format_timestamp(job.next_run),
            )
        elif self._cancel.is_set():
            # Not the pipeline's fault: no backoff, and it is due again at the next start.
            job.status = "cancelled"
            job.next_run = slot
            log.warning("end %s run %s cancelled window %s after %.2fs (not committed)", spec.id, run_id, window, seconds)
        else:
            job.status = "failed"
            job.consecutive_failures += 1
            job.next_run = next_attempt(
                spec.schedule, slot, now, failures=job.consecutive_failures, base=self.backoff, cap=self.max_backoff
            )
            if run is not None and run.error:
                message = run.error  # redacted by the runner
            else:
                message = error.message if isinstance(error, OsmosisError) else f"{type(error).__name__}: {error}"
            log.warning(
                "end %s run %s failed window %s after %.2fs: %s; failure %d in a row, backing off %s, next %s",
                spec.id, run_id, window, seconds, message, job.consecutive_failures,
                format_duration(backoff_delay(job.consecutive_failures, self.backoff, self.max_backoff)),
                format_timestamp(job.next_run),
            )
        self.store.put_job(job)
        if job.status in ("succeeded", "failed"):  # a cancelled run is the launcher's doing, not news
            self.notifier.after_run(spec, run, message, status=job.status, failures_before=failures_before,
                                    failures_now=job.consecutive_failures)

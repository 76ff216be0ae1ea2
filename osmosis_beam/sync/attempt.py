"""Phase "attempt": one run from its ``running`` row to committed or failed, with its phase explicit.

The phase says what a failure must do:

- ``OPENING``: nothing is recorded yet; a failed run is recorded as failed.
- ``RECORDED``: the run is in the history; it is marked failed and its staged output removed.
- ``PUBLISHED``: its output is visible (or may be: a publish that failed half-way); it must never be
  marked failed (the next run would read and publish the window again). It stays ``running`` and the
  next start commits it (``repair``), publishing its dead letters too.
- ``COMMITTED``: done.

Dead letters are sealed (their manifest written and synced) before the sink publishes, so the only
step left for them once the sink's output is visible is one rename in their own folder. A window whose
dead letters break the budget (``dead_letter: {max_count, max_ratio}``) fails before anything is published.
"""
from __future__ import annotations

import collections
import datetime as dt
import enum
import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from osmosis_beam.core.errors import LeaseHeldError, OsmosisError, RunError
from osmosis_beam.core.logs import event_fields
from osmosis_beam.core.models import SyncRun, new_run_id
from osmosis_beam.core.secrets import redact_text
from osmosis_beam.core.timefmt import utcnow
from osmosis_beam.io.base import BaseConnector, BaseSink
from osmosis_beam.sync.window import RunWindow, open_window

if TYPE_CHECKING:
    from osmosis_beam.sync.runner import SyncRunner

__all__ = ["Phase", "Attempt", "CANCELLED", "describe_error"]

log = logging.getLogger(__name__)
CANCELLED = "cancelled: the launcher is shutting down and aborted the run before it committed"


class Phase(enum.Enum):
    OPENING = "opening"
    RECORDED = "recorded"
    PUBLISHED = "published"
    COMMITTED = "committed"


class Attempt:
    """One run of ``runner.spec`` with ``connector``; ``run()`` returns the committed :class:`SyncRun`."""

    def __init__(self, runner: "SyncRunner", connector: BaseConnector, lease_lost=lambda: False) -> None:
        self.runner = runner
        self.connector = connector
        self.lease_lost = lease_lost
        self.phase = Phase.OPENING
        self.run_row = new_run(runner, "running")
        self.sink: BaseSink | None = None
        self.dead_sink: BaseSink | None = None
        self._uncertain = False  # a failed publish whose outcome could not be checked

    def run(self) -> SyncRun:
        runner, spec, store, run = self.runner, self.runner.spec, self.runner.store, self.run_row
        started = time.monotonic()
        try:
            opened = open_window(spec, store, self.connector, full_refresh=runner.full_refresh)
            run.window = opened.window
            store.start_run(run, runner.holder)
            self.phase = Phase.RECORDED
            log.info("pipeline %s: run %s started, window %s", spec.id, run.run_id, opened.window,
                     extra=event_fields("run_started", spec.id, run.run_id))
            runner.call_hook(runner.on_start, run)
            self._check_cancelled()
            skip = opened.skip_reason(self.connector, spec.incremental.lookback)
            ran = False
            if skip is not None:
                run.note = skip
            else:
                self._run_job(opened)
                ran = True
            if self.lease_lost():
                raise RunError(f"pipeline {spec.id}: lost the lease during the run; not committing")
            self._check_cancelled()
            new_state = self.connector.end_state(opened.window) if (opened.window is not None and not opened.unchanged) else None
            if opened.window is not None and (ran or runner.full_refresh):
                self._publish(opened, new_state)
            run.status = "succeeded"
            run.finished_at = utcnow()
            self._commit(opened.commit_hi, new_state)
            self.phase = Phase.COMMITTED
            log.info(
                "pipeline %s: run %s succeeded, window %s, read %d, written %d, dead letters %d, %.2fs",
                spec.id, run.run_id, opened.window, run.records_read, run.records_written, run.dead_letter,
                time.monotonic() - started,
                extra=event_fields("run_succeeded", spec.id, run.run_id),
            )
            return run
        except BaseException as exc:
            raise self._failed(exc) from None
        finally:
            try:
                self.connector.disconnect()
            except Exception:  # noqa: BLE001
                pass

    # -- the job and the commit ---------------------------------------------------------------------
    def _check_cancelled(self) -> None:
        if self.runner.cancelled():
            raise RunError(CANCELLED)

    def _run_job(self, opened: RunWindow) -> None:
        runner, run = self.runner, self.run_row
        self.sink = sink = runner.sink()
        self.dead_sink = dead_sink = runner.dead_letter_sink()
        sink.use_schema(self.connector.get_schema() if sink.wants_schema else None)
        sink.prepare(run.run_id, full_refresh=runner.full_refresh)
        dead_sink.prepare(run.run_id)
        counts = runner.run_beam(self.connector, sink, dead_sink, opened.window, run.run_id)
        run.records_read = counts.get("records_read", 0)
        run.records_written = counts.get("records_written", 0)
        run.dead_letter = counts.get("dead_letter", 0)
        self._check_budget()

    def _check_budget(self) -> None:
        run, spec = self.run_row, self.runner.spec
        if not self.runner.budget_applies:
            return
        why = spec.dead_letter.over_budget(run.dead_letter, run.records_read, run.records_written)
        if why is not None:
            raise RunError(
                f"pipeline {spec.id}: over the dead-letter budget: {why}, so nothing was published or committed"
                f"{self._common_reasons()}. Fix the cause (a step, a cast, the sink's table) and run again, or "
                "raise dead_letter.max_ratio (a share, 1 = no limit) or dead_letter.max_count in the pipeline"
            )

    def _common_reasons(self, limit: int = 3) -> str:
        """The most common reasons among the run's staged dead letters, for the budget's error."""
        counter: collections.Counter = collections.Counter()
        staging = self.dead_sink.staging_dir(self.run_row.run_id) if self.dead_sink is not None else None
        for part in sorted(staging.glob("part-*.jsonl")) if staging is not None and staging.is_dir() else ():
            with open(part, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        letter = json.loads(line)
                        counter[(str(letter.get("step")), str(letter.get("error")))] += 1
                    except (ValueError, AttributeError):
                        continue
        if not counter:
            return ""
        shown = "; ".join(f"{n} x {step}: {error}" for (step, error), n in counter.most_common(limit))
        return f". Most common: {shown}"

    def _publish(self, opened: RunWindow, new_state: dict[str, Any] | None) -> None:
        runner, run = self.runner, self.run_row
        if self.sink is None:  # a full refresh of an empty source still replaces the output
            self.sink = runner.sink()
            self.sink.prepare(run.run_id, full_refresh=True)
        counts = {"records_read": run.records_read, "records_written": run.records_written, "dead_letter": run.dead_letter}
        runner.store.set_pending_state(run.run_id, new_state, counts)
        hi = opened.window.hi if isinstance(opened.window.hi, dt.datetime) else utcnow()
        if self.dead_sink is not None:
            # Every write the dead letters need happens now, while nothing is visible: after the sink
            # publishes, theirs is one rename (and a repair finishes it if even that fails).
            self.dead_sink.seal(run.run_id, hi)
        try:
            self.sink.publish(run.run_id, window_hi=hi, full_refresh=runner.full_refresh)
        except BaseException:
            if self._maybe_published():
                self.phase = Phase.PUBLISHED
            raise
        self.phase = Phase.PUBLISHED
        if self.dead_sink is not None:
            self.dead_sink.publish(run.run_id, window_hi=hi)

    def _maybe_published(self) -> bool:
        """After a failed publish: whether the output may be visible (then only a repair may decide)."""
        try:
            return self.sink.is_published(self.run_row.run_id)
        except Exception as exc:  # noqa: BLE001 - unknown counts as maybe: never fail a visible run
            log.warning("pipeline %s: cannot tell whether run %s was published (%s); leaving it for repair",
                        self.runner.spec.id, self.run_row.run_id, exc)
            self._uncertain = True
            return True

    def _commit(self, watermark, state) -> None:
        """Commit with a few retries: a busy state store must not turn a published run into a failure."""
        delay = 0.2
        for attempt in range(5):
            try:
                self.runner.store.commit_run(self.run_row, watermark, state)
                return
            except OsmosisError:
                if attempt == 4:
                    raise
                time.sleep(delay)
                delay *= 2

    # -- failure ------------------------------------------------------------------------------------
    def _failed(self, exc: BaseException) -> BaseException:
        """Record the failure as the phase demands; returns the exception the caller raises."""
        runner, spec, store, run = self.runner, self.runner.spec, self.runner.store, self.run_row
        secrets = runner.secrets
        if self.phase is Phase.PUBLISHED:
            # The output is visible; marking the run failed would make the next run read the
            # window again and publish it twice. Leave it 'running': the next start commits it.
            log.error(
                "pipeline %s: run %s published its output but could not finish (%s); "
                "the next run of this pipeline will commit it",
                spec.id, run.run_id, redact_text(describe_error(exc), secrets),
            )
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                return exc
            what = "may have published its output (it could not be checked)" if self._uncertain else "published its output"
            return RunError(
                f"pipeline {spec.id}: run {run.run_id} {what} but could not finish "
                f"({redact_text(describe_error(exc), secrets)}); the next run commits it"
            )
        run.status = "failed"
        run.finished_at = utcnow()
        run.error = redact_text(describe_error(exc), secrets)
        for target in (self.sink, self.dead_sink):
            if target is None:
                continue
            try:
                target.abort(run.run_id)
            except Exception as cleanup_exc:  # noqa: BLE001 - the original error matters more
                log.warning("pipeline %s: cleanup after failure failed: %s", spec.id, cleanup_exc)
        try:
            if self.phase is Phase.OPENING:
                store.start_run(run, runner.holder)
            store.fail_run(run)
        except OsmosisError as state_exc:
            log.error("pipeline %s: could not record the failed run: %s", spec.id, state_exc)
        # INFO, not ERROR: the caller reports the error it gets back (the CLI prints it once, the launcher
        # logs its end line); at ERROR every failed run would print its error twice.
        log.info("pipeline %s: run %s failed: %s", spec.id, run.run_id, run.error,
                 extra=event_fields("run_failed", spec.id, run.run_id))
        if isinstance(exc, (KeyboardInterrupt, SystemExit, LeaseHeldError)):
            return exc
        return RunError(f"pipeline {spec.id}: run {run.run_id} failed: {run.error}")


def new_run(runner: "SyncRunner", status: str) -> SyncRun:
    """A new history row for ``runner``'s pipeline."""
    return SyncRun(
        run_id=new_run_id(),
        pipeline_id=runner.spec.id,
        status=status,
        started_at=utcnow(),
        runner=runner.runner,
        full_refresh=runner.full_refresh,
    )


_BEAM_STEP = re.compile(r"\s*\[while running '[^']*'\]")


def describe_error(exc: BaseException) -> str:
    """One line for the history: an osmosis error's message, else the last line Beam's wrapping hides."""
    if isinstance(exc, OsmosisError):
        return _BEAM_STEP.sub("", exc.message)  # Beam re-raises worker errors with "[while running 'step']"
    if isinstance(exc, KeyboardInterrupt) or _BEAM_STEP.sub("", str(exc)).strip() == "KeyboardInterrupt":
        return "interrupted"
    text = _BEAM_STEP.sub("", str(exc)).strip()
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line and not line.startswith(("File ", "Traceback", "[while running")):
            text = line
            break
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

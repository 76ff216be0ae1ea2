"""Phase "job" of a run: submit the Beam pipeline, wait for it, cancel it, and read its counts.

The in-process runner returns from ``p.run()`` when the job is done. A remote job (portable, Flink,
Spark, Dataflow) is waited for on a helper thread while this thread watches the run's cancel event and
``job_timeout``; a cancelled, timed-out or interrupted run cancels its job, because its output would
never be committed.

While a remote job runs, :meth:`JobRunner.running_counts` gives its counters so far for the live progress:
from the job service (which Beam's own job services answer only at the end), and on Flink and Spark from
the cluster's own REST API (the JobManager's; the Spark driver's web UI), where the counters of every
finished bundle are, whichever process ran it.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any, Callable, Mapping, Sequence

from osmosis_beam.core.errors import RunError
from osmosis_beam.core.records import METRICS_NAMESPACE
from osmosis_beam.core.secrets import redact_text
from osmosis_beam.core.timefmt import format_duration

__all__ = ["JobRunner", "job_id", "job_counts", "running_counts"]

log = logging.getLogger(__name__)
CANCEL_GRACE = 10.0  # seconds to wait for a cancelled remote job to report that it stopped
PROGRESS_DEADLINE = 3.0  # seconds one query of a running job's counters may take
PROGRESS_EVERY = 2.0  # seconds between two queries of a running job's counters (a terminal redraws faster)


class JobRunner:
    """Runs one built pipeline to DONE on ``runner``; ``run(p)`` returns the job's osmosis counters."""

    def __init__(
        self,
        runner: str,
        runner_options: Mapping[str, Any],
        beam_args: Sequence[str],
        *,
        pipeline_id: str,
        secrets: Sequence[Any] = (),
        cancelled: Callable[[], bool] | None = None,
        cancel_message: str = "cancelled",
    ) -> None:
        import osmosis_beam.runners as runners  # imports Beam: only when a job is run

        self._runners = runners
        self.runner, self.runner_options, self.beam_args = runner, dict(runner_options), list(beam_args)
        self.pipeline_id, self._secrets = pipeline_id, list(secrets)
        self._cancelled, self._cancel_message = cancelled, cancel_message
        self.remote = runners.is_remote(runner)
        self._flink_job: str | None = None  # the Flink job id behind the Beam job, once found
        self._last_look: tuple[float, dict[str, Any]] | None = None
        # Where a running job's counters are, besides the job service: (the API's base URL, what it is).
        self._rest: tuple[str, str] | None = None
        if runner == "flink":
            from osmosis_beam.runners.flink import flink_rest_url

            base = flink_rest_url(self.runner_options, self.beam_args)
            self._rest = (base, f"Flink's REST API at {base}") if base else None
        elif runner == "spark":
            from osmosis_beam.runners.spark import spark_ui_url

            base = spark_ui_url(self.runner_options, self.beam_args)
            self._rest = (base, f"the Spark driver's REST API at {base}") if base else None

    def progress_source(self, options) -> str:
        """Where the live progress of this runner's job comes from, in words (for the log at -v)."""
        from apache_beam.options.pipeline_options import DirectOptions, PortableOptions

        environment = (options.view_as(PortableOptions).environment_type or "").upper()
        if not self.remote:
            if options.view_as(DirectOptions).direct_running_mode == "multi_processing":
                return "nowhere until the job ends (the direct runner's worker processes report their counts at the end)"
            return "the workers in this process"
        if environment == "LOOPBACK":
            return f"the {self.runner} job's SDK workers, which run in this process (LOOPBACK)"
        if self._rest is not None:
            return (f"{self._rest[1]} (the job's Beam counters, reported as each bundle finishes: "
                    "a batch job's read tasks report when each is done)")
        return (f"the {self.runner} job service's metrics while the job runs (Beam's own job services report "
                "them only when the job ends: until then the job state)")

    def running_counts(self, result) -> dict[str, Any]:
        """A running job's counters so far and its ``job_state``; asked at most every PROGRESS_EVERY s.

        Never raises: what cannot be had within PROGRESS_DEADLINE is left out (logged at debug).
        """
        now = time.monotonic()
        if self._last_look is not None and now - self._last_look[0] < PROGRESS_EVERY:
            return dict(self._last_look[1])
        counts = running_counts(result)
        if self._rest is not None:
            there = self._rest_counts(result)
            counts.update({k: max(v, int(counts.get(k) or 0)) for k, v in there.items()})
        self._last_look = (time.monotonic(), counts)
        return dict(counts)

    def _rest_counts(self, result) -> dict[str, int]:
        """The job's osmosis counters from the runner's own REST API; empty when it gives none in time."""
        base, what = self._rest
        try:
            if self.runner == "spark":
                from osmosis_beam.runners.spark import spark_job_counters

                return spark_job_counters(base, job_id(result), METRICS_NAMESPACE, PROGRESS_DEADLINE)
            from osmosis_beam.runners.flink import flink_job_counters, flink_jobs_named

            if self._flink_job is None:
                jobs = flink_jobs_named(base, job_id(result), PROGRESS_DEADLINE)
                if not jobs:
                    return {}
                self._flink_job = max(jobs, key=lambda j: j.get("start-time", 0))["jid"]
            return flink_job_counters(base, self._flink_job, METRICS_NAMESPACE, PROGRESS_DEADLINE)
        except Exception as exc:  # noqa: BLE001 - progress never fails a run
            log.debug("pipeline %s: %s gave no counters: %s", self.pipeline_id, what, redact_text(str(exc), self._secrets))
            return {}

    def _is_cancelled(self) -> bool:
        return self._cancelled is not None and self._cancelled()

    def submit(self, p) -> Any:
        """``p.run()``: the result of a finished in-process job, or of a submitted remote one."""
        if self.remote:
            self._runners.check_no_secrets(p, self._secrets, self.runner)
        if self._is_cancelled():
            raise RunError(self._cancel_message)
        return p.run()

    def wait(self, result) -> dict[str, int]:
        """Wait for DONE (or fail); the osmosis counters of the finished job."""
        from apache_beam.runners.runner import PipelineState

        if self.remote:
            log.info("pipeline %s: submitted to %s as job %s", self.pipeline_id, self.runner, job_id(result))
        state = self._wait(result)
        if state != PipelineState.DONE:
            raise RunError(f"the {self.runner} runner finished in state {state}, not DONE")
        return job_counts(result)

    def _wait(self, result) -> str:
        """``wait_until_finish`` once, on a helper thread (runners differ in whether a timed wait repeats)."""
        if not self.remote and self._cancelled is None:
            return result.wait_until_finish()
        timeout = self._runners.job_timeout(self.runner_options, self.beam_args) if self.remote else None
        deadline = time.monotonic() + timeout if timeout else None
        outcome: dict[str, Any] = {}

        def wait() -> None:
            try:
                outcome["state"] = result.wait_until_finish()
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                outcome["error"] = exc

        waiter = threading.Thread(target=wait, name=f"wait-{self.pipeline_id}", daemon=True)
        waiter.start()
        try:
            while waiter.is_alive():
                waiter.join(0.2)
                if not waiter.is_alive():
                    break
                if self._is_cancelled():
                    self.cancel(result, waiter, "the run was cancelled")
                    raise RunError(self._cancel_message)
                if deadline is not None and time.monotonic() >= deadline:
                    self.cancel(result, waiter, "job_timeout passed")
                    raise RunError(
                        f"the {self.runner} job {job_id(result)} did not finish within "
                        f"{format_duration(dt.timedelta(seconds=timeout))} (runner option job_timeout); cancelled it"
                    )
        except (KeyboardInterrupt, SystemExit):
            if self.remote:
                self.cancel(result, waiter, "interrupted")
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome["state"]

    def cancel(self, result, waiter: threading.Thread, why: str) -> None:
        """Cancel the job and give the runner a moment to confirm; log what happened."""
        job = job_id(result)
        if self.runner == "flink":
            # Beam's Flink job server does not cancel the job on the cluster; ask Flink itself.
            try:
                flink_jobs = self._runners.cancel_flink_job(self.runner_options, self.beam_args, job)
                log.warning("pipeline %s: cancelled Flink job(s) %s through Flink's REST API (%s)",
                            self.pipeline_id, ", ".join(flink_jobs) or "-", why)
            except Exception as exc:  # noqa: BLE001 - the Beam-side cancel below still runs
                log.warning("pipeline %s: could not cancel the Flink job for %s through Flink's REST API: %s",
                            self.pipeline_id, job, redact_text(str(exc), self._secrets))
        try:
            result.cancel()
        except Exception as exc:  # noqa: BLE001 - the run fails either way
            log.warning(
                "pipeline %s: could not cancel the %s job %s (%s): %s; cancel it in the runner's UI",
                self.pipeline_id, self.runner, job, why, redact_text(str(exc), self._secrets),
            )
            return
        waiter.join(CANCEL_GRACE)
        if waiter.is_alive():
            log.warning("pipeline %s: asked the %s to cancel job %s (%s); it has not stopped yet", self.pipeline_id, self.runner, job, why)
        else:
            log.warning("pipeline %s: cancelled the %s job %s (%s)", self.pipeline_id, self.runner, job, why)


def job_id(result) -> str:
    """The runner's id for a submitted job (Dataflow job id, job service id), for logs and errors."""
    value = getattr(result, "job_id", None)
    if callable(value):
        try:
            value = value()
        except Exception:  # noqa: BLE001
            value = None
    return str(value or getattr(result, "_job_id", None) or "?")


def job_counts(result) -> dict[str, int]:
    """The job's osmosis counters (records_read, records_written, dead_letter, ...), summed over steps."""
    counts: dict[str, int] = {}
    try:
        from apache_beam.metrics.metric import MetricsFilter

        metrics = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except Exception as exc:  # noqa: BLE001 - some runners report no metrics
        log.warning("could not read Beam metrics: %s", exc)
        return counts
    return _sum_counters(metrics, committed_first=True)


def running_counts(result) -> dict[str, Any]:
    """A running job's osmosis counters so far (attempted values), and its state as ``job_state``.

    For the live progress of remote runs. The portable runner's ``metrics()`` keeps its first answer, so
    its job service is asked afresh each time (with a deadline). A job service that reports metrics only
    when the job ends (Beam's local job service) gives just the state until then.
    """
    from apache_beam.metrics.metric import MetricsFilter

    out: dict[str, Any] = {}
    try:
        from apache_beam.runners.portability import portable_runner

        if isinstance(result, portable_runner.PipelineResult) and hasattr(result, "_job_service"):
            from apache_beam.portability.api import beam_job_api_pb2

            service, job = result._job_service, result._job_id
            state = service.GetState(beam_job_api_pb2.GetJobStateRequest(job_id=job), timeout=10).state
            out["job_state"] = beam_job_api_pb2.JobState.Enum.Name(state)
            response = service.GetJobMetrics(beam_job_api_pb2.GetJobMetricsRequest(job_id=job), timeout=10)
            metrics = portable_runner.PortableMetrics(response)
        else:
            out["job_state"] = str(result.state)
            metrics = result.metrics()
        out.update(_sum_counters(metrics.query(MetricsFilter().with_namespace(METRICS_NAMESPACE)), committed_first=False))
    except Exception as exc:  # noqa: BLE001 - progress never fails a run
        log.debug("pipeline metrics unavailable while the job runs: %s", exc)
    return out


def _sum_counters(metrics: Mapping[str, Any], committed_first: bool) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in metrics.get("counters", []):
        first, second = (item.committed, item.attempted) if committed_first else (item.attempted, item.committed)
        value = first if first is not None else second
        counts[item.key.metric.name] = counts.get(item.key.metric.name, 0) + int(value or 0)
    return counts

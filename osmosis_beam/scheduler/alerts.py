"""Alerts: a JSON POST to a pipeline's webhook when a run (scheduled, or ``osmosis run``) fails, recovers, or
(optionally) every run.

The launcher decides after each run from the consecutive failures it keeps in the state store (the sync
job's ``consecutive_failures``): a failing job alerts once, on the first failure of the streak, not at
every tick, and once more when it recovers (:func:`alert_event`). Delivery runs on a thread of its own with
a timeout per attempt and retries (network errors, 429, 5xx), so a slow or failing webhook never delays or
fails a run; the launcher waits for pending deliveries (a bounded time) before it exits.

The body::

    {"event": "failure", "pipeline": "orders", "run_id": "...", "status": "failed",
     "consecutive_failures": 1, "error": "<redacted>", "summary": {... the run's summary ...},
     "started_at": "...", "finished_at": "...", "host": "...", "text": "osmosis: pipeline orders failed: ..."}

Example::

    notifier = Notifier(default=parse_notify("http://127.0.0.1:9000/hook", []))
    notifier.after_run(spec, run, error_text, failures_before=0, failures_now=1)
    notifier.drain(30)
"""
from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
from typing import Any, Sequence

from osmosis_beam.core.logs import event_fields
from osmosis_beam.core.models import SyncRun
from osmosis_beam.core.notify import NotifySpec
from osmosis_beam.core.secrets import redact_text, reveal
from osmosis_beam.core.timefmt import format_timestamp

__all__ = ["Notifier", "alert_event", "alert_body", "send_webhook", "after_manual_run"]

log = logging.getLogger(__name__)
USER_AGENT = "osmosis-beam alerts"


def alert_event(notify: NotifySpec, status: str, failures_before: int, failures_now: int) -> str | None:
    """Which alert a finished run sends (``failure``, ``recovery``, ``success``), or None."""
    if status == "failed":
        if failures_before == 0 or "every_run" in notify.on:
            return "failure" if notify.wants("failure") else None
        return None  # the streak already alerted
    if status == "succeeded":
        if failures_before > 0 and notify.wants("recovery"):
            return "recovery"
        if notify.wants("success"):
            return "success"
    return None


def _where(url: str) -> str:
    """The webhook as logs may show it: scheme and host only (its path and query often hold a token)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}/…"


def alert_body(event: str, pipeline_id: str, run: SyncRun | None, error: str | None, failures: int,
               secrets: Sequence[Any] = ()) -> dict[str, Any]:
    error = redact_text(error, secrets) if error else None
    summary = run.summary() if run is not None else None
    words = {"failure": "failed", "recovery": "recovered", "success": "succeeded"}[event]
    text = f"osmosis: pipeline {pipeline_id} {words}"
    if event == "failure":
        text += f" ({failures} in a row)" if failures > 1 else ""
        text += f": {error}" if error else ""
    elif event == "recovery":
        text += f" after {failures} failure{'s' if failures != 1 else ''} in a row"
    if summary and event != "failure":
        text += f"; read {summary['records_read']}, written {summary['records_written']}, dead letters {summary['dead_letter']}"
    return {
        "event": event,
        "pipeline": pipeline_id,
        "run_id": run.run_id if run is not None else None,
        "status": "failed" if event == "failure" else "succeeded",
        "consecutive_failures": failures if event == "failure" else 0,
        "error": error,
        "summary": summary,
        "started_at": format_timestamp(run.started_at) if run is not None and run.started_at else None,
        "finished_at": format_timestamp(run.finished_at) if run is not None and run.finished_at else None,
        "host": socket.gethostname(),
        "text": text,
    }


def send_webhook(notify: NotifySpec, body: dict[str, Any], secrets: Sequence[Any] = ()) -> bool:
    """POST ``body`` as JSON; retries on network errors, 429 and 5xx. True when the webhook took it (2xx)."""
    import requests

    url = str(reveal(notify.webhook))
    timeout = notify.timeout.total_seconds()
    delay = 0.5
    for attempt in range(notify.retries + 1):
        last = attempt == notify.retries
        try:
            response = requests.post(url, json=body, timeout=(min(timeout, 10.0), timeout),
                                     headers={"User-Agent": USER_AGENT}, allow_redirects=False)
        except requests.RequestException as exc:
            parts = urllib.parse.urlsplit(url)
            hidden = [*secrets, url, parts.path + (f"?{parts.query}" if parts.query else ""), parts.query]
            why = redact_text(f"{type(exc).__name__}: {exc}".replace(url, _where(url)), hidden)
        else:
            if 200 <= response.status_code < 300:
                return True
            why = f"HTTP {response.status_code}"
            if response.status_code != 429 and response.status_code < 500:
                log.error("pipeline %s: the alert webhook %s refused the %s alert (%s); not retrying",
                          body["pipeline"], _where(url), body["event"], why)
                return False
        if last:
            log.error("pipeline %s: could not deliver the %s alert to %s after %d attempts (%s)",
                      body["pipeline"], body["event"], _where(url), attempt + 1, why)
            return False
        log.warning("pipeline %s: the alert webhook %s failed (%s); retrying in %.1fs",
                    body["pipeline"], _where(url), why, delay)
        time.sleep(delay)
        delay = min(delay * 2, 10.0)
    return False


class Notifier:
    """Sends the launcher's alerts on background threads. ``default`` applies to pipelines without ``notify:``."""

    def __init__(self, default: NotifySpec | None = None) -> None:
        self.default = default
        self._pending: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.sent: list[dict[str, Any]] = []  # bodies delivered (for the launcher's own report)

    def spec_for(self, spec) -> NotifySpec | None:
        return spec.notify or self.default

    def after_run(self, spec, run: SyncRun | None, error: str | None, *, status: str,
                  failures_before: int, failures_now: int) -> str | None:
        """Queue the alert this outcome calls for; returns its event (or None). Never raises."""
        try:
            notify = self.spec_for(spec)
            if notify is None:
                return None
            event = alert_event(notify, status, failures_before, failures_now)
            if event is None:
                return None
            secrets = spec.secret_values()
            if self.default is not None:
                secrets = [*secrets, reveal(self.default.webhook)]
            count = failures_now if event == "failure" else failures_before
            body = alert_body(event, spec.id, run, error, count, secrets)
            thread = threading.Thread(target=self._deliver, args=(notify, body, secrets),
                                      name=f"alert-{spec.id}", daemon=True)
            with self._lock:
                self._pending = [t for t in self._pending if t.is_alive()] + [thread]
            thread.start()
            log.info("pipeline %s: %s alert queued for %s", spec.id, event, _where(str(reveal(notify.webhook))),
                     extra=event_fields("alert", spec.id, body["run_id"], alert=event))
            return event
        except Exception:  # noqa: BLE001 - an alert never changes a run's outcome
            log.exception("pipeline %s: could not prepare the alert", getattr(spec, "id", "?"))
            return None

    def _deliver(self, notify: NotifySpec, body: dict[str, Any], secrets: Sequence[Any]) -> None:
        try:
            if send_webhook(notify, body, secrets):
                with self._lock:
                    self.sent.append(body)
        except Exception:  # noqa: BLE001
            log.exception("pipeline %s: the alert failed", body.get("pipeline"))

    def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for alerts still being delivered."""
        deadline = time.monotonic() + timeout
        with self._lock:
            pending = list(self._pending)
        for thread in pending:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("an alert is still being delivered; the launcher exits without waiting for it")
                return


def after_manual_run(store, spec, notifier: "Notifier | None", run: SyncRun | None, error: BaseException | None) -> str | None:
    """For ``osmosis run`` (a system cron entry, a CI job): count the outcome in the sync job's failure streak,
    as the launcher does, and send the alert it calls for. Call while the run's lease is held (the runner's
    ``on_done`` hook), so a launcher never updates the same job at the same time. Never raises.

    The streak is the launcher's (one count per pipeline in the state store): a manual failure after a
    scheduled one stays quiet, and a manual success after failed ticks sends ``recovery``.
    """
    from osmosis_beam.core.errors import OsmosisError
    from osmosis_beam.core.models import SyncJob

    try:
        job = store.get_job(spec.id) or SyncJob(pipeline_id=spec.id, source_id=spec.id, spec_path=spec.path)
        before = job.consecutive_failures
        if error is None:
            job.status, job.consecutive_failures = "succeeded", 0
            message = None
        else:
            job.status, job.consecutive_failures = "failed", before + 1
            if run is not None and run.error:
                message = run.error  # redacted by the runner
            else:
                message = error.message if isinstance(error, OsmosisError) else f"{type(error).__name__}: {error}"
        store.put_job(job)
    except Exception as exc:  # noqa: BLE001 - the run's own outcome stands; the alert is best effort
        log.warning("pipeline %s: could not update its sync job's failure count: %s", spec.id,
                    redact_text(str(exc), spec.secret_values()))
        return None
    if notifier is None:
        return None
    return notifier.after_run(spec, run, message, status=job.status, failures_before=before,
                              failures_now=job.consecutive_failures)

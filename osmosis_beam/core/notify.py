"""The ``notify:`` section of a pipeline: where to send alerts about its runs, and on what.

Example (pipeline YAML)::

    notify:
      webhook: ${ALERT_WEBHOOK}     # a URL; it is a secret (webhook URLs carry tokens)
      on: [failure, recovery]       # the default; also: success (every successful run), every_run
      timeout: 10s                  # per attempt
      retries: 3                    # attempts after the first, on a network error, 429 or 5xx

    notify: https://hooks.example.com/T0/B0/x     # shorthand: a webhook on failure and recovery

``failure`` alerts once per failure streak (the first failure in a row; the launcher counts consecutive
failures in the state store), ``recovery`` on the first success after a streak, ``success`` on every
successful run, ``every_run`` on every run's outcome (each failure of a streak too).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from osmosis_beam.core.options import suggest
from osmosis_beam.core.secrets import Secret, reveal
from osmosis_beam.core.timefmt import parse_duration

__all__ = ["NotifySpec", "parse_notify", "NOTIFY_EVENTS"]

NOTIFY_EVENTS = ("failure", "recovery", "success", "every_run")
_KEYS = ("webhook", "on", "timeout", "retries")


@dataclasses.dataclass(frozen=True)
class NotifySpec:
    webhook: Secret
    on: tuple[str, ...] = ("failure", "recovery")
    timeout: dt.timedelta = dt.timedelta(seconds=10)
    retries: int = 3

    def wants(self, event: str) -> bool:
        return event in self.on or "every_run" in self.on


def parse_notify(value: Any, problems: list[str], where: str = "notify") -> NotifySpec | None:
    """Validate a ``notify:`` value (a URL, or a mapping); problems are appended, each with its path."""
    if value is None:
        return None
    if isinstance(value, (str, Secret)):
        value = {"webhook": value}
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a webhook URL or a mapping with webhook (and on, timeout, retries)")
        return None
    bad = False
    for key in value:
        if key not in _KEYS:
            problems.append(f"{where}.{key}: unknown key{suggest(str(key), _KEYS)}; known: {', '.join(_KEYS)}")
            bad = True
    url = reveal(value.get("webhook"))
    if not url:
        problems.append(f"{where}.webhook: required (the http(s) URL alerts are POSTed to)")
        bad = True
    elif not isinstance(url, str) or not url.startswith(("http://", "https://")):
        problems.append(f"{where}.webhook: must be an http:// or https:// URL")
        bad = True
    on = value.get("on", ("failure", "recovery"))
    if isinstance(on, str):
        on = [on]
    if not isinstance(on, (list, tuple)) or not on:
        problems.append(f"{where}.on: a list of {', '.join(NOTIFY_EVENTS)}")
        bad, on = True, ()
    for event in on:
        if event not in NOTIFY_EVENTS:
            problems.append(f"{where}.on: unknown event {event!r}{suggest(str(event), NOTIFY_EVENTS)}; known: {', '.join(NOTIFY_EVENTS)}")
            bad = True
    timeout = dt.timedelta(seconds=10)
    if "timeout" in value:
        try:
            timeout = parse_duration(value["timeout"])
        except (TypeError, ValueError) as exc:
            problems.append(f"{where}.timeout: {exc}")
            bad = True
        else:
            if timeout <= dt.timedelta(0):
                problems.append(f"{where}.timeout: must be more than 0s")
                bad = True
    retries = value.get("retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        problems.append(f"{where}.retries: a whole number from 0 to 10, got {retries!r}")
        bad = True
    if bad:
        return None
    secret = value["webhook"] if isinstance(value["webhook"], Secret) else Secret(url)
    return NotifySpec(webhook=secret, on=tuple(on), timeout=timeout, retries=retries)

"""Pure parts of the operations features: alert decisions, the notify: section, progress maths, JSON logs."""
from __future__ import annotations

import json
import logging

import pytest

from osmosis_beam.core.logs import JsonFormatter, RedactFilter, event_fields
from osmosis_beam.core.notify import parse_notify
from osmosis_beam.core.progress import Progress, ProgressReporter
from osmosis_beam.core.secrets import Secret
from osmosis_beam.scheduler.alerts import alert_event


def _notify(**extra):
    problems: list[str] = []
    spec = parse_notify({"webhook": "https://hooks.example.com/T/x", **extra}, problems)
    assert problems == []
    return spec


@pytest.mark.parametrize(
    "on, status, before, now, expected",
    [
        (None, "failed", 0, 1, "failure"),        # the first failure of a streak alerts
        (None, "failed", 1, 2, None),             # the streak already alerted
        (None, "failed", 5, 6, None),
        (None, "succeeded", 3, 0, "recovery"),
        (None, "succeeded", 0, 0, None),          # an ordinary success is no news
        (["success"], "succeeded", 0, 0, "success"),
        (["success"], "failed", 0, 1, None),      # failures only when asked for
        (["every_run"], "failed", 2, 3, "failure"),
        (["every_run"], "succeeded", 2, 0, "recovery"),
        (["every_run"], "succeeded", 0, 0, "success"),
        (["failure"], "succeeded", 2, 0, None),
    ],
)
def test_alert_event(on, status, before, now, expected):
    spec = _notify(**({"on": on} if on else {}))
    assert alert_event(spec, status, before, now) == expected


def test_notify_shorthand_and_problems():
    problems: list[str] = []
    spec = parse_notify("http://127.0.0.1:9/hook", problems)
    assert problems == [] and spec.on == ("failure", "recovery") and isinstance(spec.webhook, Secret)
    assert "hook" not in repr(spec.webhook)
    parse_notify({"webhook": "x", "on": "sucess", "timeout": "0s", "retry": 1}, problems)
    assert "notify.retry: unknown key (did you mean 'retries'?); known: webhook, on, timeout, retries" in problems
    assert "notify.webhook: must be an http:// or https:// URL" in problems
    assert any(p.startswith("notify.on: unknown event 'sucess' (did you mean 'success'?)") for p in problems)
    assert "notify.timeout: must be more than 0s" in problems


def test_progress_share_eta_and_line():
    p = Progress(read=500, written=480, dead_letter=2, elapsed=10.0, share=0.25)
    assert p.rate == 50.0 and p.eta_seconds == 30.0
    assert p.line("orders") == "orders: 500 read, 480 written, 2 dead (50/s), 0:10 elapsed, 25.0% of the window, ETA 0:30"
    assert Progress(0, 0, 0, 1.0, None).eta_seconds is None


def test_reporter_never_goes_backwards():
    counts = iter([{"records_read": 10, "window_done": 50}, {"records_read": 8, "window_done": 40}, {"records_read": 20, "window_done": 100}])
    reporter = ProgressReporter("p", "r", lambda: next(counts), total=100, live=False)
    seen = [reporter.look() for _ in range(3)]
    assert [s.read for s in seen] == [10, 10, 20] and [s.share for s in seen] == [0.5, 0.5, 1.0]


def test_json_formatter_redacts_and_carries_the_event():
    handler_filter = RedactFilter(lambda: ["s3cr3t-value"])
    record = logging.LogRecord("osmosis_beam.x", logging.WARNING, __file__, 1, "pipeline p1: run %s saw %s", ("20240101T000000-abcdef12", "s3cr3t-value at postgresql://u:pw@h/db"), None)
    assert handler_filter.filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["pipeline"] == "p1" and line["run_id"] == "20240101T000000-abcdef12" and line["event"] == "log"
    assert "s3cr3t" not in line["message"] and ":pw@" not in line["message"]
    tagged = logging.LogRecord("osmosis_beam.x", logging.INFO, __file__, 1, "hello", (), None)
    for key, value in event_fields("progress", "p2", "r2", share=0.5).items():
        setattr(tagged, key, value)
    line = json.loads(JsonFormatter().format(tagged))
    assert (line["event"], line["pipeline"], line["run_id"], line["share"]) == ("progress", "p2", "r2", 0.5)

"""Log output for the ``osmosis`` command: text or one JSON object a line, secrets always redacted.

``--log-format json`` gives each record as ``{"time", "level", "logger", "pipeline", "run_id", "event",
"message"}`` (plus ``"error"`` with the traceback under ``--debug``). ``pipeline``, ``run_id`` and ``event``
come from the record's ``extra`` (``log.info(..., extra=event_fields("run_started", pipeline, run_id))``),
else from the message's ``pipeline ID: run RUN_ID ...`` prefix, so every osmosis log line carries them.

Example::

    from osmosis_beam.core.logs import JsonFormatter, RedactFilter
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactFilter(lambda: spec.secret_values()))
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import traceback
from typing import Any, Callable, Iterable

from osmosis_beam.core.secrets import redact_text

__all__ = ["JsonFormatter", "RedactFilter", "event_fields", "json_line", "LOG_FORMATS"]

LOG_FORMATS = ("text", "json")
_PREFIX = re.compile(r"^(?:error: )?(?:pipeline |start |end |skip )(?P<pipeline>[a-z0-9_-]+)(?::| |$)(?:\s*run (?P<run>[0-9T]+-[0-9a-f]{8}))?")
_RUN = re.compile(r"\brun (?P<run>\d{8}T\d{6}-[0-9a-f]{8})\b")


def event_fields(event: str, pipeline: str | None = None, run_id: str | None = None, **more: Any) -> dict[str, Any]:
    """The ``extra=`` of a log call that names its event (``run_started``, ``run_failed``, ``progress`` ...)."""
    return {"osmosis_event": event, "osmosis_pipeline": pipeline, "osmosis_run_id": run_id, "osmosis_more": more}


class RedactFilter(logging.Filter):
    """Replaces every known secret and URL password in a record's message (and its traceback text)."""

    def __init__(self, secrets: Callable[[], Iterable[Any]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = list(self._secrets())
        record.msg = redact_text(record.getMessage(), secrets)
        record.args = ()
        if record.exc_info:
            # Render the traceback now, redacted: the formatter would print the raw exception text.
            record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)).rstrip(), secrets)
            record.exc_info = None
        return True


def json_line(fields: dict[str, Any]) -> str:
    return json.dumps(fields, default=str, ensure_ascii=False, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO-8601), level, logger, pipeline, run id, event, message."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        pipeline = getattr(record, "osmosis_pipeline", None)
        run_id = getattr(record, "osmosis_run_id", None)
        event = getattr(record, "osmosis_event", None)
        if pipeline is None and (m := _PREFIX.match(message)):
            pipeline = m["pipeline"]
            run_id = run_id or m["run"]
        if run_id is None and (m := _RUN.search(message)):
            run_id = m["run"]
        fields: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pipeline": pipeline,
            "run_id": run_id,
            "event": event or "log",
            "message": message,
        }
        fields.update(getattr(record, "osmosis_more", None) or {})
        if record.exc_text:
            fields["error"] = record.exc_text
        elif record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        return json_line(fields)

"""Live progress of a run: records read and written, records/s, elapsed, the share of the window done, ETA.

The share comes from the read's restriction: the window ``[lo, hi)`` is a range of cursor positions
(epoch microseconds, or the integer cursor), and the read counts, per sub-window, how far its claimed
position moved (``window_done``). ``done / (hi - lo)`` is the share of the window read; with several
sub-windows read in parallel it is their sum, so it only grows.

Counts reach the reporter two ways: workers in this process (the in-process runner, LOOPBACK workers)
add them to :data:`LIVE` under the run's id as they go; a remote job's counts come from its Beam metrics,
queried while it runs (runners that report metrics only at the end show elapsed time and the job state).

Example::

    reporter = ProgressReporter("orders", run_id, probe=lambda: LIVE[run_id].snapshot(), total=hi - lo)
    reporter.start(); ...; reporter.stop()
"""
from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from typing import IO, Any, Callable

from osmosis_beam.core.logs import event_fields

__all__ = ["LIVE", "LiveCounts", "live_add", "Progress", "ProgressReporter", "format_clock"]

log = logging.getLogger("osmosis_beam.progress")


class LiveCounts:
    """Counters of one run, added to by workers in this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, name: str, n: int) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


LIVE: dict[str, LiveCounts] = {}  # run id -> its live counts, while a reporter watches the run


def live_add(key: str | None, name: str, n: int) -> None:
    """Add ``n`` to counter ``name`` of run ``key`` when a reporter in this process watches it."""
    if key is None or not n:
        return
    counts = LIVE.get(key)
    if counts is not None:
        counts.add(name, n)


def format_clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, sec = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


@dataclasses.dataclass(frozen=True)
class Progress:
    """One look at a running run. ``share`` and ``eta_seconds`` are None while unknown."""

    read: int
    written: int
    dead_letter: int
    elapsed: float
    share: float | None
    state: str | None = None  # a remote job's state, when its runner reports no counts while it runs

    @property
    def rate(self) -> float:
        return self.read / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        if self.share is None or self.share <= 0:
            return None
        return max(0.0, self.elapsed * (1 - self.share) / self.share)

    def fields(self) -> dict[str, Any]:
        eta = self.eta_seconds
        return {
            "records_read": self.read,
            "records_written": self.written,
            "dead_letter": self.dead_letter,
            "records_per_second": round(self.rate, 1),
            "elapsed_seconds": round(self.elapsed, 1),
            "share": None if self.share is None else round(self.share, 4),
            "eta_seconds": None if eta is None else round(eta, 1),
            **({"job_state": self.state} if self.state else {}),
        }

    def line(self, pipeline_id: str | None = None) -> str:
        parts = [f"{self.read:,} read", f"{self.written:,} written"]
        if self.dead_letter:
            parts.append(f"{self.dead_letter:,} dead")
        text = (f"{pipeline_id}: " if pipeline_id else "") + ", ".join(parts) + f" ({self.rate:,.0f}/s), {format_clock(self.elapsed)} elapsed"
        if self.share is not None:
            eta = self.eta_seconds
            text += f", {self.share * 100:.1f}% of the window" + (f", ETA {format_clock(eta)}" if eta is not None else "")
        if self.state:
            text += f", job {self.state}"
        return text


class ProgressReporter:
    """Shows a run's progress until stopped: a live line on a terminal, else a log line every ``interval`` s.

    ``probe()`` returns the run's counters so far (``records_read``, ``records_written``, ``dead_letter``,
    ``window_done``; and ``job_state`` for a remote job), or None when nothing is known yet. ``total`` is
    the window's width in cursor units (None when the window has no known lower bound).
    """

    def __init__(
        self,
        pipeline_id: str,
        run_id: str,
        probe: Callable[[], dict[str, Any] | None],
        total: int | None,
        *,
        stream: IO[str] | None = None,
        live: bool | None = None,
        interval: float = 5.0,
    ) -> None:
        self.pipeline_id, self.run_id = pipeline_id, run_id
        self.probe, self.total = probe, total
        self._stream = stream if stream is not None else sys.stderr
        self._live = self._stream.isatty() if live is None else live
        self._interval = 0.5 if self._live else interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._best: dict[str, int] = {}
        self._shown = False
        self.reports: list[Progress] = []

    def start(self) -> "ProgressReporter":
        self._started = time.monotonic()
        if self._live:
            # A log line while the live line shows would land at its end: clear the line first (redrawn next tick).
            self._handlers = [h for h in logging.getLogger().handlers if getattr(h, "stream", None) is self._stream]
            for handler in self._handlers:
                handler.addFilter(self._clear_line)
        self._thread = threading.Thread(target=self._loop, name=f"progress-{self.pipeline_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for handler in getattr(self, "_handlers", ()):
            handler.removeFilter(self._clear_line)
        if self._live and self._shown:
            self._stream.write("\r\x1b[K")  # the summary and the logs follow on clean lines
            self._stream.flush()

    def __enter__(self) -> "ProgressReporter":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _clear_line(self, record: logging.LogRecord) -> bool:
        if self._shown:
            self._stream.write("\r\x1b[K")
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                progress = self.look()
            except Exception as exc:  # noqa: BLE001 - progress never fails a run
                log.debug("pipeline %s: progress unavailable: %s", self.pipeline_id, exc)
                continue
            if progress is not None:
                self._show(progress)

    def look(self) -> Progress | None:
        """The progress now. Counts never go backwards (a remote runner's attempted counts may)."""
        counts = self.probe() or {}
        state = counts.pop("job_state", None) if isinstance(counts.get("job_state"), str) else None
        for name, value in counts.items():
            if isinstance(value, (int, float)):
                self._best[name] = max(self._best.get(name, 0), int(value))
        best = self._best
        share = min(1.0, best.get("window_done", 0) / self.total) if self.total else None
        progress = Progress(
            read=best.get("records_read", 0),
            written=best.get("records_written", 0),
            dead_letter=best.get("dead_letter", 0),
            elapsed=time.monotonic() - self._started,
            share=share,
            state=state if not best else None,
        )
        self.reports.append(progress)
        return progress

    def _show(self, progress: Progress) -> None:
        self._shown = True
        if self._live:
            self._stream.write("\r\x1b[K" + progress.line(self.pipeline_id))
            self._stream.flush()
            return
        log.info(
            "pipeline %s: run %s progress: %s", self.pipeline_id, self.run_id, progress.line(),
            extra=event_fields("progress", self.pipeline_id, self.run_id, **progress.fields()),
        )

"""Phase "window" of a run: read the watermark, begin the source's run, fix ``[lo, hi)`` from its clock.

Example::

    opened = open_window(spec, store, connector, full_refresh=False)
    opened.window, opened.skip_reason(connector, spec.incremental.lookback)
"""
from __future__ import annotations

import dataclasses
import datetime as dt

from osmosis_beam.config import PipelineSpec
from osmosis_beam.core.window import SyncWindow, compute_window
from osmosis_beam.io.base import BaseConnector
from osmosis_beam.state.store import StateStore

__all__ = ["RunWindow", "open_window", "EMPTY_WINDOW", "UNCHANGED"]

EMPTY_WINDOW = "empty window: Beam job skipped"
UNCHANGED = "source unchanged (not modified)"


@dataclasses.dataclass(frozen=True)
class RunWindow:
    """The window of one run, and what the source said about it when the run began."""

    watermark: dt.datetime | int | None  # the committed watermark it starts from (None: first run, full refresh)
    window: SyncWindow | None  # None: the source is unchanged and nothing was ever committed
    unchanged: bool = False  # the source reported nothing new since the last commit (HTTP 304)

    @property
    def commit_hi(self) -> dt.datetime | int | None:
        """The watermark to commit when the run succeeds: ``hi``, or None to leave it where it is."""
        return None if (self.window is None or self.unchanged) else self.window.hi

    def skip_reason(self, connector: BaseConnector, lookback: dt.timedelta) -> str | None:
        """Why no Beam job is needed (a note for the history), or None when the window must be read."""
        if self.unchanged:
            return UNCHANGED
        window = self.window
        if window is None or window.is_empty:
            return EMPTY_WINDOW
        if self.watermark is not None and not lookback and window.hi_micros <= SyncWindow(None, self.watermark).hi_micros:
            return EMPTY_WINDOW
        if connector.window_is_empty(window) is True:
            return EMPTY_WINDOW
        return None


def open_window(spec: PipelineSpec, store: StateStore, connector: BaseConnector, *, full_refresh: bool) -> RunWindow:
    """Connect, begin the source's run with its stored state, and fix the window from the source's clock."""
    stored = store.get_watermark(spec.id)
    watermark, state = (None, {}) if full_refresh else (stored.value, stored.state)
    connector.connect()
    connector.begin_run(state)
    window = compute_window(
        spec.incremental, watermark, connector.source_clock(),
        default_safety_lag=connector.default_safety_lag, what=f"pipeline {spec.id}",
    )
    if connector.unchanged():
        # Nothing was read: keep the watermark where it is (no window was covered).
        return RunWindow(watermark, SyncWindow(watermark, watermark) if watermark is not None else None, True)
    return RunWindow(watermark, window)

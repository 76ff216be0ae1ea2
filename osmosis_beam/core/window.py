"""Windows of a sync: the half-open ``[lo, hi)`` a run reads, and how it is computed (Beam-free).

Example::

    import datetime as dt
    from osmosis_beam.core.window import IncrementalSpec, SyncWindow, compute_window
    clock = dt.datetime(2024, 6, 1, 12, tzinfo=dt.timezone.utc)
    compute_window(IncrementalSpec(safety_lag=dt.timedelta(seconds=5)), None, clock)
    # SyncWindow(lo=None, hi=datetime(2024, 6, 1, 11, 59, 55, tzinfo=UTC))
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from osmosis_beam.core.errors import ConfigError, FatalConnectorError, RunError
from osmosis_beam.core.timefmt import (
    MIN_MICROS,
    UTC,
    format_timestamp,
    from_micros,
    parse_timestamp,
    to_micros,
)

__all__ = ["SyncWindow", "IncrementalSpec", "compute_window", "format_bound", "parse_bound", "cursor_micros"]


@dataclasses.dataclass(frozen=True)
class IncrementalSpec:
    cursor_field: str | None = None
    start: dt.datetime | None = None
    lookback: dt.timedelta = dt.timedelta(0)
    safety_lag: dt.timedelta | None = None
    max_window: dt.timedelta | None = None


@dataclasses.dataclass(frozen=True)
class SyncWindow:
    """The half-open window ``[lo, hi)`` one run reads; ``lo`` None means no lower bound.

    Bounds are UTC-aware datetimes (time cursors) or ints (integer cursors such as a bigserial id).
    """

    lo: dt.datetime | int | None
    hi: dt.datetime | int

    def __post_init__(self) -> None:
        if self.hi is None:
            raise ValueError("SyncWindow.hi is required (only lo may be None, meaning no lower bound)")
        for name in ("lo", "hi"):
            value = getattr(self, name)
            if isinstance(value, dt.datetime):
                if value.tzinfo is None or value.utcoffset() is None:
                    raise ValueError(f"SyncWindow.{name} must be timezone-aware, got {value!r}")
            elif value is not None and not (isinstance(value, int) and not isinstance(value, bool)):
                raise ValueError(f"SyncWindow.{name} must be an aware datetime or an int, got {value!r}")
        if self.lo is not None and isinstance(self.lo, int) != isinstance(self.hi, int):
            raise ValueError("SyncWindow bounds must both be datetimes or both be ints")

    @property
    def is_integer(self) -> bool:
        return isinstance(self.hi, int)

    @property
    def lo_micros(self) -> int:
        """``lo`` as a restriction position: epoch microseconds, or the int itself."""
        if self.lo is None:
            return MIN_MICROS
        return self.lo if isinstance(self.lo, int) else to_micros(self.lo)

    @property
    def hi_micros(self) -> int:
        return self.hi if isinstance(self.hi, int) else to_micros(self.hi)

    @property
    def is_empty(self) -> bool:
        return self.hi_micros <= self.lo_micros

    @classmethod
    def from_micros(cls, lo: int, hi: int, integer: bool = False) -> "SyncWindow":
        if integer:
            return cls(None if lo <= MIN_MICROS else lo, hi)
        return cls(None if lo <= MIN_MICROS else from_micros(lo), from_micros(hi))

    def to_dict(self) -> dict[str, Any]:
        return {"lo": format_bound(self.lo), "hi": format_bound(self.hi)}

    def __str__(self) -> str:
        lo = format_bound(self.lo) if self.lo is not None else "-inf"
        return f"[{lo}, {format_bound(self.hi)})"


def compute_window(
    incremental: IncrementalSpec,
    watermark: dt.datetime | int | None,
    clock: dt.datetime | int,
    *,
    default_safety_lag: dt.timedelta = dt.timedelta(0),
    what: str = "the source",
) -> SyncWindow:
    """The window ``[lo, hi)`` for a run (pure: the clock is an argument).

    ``hi = clock - safety_lag`` (capped at ``lo + max_window``), ``lo = watermark - lookback``, or
    ``incremental.start`` on the first run. ``hi`` never falls below the watermark. An integer clock
    (a connector with an integer cursor returns ``max(id) + 1``) gives ``[watermark, clock)``.
    """
    inc = incremental
    if isinstance(clock, int):
        if watermark is not None and not isinstance(watermark, int):
            raise ConfigError(
                f"{what}: the stored watermark is a timestamp but the cursor is an integer; rerun with --full-refresh"
            )
        lo = watermark
        hi = max(clock, lo) if lo is not None else clock
        return SyncWindow(lo, hi)
    if watermark is not None and isinstance(watermark, int):
        raise ConfigError(
            f"{what}: the stored watermark is an integer but the cursor is a timestamp; rerun with --full-refresh"
        )
    if clock.tzinfo is None:
        raise RunError(f"{what} returned a naive clock; it must be UTC-aware")
    lag = inc.safety_lag if inc.safety_lag is not None else default_safety_lag
    hi = clock - lag
    if watermark is not None:
        lo = watermark - inc.lookback
        hi = max(hi, watermark)
    else:
        lo = inc.start
    if inc.max_window is not None and lo is not None:
        hi = min(hi, max(lo + inc.max_window, watermark or lo))
    if lo is not None and hi < lo:
        hi = lo
    return SyncWindow(lo, hi)


def format_bound(value: dt.datetime | int | None) -> str | int | None:
    """A window bound as JSON: ISO-8601 text with offset, or the int."""
    if value is None or isinstance(value, int):
        return value
    return format_timestamp(value)


def parse_bound(value: Any) -> dt.datetime | int | None:
    """The inverse of :func:`format_bound` (also accepts the text of an int)."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    text = str(value)
    if text.lstrip("-").isdigit():
        return int(text)
    return parse_timestamp(text)


def cursor_micros(value: Any, field: str | None = None) -> int | None:
    """Epoch microseconds of a cursor value: an aware datetime, a date (midnight UTC) or an int."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise FatalConnectorError(
                f"cursor field {field!r} holds a naive timestamp {value.isoformat()}: declare the source's timezone"
            )
        return to_micros(value)
    if isinstance(value, dt.date):
        return to_micros(dt.datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise FatalConnectorError(f"cursor field {field!r} holds {type(value).__name__} {value!r}; expected a timestamp")

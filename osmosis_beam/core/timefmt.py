"""Time values: UTC-aware datetimes, epoch microseconds, ISO-8601 text and durations.

Every timestamp inside osmosis-beam is UTC-aware with microsecond precision; the
window restriction carries them as epoch microseconds.

Example::

    from osmosis_beam.core.timefmt import parse_timestamp, to_micros, parse_duration
    to_micros(parse_timestamp("2024-01-01T00:00:00Z"))   # 1704067200000000
    parse_duration("15m")                                # datetime.timedelta(seconds=900)
"""
from __future__ import annotations

import datetime as dt
import re

__all__ = [
    "UTC",
    "MIN_MICROS",
    "MAX_MICROS",
    "to_micros",
    "from_micros",
    "parse_timestamp",
    "format_timestamp",
    "parse_http_date",
    "parse_duration",
    "format_duration",
    "utcnow",
]

UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
#: The earliest and latest instants a window may name (0001-01-01 and 9999-12-31).
MIN_MICROS = -62135596800_000000
MAX_MICROS = 253402300799_999999


def utcnow() -> dt.datetime:
    """The launcher's clock, UTC-aware."""
    return dt.datetime.now(UTC)


def to_micros(value: dt.datetime) -> int:
    """Epoch microseconds of an aware datetime (naive ones are rejected)."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"naive timestamp {value.isoformat()}: give it a time zone")
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> dt.datetime:
    """The UTC datetime at ``micros`` epoch microseconds."""
    return _EPOCH + dt.timedelta(microseconds=micros)


def parse_timestamp(text: str | dt.datetime | dt.date, *, default_tz: dt.tzinfo | None = None) -> dt.datetime:
    """Parse ISO-8601 text (``Z`` allowed) into a UTC-aware datetime.

    A naive value is rejected unless ``default_tz`` says which zone it is in.
    """
    if isinstance(text, dt.datetime):
        value = text
    elif isinstance(text, dt.date):
        value = dt.datetime(text.year, text.month, text.day)
    else:
        raw = str(text).strip()
        if raw.endswith(("Z", "z")):
            raw = raw[:-1] + "+00:00"
        try:
            value = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"invalid timestamp {text!r}: use ISO-8601 like 2024-01-01T00:00:00Z") from None
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        if default_tz is None:
            shown = text.isoformat() if isinstance(text, dt.date) else text
            raise ValueError(f"timestamp {shown!r} has no time zone: add one (e.g. 'Z' or '+02:00')")
        value = value.replace(tzinfo=default_tz)
    return value.astimezone(UTC)


def parse_http_date(value: str | None) -> dt.datetime | None:
    """An HTTP date header (``Date``, ``Last-Modified``, ``Retry-After``) as UTC, or None when unreadable."""
    import email.utils

    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_timestamp(value: dt.datetime | None) -> str | None:
    """ISO-8601 with an explicit UTC offset and microseconds when present."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat()


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | int | float | dt.timedelta) -> dt.timedelta:
    """Parse ``30s``, ``10m``, ``2h``, ``1d`` (a bare number means seconds)."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: use e.g. 30s, 10m, 2h, 1d")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"invalid duration {value!r}: use e.g. 30s, 10m, 2h, 1d")
        number, unit = match.groups()
        seconds = float(number) * _UNITS[unit or "s"]
    try:
        return dt.timedelta(seconds=seconds)
    except (OverflowError, ValueError):  # inf, nan, or beyond timedelta's ~2.7 million years
        raise ValueError(f"invalid duration {value!r}: out of range") from None


def format_duration(value: dt.timedelta) -> str:
    """The shortest exact text for a duration (``90s`` -> ``90s``, ``3600s`` -> ``1h``)."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if not seconds:
        return "0s"
    # Fixed-point, never exponent notation ("1e-06s" would not parse back).
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"

"""JSON encoding of native record values, without loss.

Timestamps become ISO-8601 with their UTC offset, decimals become exact decimal strings,
bytes become base64, UUIDs and other scalars their text.

Example::

    from osmosis_beam.sinks.encoding import dumps
    dumps({"at": datetime(2024, 1, 1, tzinfo=timezone.utc), "amount": Decimal("0.10")})
    # '{"at":"2024-01-01T00:00:00+00:00","amount":"0.10"}'
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import enum
import ipaddress
import json
import uuid
from typing import Any

__all__ = ["dumps", "json_default", "format_timedelta"]


def format_timedelta(value: dt.timedelta) -> str:
    """ISO-8601 duration, exact to the microsecond (``P1DT2H3M4.5S``)."""
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    days = value.days
    seconds = value.seconds + value.microseconds / 1e6
    hours, rem = divmod(value.seconds, 3600)
    minutes, secs = divmod(rem, 60)
    out = f"{sign}P{days}D" if days else f"{sign}P"
    frac = f"{secs}.{value.microseconds:06d}".rstrip("0").rstrip(".") if value.microseconds else str(secs)
    time = f"{hours}H" * bool(hours) + f"{minutes}M" * bool(minutes) + (f"{frac}S" if secs or value.microseconds else "")
    if time:
        out += "T" + time
    elif not days:
        out += "T0S"
    del seconds
    return out


def json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.timedelta):
        return format_timedelta(value)
    if isinstance(value, (uuid.UUID, ipaddress._BaseAddress, ipaddress._BaseNetwork)):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "reveal"):  # a Secret never reaches output by accident
        return "***"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=json_default, allow_nan=False)


def dumps(record: Any) -> str:
    """One record as compact JSON text (UTF-8 safe, no NaN)."""
    return _encoder.encode(record)

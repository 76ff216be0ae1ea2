"""JSON encoding of native record values, without loss.

Timestamps become ISO-8601 with their UTC offset, decimals become exact decimal strings,
bytes become base64, UUIDs and other scalars their text.

Example::

    from osmosis_beam.core.encoding import dumps
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

__all__ = ["dumps", "dumps_bytes", "dumps_batch", "dumps_lines", "json_default", "format_timedelta", "has_non_finite"]


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


def _b64(value: Any) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


# The common types by exact type first (one dict lookup), then the general isinstance chain.
_BY_TYPE = {
    decimal.Decimal: str,
    dt.datetime: dt.datetime.isoformat,
    dt.date: dt.date.isoformat,
    bytes: _b64,
    uuid.UUID: str,
}


def json_default(value: Any) -> Any:
    encode = _BY_TYPE.get(value.__class__)
    if encode is not None:
        return encode(value)
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
_INFINITIES = (float("inf"), float("-inf"))

try:  # orjson encodes about 5x faster; the stdlib encoder is the reference and the fallback
    import orjson as _orjson

    _orjson_dumps = _orjson.dumps
    _ORJSON_ERRORS: tuple[type[BaseException], ...] = (TypeError, _orjson.JSONEncodeError)
except ImportError:  # pragma: no cover - orjson is a declared dependency
    _orjson_dumps = None
    _ORJSON_ERRORS = (TypeError,)


def _has_non_finite(value: Any) -> bool:
    """Whether ``value`` holds a NaN or an infinity anywhere (JSON has no such numbers)."""
    if value.__class__ is float:
        return value != value or value in _INFINITIES
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(v) for v in value)
    return False


def has_non_finite(value: Any) -> bool:
    """Whether ``value`` holds a NaN or an infinity anywhere (for encoders that write them as null, as orjson does)."""
    return _has_non_finite(value)


def dumps_bytes(record: Any) -> bytes:
    """One record as compact UTF-8 JSON bytes; raises ValueError for NaN/Infinity, TypeError for the unencodable."""
    if _orjson_dumps is not None:
        try:
            out = _orjson_dumps(record, default=json_default)
        except _ORJSON_ERRORS:
            out = None  # ints beyond 64 bits, non-text keys, ...: the stdlib encoder decides
        # orjson writes NaN and infinities as null: only output with a null can hide one.
        if out is not None and (b"null" not in out or not _has_non_finite(record)):
            return out
    return _encoder.encode(record).encode("utf-8")


def dumps_batch(records: list) -> list[bytes] | None:
    """Every record of a batch as JSON bytes in one pass, or None when one needs the careful path.

    The fast path of the JSONL sink: orjson on each record without a Python call in between; a batch
    with a record orjson refuses, or whose output could hide a NaN (it has a null), returns None and
    the caller encodes record by record with :func:`dumps_bytes`.
    """
    if _orjson_dumps is None:
        return None
    default = json_default
    try:
        lines = [_orjson_dumps(r, default=default) for r in records]
    except _ORJSON_ERRORS:
        return None
    for line, record in zip(lines, records):
        if b"null" in line and _has_non_finite(record):
            return None
    return lines


def dumps_lines(records: list) -> bytes | None:
    """Every record of a batch as one buffer of JSON lines (each ends in a newline), or None as for :func:`dumps_batch`.

    Each line is copied into the buffer as it is made, so orjson's output objects die at once: holding a
    batch of them (the list :func:`dumps_batch` returns) cost a fresh page of memory per line, a page fault
    per record, which was most of the encoding's time.
    """
    if _orjson_dumps is None:
        return None
    out = bytearray()
    default = json_default
    try:
        for record in records:
            line = _orjson_dumps(record, default=default)
            if b"null" in line and _has_non_finite(record):
                return None
            out += line
            out += b"\n"
    except _ORJSON_ERRORS:
        return None
    return bytes(out)


def dumps(record: Any) -> str:
    """One record as compact JSON text (UTF-8 safe, no NaN)."""
    return dumps_bytes(record).decode("utf-8")

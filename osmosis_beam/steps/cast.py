"""The ``cast`` step: exact conversions (``decimal(12,2)``, ``datetime(Europe/Berlin)``, ``json``); lossy ones are dead letters.

Example::

    from osmosis_beam.steps.cast import CastStep
    CastStep({"amount": "decimal(12,2)"}).process([{"amount": "12.5"}])   # [{'amount': Decimal('12.50')}]
"""
from __future__ import annotations

import datetime as _dt
import decimal
import json
import math
import re
import zoneinfo
from typing import Any, Mapping

from osmosis_beam.core.encoding import dumps
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.options import suggest
from osmosis_beam.core.timefmt import UTC, parse_timestamp
from osmosis_beam.steps.base import ConfiguredStep, raise_problems

__all__ = ['CAST_TYPES', 'CastStep']


# -- cast ----------------------------------------------------------------------------------------
#: The types ``cast`` knows. ``decimal(p,s)`` rounds half away from zero to ``s`` places (as SQL
#: does) and rejects values with more than ``p`` digits; ``datetime(TZ)`` / ``date(TZ)`` read naive
#: values in the zone ``TZ`` (without it a naive timestamp is an error; a date is midnight UTC).
CAST_TYPES = ("int", "float", "decimal", "str", "bool", "datetime", "date", "json")


_CAST_ALIASES = {"integer": "int", "string": "str", "text": "str", "boolean": "bool", "timestamp": "datetime", "number": "float"}


_CAST_SPEC = re.compile(r"^\s*([A-Za-z_]+)\s*(?:\((.*)\))?\s*$")


_TRUE = frozenset(("true", "t", "yes", "y", "on", "1"))


_FALSE = frozenset(("false", "f", "no", "n", "off", "0"))


class _Cast:
    """One parsed cast target: ``kind`` plus its arguments; ``__call__`` converts one value."""

    def __init__(self, spec: Any, field: str) -> None:
        self.spec = spec
        self.field = field
        match = _CAST_SPEC.match(spec) if isinstance(spec, str) else None
        if match is None:
            raise ConfigError(f"cast.{field}: give a type name, one of {', '.join(CAST_TYPES)}; got {spec!r}")
        kind, args = match.group(1).lower(), match.group(2)
        kind = _CAST_ALIASES.get(kind, kind)
        if kind not in CAST_TYPES:
            raise ConfigError(
                f"cast.{field}: unknown type {match.group(1)!r}{suggest(kind, CAST_TYPES)}; known: {', '.join(CAST_TYPES)}"
            )
        self.kind = kind
        self.precision: int | None = None
        self.scale: int | None = None
        self.tz: _dt.tzinfo | None = None
        if args is not None and args.strip():
            if kind == "decimal":
                parts = [p.strip() for p in args.split(",")]
                if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) < 1 or int(parts[1]) > int(parts[0]):
                    raise ConfigError(f"cast.{field}: decimal takes (precision, scale) with 0 <= scale <= precision, got {spec!r}")
                self.precision, self.scale = int(parts[0]), int(parts[1])
            elif kind in ("datetime", "date"):
                try:
                    self.tz = zoneinfo.ZoneInfo(args.strip())
                except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                    raise ConfigError(
                        f"cast.{field}: unknown time zone {args.strip()!r} in {spec!r} (use an IANA name like Europe/Berlin or UTC)"
                    ) from None
            else:
                raise ConfigError(f"cast.{field}: {kind} takes no arguments, got {spec!r}")
        self._convert = getattr(self, "_to_" + kind)

    def __call__(self, value: Any) -> Any:
        if value is None:
            return None
        return self._convert(value)

    def _fail(self, value: Any, why: str = "") -> ValueError:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return ValueError(f"cast.{self.field}: cannot cast {type(value).__name__} {shown} to {self.spec}{why}")

    def _to_int(self, value):
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, (float, decimal.Decimal, str, bytes)):
            number = self._to_decimal_exact(value)
            if number is None:
                raise self._fail(value)
            if number != number.to_integral_value():
                raise self._fail(value, " (not a whole number; round it first with map)")
            return int(number)
        raise self._fail(value)

    def _to_decimal_exact(self, value) -> decimal.Decimal | None:
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if isinstance(value, float):
            if not math.isfinite(value):
                return None
            return decimal.Decimal(repr(value))  # the shortest text, not the binary expansion
        if isinstance(value, str):
            try:
                number = decimal.Decimal(value.strip())
            except decimal.InvalidOperation:
                return None
            return number if number.is_finite() else None
        if isinstance(value, decimal.Decimal):
            return value if value.is_finite() else None
        return None

    def _to_float(self, value):
        if isinstance(value, (bool, int, float, decimal.Decimal)):
            return float(value)
        if isinstance(value, (str, bytes)):
            try:
                return float(value.strip())
            except ValueError:
                raise self._fail(value) from None
        raise self._fail(value)

    def _to_decimal(self, value):
        if isinstance(value, bool):
            raise self._fail(value)
        number = decimal.Decimal(value) if isinstance(value, int) else self._to_decimal_exact(value)
        if number is None:
            raise self._fail(value)
        if self.scale is None:
            return number
        ctx = decimal.Context(prec=self.precision + 1)
        try:
            quantized = number.quantize(decimal.Decimal(1).scaleb(-self.scale), rounding=decimal.ROUND_HALF_UP, context=ctx)
        except decimal.InvalidOperation:
            raise self._fail(value, f" (more than {self.precision - self.scale} digits before the point)") from None
        digits = len(quantized.as_tuple().digits)
        if quantized and digits > self.precision:
            raise self._fail(value, f" (more than {self.precision - self.scale} digits before the point)")
        return quantized

    def _to_str(self, value):
        if isinstance(value, str):
            return value
        if isinstance(value, (bytes, bytearray)):
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise self._fail(value, " (bytes are not UTF-8)") from None
        if isinstance(value, (dict, list, tuple)):
            return dumps(value)
        if isinstance(value, (_dt.date, _dt.time)):
            return value.isoformat()
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def _to_bool(self, value):
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float, decimal.Decimal)) and value in (0, 1):
            return bool(value)
        if isinstance(value, (str, bytes)):
            text = (value.decode("utf-8", "replace") if isinstance(value, bytes) else value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        raise self._fail(value, " (use true/false, yes/no, on/off or 1/0)")

    def _to_datetime(self, value):
        if isinstance(value, bool):
            raise self._fail(value)
        if isinstance(value, (int, float, decimal.Decimal)):
            try:
                return _dt.datetime.fromtimestamp(float(value), UTC)  # epoch seconds
            except (OverflowError, OSError, ValueError):
                raise self._fail(value, " (out of range for epoch seconds)") from None
        if isinstance(value, _dt.datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                if self.tz is None:
                    raise self._fail(value, f" (naive; say its zone: {self.kind}(UTC) or {self.kind}(Europe/Berlin))")
                value = value.replace(tzinfo=self.tz)
            return value.astimezone(UTC)
        if isinstance(value, _dt.date):
            return _dt.datetime(value.year, value.month, value.day, tzinfo=self.tz or UTC).astimezone(UTC)
        if isinstance(value, (str, bytes)):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            try:
                return parse_timestamp(text, default_tz=self.tz)
            except ValueError as exc:
                raise self._fail(value, f" ({exc})") from None
        raise self._fail(value)

    def _to_date(self, value):
        if isinstance(value, _dt.datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                return value.date()
            return value.astimezone(self.tz or UTC).date()
        if isinstance(value, _dt.date):
            return value
        if isinstance(value, (str, bytes)):
            text = (value.decode("utf-8", "replace") if isinstance(value, bytes) else value).strip()
            try:
                return _dt.date.fromisoformat(text)
            except ValueError:
                pass
            try:
                parsed = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
            except ValueError:
                raise self._fail(value, " (use ISO-8601 like 2024-01-31)") from None
            return self._to_date(parsed)
        raise self._fail(value)

    def _to_json(self, value):
        if isinstance(value, (str, bytes, bytearray)):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise self._fail(value, f" (invalid JSON: {exc})") from None
        return value


class CastStep(ConfiguredStep):
    """Convert fields to a type: int, float, decimal[(p,s)], str, bool, datetime[(TZ)], date[(TZ)], json.

    Nulls stay null and missing fields stay missing. A value that cannot be converted exactly
    (``"12a"`` to int, ``3.5`` to int, a naive timestamp without a zone) makes the record a dead letter.
    """

    name = "cast"
    _rebuilt_from = "fields"

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__()
        if not isinstance(fields, Mapping) or not fields:
            raise ConfigError(f"cast: give a mapping of field: type ({', '.join(CAST_TYPES)}), got {fields!r}")
        problems: list[str] = []
        casts = []
        for field, spec in fields.items():
            try:
                casts.append(_Cast(spec, str(field)))
            except ConfigError as exc:
                problems += exc.problems
        raise_problems(problems)
        self.fields = dict(fields)
        self._casts = casts

    def targets(self) -> list[tuple[str, str, int | None, int | None, _dt.tzinfo | None]]:
        """``(field, kind, precision, scale, tz)`` of each cast, parsed (aliases resolved), in order."""
        return [(c.field, c.kind, c.precision, c.scale, c.tz) for c in self._casts]

    def process(self, records):
        out = []
        for record in records:
            new = dict(record)
            for cast in self._casts:
                if cast.field in new:
                    new[cast.field] = cast(new[cast.field])
            out.append(new)
        return out

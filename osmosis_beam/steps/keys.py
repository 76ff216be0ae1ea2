"""Record keys for ``dedupe``: one canonical text per key value, and which of two candidates is the newer.

Example::

    from osmosis_beam.steps.keys import canonical, key_part
    canonical.encode([key_part(Decimal("2.00"))]) == canonical.encode([key_part(2)])      # True: one key
"""
from __future__ import annotations

import datetime as _dt
import decimal
import json
from typing import Any

from osmosis_beam.core.encoding import json_default
from osmosis_beam.core.timefmt import UTC

__all__ = ["canonical", "key_part", "newer"]


canonical = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=json_default, allow_nan=True)


def key_part(value: Any) -> Any:
    """A key value in a form whose JSON text is equal exactly when the values are equal."""
    if isinstance(value, _dt.datetime) and value.tzinfo is not None and value.utcoffset() is not None:
        return {"$t": value.astimezone(UTC).isoformat()}
    if isinstance(value, decimal.Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)  # Decimal("2.00") == 2: one key
        return {"$d": str(value.normalize())}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (dict, list, tuple)):
        return value
    return value


def newer(a: tuple, b: tuple) -> bool:
    """Whether candidate ``a`` = (cursor, record) is later than ``b``; ties break on the record's content."""
    ca, cb = a[0], b[0]
    if ca != cb:
        if ca is None:
            return False
        if cb is None:
            return True
        try:
            return ca > cb
        except TypeError:  # mixed types: an order that is at least stable
            return (type(ca).__name__, str(ca)) > (type(cb).__name__, str(cb))
    return canonical.encode(a[1]) > canonical.encode(b[1])

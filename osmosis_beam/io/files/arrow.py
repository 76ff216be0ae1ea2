"""Records as Arrow tables for the Parquet sink: column types, widening, pinned schemas (shared by its two sides).

Example::

    from osmosis_beam.io.files.arrow import parse_pinned
    parse_pinned("amount", "decimal(12,2)")       # the column type a pinned schema entry stands for
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import ipaddress
import re
import uuid
from typing import Any, Mapping

from osmosis_beam.core.encoding import dumps
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.options import suggest

SUFFIX = ".parquet"


JSON_ENCODING = {b"osmosis.encoding": b"json"}


_INT64 = (-(2**63), 2**63 - 1)


#: The types a column can be pinned to with ``schema: {field: TYPE}``.
COLUMN_TYPES = ("bool", "int", "float", "decimal(P,S)", "string", "binary", "timestamp", "date", "json")


_PINNABLE = ("bool", "int", "float", "decimal", "string", "binary", "timestamp", "date", "json")


_DECIMAL_SPEC = re.compile(r"^\s*decimal\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*$")


# -- column types --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Col:
    """A column's type. Decimals carry the integer digits and scale seen (``digits``, ``scale``)."""

    kind: str  # null bool int float decimal string binary timestamp timestamp_naive date time duration json
    digits: int = 0
    scale: int = 0
    precision: int = 0  # decimal(p, s) fixed by the schema option
    pinned: bool = False  # the schema option fixed this column's type

    def describe(self) -> str:
        if self.kind == "decimal":
            return f"decimal({self.precision or max(1, self.digits + self.scale)},{self.scale})"
        return self.kind

    def arrow_type(self):
        import pyarrow as pa

        kind = self.kind
        if kind == "decimal":
            if self.precision:
                p = self.precision
                return pa.decimal128(p, self.scale) if p <= 38 else pa.decimal256(p, self.scale)
            need = max(1, self.digits + self.scale)
            return pa.decimal128(38, self.scale) if need <= 38 else pa.decimal256(76, self.scale)
        return {
            "null": pa.null(),
            "bool": pa.bool_(),
            "int": pa.int64(),
            "float": pa.float64(),
            "string": pa.string(),
            "json": pa.string(),
            "binary": pa.binary(),
            "timestamp": pa.timestamp("us", tz="UTC"),
            "timestamp_naive": pa.timestamp("us"),
            "date": pa.date32(),
            "time": pa.time64("us"),
            "duration": pa.duration("us"),
        }[kind]

    def arrow_field(self, name: str):
        import pyarrow as pa

        return pa.field(name, self.arrow_type(), nullable=True, metadata=JSON_ENCODING if self.kind == "json" else None)


NULL = Col("null")


def _decimal_col(value: decimal.Decimal) -> Col:
    sign, digits, exponent = value.as_tuple()
    scale = max(0, -exponent)
    whole = max(0, len(digits) + exponent)
    return Col("decimal", whole, scale)


def value_col(value: Any) -> Col:
    """The column type one value needs; raises TypeError/ValueError for what Parquet cannot hold."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return Col("bool")
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return Col("int")
        return Col("decimal", len(str(abs(value))), 0)
    if isinstance(value, float):
        return Col("float")
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be stored in a decimal column")
        return _decimal_col(value)
    if isinstance(value, str):
        return Col("string")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Col("binary")
    if isinstance(value, dt.datetime):
        return Col("timestamp" if value.tzinfo is not None and value.utcoffset() is not None else "timestamp_naive")
    if isinstance(value, dt.date):
        return Col("date")
    if isinstance(value, dt.time):
        return Col("time")
    if isinstance(value, dt.timedelta):
        return Col("duration")
    if isinstance(value, (dict, list, tuple)):
        return Col("json")
    if isinstance(value, (uuid.UUID, ipaddress._BaseAddress, ipaddress._BaseNetwork)):
        return Col("string")
    if isinstance(value, enum.Enum):
        return value_col(value.value)
    raise TypeError(f"a {type(value).__name__} cannot be stored in Parquet; convert it with a cast or map step")


_NUMERIC_TYPE = re.compile(r"^\s*numeric\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)\s*$", re.I)


def declared_decimals(schema: Mapping[str, Any] | None) -> dict[str, tuple[int, int]]:
    """``field -> (precision, scale)`` of the ``numeric(p,s)`` columns of a PostgreSQL source schema."""
    if not schema or schema.get("dialect") != "postgresql":
        return {}
    out = {}
    for field in schema.get("fields") or []:
        match = _NUMERIC_TYPE.match(str(field.get("type") or ""))
        if match and field.get("name"):
            precision, scale = int(match.group(1)), int(match.group(2) or 0)
            if 0 < precision <= 76 and 0 <= scale <= precision:
                out[str(field["name"])] = (precision, scale)
    return out


def declared_decimal(value: Col, precision: int, scale: int) -> Col:
    """The column of a decimal the source declares as ``numeric(precision, scale)``, when ``value`` fits it."""
    if value.scale <= scale and value.digits <= precision - scale:
        return Col("decimal", precision - scale, scale, precision=precision)
    return value


def widen_type(col: Col | None, value: Col) -> Col | None:
    """The column type that holds both, or None when they conflict."""
    if col is None or col.kind == "null":
        return value
    if value.kind == "null":
        return col
    if col.pinned:
        return col if _fits_pinned(col, value) else None
    if col.kind == "json":
        return col  # any value can be written as JSON text
    if col.kind == value.kind:
        if col.kind != "decimal":
            return col
        if value.digits <= col.digits and value.scale <= col.scale:
            return col
        widened = Col("decimal", max(col.digits, value.digits), max(col.scale, value.scale))
        return widened if widened.digits + widened.scale <= 76 else None
    pair = {col.kind, value.kind}
    if pair == {"int", "float"}:
        return Col("float")
    if pair == {"int", "decimal"}:
        dec = col if col.kind == "decimal" else value
        widened = Col("decimal", max(dec.digits, 19), dec.scale)
        return widened if widened.digits + widened.scale <= 76 else None
    return None


def _fits_pinned(col: Col, value: Col) -> bool:
    kind = col.kind
    if kind == "json":
        return True
    if kind == "decimal":
        if value.kind == "int":
            return col.precision - col.scale >= 19
        return value.kind == "decimal" and value.scale <= col.scale and value.digits <= col.precision - col.scale
    if kind == "float":
        return value.kind in ("float", "int")
    return value.kind == kind


def parse_pinned(name: str, spec: Any) -> Col:
    text = str(spec).strip().lower() if isinstance(spec, str) else ""
    match = _DECIMAL_SPEC.match(text)
    if match:
        p, s = int(match.group(1)), int(match.group(2))
        if not 1 <= p <= 76 or s > p:
            raise ConfigError(f"schema.{name}: decimal(P,S) needs 1 <= P <= 76 and S <= P, got {spec!r}")
        return Col("decimal", p - s, s, precision=p, pinned=True)
    aliases = {"str": "string", "integer": "int", "boolean": "bool", "datetime": "timestamp", "bytes": "binary"}
    text = aliases.get(text, text)
    if text == "decimal":
        raise ConfigError(f"schema.{name}: give decimal(P,S), e.g. decimal(18,2)")
    if text not in _PINNABLE:
        raise ConfigError(
            f"schema.{name}: unknown type {spec!r}{suggest(text, _PINNABLE)}; known: {', '.join(COLUMN_TYPES)}"
        )
    return Col(text, pinned=True)


def _convert(col: Col, value: Any) -> Any:
    """A value as pyarrow takes it for the column."""
    if value is None:
        return None
    kind = col.kind
    if kind == "json":
        return dumps(value)
    if kind == "float":
        return float(value)
    if kind == "decimal":
        return decimal.Decimal(value) if isinstance(value, int) else value
    if kind == "timestamp":
        return value.astimezone(dt.timezone.utc)
    if kind == "string" and not isinstance(value, str):
        return str(value.value if isinstance(value, enum.Enum) else value)
    if kind == "binary":
        return bytes(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def build_table(records: list, schema: dict[str, Col], arrow_schema):
    import pyarrow as pa

    columns = [pa.array([_convert(col, r.get(name)) for r in records], type=col.arrow_type()) for name, col in schema.items()]
    return pa.Table.from_arrays(columns, schema=arrow_schema)


def conform(table, target):
    """``table`` with ``target``'s columns and types (columns it lacks become nulls; types only widen)."""
    import pyarrow as pa

    arrays = []
    for field in target:
        index = table.schema.get_field_index(field.name)
        if index < 0:
            arrays.append(pa.nulls(table.num_rows, type=field.type))
            continue
        column = table.column(index)
        if not column.type.equals(field.type):
            # int64 -> double is the one lossy widening (documented); the others are exact.
            column = column.cast(field.type, safe=not (pa.types.is_integer(column.type) and pa.types.is_floating(field.type)))
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=target)

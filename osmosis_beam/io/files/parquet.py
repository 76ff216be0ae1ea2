"""The Parquet sink: columnar files with a schema derived from the records, published atomically at commit.

Like the JSONL sink, workers write ``part-*.parquet`` files into ``PATH/_staging/RUN_ID/`` (one file
per bundle, under a ``.tmp`` name until the bundle finishes); when the runner reports DONE the
launcher publishes the run by renaming that folder to ``PATH/<window hi>-<run id>/`` (one atomic
rename), and ``full_refresh`` replaces older output. Names starting with ``_`` or ``.`` are not
output; pyarrow's dataset reader and :func:`read_parquet_dir` skip them.

Example (pipeline YAML)::

    sink:
      type: parquet
      path: ./data/orders
      compression: zstd                       # snappy (default), zstd, gzip, brotli, lz4, none
      schema: {amount: "decimal(12,2)"}       # optional: pin a column's type in every file

Reading it back::

    import pyarrow.parquet as pq
    pq.read_table("./data/orders")            # or osmosis_beam.io.files.parquet.read_parquet_table

How values are stored:

==========================  ========================================================================
record value                Parquet column
==========================  ========================================================================
bool, int, float            boolean, int64, double (ints beyond int64 become decimal)
Decimal                     decimal128(38, s) with ``s`` the largest scale seen (decimal256(76, s)
                            when more than 38 digits are needed); NaN/Infinity are dead letters
aware datetime              timestamp[us, tz=UTC] (the instant; the original offset is not kept)
naive datetime              timestamp[us] (no zone)
date, time, timedelta       date32, time64[us], duration[us]
str, UUID, IP address       string
bytes                       binary
dict, list, tuple           string holding JSON (the JSONL sink's encoding: exact decimals as
                            text, ISO-8601 timestamps); the field's metadata says
                            ``osmosis.encoding: json``. Use ``flatten`` first to get columns.
None / a missing field      null
==========================  ========================================================================

Types are derived per file, in record order. A field's type *widens* when a later record needs it:
null -> anything, int -> double (exact up to 2**53) or decimal, decimal -> a larger scale or
precision. Files buffer ``row_group_size`` rows before writing, so widening inside that buffer costs
nothing; after the file is open a widening closes it and continues in a new file (so a bundle can
write more than one file, never a file whose schema lies). A value that *conflicts* with its
column (text in an int64 column, a dict in a timestamp column, a float in a decimal column) is not
coerced: its record goes to the dead letter with the field, the column type and the value type,
and the run goes on. Conflicts are judged per file, so two files of one run may disagree (int64
here, string there) when the data itself disagrees; ``cast`` the field or pin it in ``schema`` to
get one type everywhere. Files of one dataset can therefore differ in columns and in widened
types; :func:`read_parquet_table` unifies them (pyarrow's permissive promotion), as do
``duckdb.read_parquet(..., union_by_name=true)`` and Spark's ``mergeSchema``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import ipaddress
import json
import os
import re
import uuid
from typing import Any, Iterator, Mapping

from osmosis_beam.core.encoding import dumps
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.options import Option, suggest
from osmosis_beam.io.files.staged import StagedFileSink, iter_output_files

__all__ = ["ParquetSink", "read_parquet_dir", "read_parquet_table", "COLUMN_TYPES"]

SUFFIX = ".parquet"
JSON_ENCODING = {b"osmosis.encoding": b"json"}
_INT64 = (-(2**63), 2**63 - 1)
_FLOAT_EXACT = 2**53
#: The types a column can be pinned to with ``schema: {field: TYPE}``.
COLUMN_TYPES = ("bool", "int", "float", "decimal(P,S)", "string", "binary", "timestamp", "date", "json")
_PINNABLE = ("bool", "int", "float", "decimal", "string", "binary", "timestamp", "date", "json")
_DECIMAL_SPEC = re.compile(r"^\s*decimal\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*$")
COMPRESSIONS = ("snappy", "zstd", "gzip", "brotli", "lz4", "none")


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


# -- writing -------------------------------------------------------------------------------------


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


class ParquetSink(StagedFileSink):
    """Parquet files with a schema derived from the records, staged per run and published atomically at commit."""

    type_name = "parquet"
    suffix = SUFFIX
    options = (
        Option("path", "path", required=True, help="the output folder"),
        Option("compression", default="snappy", choices=COMPRESSIONS),
        Option("row_group_size", "int", default=65536, minimum=1, help="rows buffered per row group"),
        Option("schema", "dict", default={}, help="pin column types: {field: TYPE}"),
    )

    @classmethod
    def check_options(cls, values: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        for name, spec in (values.get("schema") or {}).items():
            try:
                parse_pinned(str(name), spec)
            except ConfigError as exc:
                problems += exc.problems
        return problems


    def write(self, run_id: str):
        from osmosis_beam.io.files.parquet_write import WriteParquet

        return WriteParquet(
            str(self.staging_dir(run_id)),
            compression=self.config["compression"],
            row_group_size=self.config["row_group_size"],
            schema=self.config["schema"] or {},
            metadata={"osmosis.pipeline": self.pipeline_id, "osmosis.run_id": run_id},
        )


# -- reading -------------------------------------------------------------------------------------
def read_parquet_table(path: str | os.PathLike):
    """Every published file under ``path`` as one pyarrow Table (schemas unified, columns by name)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(file).replace_schema_metadata(None) for file in iter_output_files(path, SUFFIX)]
    if not tables:
        return pa.table({})
    unified = pa.unify_schemas([t.schema for t in tables], promote_options="permissive")
    # pyarrow widens decimal128(38,2) + decimal128(38,3) to decimal256(39,3); the values almost
    # always fit decimal128(38,3), which is what the sink itself would have chosen.
    fields = []
    for field in unified:
        if pa.types.is_decimal(field.type):
            types = [t.schema.field(field.name).type for t in tables if field.name in t.schema.names]
            if all(pa.types.is_decimal128(t) for t in types):
                scale = max(t.scale for t in types)
                whole = max(t.precision - t.scale for t in types)
                field = field.with_type(pa.decimal128(min(38, max(1, whole + scale)), scale))
        fields.append(field)
    target = pa.schema(fields)
    try:
        return pa.concat_tables([conform(t, target) for t in tables])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a value needs the wider type after all
        return pa.concat_tables(tables, promote_options="permissive")


def read_parquet_dir(path: str | os.PathLike, *, decode_json: bool = True) -> Iterator[dict[str, Any]]:
    """Every record published under ``path``, file by file (skips staging, manifests and hidden files).

    JSON columns (dicts and lists) are decoded back to Python values unless ``decode_json`` is False.
    """
    import pyarrow.parquet as pq

    for file in iter_output_files(path, SUFFIX):
        table = pq.read_table(file)
        json_columns = [f.name for f in table.schema if f.metadata and f.metadata.get(b"osmosis.encoding") == b"json"]
        for row in table.to_pylist():
            if decode_json:
                for name in json_columns:
                    if row.get(name) is not None:
                        row[name] = json.loads(row[name])
            yield row

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

import json
import os
from typing import Any, Iterator, Mapping

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.options import Option
from osmosis_beam.io.files.arrow import COLUMN_TYPES, SUFFIX, conform, declared_decimals, parse_pinned
from osmosis_beam.io.files.staged import StagedFileSink, iter_output_files

__all__ = ["ParquetSink", "read_parquet_dir", "read_parquet_table", "COLUMN_TYPES"]

_FLOAT_EXACT = 2**53
COMPRESSIONS = ("snappy", "zstd", "gzip", "brotli", "lz4", "none")


# -- writing -------------------------------------------------------------------------------------


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
    wants_schema = True  # a PostgreSQL source's numeric(p,s) columns become decimal(p,s), not decimal(38,s)
    #: Arrow tables a source builds in the column types the typed path derives (the zero-decode path).
    encodings = ("arrow",)
    _declared: dict = {}

    def __init__(self, options: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        if self.config["schema"]:  # pinned column types are checked value by value: the typed path
            self.typed_only = "pins column types (sink.schema), which it checks value by value"

    def use_schema(self, schema: Mapping[str, Any] | None) -> None:
        """Take the declared precision of decimal columns from a PostgreSQL source's schema."""
        self._declared = declared_decimals(schema)

    @classmethod
    def check_options(cls, values: Mapping[str, Any]) -> list[str]:
        problems: list[str] = list(super().check_options(values))
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
            declared=self._declared,
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

"""Beam YAML: the osmosis reads and writes as transforms of a Beam YAML pipeline, beside Beam's own.

The package ships a provider file (``osmosis_beam/yaml/providers.yaml``, path in :data:`PROVIDER_FILE`)
that registers them with Beam YAML's ``python`` provider. A pipeline includes it and uses them::

    pipeline:
      type: chain
      transforms:
        - type: ReadFromOsmosisPostgres
          config: {dsn: "postgresql://app@db/shop", table: orders, cursor_field: updated_at,
                   since: "2024-06-01T00:00:00Z"}
        - type: MapToFields            # Beam's own
          config: {language: python, fields: {id: id, doubled: "float(total) * 2"}}
        - type: WriteToJson            # Beam's own
          config: {path: /data/orders.json}
    providers:
      - include: /path/to/site-packages/osmosis_beam/yaml/providers.yaml
        # python -c "import osmosis_beam.io.beam_yaml as m; print(m.PROVIDER_FILE)"

    python -m apache_beam.yaml.main --yaml_pipeline_file=orders.yaml

Each transform takes the keyword arguments of its Python transform (``ReadFromPostgres`` ...), checked when
the pipeline is built, all problems at once. Beam YAML needs rows with a schema, so a read gives
``beam.Row`` s whose fields come from the source's schema (``get_schema()``, asked when the pipeline is
built): integers, floats and booleans stay numbers; decimals, timestamps, dates and bytes become their
exact JSON text (``"12.50"``, ``"2024-06-01T00:00:00+00:00"``, base64), nested values JSON text; lists of
text stay lists. A write takes rows (or dicts) and returns ``written`` (one row ``{records_written}``).
As everywhere in Beam YAML, ``error_handling: {output: NAME}`` gives the records a read or write could not
handle as an output NAME of rows ``{step, error, record}`` (the record as JSON text) instead of failing.
"""
from __future__ import annotations

import importlib
import typing
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

import apache_beam as beam

from osmosis_beam.core.encoding import dumps, json_default
from osmosis_beam.core.errors import ConfigError


__all__ = [
    "PROVIDER_FILE",
    "ReadFromOsmosisPostgres", "ReadFromOsmosisMongoDB", "ReadFromOsmosisWeb", "ReadFromOsmosisRSS",
    "WriteToOsmosisJsonl", "WriteToOsmosisParquet", "WriteToOsmosisPostgres", "WriteToOsmosisMongoDB",
]

#: The provider file to ``include`` in a Beam YAML pipeline's ``providers:``.
PROVIDER_FILE = Path(__file__).resolve().parent.parent / "yaml" / "providers.yaml"

# Type names in connectors' schemas (PostgreSQL, BSON, the RSS/web names) that stay numbers in rows.
_INT_TYPES = {"smallint", "integer", "bigint", "int", "int2", "int4", "int8", "int32", "int64", "long",
              "serial", "bigserial", "smallserial"}
_FLOAT_TYPES = {"real", "double precision", "double", "float", "float4", "float8"}
_BOOL_TYPES = {"boolean", "bool"}
_TEXT_LISTS = {"array<string>", "text[]", "character varying[]"}

_DEAD_LETTER_ROW = beam.typehints.row_type.RowTypeConstraint.from_fields([("step", str), ("error", str), ("record", str)])
_WRITTEN_ROW = beam.typehints.row_type.RowTypeConstraint.from_fields([("records_written", int)])


def _field_type(field: Mapping[str, Any]) -> Any:
    """The Python type of a row field for one field of a connector's ``get_schema()``."""
    kinds = field.get("types") or [field.get("type") or "string"]
    names = {str(k).lower().split("(", 1)[0].strip() for k in kinds} - {"null"}
    if names and names <= _INT_TYPES:
        return int
    if names and names <= _FLOAT_TYPES | _INT_TYPES:
        return float
    if names and names <= _BOOL_TYPES:
        return bool
    if names and names <= _TEXT_LISTS:
        return typing.Sequence[Optional[str]]
    return str


def _to_value(value: Any, kind: Any) -> Any:
    if value is None:
        return None
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is not str and kind not in (int, float, bool) and isinstance(value, (list, tuple)):
        return [None if v is None else v if isinstance(v, str) else _to_text(v) for v in value]
    return value if isinstance(value, str) else _to_text(value)


def _to_text(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return dumps(value)
    if isinstance(value, (bool, int, float)):
        return dumps(value)
    return str(json_default(value))


def _to_row(record: Mapping[str, Any], fields: tuple[tuple[str, Any], ...]) -> beam.Row:
    return beam.Row(**{name: _to_value(record.get(name), kind) for name, kind in fields})


def _dead_letter_row(letter: Mapping[str, Any]) -> Any:
    record = letter.get("record")
    return beam.Row(
        step=str(letter.get("step") or ""), error=str(letter.get("error") or ""),
        record=record if isinstance(record, str) else dumps(record),
    )


def _written_row(count: int) -> beam.Row:
    return beam.Row(records_written=count)


def _load(path: str) -> Any:
    """``module:Name`` imported on use, so that a backend's driver is needed only when its transform is used."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _error_output(error_handling: Any, name: str) -> str | None:
    if error_handling is None:
        return None
    output = error_handling.get("output") if isinstance(error_handling, Mapping) else None
    if not isinstance(output, str) or not output:
        raise ConfigError(problems=[f"{name}.error_handling: must be a mapping with 'output' (the output's name)"],
                          source=name)
    return output


class _YamlRead(beam.PTransform):
    """A read as rows with a schema (Beam YAML's transforms need one)."""

    read_class: ClassVar[str] = "osmosis_beam.io.read:ReadFromSource"
    _yaml_requires_inputs = False

    def __init__(self, error_handling: Any = None, **options: Any) -> None:
        super().__init__()
        name = type(self).__name__
        problems: list[str] = []
        try:
            self._errors = _error_output(error_handling, name)
        except ConfigError as exc:
            problems.extend(exc.problems)
        try:
            self.read = _load(self.read_class)(**options)
        except ConfigError as exc:
            problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems=problems, source=name)

    def _fields(self) -> tuple[tuple[str, Any], ...]:
        connector = self.read.connector
        try:
            schema = connector.get_schema()
        finally:
            connector.disconnect()
        fields = [f for f in schema.get("fields", []) if "." not in str(f.get("name", ""))]
        if not fields:
            raise ConfigError(
                problems=[f"{type(self).__name__}: the source reports no fields, so the rows would have no schema"],
                source=type(self).__name__,
            )
        return tuple((str(f["name"]), _field_type(f)) for f in fields)

    def expand(self, pbegin):
        fields = self._fields()
        row_type = beam.typehints.row_type.RowTypeConstraint.from_fields(
            [(name, Optional[kind]) for name, kind in fields]
        )
        read = self.read.with_exception_handling() if self._errors else self.read
        out = pbegin | "Read" >> read
        records, dead = out if self._errors else (out, None)
        rows = records | "To rows" >> beam.Map(_to_row, fields).with_output_types(row_type)
        if not self._errors:
            return rows
        return {"output": rows, self._errors: dead | "Dead letter rows" >> beam.Map(_dead_letter_row)
                .with_output_types(_DEAD_LETTER_ROW)}


def _as_dict(element: Any) -> dict[str, Any]:
    if isinstance(element, Mapping):
        return dict(element)
    as_dict = getattr(element, "_asdict", None)
    if as_dict is None:
        raise TypeError(f"expected a row or a dict, got {type(element).__name__}")
    return {k: _plain(v) for k, v in as_dict().items()}


def _plain(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _YamlWrite(beam.PTransform):
    """A write that takes rows (or dicts)."""

    write_class: ClassVar[str] = "osmosis_beam.io.write:WriteToSink"

    def __init__(self, error_handling: Any = None, **options: Any) -> None:
        super().__init__()
        name = type(self).__name__
        problems: list[str] = []
        try:
            self._errors = _error_output(error_handling, name)
        except ConfigError as exc:
            problems.extend(exc.problems)
        try:
            self.write = _load(self.write_class)(**options)
        except ConfigError as exc:
            problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems=problems, source=name)

    def expand(self, pcoll):
        write = self.write.with_exception_handling() if self._errors else self.write
        result = pcoll | "To records" >> beam.Map(_as_dict).with_output_types(dict) | "Write" >> write
        written = result.written | "Written" >> beam.Map(_written_row).with_output_types(_WRITTEN_ROW)
        outputs = {"written": written}
        if self._errors:
            outputs[self._errors] = (
                result.dead_letter | "Dead letter rows" >> beam.Map(_dead_letter_row).with_output_types(_DEAD_LETTER_ROW)
            )
        return outputs


class ReadFromOsmosisPostgres(_YamlRead):
    """Rows of a PostgreSQL table or query in ``[since, until)`` of ``cursor_field`` (see ``ReadFromPostgres``)."""

    read_class = "osmosis_beam.io.postgres.transforms:ReadFromPostgres"


class ReadFromOsmosisMongoDB(_YamlRead):
    """Documents of a MongoDB collection in ``[since, until)`` (see ``ReadFromMongoDB``); top-level fields."""

    read_class = "osmosis_beam.io.mongodb.transforms:ReadFromMongoDB"


class ReadFromOsmosisWeb(_YamlRead):
    """Items scraped from web pages (see ``ReadFromWeb``)."""

    read_class = "osmosis_beam.io.web.transforms:ReadFromWeb"


class ReadFromOsmosisRSS(_YamlRead):
    """Entries of an RSS or Atom feed (see ``ReadFromRSS``)."""

    read_class = "osmosis_beam.io.rss.transforms:ReadFromRSS"


class WriteToOsmosisJsonl(_YamlWrite):
    """JSON lines, staged and published in one rename once the pipeline is done (see ``WriteToJsonl``)."""

    write_class = "osmosis_beam.io.files.transforms:WriteToJsonl"


class WriteToOsmosisParquet(_YamlWrite):
    """Parquet files, staged and published once the pipeline is done (see ``WriteToParquet``)."""

    write_class = "osmosis_beam.io.files.transforms:WriteToParquet"


class WriteToOsmosisPostgres(_YamlWrite):
    """Upserts by ``key``, or appends through a staging table (see ``WriteToPostgres``)."""

    write_class = "osmosis_beam.io.postgres.transforms:WriteToPostgres"


class WriteToOsmosisMongoDB(_YamlWrite):
    """Bulk upserts by ``key``, or appends (see ``WriteToMongoDB``)."""

    write_class = "osmosis_beam.io.mongodb.transforms:WriteToMongoDB"



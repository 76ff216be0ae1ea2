"""JSON Schema of pipeline YAML, generated from the ``Option`` declarations of connectors and sinks.

``osmosis spec`` prints the whole pipeline file's schema; ``osmosis spec postgres`` one type's. Point an
editor at it (``# yaml-language-server: $schema=osmosis.schema.json`` for the YAML language server) to
get completion and checks while writing a pipeline. ``${ENV}`` references are accepted wherever a value
is (they are resolved when the file is loaded). Steps declare no ``Option``s (their configuration is a
shorthand: an expression, a list of fields, a mapping); their shapes are described here, and a plug-in
step may give its own as a ``config_schema`` class attribute.

Example::

    from osmosis_beam.schema import pipeline_schema, type_schema
    type_schema("postgres")["properties"]["dsn"]    # {"type": "string", "writeOnly": true, ...}
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from osmosis_beam.config import RUNNERS
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.notify import NOTIFY_EVENTS
from osmosis_beam.core.options import Option, suggest
from osmosis_beam.core.timefmt import format_duration
from osmosis_beam.registry import KINDS, default_registry, plain_text

__all__ = ["pipeline_schema", "type_schema", "standalone_type_schema", "option_schema", "SCHEMA_ID"]

SCHEMA_ID = "https://osmosis-beam.dev/schema/pipeline.json"
_ENV = {"type": "string", "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$", "description": "an ${ENV} reference"}
_DURATION = {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(us|ms|s|m|h|d|w)?\s*$", "examples": ["30s", "10m", "2h", "1d"]}
_FIELDS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
_EXPRESSIONS = {"type": "object", "additionalProperties": {"type": "string"}, "description": "field: Python expression"}
_STEP_SHAPES: dict[str, dict[str, Any]] = {
    "filter": {"type": "string", "description": "a Python expression over the record's fields", "examples": ["amount > 0"]},
    "map": _EXPRESSIONS,
    "select": _FIELDS,
    "drop": _FIELDS,
    "rename": {"type": "object", "additionalProperties": {"type": "string"}, "description": "old: new"},
    "cast": {"type": "object", "additionalProperties": {"type": "string"},
             "description": "field: int, float, decimal[(p,s)], str, bool, datetime[(TZ)], date[(TZ)], json"},
    "flatten": {"anyOf": [{"type": "null"}, {"type": "object"}]},
    "explode": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {
        "field": {"type": "string"}, "index": {"type": "string"}, "keep_empty": {"type": "boolean"}}, "required": ["field"]}]},
    "html_to_text": _FIELDS,
    "dedupe": {"type": "object", "properties": {"key": _FIELDS}, "required": ["key"]},
    "python": {"anyOf": [{"type": "string", "pattern": r"^[\w.]+:[\w.]+$", "examples": ["mypkg.steps:clean"]},
                         {"type": "object", "properties": {"function": {"type": "string"}}}]},
}


def _with_env(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"$ref": "#/$defs/env"}]}


def _default(value: Any) -> Any:
    if isinstance(value, dt.timedelta):
        return format_duration(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        return value
    return str(value)


def option_schema(option: Option) -> dict[str, Any]:
    """The JSON Schema of one declared option."""
    kind = option.kind
    base: dict[str, Any]
    if kind == "int":
        base = {"type": "integer"}
    elif kind == "float":
        base = {"type": "number"}
    elif kind == "bool":
        base = {"type": "boolean"}
    elif kind == "duration":
        base = dict(_DURATION)
    elif kind == "timestamp":
        base = {"type": "string", "format": "date-time"}
    elif kind == "list":
        base = {"anyOf": [{"type": "array"}, {"type": ["string", "number"]}]}
    elif kind == "dict":
        base = {"type": "object"}
    elif kind in ("str", "path"):
        base = {"type": "string"}
    else:
        base = {}
    if option.choices:
        base = {"enum": list(option.choices)}
    if option.minimum is not None and kind in ("int", "float"):
        base["minimum"] = option.minimum
    schema = base if kind in ("str", "path") and not option.choices else (_with_env(base) if base else {})
    description = plain_text(option.help) if option.help else ""
    if option.secret:
        schema["writeOnly"] = True
        description = (description + " " if description else "") + "(a secret)"
    if description:
        schema["description"] = description
    if option.default is not None and option.default != [] and option.default != {}:
        schema["default"] = _default(option.default)
    return schema


def _kind_of(kind: str) -> str:
    if kind in KINDS:
        return kind
    if kind.endswith("s") and kind[:-1] in KINDS:
        return kind[:-1]
    raise ConfigError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")


def type_schema(name: str, kind: str | None = None, registry=None) -> dict[str, Any]:
    """The schema of one connector, sink or step type (``kind`` is found when not given)."""
    registry = registry or default_registry()
    kinds = [_kind_of(kind)] if kind else [k for k in KINDS if name in registry.names(k)]
    if not kinds:
        known = sorted({n for k in KINDS for n in registry.names(k)})
        raise ConfigError(f"spec: unknown type {name!r}{suggest(name, known)}; known: {', '.join(known)}")
    if len(kinds) > 1 and kind is None:
        return {"anyOf": [type_schema(name, k, registry) for k in kinds], "description": f"{name}: a {' or a '.join(kinds)}"}
    kind = kinds[0]
    cls = registry.lookup(kind, name)
    doc = (cls.__doc__ or "").strip().splitlines()
    title = f"{name} {kind}"
    description = plain_text(doc[0]) if doc else ""
    if kind == "step":
        shape = dict(getattr(cls, "config_schema", None) or _STEP_SHAPES.get(name, {}))
        if shape.get("description"):
            description = f"{description} ({shape.pop('description')})"
        return {"title": title, **shape, "description": description}
    options = tuple(getattr(cls, "options", ()) or ())
    properties: dict[str, Any] = {"type": {"const": name, "description": f"the {kind} type"}}
    properties.update({o.name: option_schema(o) for o in options})
    return {
        "title": title,
        "description": description,
        "type": "object",
        "properties": properties,
        "required": ["type", *(o.name for o in options if o.required)],
        "additionalProperties": False,
    }


def standalone_type_schema(name: str, kind: str | None = None, registry=None) -> dict[str, Any]:
    """:func:`type_schema` as a document of its own (with the definitions it refers to)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **type_schema(name, kind, registry),
            "$defs": {"env": _ENV}}


def pipeline_schema(registry=None) -> dict[str, Any]:
    """The schema of a whole pipeline file, with every registered connector, step and sink."""
    registry = registry or default_registry()

    def one_of(kind: str) -> dict[str, Any]:
        return {"oneOf": [{"$ref": f"#/$defs/{kind}/{n}"} for n in registry.names(kind)]}

    steps = []
    for n in registry.names("step"):
        steps.append({
            "type": "object",
            "properties": {n: {"$ref": f"#/$defs/step/{n}"}, "on_error": {"enum": ["dead_letter", "fail"]}},
            "required": [n],
            "additionalProperties": False,
        })
    defs: dict[str, Any] = {"env": _ENV, "duration": _with_env(_DURATION)}
    for kind in KINDS:
        defs[kind] = {}
        for n in registry.names(kind):
            try:
                defs[kind][n] = type_schema(n, kind, registry)
            except ConfigError as exc:  # a plug-in that cannot load: still a valid name
                defs[kind][n] = {"description": f"unavailable: {exc.message}"}
    duration = {"$ref": "#/$defs/duration"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "osmosis-beam pipeline",
        "type": "object",
        "required": ["id", "source", "sink"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": "^[a-z0-9_-]+$", "description": "unique within a home"},
            "description": {"type": "string"},
            "source": one_of("connector"),
            "sink": one_of("sink"),
            "steps": {"type": "array", "items": {"anyOf": [*steps, {"enum": registry.names("step")}]}},
            "incremental": {"type": "object", "additionalProperties": False, "properties": {
                "cursor_field": {"type": "string"},
                "start": _with_env({"type": ["string", "integer"], "description": "ISO-8601 with an offset, or an integer cursor"}),
                "lookback": duration, "safety_lag": duration, "max_window": duration}},
            "schedule": {"type": "object", "additionalProperties": False, "properties": {
                "every": duration, "interval_minutes": {"type": "number"},
                "cron": {"type": "string", "examples": ["*/15 * * * *"]}, "timezone": {"type": "string"}}},
            "read": {"type": "object", "additionalProperties": False, "properties": {
                "splits": _with_env({"type": "integer", "minimum": 1}),
                "batch_size": _with_env({"type": "integer", "minimum": 1})}},
            "runner": {"anyOf": [{"enum": list(RUNNERS)}, {"type": "object", "properties": {
                "name": {"enum": list(RUNNERS)}, "options": {"type": "object"}}, "required": ["name"]}]},
            "dead_letter": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"path": {"type": "string"}}}]},
            "notify": {"anyOf": [{"type": "string", "format": "uri"}, {"type": "object", "additionalProperties": False, "properties": {
                "webhook": {"type": "string", "writeOnly": True, "description": "http(s) URL; a secret: write it as ${ENV_VAR}"},
                "on": {"type": "array", "items": {"enum": list(NOTIFY_EVENTS)}},
                "timeout": duration, "retries": {"type": "integer", "minimum": 0, "maximum": 10}}, "required": ["webhook"]}]},
        },
        "$defs": defs,
    }

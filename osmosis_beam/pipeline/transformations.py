"""Built-in transformation steps, declared in pipeline YAML as ``{<step name>: <options>}``.

Example (YAML)::

    steps:
      - filter: "amount > 100"
      - map: {amount_eur: "amount * rate", title: "title.strip()"}
      - select: [id, title, amount_eur]
      - rename: {title: headline}
      - python: "mypkg.steps:enrich"

Expressions see the record's fields as names and the whole record as ``record``; they are
compiled once per step, with a small set of safe helpers.
"""
from __future__ import annotations

import datetime as _dt
import decimal
import importlib
import json
import math
import re
from typing import Any, Callable

from osmosis_beam.exceptions import ConfigError
from osmosis_beam.types import Record, TransformationStep

__all__ = ["FilterStep", "MapStep", "SelectStep", "DropStep", "RenameStep", "PythonStep", "compile_expression"]

_SAFE_BUILTINS = {
    name: __builtins__[name] if isinstance(__builtins__, dict) else getattr(__builtins__, name)
    for name in (
        "abs", "all", "any", "bool", "dict", "enumerate", "float", "int", "isinstance", "len", "list", "max",
        "min", "range", "round", "set", "sorted", "str", "sum", "tuple", "zip", "None", "True", "False",
    )
}
_HELPERS = {
    "re": re,
    "math": math,
    "json": json,
    "Decimal": decimal.Decimal,
    "datetime": _dt.datetime,
    "date": _dt.date,
    "timedelta": _dt.timedelta,
    "timezone": _dt.timezone,
    "UTC": _dt.timezone.utc,
}


def compile_expression(text: Any, where: str = "expression"):
    """Compile a Python expression once; raise ConfigError naming ``where`` on a syntax error."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: must be a non-empty Python expression")
    try:
        return compile(text, f"<{where}>", "eval")
    except SyntaxError as exc:
        raise ConfigError(f"{where}: invalid expression {text!r}: {exc.msg} at column {exc.offset}") from None


class _Scope(dict):
    """Names an expression sees: helpers, then the record's fields, and ``record`` itself."""

    def __init__(self, record: Record) -> None:
        super().__init__(_HELPERS)
        self.update(record)
        self["record"] = record
        self["__builtins__"] = _SAFE_BUILTINS

    def __missing__(self, key: str) -> Any:
        raise NameError(f"field {key!r} is not in the record (fields: {', '.join(sorted(self['record']))})")


def _evaluate(code, record: Record) -> Any:
    return eval(code, {"__builtins__": _SAFE_BUILTINS}, _Scope(record))  # noqa: S307 - user expressions by design


class _ExpressionStep(TransformationStep):
    @classmethod
    def check_config(cls, config: Any) -> list[str]:
        try:
            cls.from_config(config)
        except ConfigError as exc:
            return exc.problems
        return []


class FilterStep(_ExpressionStep):
    """Keep the records for which a Python expression is true."""

    name = "filter"

    def __init__(self, expression: str) -> None:
        super().__init__()
        self.expression = expression
        self._code = compile_expression(expression, "filter")

    @classmethod
    def from_config(cls, config: Any) -> "FilterStep":
        return cls(config)

    def __getstate__(self):
        return {"expression": self.expression, "name": self.name}

    def __setstate__(self, state):
        self.__init__(state["expression"])

    def process(self, records):
        code = self._code
        return [r for r in records if _evaluate(code, r)]


class MapStep(_ExpressionStep):
    """Set or compute fields from expressions; the other fields are kept."""

    name = "map"

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__()
        if not isinstance(fields, dict) or not fields:
            raise ConfigError("map: give a mapping of field: expression")
        self.fields = dict(fields)
        self._codes = [(k, compile_expression(v, f"map.{k}")) for k, v in fields.items()]

    @classmethod
    def from_config(cls, config: Any) -> "MapStep":
        return cls(config)

    def __getstate__(self):
        return {"fields": self.fields}

    def __setstate__(self, state):
        self.__init__(state["fields"])

    def process(self, records):
        out = []
        for record in records:
            new = dict(record)
            for key, code in self._codes:
                new[key] = _evaluate(code, new)
            out.append(new)
        return out


def _field_list(config: Any, step: str) -> list[str]:
    if isinstance(config, str):
        config = [config]
    if not isinstance(config, list) or not config or not all(isinstance(f, str) for f in config):
        raise ConfigError(f"{step}: give a list of field names")
    return list(config)


class SelectStep(_ExpressionStep):
    """Keep only the listed fields."""

    name = "select"

    def __init__(self, fields: list[str]) -> None:
        super().__init__()
        self.fields = _field_list(fields, "select")

    @classmethod
    def from_config(cls, config):
        return cls(config)

    def process(self, records):
        fields = self.fields
        return [{f: r.get(f) for f in fields} for r in records]


class DropStep(_ExpressionStep):
    """Remove the listed fields."""

    name = "drop"

    def __init__(self, fields: list[str]) -> None:
        super().__init__()
        self.fields = set(_field_list(fields, "drop"))

    @classmethod
    def from_config(cls, config):
        return cls(config)

    def process(self, records):
        drop = self.fields
        return [{k: v for k, v in r.items() if k not in drop} for r in records]


class RenameStep(_ExpressionStep):
    """Rename fields (``{old: new}``)."""

    name = "rename"

    def __init__(self, mapping: dict[str, str]) -> None:
        super().__init__()
        if not isinstance(mapping, dict) or not mapping or not all(isinstance(v, str) for v in mapping.values()):
            raise ConfigError("rename: give a mapping of old_name: new_name")
        self.mapping = dict(mapping)

    @classmethod
    def from_config(cls, config):
        return cls(config)

    def process(self, records):
        m = self.mapping
        return [{m.get(k, k): v for k, v in r.items()} for r in records]


class PythonStep(_ExpressionStep):
    """A user function ``module:callable`` (record -> record, None to drop, or a list) or a TransformationStep class."""

    name = "python"

    def __init__(self, target: str) -> None:
        super().__init__()
        if not isinstance(target, str) or ":" not in target:
            raise ConfigError(f"python: give 'module:callable', got {target!r}")
        self.target = target
        self._impl: Any = None

    @classmethod
    def from_config(cls, config):
        return cls(config)

    @classmethod
    def check_config(cls, config: Any) -> list[str]:
        try:
            cls(config)._load()
        except ConfigError as exc:
            return exc.problems
        return []

    def _load(self) -> Any:
        module_name, _, attr = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except ImportError as exc:
            raise ConfigError(f"python: cannot import {module_name!r} ({exc}); is it installed on the workers?") from None
        except AttributeError:
            raise ConfigError(f"python: {module_name!r} has no {attr!r}") from None
        if isinstance(obj, type) and issubclass(obj, TransformationStep):
            return obj()
        if not callable(obj):
            raise ConfigError(f"python: {self.target!r} is not callable")
        return obj

    def __getstate__(self):
        return {"target": self.target}

    def __setstate__(self, state):
        self.__init__(state["target"])

    def setup(self) -> None:
        if self._impl is None:
            self._impl = self._load()

    def process(self, records):
        if self._impl is None:
            self.setup()
        impl = self._impl
        if isinstance(impl, TransformationStep):
            return impl.process(records)
        out: list[Record] = []
        for record in records:
            result = impl(record)
            if result is None:
                continue
            if isinstance(result, list):
                out.extend(result)
            else:
                out.append(result)
        return out

"""Python expressions in steps (``filter``, ``map``): compiled once, evaluated per record with native values.

Example::

    from osmosis_beam.steps.expressions import FilterStep, MapStep
    FilterStep("amount > 100").process([{"amount": 150}, {"amount": 5}])     # [{'amount': 150}]
    MapStep({"double": "amount * 2"}).process([{"amount": 2}])              # [{'amount': 2, 'double': 4}]
"""
from __future__ import annotations

import datetime as _dt
import decimal
import json
import math
import re
import zoneinfo
from typing import Any

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.records import (
    Record,
)
from osmosis_beam.core.timefmt import UTC, parse_timestamp
from osmosis_beam.steps.base import ConfiguredStep, raise_problems

__all__ = ['EXPRESSION_HELPERS', 'compile_expression', 'FilterStep', 'MapStep']


# -- expressions ---------------------------------------------------------------------------------
def _builtin(name: str) -> Any:
    return __builtins__[name] if isinstance(__builtins__, dict) else getattr(__builtins__, name)


_SAFE_BUILTINS = {
    name: _builtin(name)
    for name in (
        "abs", "all", "any", "bool", "dict", "enumerate", "float", "int", "isinstance", "len", "list", "max",
        "min", "range", "round", "set", "sorted", "str", "sum", "tuple", "zip", "None", "True", "False",
    )
}


def _timestamp(text: Any, tz: str = "UTC") -> _dt.datetime:
    """ISO-8601 text (or a date/datetime) as a UTC-aware datetime; naive values are read in ``tz``."""
    return parse_timestamp(text, default_tz=zoneinfo.ZoneInfo(tz))


#: Names every expression sees besides the record's fields (which win on a clash) and the safe builtins.
EXPRESSION_HELPERS: dict[str, Any] = {
    "re": re,
    "math": math,
    "json": json,
    "Decimal": decimal.Decimal,
    "datetime": _dt.datetime,
    "date": _dt.date,
    "timedelta": _dt.timedelta,
    "timezone": _dt.timezone,
    "UTC": UTC,
    "timestamp": _timestamp,
}


_BASE_SCOPE = {**EXPRESSION_HELPERS, "__builtins__": _SAFE_BUILTINS}


def _dunder_names(code) -> list[str]:
    found = [n for n in code.co_names if n.startswith("__")]
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            found += _dunder_names(const)
    return found


def compile_expression(text: Any, where: str = "expression"):
    """Compile a Python expression once; raise ConfigError naming ``where`` on a syntax error."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: must be a non-empty Python expression, got {text!r}")
    try:
        code = compile(text.strip(), f"<{where}>", "eval")
    except SyntaxError as exc:
        raise ConfigError(f"{where}: invalid Python expression {text!r}: {_syntax_detail(text.strip(), exc)}") from None
    dunders = _dunder_names(code)
    if dunders:
        raise ConfigError(f"{where}: {dunders[0]!r} is not allowed in an expression {text!r}")
    return code


def _syntax_detail(text: str, exc: SyntaxError) -> str:
    """What is wrong and where, in words: Python points at column 0 when an expression stops early."""
    col = exc.offset or 0
    if 0 < col <= len(text) and exc.msg == "invalid syntax":
        return f"invalid syntax at column {col}, at {text[col - 1:col + 11]!r}"
    if 0 < col <= len(text):
        return f"{exc.msg} (column {col})"
    for tail in (" 0", ")", "]", "}", " else None"):
        try:
            compile(text + tail, "<expression>", "eval")
        except SyntaxError:
            continue
        return f"it ends too early: something is missing after {text!r} (e.g. a value after an operator, or a closing bracket)"
    return exc.msg


def _scope(record: Record) -> dict[str, Any]:
    # Fields live in the globals so that comprehensions and lambdas inside the expression see them too.
    scope = dict(_BASE_SCOPE)
    scope.update(record)
    scope["record"] = record
    scope["__builtins__"] = _SAFE_BUILTINS
    return scope


def _evaluate(code, record: Record, scope: dict[str, Any] | None = None) -> Any:
    try:
        return eval(code, _scope(record) if scope is None else scope)  # noqa: S307 - by design (module docstring)
    except NameError as exc:
        name = getattr(exc, "name", None)
        if name is None:
            raise
        fields = ", ".join(sorted(map(str, record))) or "none"
        raise NameError(f"{name!r} is neither a field of the record nor a helper (fields: {fields})") from None


# -- filter, map, select, drop, rename -----------------------------------------------------------
class FilterStep(ConfiguredStep):
    """Keep the records for which a Python expression is true."""

    name = "filter"
    _rebuilt_from = "expression"

    def __init__(self, expression: str) -> None:
        super().__init__()
        self.expression = expression
        self._code = compile_expression(expression, "filter")

    def process(self, records):
        code = self._code
        return [r for r in records if _evaluate(code, r)]


class MapStep(ConfiguredStep):
    """Set or compute fields from expressions, in order (later ones see earlier results); other fields are kept."""

    name = "map"
    _rebuilt_from = "fields"

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__()
        if not isinstance(fields, dict) or not fields:
            raise ConfigError(f"map: give a mapping of field: expression, got {fields!r}")
        problems: list[str] = []
        codes = []
        for key, text in fields.items():
            try:
                codes.append((str(key), compile_expression(text, f"map.{key}")))
            except ConfigError as exc:
                problems += exc.problems
        raise_problems(problems)
        self.fields = dict(fields)
        self._codes = codes

    def process(self, records):
        out = []
        for record in records:
            new = dict(record)
            scope = _scope(new)
            for key, code in self._codes:
                new[key] = scope[key] = _evaluate(code, new, scope)
            out.append(new)
        return out

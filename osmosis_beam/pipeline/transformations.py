"""Built-in transformation steps, declared in pipeline YAML as ``{<step name>: <options>}``.

Example (YAML)::

    steps:
      - filter: "amount > 100 and status != 'void'"
      - map: {amount_eur: "amount * rate", title: "title.strip()"}
      - cast: {amount_eur: "decimal(12,2)", created: datetime, payload: json}
      - flatten: {separator: "."}
      - explode: tags
      - html_to_text: [summary]
      - dedupe: {key: [id]}                # the latest record per id, by the pipeline's cursor
      - select: [id, title, amount_eur]
      - rename: {title: headline}
      - python: "mypkg.steps:enrich"

The same steps in Python::

    from osmosis_beam.pipeline import Pipeline
    from osmosis_beam.pipeline.transformations import CastStep, FilterStep
    Pipeline().add_step(CastStep({"amount": "decimal"})).add_step(FilterStep("amount > 100")).execute(records)

Records keep native values (Decimal, aware datetime, dict, list), so ``amount > 100`` compares
numbers and ``published >= timestamp('2024-06-01')`` compares instants. Expressions see the
record's fields as names and the whole record as ``record`` (``record['user.name']`` for names that
are not identifiers); they are compiled once per step object, i.e. once per worker. The helpers
are listed in :data:`EXPRESSION_HELPERS`. Restricting builtins and rejecting ``__dunder__`` names
keeps honest mistakes out; it is not a sandbox: a pipeline file is trusted code, like ``python:``.
"""
from __future__ import annotations

import datetime as _dt
import decimal
import importlib
import json
import math
import re
import zoneinfo
from html.parser import HTMLParser
from typing import Any, Iterable, Mapping

import apache_beam as beam
from apache_beam.metrics import Metrics

from osmosis_beam.batches import RecordBatch
from osmosis_beam.config import suggest
from osmosis_beam.connectors.base import DEAD_LETTER_TAG, METRICS_NAMESPACE, DeadLetter
from osmosis_beam.exceptions import ConfigError
from osmosis_beam.pipeline.pipeline import BatchTransform, StepContext, StepFailed, apply_record_function
from osmosis_beam.sinks.encoding import dumps, json_default
from osmosis_beam.timefmt import UTC, parse_timestamp
from osmosis_beam.types import Record, TransformationStep

__all__ = [
    "FilterStep",
    "MapStep",
    "SelectStep",
    "DropStep",
    "RenameStep",
    "CastStep",
    "DedupeStep",
    "FlattenStep",
    "ExplodeStep",
    "HtmlToTextStep",
    "PythonStep",
    "compile_expression",
    "html_to_text",
    "CAST_TYPES",
    "EXPRESSION_HELPERS",
]


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
        raise ConfigError(f"{where}: invalid expression {text!r}: {exc.msg} at column {exc.offset}") from None
    dunders = _dunder_names(code)
    if dunders:
        raise ConfigError(f"{where}: {dunders[0]!r} is not allowed in an expression {text!r}")
    return code


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


class _ConfiguredStep(TransformationStep):
    """A built-in step: ``from_config`` builds it from YAML, ``check_config`` reports every problem.

    A step that holds compiled state (code objects, loaded functions) names in ``_rebuilt_from`` the
    attribute it was built from: it travels to workers as that value alone and is rebuilt there.
    """

    _rebuilt_from: str | None = None

    def __getstate__(self):
        if self._rebuilt_from is None:
            return self.__dict__
        return {self._rebuilt_from: getattr(self, self._rebuilt_from)}

    def __setstate__(self, state):
        if self._rebuilt_from is None:
            self.__dict__.update(state)
        else:
            self.__init__(state[self._rebuilt_from])

    @classmethod
    def from_config(cls, config: Any) -> "_ConfiguredStep":
        return cls(config)

    @classmethod
    def check_config(cls, config: Any) -> list[str]:
        try:
            cls.from_config(config)
        except ConfigError as exc:
            return [_unprefixed(p, cls.name) for p in exc.problems]
        return []


def _unprefixed(problem: str, name: str) -> str:
    """``validate`` already says ``steps[2] (map):``; drop the step name the message repeats."""
    for prefix in (f"{name}: ", f"{name}."):
        if problem.startswith(prefix):
            return problem[len(prefix):]
    return problem


_ExpressionStep = _ConfiguredStep  # the seed's name


def _check_keys(config: Mapping[str, Any], known: tuple[str, ...], step: str, problems: list[str]) -> None:
    for key in config:
        if key not in known:
            problems.append(f"{step}.{key}: unknown option{suggest(str(key), known)}; known: {', '.join(known)}")


def _raise(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems=problems)


# -- filter, map, select, drop, rename -----------------------------------------------------------
class FilterStep(_ConfiguredStep):
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


class MapStep(_ConfiguredStep):
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
        _raise(problems)
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


def _field_list(config: Any, step: str) -> list[str]:
    if isinstance(config, str):
        config = [config]
    if not isinstance(config, list) or not config or not all(isinstance(f, str) and f for f in config):
        raise ConfigError(f"{step}: give a list of field names, got {config!r}")
    return list(config)


class SelectStep(_ConfiguredStep):
    """Keep only the listed fields, in that order (a missing field becomes null)."""

    name = "select"

    def __init__(self, fields: list[str]) -> None:
        super().__init__()
        self.fields = _field_list(fields, "select")

    def process(self, records):
        fields = self.fields
        return [{f: r.get(f) for f in fields} for r in records]


class DropStep(_ConfiguredStep):
    """Remove the listed fields."""

    name = "drop"

    def __init__(self, fields: list[str]) -> None:
        super().__init__()
        self.fields = set(_field_list(fields, "drop"))

    def process(self, records):
        drop = self.fields
        return [{k: v for k, v in r.items() if k not in drop} for r in records]


class RenameStep(_ConfiguredStep):
    """Rename fields (``{old: new}``)."""

    name = "rename"

    def __init__(self, mapping: dict[str, str]) -> None:
        super().__init__()
        if not isinstance(mapping, dict) or not mapping or not all(isinstance(v, str) and v for v in mapping.values()):
            raise ConfigError(f"rename: give a mapping of old_name: new_name, got {mapping!r}")
        self.mapping = dict(mapping)

    def process(self, records):
        m = self.mapping
        return [{m.get(k, k): v for k, v in r.items()} for r in records]


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


class CastStep(_ConfiguredStep):
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
        _raise(problems)
        self.fields = dict(fields)
        self._casts = casts

    def process(self, records):
        out = []
        for record in records:
            new = dict(record)
            for cast in self._casts:
                if cast.field in new:
                    new[cast.field] = cast(new[cast.field])
            out.append(new)
        return out


# -- flatten, explode ----------------------------------------------------------------------------
class FlattenStep(_ConfiguredStep):
    """Nested objects to dotted keys: ``{"user": {"name": "a"}}`` -> ``{"user.name": "a"}``.

    Options: ``separator`` (default "."), ``fields`` (only these top-level fields; default all),
    ``max_depth`` (levels to flatten; default all). Lists are left as they are (see ``explode``);
    an empty object stays as ``{}``. A flattened key that clashes with an existing one is an error
    (the record goes to the dead letter) rather than a silent overwrite.
    """

    name = "flatten"
    _OPTIONS = ("separator", "fields", "max_depth")

    def __init__(self, separator: str = ".", fields: list[str] | None = None, max_depth: int | None = None) -> None:
        super().__init__()
        problems: list[str] = []
        if not isinstance(separator, str) or not separator:
            problems.append(f"flatten.separator: must be non-empty text, got {separator!r}")
        if fields is not None:
            try:
                fields = _field_list(fields, "flatten.fields")
            except ConfigError as exc:
                problems += exc.problems
        if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1):
            problems.append(f"flatten.max_depth: must be a whole number >= 1, got {max_depth!r}")
        _raise(problems)
        self.separator = separator
        self.fields = set(fields) if fields is not None else None
        self.max_depth = max_depth

    @classmethod
    def from_config(cls, config: Any) -> "FlattenStep":
        if config is None:
            return cls()
        if isinstance(config, str):
            return cls(separator=config)
        if not isinstance(config, Mapping):
            raise ConfigError(f"flatten: give options like {{separator: '.'}} or nothing, got {config!r}")
        problems: list[str] = []
        _check_keys(config, cls._OPTIONS, "flatten", problems)
        _raise(problems)
        return cls(**{k: v for k, v in config.items() if v is not None or k != "separator"})

    def _flatten(self, prefix: str, value: dict, depth: int, out: dict, top: Record) -> None:
        for key, inner in value.items():
            name = f"{prefix}{self.separator}{key}"
            if isinstance(inner, dict) and inner and (self.max_depth is None or depth < self.max_depth):
                self._flatten(name, inner, depth + 1, out, top)
            else:
                if name in out or name in top:
                    raise ValueError(f"flatten: key {name!r} would appear twice; rename one of the fields first")
                out[name] = inner

    def process(self, records):
        result = []
        for record in records:
            out: dict[str, Any] = {}
            for key, value in record.items():
                if isinstance(value, dict) and value and (self.fields is None or key in self.fields):
                    self._flatten(str(key), value, 1, out, record)
                else:
                    if key in out:
                        raise ValueError(f"flatten: key {key!r} would appear twice; rename one of the fields first")
                    out[key] = value
            result.append(out)
        return result


class ExplodeStep(_ConfiguredStep):
    """One record per element of a list field: ``explode: tags`` or ``{field: tags, index: pos, keep_empty: true}``.

    An empty, null or missing list drops the record, unless ``keep_empty`` keeps it once with the field
    null; ``index`` adds the element's position. A value that is not a list (a string, an object) is an
    error: the record goes to the dead letter.
    """

    name = "explode"
    _OPTIONS = ("field", "index", "keep_empty")

    def __init__(self, field: str, *, index: str | None = None, keep_empty: bool = False) -> None:
        super().__init__()
        problems: list[str] = []
        if not isinstance(field, str) or not field:
            problems.append(f"explode.field: give the name of a list field, got {field!r}")
        if index is not None and (not isinstance(index, str) or not index):
            problems.append(f"explode.index: must be a field name, got {index!r}")
        if not isinstance(keep_empty, bool):
            problems.append(f"explode.keep_empty: must be true or false, got {keep_empty!r}")
        _raise(problems)
        self.field = field
        self.index = index
        self.keep_empty = keep_empty

    @classmethod
    def from_config(cls, config: Any) -> "ExplodeStep":
        if isinstance(config, str):
            return cls(config)
        if not isinstance(config, Mapping):
            raise ConfigError(f"explode: give a field name, or {{field: NAME, index: NAME, keep_empty: true}}; got {config!r}")
        problems: list[str] = []
        _check_keys(config, cls._OPTIONS, "explode", problems)
        if "field" not in config:
            problems.append("explode.field: required (the list field to explode)")
        _raise(problems)
        return cls(config["field"], index=config.get("index"), keep_empty=config.get("keep_empty", False))

    def process(self, records):
        field, index = self.field, self.index
        out: list[Record] = []
        for record in records:
            items = record.get(field)
            if items is None:
                items = ()
            elif not isinstance(items, (list, tuple)):
                raise TypeError(f"explode: field {field!r} is a {type(items).__name__}, not a list")
            if not items:
                if self.keep_empty:
                    new = dict(record)
                    new[field] = None
                    if index:
                        new[index] = None
                    out.append(new)
                continue
            for position, item in enumerate(items):
                new = dict(record)
                new[field] = item
                if index:
                    new[index] = position
                out.append(new)
        return out


# -- html_to_text --------------------------------------------------------------------------------
_BLOCK_TAGS = frozenset((
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure", "footer",
    "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
    "table", "tbody", "td", "th", "thead", "tr", "ul",
))
_SKIP_TAGS = frozenset(("script", "style", "head", "title", "noscript", "template", "svg", "iframe", "object"))
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._pre = 0

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
            self._pre += tag == "pre"

    def handle_startendtag(self, tag, attrs):
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data if self._pre else data.replace("\n", " "))


def html_to_text(markup: str) -> str:
    """Readable text from HTML: tags, scripts and styles removed, entities decoded, one line per block (no blank lines)."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


class HtmlToTextStep(_ConfiguredStep):
    """Strip markup from HTML fields (RSS summaries, scraped pages): ``html_to_text: [summary, content]``.

    Tags, scripts and styles go, entities are decoded, block elements become line breaks. Nulls and
    missing fields are left alone; a value that is not text is an error (dead letter).
    """

    name = "html_to_text"

    def __init__(self, fields: list[str]) -> None:
        super().__init__()
        self.fields = _field_list(fields, "html_to_text")

    def process(self, records):
        out = []
        for record in records:
            new = dict(record)
            for field in self.fields:
                value = new.get(field)
                if value is None:
                    continue
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                if not isinstance(value, str):
                    raise TypeError(f"html_to_text: field {field!r} is a {type(value).__name__}, not text")
                new[field] = html_to_text(value)
            out.append(new)
        return out


# -- dedupe --------------------------------------------------------------------------------------
_canonical = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=json_default, allow_nan=True)


def _key_part(value: Any) -> Any:
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


def _newer(a: tuple, b: tuple) -> bool:
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
    return _canonical.encode(a[1]) > _canonical.encode(b[1])


class _LatestFn(beam.CombineFn):
    """Keeps the latest (cursor, record) of a key; combines incrementally (one value per key in memory)."""

    def create_accumulator(self):
        return None

    def add_input(self, best, candidate):
        return candidate if best is None or _newer(candidate, best) else best

    def merge_accumulators(self, accumulators):
        best = None
        for acc in accumulators:
            if acc is not None and (best is None or _newer(acc, best)):
                best = acc
        return best

    def extract_output(self, best):
        return best


class _KeyFn(beam.DoFn):
    """Keys each record by its dedupe key (already deduped within the batch, to send fewer elements)."""

    def __init__(self, key: list[str], cursor: str, label: str, on_error: str) -> None:
        self._key = key
        self._cursor = cursor
        self._label = label
        self._on_error = on_error
        self._dead = Metrics.counter(METRICS_NAMESPACE, "dead_letter")

    def process(self, batch):
        best: dict[str, tuple] = {}
        for record in batch:
            missing = [f for f in self._key if record.get(f) is None]
            if missing:
                error = f"dedupe: the record has no value for key field {missing[0]!r}"
                if self._on_error == "fail":
                    raise StepFailed(f"step {self._label} failed: {error}")
                self._dead.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, DeadLetter(self._label, error, record).to_dict())
                continue
            try:
                key = _canonical.encode([_key_part(record[f]) for f in self._key])
            except (TypeError, ValueError) as exc:
                error = f"dedupe: cannot use the key of this record: {exc}"
                if self._on_error == "fail":
                    raise StepFailed(f"step {self._label} failed: {error}") from exc
                self._dead.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, DeadLetter(self._label, error, record).to_dict())
                continue
            candidate = (record.get(self._cursor), record)
            held = best.get(key)
            if held is None or _newer(candidate, held):
                best[key] = candidate
        yield from best.items()


class DedupeStep(BatchTransform):
    """One record per key within a run, the latest by the cursor: ``dedupe: {key: [id]}``.

    Options: ``key`` (the fields that identify a record), ``cursor`` (the field that says which is
    latest; default the pipeline's cursor field). A record whose cursor is null loses against any
    with a value; exact ties keep one of them deterministically. A record with a null key field goes
    to the dead letter.

    Cost: unlike the other steps this one groups. It is a keyed combine (``CombinePerKey``) that keeps
    only the latest record per key and combines incrementally, so memory grows with the number of
    *distinct keys* times the record size (one record per key per bundle before the shuffle), not with
    the number of records; and no record reaches the sink before the whole window has been read.
    Dedupe across runs needs an upsert sink keyed on the same fields.
    """

    name = "dedupe"
    _OPTIONS = ("key", "cursor")

    def __init__(self, key: list[str] | str, cursor: str | None = None, *, batch_size: int = 2000) -> None:
        super().__init__()
        problems: list[str] = []
        try:
            key = _field_list(key, "dedupe.key")
        except ConfigError as exc:
            problems += exc.problems
        if cursor is not None and (not isinstance(cursor, str) or not cursor):
            problems.append(f"dedupe.cursor: must be a field name, got {cursor!r}")
        _raise(problems)
        self.key = key
        self.cursor = cursor
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, config: Any, context: StepContext | None = None) -> "DedupeStep":
        if isinstance(config, (str, list)):
            config = {"key": config}
        if not isinstance(config, Mapping):
            raise ConfigError(f"dedupe: give {{key: [fields]}} (and optionally cursor: FIELD), got {config!r}")
        problems: list[str] = []
        _check_keys(config, cls._OPTIONS, "dedupe", problems)
        if config.get("key") is None:
            problems.append("dedupe.key: required (the fields that identify a record)")
        _raise(problems)
        cursor = config.get("cursor") or (context.cursor_field if context else None)
        return cls(config["key"], cursor, batch_size=context.batch_size if context else 2000)

    @classmethod
    def check_config(cls, config: Any) -> list[str]:
        try:
            cls.from_config(config)
        except ConfigError as exc:
            return [_unprefixed(p, cls.name) for p in exc.problems]
        return []

    def _require_cursor(self) -> str:
        if not self.cursor:
            raise ConfigError(
                f"step {self.step_label}: no cursor to pick the latest record by; set 'cursor: FIELD' on the step "
                "or incremental.cursor_field in the pipeline"
            )
        return self.cursor

    def process(self, records: Iterable[Record]) -> list[Record]:
        """Dedupe an in-memory list (the same rule as the Beam transform), for use outside Beam."""
        cursor = self._require_cursor()
        best: dict[str, tuple] = {}
        for record in records:
            if any(record.get(f) is None for f in self.key):
                raise ValueError(f"dedupe: the record has no value for key field(s) {', '.join(self.key)}")
            key = _canonical.encode([_key_part(record[f]) for f in self.key])
            candidate = (record.get(cursor), record)
            if key not in best or _newer(candidate, best[key]):
                best[key] = candidate
        return [record for _, record in best.values()]

    def expand(self, batches):
        cursor = self._require_cursor()
        keyed = batches | "Key" >> beam.ParDo(_KeyFn(self.key, cursor, self.step_label, self.on_error)).with_outputs(
            DEAD_LETTER_TAG, main="keyed"
        )
        records = (
            keyed.keyed
            | "Latest per key" >> beam.CombinePerKey(_LatestFn())
            | "Records" >> beam.Map(lambda kv: kv[1][1])
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self.batch_size).with_output_types(RecordBatch)
        )
        return {"records": records, DEAD_LETTER_TAG: keyed[DEAD_LETTER_TAG]}


# -- python --------------------------------------------------------------------------------------
class PythonStep(_ConfiguredStep):
    """A user function ``module:callable`` (record -> record, None to drop, or a list) or a TransformationStep class."""

    name = "python"
    _rebuilt_from = "target"

    def __init__(self, target: str) -> None:
        super().__init__()
        if not isinstance(target, str) or ":" not in target:
            raise ConfigError(f"python: give 'module:callable', got {target!r}")
        self.target = target
        self._impl: Any = None

    @classmethod
    def check_config(cls, config: Any) -> list[str]:
        try:
            cls(config)._load()
        except ConfigError as exc:
            return [_unprefixed(p, cls.name) for p in exc.problems]
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

    def setup(self) -> None:
        if self._impl is None:
            self._impl = self._load()

    def process(self, records):
        if self._impl is None:
            self.setup()
        impl = self._impl
        if isinstance(impl, TransformationStep):
            return impl.process(records)
        return apply_record_function(impl, records)

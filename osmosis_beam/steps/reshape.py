"""Reshaping steps: ``flatten`` (nested objects to dotted keys) and ``explode`` (one record per list element).

Example::

    from osmosis_beam.steps.reshape import ExplodeStep, FlattenStep
    FlattenStep().process([{"a": {"b": 1}}])                       # [{'a.b': 1}]
    ExplodeStep("tags").process([{"tags": ["x", "y"]}])            # [{'tags': 'x'}, {'tags': 'y'}]
"""
from __future__ import annotations

from typing import Any, Mapping

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.records import (
    Record,
)
from osmosis_beam.steps.base import (
    ConfiguredStep,
    check_keys,
    field_list,
    raise_problems,
)

__all__ = ['FlattenStep', 'ExplodeStep']


# -- flatten, explode ----------------------------------------------------------------------------
class FlattenStep(ConfiguredStep):
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
                fields = field_list(fields, "flatten.fields")
            except ConfigError as exc:
                problems += exc.problems
        if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1):
            problems.append(f"flatten.max_depth: must be a whole number >= 1, got {max_depth!r}")
        raise_problems(problems)
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
        check_keys(config, cls._OPTIONS, "flatten", problems)
        raise_problems(problems)
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


class ExplodeStep(ConfiguredStep):
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
        raise_problems(problems)
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
        check_keys(config, cls._OPTIONS, "explode", problems)
        if "field" not in config:
            problems.append("explode.field: required (the list field to explode)")
        raise_problems(problems)
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

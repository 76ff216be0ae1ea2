"""Shared machinery of the built-in steps: configured steps, option checks, problems reported all at once.

Example::

    from osmosis_beam.steps.base import ConfiguredStep

    class Upper(ConfiguredStep):
        name = "upper"
        def __init__(self, fields): self.fields = list(fields)
        def process(self, records): return [{**r, **{f: r[f].upper() for f in self.fields}} for r in records]
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping

from osmosis_beam.core.errors import ConfigError, OsmosisError, RunError
from osmosis_beam.core.models import TransformationStep
from osmosis_beam.core.options import suggest
from osmosis_beam.core.records import Record

__all__ = ["error_text", "ConfiguredStep", "check_keys", "field_list", "raise_problems", "unprefixed", "StepFailed", "StepContext", "apply_record_function"]


class ConfiguredStep(TransformationStep):
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
    def from_config(cls, config: Any) -> "ConfiguredStep":
        return cls(config)

    @classmethod
    def check_config(cls, config: Any) -> list[str]:
        try:
            cls.from_config(config)
        except ConfigError as exc:
            return [unprefixed(p, cls.name) for p in exc.problems]
        return []


def unprefixed(problem: str, name: str) -> str:
    """``validate`` already says ``steps[2] (map):``; drop the step name the message repeats."""
    for prefix in (f"{name}: ", f"{name}."):
        if problem.startswith(prefix):
            return problem[len(prefix):]
    return problem


def check_keys(config: Mapping[str, Any], known: tuple[str, ...], step: str, problems: list[str]) -> None:
    for key in config:
        if key not in known:
            problems.append(f"{step}.{key}: unknown option{suggest(str(key), known)}; known: {', '.join(known)}")


def raise_problems(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems=problems)


def field_list(config: Any, step: str) -> list[str]:
    if isinstance(config, str):
        config = [config]
    if not isinstance(config, list) or not config or not all(isinstance(f, str) and f for f in config):
        raise ConfigError(f"{step}: give a list of field names, got {config!r}")
    return list(config)


def error_text(exc: BaseException) -> str:
    """How a step's failure reads in a dead letter: ``TypeError: ...`` (an osmosis error as it is)."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, OsmosisError) else text


class StepFailed(RunError):
    """A step with ``on_error: fail`` raised for a record."""


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What a step may need to know about the pipeline it runs in (given to ``from_config(config, context=)``)."""

    pipeline_id: str = ""
    cursor_field: str | None = None
    batch_size: int = 2000


_PLAIN = frozenset((dict,))


def apply_record_function(fn: Callable[[Record], Any], records: Iterable[Record]) -> list[Record]:
    """Apply a record function to a batch: it returns a record, None to drop it, or a list of records."""
    results = list(map(fn, records))
    if set(map(type, results)) <= _PLAIN:  # every result a dict (the usual case): the list as it is
        return results
    out: list[Record] = []
    for result in results:
        if result is None:
            continue
        if isinstance(result, list):
            out.extend(result)
        else:
            out.append(result)
    return out

"""The ``python`` step: a function (record -> record / None / list) or a ``TransformationStep`` class by import path.

Example::

    from osmosis_beam.steps.python import PythonStep
    PythonStep("mypkg.steps:enrich").process(records)                # enrich(record) -> record / None / list
"""
from __future__ import annotations

import importlib
from typing import Any

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.models import TransformationStep
from osmosis_beam.steps.base import ConfiguredStep, apply_record_function, unprefixed

__all__ = ['PythonStep']


# -- python --------------------------------------------------------------------------------------
class PythonStep(ConfiguredStep):
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
            return [unprefixed(p, cls.name) for p in exc.problems]
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

"""Field steps: ``select``, ``drop``, ``rename``.

Example::

    from osmosis_beam.steps.fields import RenameStep, SelectStep
    SelectStep(["id"]).process([{"id": 1, "x": 2}])                # [{'id': 1}]
    RenameStep({"x": "y"}).process([{"x": 2}])                     # [{'y': 2}]
"""
from __future__ import annotations

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.steps.base import ConfiguredStep, field_list

__all__ = ['SelectStep', 'DropStep', 'RenameStep']


class SelectStep(ConfiguredStep):
    """Keep only the listed fields, in that order (a missing field becomes null)."""

    name = "select"

    def __init__(self, fields: list[str]) -> None:
        super().__init__()
        self.fields = field_list(fields, "select")

    def process(self, records):
        fields = self.fields
        return [{f: r.get(f) for f in fields} for r in records]


class DropStep(ConfiguredStep):
    """Remove the listed fields."""

    name = "drop"

    def __init__(self, fields: list[str]) -> None:
        super().__init__()
        self.fields = set(field_list(fields, "drop"))

    def process(self, records):
        drop = self.fields
        return [{k: v for k, v in r.items() if k not in drop} for r in records]


class RenameStep(ConfiguredStep):
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

"""The ``dedupe`` step: one record per key within a run, the latest by the cursor (a keyed combine: it groups).

Example::

    from osmosis_beam.steps.transforms import Dedupe
    records | Dedupe(key=["id"], cursor="updated_at")                 # the latest record per id
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.records import (
    Record,
)
from osmosis_beam.steps.base import (
    ConfiguredStep,
    StepContext,
    check_keys,
    field_list,
    raise_problems,
    unprefixed,
)
from osmosis_beam.steps.keys import canonical, key_part, newer

__all__ = ['DedupeStep']


# -- dedupe --------------------------------------------------------------------------------------
class DedupeStep(ConfiguredStep):
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
        self.step_label = self.name
        problems: list[str] = []
        try:
            key = field_list(key, "dedupe.key")
        except ConfigError as exc:
            problems += exc.problems
        if cursor is not None and (not isinstance(cursor, str) or not cursor):
            problems.append(f"dedupe.cursor: must be a field name, got {cursor!r}")
        raise_problems(problems)
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
        check_keys(config, cls._OPTIONS, "dedupe", problems)
        if config.get("key") is None:
            problems.append("dedupe.key: required (the fields that identify a record)")
        raise_problems(problems)
        cursor = config.get("cursor") or (context.cursor_field if context else None)
        return cls(config["key"], cursor, batch_size=context.batch_size if context else 2000)

    @classmethod
    def check_config(cls, config: Any) -> list[str]:
        try:
            cls.from_config(config)
        except ConfigError as exc:
            return [unprefixed(p, cls.name) for p in exc.problems]
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
            key = canonical.encode([key_part(record[f]) for f in self.key])
            candidate = (record.get(cursor), record)
            if key not in best or newer(candidate, best[key]):
                best[key] = candidate
        return [record for _, record in best.values()]

    def batch_transform(self, label: str, on_error: str):
        """The Beam side (a keyed combine over batches), bound to its label and error policy in a chain."""
        from osmosis_beam.steps.dedupe_beam import DedupeTransform

        self.step_label = label
        return DedupeTransform(self.key, self._require_cursor(), self.batch_size).bound(label, on_error)

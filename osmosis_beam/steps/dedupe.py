"""The ``dedupe`` step: one record per key within a run, the latest by the cursor (a keyed combine: it groups).

Example::

    from osmosis_beam.steps.transforms import Dedupe
    records | Dedupe(key=["id"], cursor="updated_at")                 # the latest record per id
"""
from __future__ import annotations

import datetime as _dt
import decimal
import json
from typing import Any, Iterable, Mapping

import apache_beam as beam
from apache_beam.metrics import Metrics

from osmosis_beam.core.encoding import json_default
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.records import (
    DEAD_LETTER_TAG,
    METRICS_NAMESPACE,
    DeadLetter,
    Record,
)
from osmosis_beam.core.timefmt import UTC
from osmosis_beam.io.batches import RecordBatch
from osmosis_beam.steps.base import check_keys, field_list, raise_problems, unprefixed
from osmosis_beam.steps.pipeline import (
    BatchTransform,
    StepContext,
    StepFailed,
)

__all__ = ['DedupeStep']


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

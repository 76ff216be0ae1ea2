"""The Beam side of the ``dedupe`` step: a keyed combine that keeps the latest record per key.

Example::

    from osmosis_beam.steps.dedupe_beam import DedupeTransform
    out = batches | DedupeTransform(["id"], "updated_at")      # {"records": ..., "dead_letter": ...}
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from osmosis_beam.core.records import DEAD_LETTER_TAG, METRICS_NAMESPACE, DeadLetter
from osmosis_beam.io.batches import RecordBatch
from osmosis_beam.steps.base import StepFailed
from osmosis_beam.steps.keys import canonical, key_part, newer
from osmosis_beam.steps.pipeline import BatchTransform

__all__ = ["DedupeTransform"]


class _LatestFn(beam.CombineFn):
    """Keeps the latest (cursor, record) of a key; combines incrementally (one value per key in memory)."""

    def create_accumulator(self):
        return None

    def add_input(self, best, candidate):
        return candidate if best is None or newer(candidate, best) else best

    def merge_accumulators(self, accumulators):
        best = None
        for acc in accumulators:
            if acc is not None and (best is None or newer(acc, best)):
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
                key = canonical.encode([key_part(record[f]) for f in self._key])
            except (TypeError, ValueError) as exc:
                error = f"dedupe: cannot use the key of this record: {exc}"
                if self._on_error == "fail":
                    raise StepFailed(f"step {self._label} failed: {error}") from exc
                self._dead.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, DeadLetter(self._label, error, record).to_dict())
                continue
            candidate = (record.get(self._cursor), record)
            held = best.get(key)
            if held is None or newer(candidate, held):
                best[key] = candidate
        yield from best.items()


class DedupeTransform(BatchTransform):
    """Record batches in, the latest record per key out (batched again); records without a key are dead letters."""

    name = "dedupe"

    def __init__(self, key: list[str], cursor: str, batch_size: int = 2000) -> None:
        super().__init__()
        self.key, self.cursor, self.batch_size = list(key), cursor, batch_size

    def expand(self, batches):
        cursor = self.cursor
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

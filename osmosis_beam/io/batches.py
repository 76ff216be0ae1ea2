"""Record batches as Beam elements, with a coder that keeps Beam's bookkeeping cheap.

A Beam element in osmosis-beam is a batch of records (a list of dicts). Beam samples elements to
estimate their encoded size; with the default coder that means encoding whole batches record by
record (values such as Decimal and datetime go through pickle), which cost ~15% of a plain sync.
:class:`RecordBatchCoder` estimates a batch's size from its length instead, and encodes a batch with
one pickle call when it really has to cross a process boundary.

Example::

    batches = p | beam.ParDo(MyFn()).with_output_types(RecordBatch)
"""
from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam

from osmosis_beam.core.records import EncodedBatch

__all__ = ["RecordBatch", "RecordBatchCoder", "ESTIMATED_RECORD_BYTES"]

#: The size Beam's progress and split heuristics assume per record (they need only an estimate).
ESTIMATED_RECORD_BYTES = 256


class RecordBatch(list):
    """The type hint of a PCollection of record batches (any list of dicts, or an
    :class:`~osmosis_beam.core.records.EncodedBatch`, is encoded as one)."""


class RecordBatchCoder(beam.coders.Coder):
    """Encodes a batch with one pickle call; estimates its size from its length."""

    def encode(self, value: Any) -> bytes:
        if isinstance(value, EncodedBatch):  # pre-encoded lines (the zero-decode path) travel as they are
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return pickle.dumps(list(value), protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> list:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value: Any) -> int:
        try:
            return ESTIMATED_RECORD_BYTES * len(value)
        except TypeError:
            return ESTIMATED_RECORD_BYTES

    def to_type_hint(self):
        return RecordBatch

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))


beam.coders.registry.register_coder(RecordBatch, RecordBatchCoder)

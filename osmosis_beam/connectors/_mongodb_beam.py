"""The Beam transform of the MongoDB connector (imported only when a pipeline is built)."""
from __future__ import annotations

from typing import Any

import apache_beam as beam

from osmosis_beam.connectors.mongodb import MongoDBConnector
from osmosis_beam.connectors.read import ReadWindow
from osmosis_beam.types import SyncWindow

__all__ = ["ReadFromMongoDB"]


class ReadFromMongoDB(beam.PTransform):
    """Reads ``window`` from one MongoDB collection as batches of records (the ``records`` output).

    Arguments are the connector's options (``uri``, ``database``, ``collection``, ``cursor_field``,
    ``filter``, ``projection``, ``batch_size``, ``timeout``) plus ``window`` and ``splits``; they are
    checked here, when the pipeline is built. Dead letters come out on ``dead_letter``.
    """

    def __init__(self, *, window: SyncWindow, splits: int = 4, beam_batch_size: int = 2000, **options: Any) -> None:
        super().__init__()
        self._connector = MongoDBConnector(options)
        self._read = ReadWindow(self._connector, window, splits=splits, batch_size=beam_batch_size)

    def expand(self, pbegin):
        return pbegin | "Read MongoDB" >> self._read

    def display_data(self) -> dict[str, Any]:
        return {**self._read.display_data(), **{k: str(v) for k, v in self._connector.display().items()}}

"""MongoDB as Beam transforms: :class:`ReadFromMongoDB` and :class:`WriteToMongoDB`.

Example::

    import apache_beam as beam
    from osmosis_beam.io.mongodb.transforms import ReadFromMongoDB, WriteToMongoDB

    with beam.Pipeline() as p:
        (p | ReadFromMongoDB(uri="mongodb://127.0.0.1:27017", database="shop", collection="orders",
                             cursor_field="updated_at", since="2024-06-01T00:00:00Z")
           | WriteToMongoDB(uri="mongodb://127.0.0.1:27017", database="analytics", collection="orders",
                            key=["_id"]))

Options are those of the ``mongodb`` connector and sink in the pipeline YAML (README, "MongoDB").
"""
from __future__ import annotations

from osmosis_beam.io.mongodb.sink import MongoDBSink
from osmosis_beam.io.mongodb.source import MongoDBConnector
from osmosis_beam.io.read import ReadFromSource
from osmosis_beam.io.write import WriteToSink

__all__ = ["ReadFromMongoDB", "WriteToMongoDB"]


class ReadFromMongoDB(ReadFromSource):
    """Reads the documents of one collection whose ``cursor_field`` lies in ``[since, until)``, in cursor order.

    ``batch_size`` is both the documents per round trip and per batch inside the read.
    """

    connector_class = MongoDBConnector


class WriteToMongoDB(WriteToSink):
    """Upserts records by ``key`` (bulk writes), or inserts each once with ``mode="append"``."""

    sink_class = MongoDBSink

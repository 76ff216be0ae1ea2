"""Beam IO: one read and one write transform per backend, and the plug-in bases behind them.

Every connector is a Beam source and every sink a Beam sink that a Beam user composes::

    import apache_beam as beam
    from osmosis_beam.io.files.transforms import WriteToJsonl
    from osmosis_beam.io.postgres.transforms import ReadFromPostgres

    with beam.Pipeline() as p:
        (p | ReadFromPostgres(dsn="postgresql://app@db/shop", table="orders", cursor_field="updated_at",
                              since="2024-06-01T00:00:00Z")
           | beam.Map(lambda r: {**r, "seen": True})
           | WriteToJsonl(path="/data/orders"))

Importing this package does not import Beam; the transforms load on first use.
"""
from __future__ import annotations

from osmosis_beam.core.lazy import lazy_exports
from osmosis_beam.io.base import BaseConnector, BaseSink

__all__ = [
    "ReadFromPostgres", "ReadFromMongoDB", "ReadFromWeb", "ReadFromRSS", "ReadFromSource",
    "WriteToJsonl", "WriteToParquet", "WriteToPostgres", "WriteToMongoDB", "WriteToSink", "WriteResult",
    "ReadWindow", "BaseConnector", "BaseSink",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "ReadFromPostgres": "osmosis_beam.io.postgres.transforms",
    "WriteToPostgres": "osmosis_beam.io.postgres.transforms",
    "ReadFromMongoDB": "osmosis_beam.io.mongodb.transforms",
    "WriteToMongoDB": "osmosis_beam.io.mongodb.transforms",
    "ReadFromWeb": "osmosis_beam.io.web.transforms",
    "ReadFromRSS": "osmosis_beam.io.rss.transforms",
    "WriteToJsonl": "osmosis_beam.io.files.transforms",
    "WriteToParquet": "osmosis_beam.io.files.transforms",
    "ReadFromSource": "osmosis_beam.io.read",
    "ReadWindow": "osmosis_beam.io.read",
    "WriteToSink": "osmosis_beam.io.write",
    "WriteResult": "osmosis_beam.io.write",
})

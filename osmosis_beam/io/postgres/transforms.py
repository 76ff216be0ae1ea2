"""PostgreSQL as Beam transforms: :class:`ReadFromPostgres` and :class:`WriteToPostgres`.

Example::

    import apache_beam as beam
    from osmosis_beam.io.postgres.transforms import ReadFromPostgres, WriteToPostgres

    with beam.Pipeline() as p:
        (p | ReadFromPostgres(dsn="postgresql://app@db/shop", table="orders", cursor_field="updated_at",
                              since="2024-06-01T00:00:00Z")
           | beam.Map(lambda r: {**r, "total": r["total"] * 2})
           | WriteToPostgres(dsn="postgresql://app@db/analytics", table="orders", key=["id"]))

Options are those of the ``postgres`` connector and sink in the pipeline YAML (README, "PostgreSQL").
"""
from __future__ import annotations

from osmosis_beam.io.postgres.sink import PostgresSink
from osmosis_beam.io.postgres.source import PostgresConnector
from osmosis_beam.io.read import ReadFromSource
from osmosis_beam.io.write import WriteToSink

__all__ = ["ReadFromPostgres", "WriteToPostgres"]


class ReadFromPostgres(ReadFromSource):
    """Reads the rows of a table (or a SELECT) whose ``cursor_field`` lies in ``[since, until)``, in cursor order.

    ``until`` defaults to the server's ``now()`` minus ``safety_lag`` (5 s), asked when the pipeline is built.
    """

    connector_class = PostgresConnector


class WriteToPostgres(WriteToSink):
    """Upserts records by ``key`` (``INSERT ... ON CONFLICT``), or appends them through a staging table
    published in one transaction by the finalize stage (``mode="append"``)."""

    sink_class = PostgresSink

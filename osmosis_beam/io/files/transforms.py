"""Files as Beam transforms: :class:`WriteToJsonl` and :class:`WriteToParquet`.

Example::

    import apache_beam as beam
    from osmosis_beam.io.files.transforms import WriteToJsonl

    with beam.Pipeline() as p:
        result = p | beam.Create([{"id": 1}, {"id": 2}]) | WriteToJsonl(path="/data/out")
    # /data/out/<time>-<run id>/part-*.jsonl, published in one atomic rename once the pipeline is DONE

Workers write part files into a staging folder; the finalize stage renames it into place, so a reader
never sees part of a run.
"""
from __future__ import annotations

from osmosis_beam.io.files.jsonl import JSONLSink
from osmosis_beam.io.files.parquet import ParquetSink
from osmosis_beam.io.write import WriteToSink

__all__ = ["WriteToJsonl", "WriteToParquet"]


class WriteToJsonl(WriteToSink):
    """Writes records as JSON lines under ``path`` (decimals exact, timestamps ISO-8601 with offset)."""

    sink_class = JSONLSink


class WriteToParquet(WriteToSink):
    """Writes records as Parquet files under ``path`` (``compression``, ``row_group_size``, pinned ``schema``)."""

    sink_class = ParquetSink

"""Sinks: where records are stored. File sinks stage their output and publish it when the run commits.

Example::

    from osmosis_beam.sinks import JSONLSink
    sink = JSONLSink({"path": "/data/orders"}, pipeline_id="orders")
"""
from __future__ import annotations

from osmosis_beam.sinks.base import BaseSink
from osmosis_beam.sinks.jsonl import JSONLSink, read_jsonl_dir

__all__ = ["BaseSink", "JSONLSink", "read_jsonl_dir"]

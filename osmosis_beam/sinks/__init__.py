"""Sinks: where records are stored. File sinks stage their output and publish it when the run commits.

Example::

    from osmosis_beam.sinks import JSONLSink
    sink = JSONLSink({"path": "/data/orders"}, pipeline_id="orders")
"""
from __future__ import annotations

from osmosis_beam.sinks.base import BaseSink

__all__ = ["BaseSink", "JSONLSink", "read_jsonl_dir"]


def __getattr__(name: str):
    if name in ("JSONLSink", "read_jsonl_dir"):  # their module imports Beam: only when asked for
        from osmosis_beam.sinks import jsonl

        return getattr(jsonl, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

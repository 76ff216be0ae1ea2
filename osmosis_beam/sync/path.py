"""Phase "path" of a run: read typed records, or move pre-encoded data (the zero-decode path).

When no step needs Python values, the source can produce the sink's encoding itself (server-built JSON
lines, COPY text rows) and batches pass through undecoded. The choice is automatic; ``read.path: typed``
in the pipeline YAML forces the typed path. ``osmosis run -v`` logs which path ran and why.

Example::

    from osmosis_beam.sync.path import choose_path
    encoding, why = choose_path(spec, connector, sink)   # ("json", "no steps; the postgres source ...")
"""
from __future__ import annotations

from osmosis_beam.config import PipelineSpec
from osmosis_beam.io.base import BaseConnector, BaseSink

__all__ = ["choose_path"]


def choose_path(spec: PipelineSpec, connector: BaseConnector, sink: BaseSink) -> tuple[str | None, str]:
    """``(encoding, reason)``: the encoding the read moves (None: typed records), and why.

    Tells the connector and the sink (``use_encoding``); call on the launcher before building the write.
    """
    encoding, why = _choose(spec, connector, sink)
    if encoding is not None:
        problem = connector.use_encoding(encoding)
        if problem:
            encoding, why = None, problem
    else:
        connector.use_encoding(None)
    sink.use_encoding(encoding)
    return encoding, why


def _choose(spec: PipelineSpec, connector: BaseConnector, sink: BaseSink) -> tuple[str | None, str]:
    if spec.read.path == "typed":
        return None, "read.path is typed"
    if spec.steps:
        step = spec.steps[0]
        return None, f"step {step.label} needs Python values"
    shared = [e for e in sink.encodings if e in connector.encodings]
    if not shared:
        return None, f"the {connector.type_name} source has no encoding the {sink.type_name} sink stores as it is"
    encoding = shared[0]
    return encoding, f"no step needs Python values: the {connector.type_name} source writes {encoding} for the {sink.type_name} sink"

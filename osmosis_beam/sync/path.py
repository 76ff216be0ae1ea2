"""Phase "path" of a run: read typed records, or move pre-encoded data (the zero-decode path).

When no step needs Python values (no steps, or only ``select``, ``drop``, ``rename``, and ``filter`` / ``cast``
steps the source can do exactly in its query), the source can produce the sink's encoding itself (server-built
JSON lines, COPY text rows) and batches pass through undecoded. The connector decides whether a ``filter`` or
``cast`` translates exactly (the PostgreSQL rules are in ``io/postgres/pushdown.py``); when one does not, the
run reads typed and the reason names the step. The choice is automatic; ``read.path: typed`` in the pipeline
YAML forces the typed path. ``osmosis run -v`` logs which path ran and why.

Example::

    from osmosis_beam.sync.path import choose_path
    encoding, why = choose_path(spec, connector, sink)   # ("json", "no steps; the postgres source ...")
"""
from __future__ import annotations

from osmosis_beam.config import PipelineSpec
from osmosis_beam.io.base import BaseConnector, BaseSink

__all__ = ["choose_path", "PUSHABLE"]

#: Steps a source may do while it encodes: the field steps, and filter/cast where the source translates them exactly.
PUSHABLE = ("select", "drop", "rename", "filter", "cast")


def choose_path(spec: PipelineSpec, connector: BaseConnector, sink: BaseSink) -> tuple[str | None, str]:
    """``(encoding, reason)``: the encoding the read moves (None: typed records), and why.

    Tells the connector and the sink (``use_encoding``); call on the launcher before building the write.
    """
    encoding, why = _choose(spec, connector, sink)
    if encoding is not None:
        problem = connector.use_encoding(encoding, fields=_field_steps(spec))
        if problem:
            encoding, why = None, problem
    else:
        connector.use_encoding(None)
    sink.use_encoding(encoding)
    return encoding, why


def _choose(spec: PipelineSpec, connector: BaseConnector, sink: BaseSink) -> tuple[str | None, str]:
    if spec.read.path == "typed":
        return None, "read.path is typed"
    for step in spec.steps:
        if step.name not in PUSHABLE:
            return None, f"step {step.label} needs Python values"
    if sink.typed_only:
        return None, f"the {sink.type_name} sink {sink.typed_only}"
    shared = [e for e in sink.encodings if e in connector.encodings]
    if not shared:
        return None, f"the {connector.type_name} source has no encoding the {sink.type_name} sink stores as it is"
    encoding = shared[0]
    steps = f" ({', '.join(s.name for s in spec.steps)} done by the source)" if spec.steps else ""
    return encoding, (
        f"no step needs Python values{steps}: the {connector.type_name} source writes {encoding} for the {sink.type_name} sink"
    )


def _field_steps(spec: PipelineSpec) -> tuple[tuple[str, object, str, str], ...]:
    """The pipeline's steps as ``(name, config, label, on_error)``, for the source to do in its query."""
    return tuple((step.name, step.config, step.label, step.on_error) for step in spec.steps)

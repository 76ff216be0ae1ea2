"""Transformation steps: Beam transforms over records, the seed's ``TransformationStep`` and ``StepChain``.

As Beam transforms, on a PCollection of records (one dict per element)::

    from osmosis_beam.steps.transforms import Filter, MapFields
    big = records | Filter("amount > 100") | MapFields(double="amount * 2")

As the seed's interface, in this process::

    from osmosis_beam.steps.expressions import FilterStep
    from osmosis_beam.steps.pipeline import StepChain
    StepChain().add_step(FilterStep("amount > 100")).execute([{"amount": 150}, {"amount": 5}])
    # [{'amount': 150}]

``StepChain`` is the seed's ``Pipeline`` (``add_step``, ``execute``), renamed so that it does not read as
``apache_beam.Pipeline``; ``Pipeline`` stays importable as the same class. Importing this package does
not import Beam; the names load on first use.
"""
from __future__ import annotations

from osmosis_beam.core.lazy import lazy_exports

_NAMES = {
    **{name: "osmosis_beam.steps.transforms" for name in (
        "StepTransform", "Filter", "MapFields", "Select", "Drop", "Rename", "Cast", "FlattenFields", "Explode",
        "Dedupe", "HtmlToText", "CallPython",
    )},
    "FilterStep": "osmosis_beam.steps.expressions",
    "MapStep": "osmosis_beam.steps.expressions",
    "SelectStep": "osmosis_beam.steps.fields",
    "DropStep": "osmosis_beam.steps.fields",
    "RenameStep": "osmosis_beam.steps.fields",
    "CastStep": "osmosis_beam.steps.cast",
    "FlattenStep": "osmosis_beam.steps.reshape",
    "ExplodeStep": "osmosis_beam.steps.reshape",
    "HtmlToTextStep": "osmosis_beam.steps.text",
    "DedupeStep": "osmosis_beam.steps.dedupe",
    "PythonStep": "osmosis_beam.steps.python",
    "StepChain": "osmosis_beam.steps.pipeline",
    "Pipeline": "osmosis_beam.steps.pipeline",
    "BatchTransform": "osmosis_beam.steps.pipeline",
    "StepContext": "osmosis_beam.steps.pipeline",
    "TransformationStep": "osmosis_beam.core.models",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)

"""Transformation steps and the seed's ``Pipeline`` (``add_step``, ``execute``) on Beam.

Example::

    from osmosis_beam.pipeline import Pipeline
    from osmosis_beam.pipeline.transformations import FilterStep
    Pipeline().add_step(FilterStep("amount > 100")).execute([{"amount": 150}, {"amount": 5}])
    # [{'amount': 150}]
"""
from __future__ import annotations

from osmosis_beam.pipeline.pipeline import ApplyStep, Pipeline, build_step

__all__ = ["Pipeline", "ApplyStep", "build_step"]

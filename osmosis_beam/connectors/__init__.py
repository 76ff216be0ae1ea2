"""Connectors: sources read as Beam splittable DoFns over a time window.

Example::

    from osmosis_beam.connectors import BaseConnector, ReadWindow
    p | "Read feed" >> ReadWindow(connector, window, splits=4)
"""
from __future__ import annotations

from osmosis_beam.connectors.base import DEAD_LETTER_TAG, BaseConnector, DeadLetter

__all__ = ["BaseConnector", "DeadLetter", "ReadWindow", "DEAD_LETTER_TAG"]


def __getattr__(name: str):
    if name == "ReadWindow":  # imports Beam: only when asked for
        from osmosis_beam.connectors.read import ReadWindow

        return ReadWindow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

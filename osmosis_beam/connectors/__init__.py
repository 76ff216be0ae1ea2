"""Connectors: sources read as Beam splittable DoFns over a time window.

Example::

    from osmosis_beam.connectors import BaseConnector, ReadWindow
    p | "Read feed" >> ReadWindow(connector, window, splits=4)
"""
from __future__ import annotations

from osmosis_beam.connectors.base import BaseConnector, DeadLetter, ReadWindow, DEAD_LETTER_TAG

__all__ = ["BaseConnector", "DeadLetter", "ReadWindow", "DEAD_LETTER_TAG"]

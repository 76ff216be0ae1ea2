"""Scheduling: pure next-run maths (``schedule``) and the launcher loop.

Example::

    from osmosis_beam.scheduler.schedule import next_run
    next_run(spec.schedule, last_run=None, now=now)
"""
from __future__ import annotations

from osmosis_beam.scheduler.schedule import next_run

__all__ = ["next_run"]

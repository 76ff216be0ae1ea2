"""Scheduling: pure next-run maths (``schedule``) and the launcher loop (``launcher.SyncScheduler``).

Example::

    from osmosis_beam.scheduler.launcher import SyncScheduler, load_specs
    from osmosis_beam.scheduler.schedule import next_run
    next_run(spec.schedule, last_run=None, now=now)
    SyncScheduler(load_specs(directory="pipelines"), store).run(once=True)
"""
from __future__ import annotations

from osmosis_beam.scheduler.launcher import (
    LaunchResult,
    SyncScheduler,
    describe_jobs,
    load_specs,
)
from osmosis_beam.scheduler.schedule import (
    backoff_delay,
    is_due,
    next_attempt,
    next_run,
)

__all__ = [
    "next_run", "is_due", "next_attempt", "backoff_delay", "SyncScheduler", "LaunchResult", "load_specs", "describe_jobs",
]

"""Pure next-run maths for interval and cron schedules; ``now`` is always an argument.

Example::

    from osmosis_beam.config import ScheduleSpec
    next_run(ScheduleSpec(cron="0 * * * *", timezone="Europe/Berlin"), last_run=None, now=now)

Missed ticks coalesce: the next run is the first tick after ``now`` when the last run is long past,
so a launcher back from downtime runs once, not once per missed tick.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo

from croniter import croniter

from osmosis_beam.config import ScheduleSpec
from osmosis_beam.exceptions import ScheduleError
from osmosis_beam.timefmt import UTC

__all__ = ["next_run", "is_due"]


def next_run(schedule: ScheduleSpec, last_run: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """When the pipeline should run next, UTC-aware.

    Never run: due now. Interval: ``last_run + every``, or ``now`` when that is already past.
    Cron: the first tick after ``last_run`` in the schedule's time zone, or ``now`` when that tick
    has passed (missed ticks coalesce into one run).
    """
    if now.tzinfo is None:
        raise ScheduleError("next_run needs an aware 'now'")
    if last_run is None:
        return now
    if schedule.every is not None:
        due = last_run + schedule.every
        return max(due, now) if due < now else due
    if schedule.cron:
        try:
            tz = zoneinfo.ZoneInfo(schedule.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"unknown time zone {schedule.timezone!r}") from None
        if not croniter.is_valid(schedule.cron):
            raise ScheduleError(f"invalid cron expression {schedule.cron!r}")
        tick = croniter(schedule.cron, last_run.astimezone(tz)).get_next(dt.datetime)
        tick = tick.astimezone(UTC)
        return now if tick < now else tick
    raise ScheduleError("schedule has neither 'every' nor 'cron'")


def is_due(schedule: ScheduleSpec, last_run: dt.datetime | None, now: dt.datetime) -> bool:
    return next_run(schedule, last_run, now) <= now

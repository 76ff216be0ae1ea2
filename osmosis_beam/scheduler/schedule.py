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

from croniter import CroniterBadDateError, croniter

from osmosis_beam.config import ScheduleSpec
from osmosis_beam.core.errors import ScheduleError
from osmosis_beam.core.timefmt import UTC

__all__ = ["next_run", "is_due", "backoff_delay", "next_attempt", "DEFAULT_BACKOFF", "DEFAULT_MAX_BACKOFF"]

DEFAULT_BACKOFF = dt.timedelta(seconds=30)
DEFAULT_MAX_BACKOFF = dt.timedelta(hours=1)


def next_run(schedule: ScheduleSpec, last_run: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """When the pipeline should run next, UTC-aware.

    Never run: due now. Interval: ``last_run + every``, or ``now`` when that is already past.
    Cron: the first tick after ``last_run`` in the schedule's time zone, or ``now`` when that tick
    has passed (missed ticks coalesce into one run). As in cron, a fixed-time job (minute and hour
    not wildcards) runs once when clocks go back; a wildcard job (``*/15 * * * *``) runs on real time.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ScheduleError("next_run needs an aware 'now'")
    if last_run is not None and (last_run.tzinfo is None or last_run.utcoffset() is None):
        raise ScheduleError("next_run needs an aware 'last_run'")
    now = now.astimezone(UTC)
    if last_run is None:
        return now
    last_run = last_run.astimezone(UTC)  # interval sums in UTC: wall-clock sums across a DST change are off by an hour
    if schedule.every is not None:
        due = (last_run + schedule.every).astimezone(UTC)
        return now if due < now else due
    if schedule.cron:
        try:
            tz = zoneinfo.ZoneInfo(schedule.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"unknown time zone {schedule.timezone!r}") from None
        if not croniter.is_valid(schedule.cron):
            raise ScheduleError(f"invalid cron expression {schedule.cron!r}")
        ticks = croniter(schedule.cron, last_run.astimezone(tz))
        try:
            tick = ticks.get_next(dt.datetime)
            if _is_fixed_time(schedule.cron):
                # When clocks go back, a fixed wall time (02:30 daily) happens twice; like cron, run it once.
                while _is_repeat(tick, tz):
                    tick = ticks.get_next(dt.datetime)
        except CroniterBadDateError:
            raise ScheduleError(
                f"cron expression {schedule.cron!r} never fires (no such date, e.g. 30 February); "
                "check the day-of-month and month fields"
            ) from None
        tick = tick.astimezone(UTC)
        return now if tick < now else tick
    raise ScheduleError("schedule has neither 'every' nor 'cron'")


def _is_fixed_time(cron: str) -> bool:
    """Whether a cron expression names fixed wall-clock times (neither minute nor hour is a wildcard)."""
    fields = cron.split()
    if fields and fields[0].startswith("@"):
        return fields[0].lower() != "@hourly"
    return len(fields) >= 2 and not fields[0].startswith("*") and not fields[1].startswith("*")


def _is_repeat(tick: dt.datetime, tz: dt.tzinfo) -> bool:
    """Whether ``tick`` is the second occurrence of its wall-clock time (the hour repeated when clocks go back)."""
    wall = tick.astimezone(tz).replace(tzinfo=None)
    first = wall.replace(tzinfo=tz, fold=0)
    return first.utcoffset() != wall.replace(tzinfo=tz, fold=1).utcoffset() and first.astimezone(UTC) != tick.astimezone(UTC)


def is_due(schedule: ScheduleSpec, last_run: dt.datetime | None, now: dt.datetime) -> bool:
    return next_run(schedule, last_run, now) <= now


def backoff_delay(
    failures: int, base: dt.timedelta = DEFAULT_BACKOFF, cap: dt.timedelta = DEFAULT_MAX_BACKOFF
) -> dt.timedelta:
    """How long a pipeline waits after its ``failures``-th failure in a row: ``base * 2**(failures-1)``, at most ``cap``.

    ``backoff_delay(0)`` is zero; with the defaults: 30s, 1m, 2m, 4m, ... up to 1h.
    """
    if failures <= 0 or base <= dt.timedelta(0):
        return dt.timedelta(0)
    if failures > 64:  # 2**64 * base overflows timedelta long before; the cap applies anyway
        return cap
    try:
        return min(cap, base * (2 ** (failures - 1)))
    except OverflowError:
        return cap


def next_attempt(
    schedule: ScheduleSpec,
    last_run: dt.datetime | None,
    now: dt.datetime,
    *,
    failures: int = 0,
    base: dt.timedelta = DEFAULT_BACKOFF,
    cap: dt.timedelta = DEFAULT_MAX_BACKOFF,
) -> dt.datetime:
    """When the launcher runs a pipeline next, given its last run and its failures in a row (pure).

    Without failures this is :func:`next_run`. After failures it is no sooner than
    ``now + backoff_delay(failures, base, cap)``, and never sooner than the schedule's own next run:
    a failing pipeline slows down, it is never retried faster than it is scheduled. ``now`` is the
    time the failed run ended.
    """
    regular = next_run(schedule, last_run, now)
    if failures <= 0:
        return regular
    return max(regular, now.astimezone(UTC) + backoff_delay(failures, base, cap))

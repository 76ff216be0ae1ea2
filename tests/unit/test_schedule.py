"""next_run: pure maths over interval and cron schedules, with ``now`` as an argument (no sleeping)."""
from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from osmosis_beam.config import ScheduleSpec, parse_pipeline
from osmosis_beam.core.errors import ScheduleError
from osmosis_beam.scheduler.schedule import is_due, next_run

UTC = dt.timezone.utc
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def every(**kw) -> ScheduleSpec:
    return ScheduleSpec(every=dt.timedelta(**kw))


def cron(expr: str, tz: str = "UTC") -> ScheduleSpec:
    return ScheduleSpec(cron=expr, timezone=tz)


def ticks(schedule: ScheduleSpec, start: dt.datetime, count: int) -> list[dt.datetime]:
    """The next ``count`` runs after ``start`` when every run happens exactly on time."""
    out, last = [], start
    for _ in range(count):
        last = next_run(schedule, last, now=last)
        out.append(last)
    return out


# -- never run, intervals ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", [every(minutes=15), cron("0 * * * *", "Europe/Berlin")])
def test_a_pipeline_that_never_ran_is_due_now(schedule):
    now = utc(2024, 5, 1, 10, 7, 13)
    assert next_run(schedule, None, now) == now
    assert is_due(schedule, None, now)


def test_interval_next_run_is_last_plus_every():
    last = utc(2024, 5, 1, 10, 0)
    assert next_run(every(minutes=15), last, now=utc(2024, 5, 1, 10, 5)) == utc(2024, 5, 1, 10, 15)
    assert not is_due(every(minutes=15), last, now=utc(2024, 5, 1, 10, 14, 59))
    assert is_due(every(minutes=15), last, now=utc(2024, 5, 1, 10, 15))


def test_interval_missed_ticks_coalesce_into_one_run():
    last = utc(2024, 5, 1, 10, 0)
    now = utc(2024, 5, 8, 9, 47)  # a week of downtime: 670 missed ticks
    due = next_run(every(minutes=15), last, now)
    assert due == now
    # Running once at `now` puts the schedule back on a normal footing: the next run is a full interval later.
    assert next_run(every(minutes=15), due, now) == now + dt.timedelta(minutes=15)


def test_interval_is_real_elapsed_time_across_a_dst_change():
    # Noon CET the day before spring-forward, given in Berlin time: 24 h later is 13:00 CEST (11:00 UTC),
    # not noon on the wall clock (which would be 23 h).
    last = dt.datetime(2024, 3, 30, 12, tzinfo=BERLIN)
    due = next_run(every(days=1), last, now=last)
    assert due == utc(2024, 3, 31, 11)
    assert due - last == dt.timedelta(days=1)


def test_results_are_utc():
    last = dt.datetime(2024, 5, 1, 12, tzinfo=BERLIN)
    for schedule in (every(minutes=5), cron("*/5 * * * *", "Europe/Berlin")):
        for now in (last, dt.datetime(2024, 6, 1, tzinfo=BERLIN)):
            assert next_run(schedule, last, now).utcoffset() == dt.timedelta(0)
    assert next_run(every(minutes=5), None, dt.datetime(2024, 6, 1, tzinfo=BERLIN)) == utc(2024, 5, 31, 22)


def test_naive_times_are_rejected():
    with pytest.raises(ScheduleError, match="aware 'now'"):
        next_run(every(minutes=1), None, dt.datetime(2024, 1, 1))
    with pytest.raises(ScheduleError, match="aware 'last_run'"):
        next_run(every(minutes=1), dt.datetime(2024, 1, 1), utc(2024, 1, 1))


# -- cron -------------------------------------------------------------------------------------------------------------------
def test_cron_in_utc():
    assert next_run(cron("*/15 * * * *"), utc(2024, 5, 1, 10, 7), now=utc(2024, 5, 1, 10, 8)) == utc(2024, 5, 1, 10, 15)
    # A run exactly on a tick waits for the next one.
    assert next_run(cron("*/15 * * * *"), utc(2024, 5, 1, 10, 15), now=utc(2024, 5, 1, 10, 15)) == utc(2024, 5, 1, 10, 30)
    assert next_run(cron("@daily"), utc(2024, 5, 1, 10), now=utc(2024, 5, 1, 10)) == utc(2024, 5, 2)


def test_cron_follows_the_schedules_time_zone():
    schedule = cron("0 9 * * *", "Europe/Berlin")
    # 09:00 in Berlin is 08:00 UTC in winter (CET) and 07:00 UTC in summer (CEST).
    assert next_run(schedule, utc(2024, 1, 10, 12), now=utc(2024, 1, 10, 12)) == utc(2024, 1, 11, 8)
    assert next_run(schedule, utc(2024, 7, 10, 12), now=utc(2024, 7, 10, 12)) == utc(2024, 7, 11, 7)
    assert ticks(schedule, utc(2024, 3, 29, 12), 3) == [utc(2024, 3, 30, 8), utc(2024, 3, 31, 7), utc(2024, 4, 1, 7)]
    assert ticks(schedule, utc(2024, 10, 25, 12), 3) == [utc(2024, 10, 26, 7), utc(2024, 10, 27, 8), utc(2024, 10, 28, 8)]


def test_cron_hourly_across_spring_forward_in_berlin():
    # 2024-03-31 02:00 CET becomes 03:00 CEST (01:00 UTC): the 02:00 wall-clock hour does not exist.
    runs = ticks(cron("0 * * * *", "Europe/Berlin"), utc(2024, 3, 30, 23, 30), 4)
    assert runs == [utc(2024, 3, 31, 0), utc(2024, 3, 31, 1), utc(2024, 3, 31, 2), utc(2024, 3, 31, 3)]
    assert [r.astimezone(BERLIN).hour for r in runs] == [1, 3, 4, 5]


def test_cron_fixed_time_in_the_skipped_hour_runs_once_after_the_change():
    runs = ticks(cron("30 2 * * *", "Europe/Berlin"), utc(2024, 3, 30, 12), 3)
    # 02:30 does not exist on 31 March: that day's run is at the change (03:00 CEST), once.
    assert runs[0] == utc(2024, 3, 31, 1)
    assert runs[1:] == [utc(2024, 4, 1, 0, 30), utc(2024, 4, 2, 0, 30)]  # 02:30 CEST again
    assert len({r.astimezone(BERLIN).date() for r in runs}) == 3


def test_cron_fixed_time_in_the_repeated_hour_runs_once_on_fall_back():
    # 2024-10-27 03:00 CEST becomes 02:00 CET (01:00 UTC): 02:00-03:00 happens twice.
    runs = ticks(cron("30 2 * * *", "Europe/Berlin"), utc(2024, 10, 26, 12), 3)
    assert runs == [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30), utc(2024, 10, 29, 1, 30)]
    # Started between the two 02:30s (after the first one ran), it does not run the second.
    assert next_run(cron("30 2 * * *", "Europe/Berlin"), utc(2024, 10, 27, 0, 45), now=utc(2024, 10, 27, 0, 45)) == utc(
        2024, 10, 28, 1, 30
    )


def test_cron_wildcard_jobs_run_on_real_time_through_the_repeated_hour():
    runs = ticks(cron("0 * * * *", "Europe/Berlin"), utc(2024, 10, 26, 23, 30), 4)
    assert runs == [utc(2024, 10, 27, 0), utc(2024, 10, 27, 1), utc(2024, 10, 27, 2), utc(2024, 10, 27, 3)]
    assert [r.astimezone(BERLIN).strftime("%H:%M%z") for r in runs] == ["02:00+0200", "02:00+0100", "03:00+0100", "04:00+0100"]
    half_hourly = ticks(cron("*/30 * * * *", "Europe/Berlin"), utc(2024, 10, 27, 0), 4)
    assert half_hourly == [utc(2024, 10, 27, 0, 30), utc(2024, 10, 27, 1), utc(2024, 10, 27, 1, 30), utc(2024, 10, 27, 2)]


def test_cron_missed_ticks_coalesce_into_one_run():
    schedule = cron("*/15 * * * *", "Europe/Berlin")
    last = utc(2024, 5, 1, 10, 0)
    now = utc(2024, 5, 4, 7, 3)  # three days down
    assert next_run(schedule, last, now) == now
    assert is_due(schedule, last, now)
    # After that single run the schedule is back on its ticks, not replaying the backlog.
    assert next_run(schedule, now, now) == utc(2024, 5, 4, 7, 15)
    assert not is_due(schedule, now, utc(2024, 5, 4, 7, 14))


def test_cron_from_a_validated_pipeline():
    spec = parse_pipeline(
        {"id": "p", "source": {"type": "rss", "url": "http://h/f"}, "sink": {"type": "jsonl", "path": "/x"},
         "schedule": {"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin"}},
        env={},
    )
    # Friday 2024-05-03 06:00 CEST ran; next is Monday 06:00 CEST.
    assert next_run(spec.schedule, utc(2024, 5, 3, 4), now=utc(2024, 5, 3, 4)) == utc(2024, 5, 6, 4)


@pytest.mark.parametrize(
    "schedule, message",
    [
        (cron("61 * * * *"), "invalid cron expression '61 * * * *'"),
        (cron("0 * * * *", "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (ScheduleSpec(), "schedule has neither 'every' nor 'cron'"),
    ],
)
def test_bad_schedules_raise_schedule_error(schedule, message):
    with pytest.raises(ScheduleError) as info:
        next_run(schedule, utc(2024, 1, 1), utc(2024, 1, 2))
    assert str(info.value) == message
    assert info.value.exit_code == 2

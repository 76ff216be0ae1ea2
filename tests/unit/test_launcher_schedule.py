"""The launcher's schedule maths with fixed clocks: intervals, cron in time zones, DST, coalescing, backoff."""
from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from osmosis_beam.config import ScheduleSpec, parse_pipeline
from osmosis_beam.core.errors import ConfigError, ScheduleError
from osmosis_beam.scheduler.schedule import (
    backoff_delay,
    is_due,
    next_attempt,
    next_run,
)

UTC = dt.timezone.utc
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
S = dt.timedelta(seconds=1)


def at(*args, tz=UTC) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz)


def ticks(schedule: ScheduleSpec, start: dt.datetime, n: int) -> list[dt.datetime]:
    """The next ``n`` runs after ``start`` when each run happens exactly on time (``now`` = the tick)."""
    out, last = [], start
    for _ in range(n):
        nxt = next_run(schedule, last, now=last)
        out.append(nxt)
        last = nxt
    return out


# -- intervals ----------------------------------------------------------------------------------------
def test_never_run_is_due_now():
    now = at(2024, 5, 1, 12, 0, 0)
    assert next_run(ScheduleSpec(every=dt.timedelta(minutes=15)), None, now) == now
    assert next_run(ScheduleSpec(cron="0 * * * *"), None, now) == now
    assert is_due(ScheduleSpec(every=30 * S), None, now)


def test_interval_counts_from_the_last_run():
    every = ScheduleSpec(every=dt.timedelta(minutes=15))
    last = at(2024, 5, 1, 12, 0, 0)
    assert next_run(every, last, now=last + 5 * S) == at(2024, 5, 1, 12, 15, 0)
    assert not is_due(every, last, now=last + 5 * S)
    assert is_due(every, last, now=at(2024, 5, 1, 12, 15, 0))


def test_second_level_intervals():
    every = ScheduleSpec(every=30 * S)
    last = at(2024, 5, 1, 12, 0, 0)
    assert next_run(every, last, now=last) == at(2024, 5, 1, 12, 0, 30)
    assert next_run(ScheduleSpec(every=S), last, now=last) == last + S


def test_missed_interval_ticks_coalesce_into_one_run_now():
    every = ScheduleSpec(every=dt.timedelta(minutes=15))
    last = at(2024, 5, 1, 12, 0, 0)
    now = at(2024, 5, 1, 18, 7, 13)  # 24 ticks missed while the launcher was down
    assert next_run(every, last, now) == now
    # ...and after that catch-up run the cadence restarts from it, not from the missed ticks.
    assert next_run(every, now, now) == now + dt.timedelta(minutes=15)


def test_interval_is_real_time_across_dst():
    # Berlin springs forward at 02:00 CET (01:00 UTC) on 2024-03-31: an hourly interval stays 3600 s apart.
    every = ScheduleSpec(every=dt.timedelta(hours=1), timezone="Europe/Berlin")
    last = at(2024, 3, 31, 1, 30, tz=BERLIN)
    nxt = next_run(every, last, now=last)
    assert (nxt - last) == dt.timedelta(hours=1)
    assert nxt.astimezone(BERLIN).hour == 3  # 01:30 CET + 1 h = 03:30 CEST


def test_results_are_utc_and_inputs_must_be_aware():
    last = at(2024, 5, 1, 14, 0, tz=BERLIN)
    out = next_run(ScheduleSpec(every=S), last, now=last)
    assert out.utcoffset() == dt.timedelta(0)
    with pytest.raises(ScheduleError):
        next_run(ScheduleSpec(every=S), None, dt.datetime(2024, 5, 1))
    with pytest.raises(ScheduleError):
        next_run(ScheduleSpec(every=S), dt.datetime(2024, 5, 1), at(2024, 5, 1))


# -- cron ---------------------------------------------------------------------------------------------
def test_cron_every_15_minutes():
    cron = ScheduleSpec(cron="*/15 * * * *")
    assert next_run(cron, at(2024, 5, 1, 12, 7), now=at(2024, 5, 1, 12, 8)) == at(2024, 5, 1, 12, 15)
    # A run exactly on a tick is followed by the next tick, not the same one.
    assert next_run(cron, at(2024, 5, 1, 12, 15), now=at(2024, 5, 1, 12, 15)) == at(2024, 5, 1, 12, 30)


def test_cron_is_read_in_its_time_zone():
    daily = ScheduleSpec(cron="0 9 * * *", timezone="Europe/Berlin")
    # 09:00 in Berlin is 07:00 UTC in summer, 08:00 UTC in winter.
    assert next_run(daily, at(2024, 7, 1, 12), now=at(2024, 7, 1, 12)) == at(2024, 7, 2, 7)
    assert next_run(daily, at(2024, 1, 1, 12), now=at(2024, 1, 1, 12)) == at(2024, 1, 2, 8)


def test_missed_cron_ticks_coalesce():
    hourly = ScheduleSpec(cron="0 * * * *")
    now = at(2024, 5, 1, 17, 42)
    assert next_run(hourly, at(2024, 5, 1, 9, 0), now) == now  # eight missed ticks: one run now
    assert next_run(hourly, now, now) == at(2024, 5, 1, 18, 0)


def test_daily_cron_across_spring_forward_keeps_wall_time():
    # New York springs forward on 2024-03-10: 09:00 local is 14:00 UTC before, 13:00 UTC after.
    daily = ScheduleSpec(cron="0 9 * * *", timezone="America/New_York")
    runs = ticks(daily, at(2024, 3, 8, 15), 3)
    assert [r.astimezone(NEW_YORK).strftime("%m-%d %H:%M") for r in runs] == ["03-09 09:00", "03-10 09:00", "03-11 09:00"]
    assert runs[1] - runs[0] == dt.timedelta(hours=23)


def test_cron_in_the_skipped_hour_runs_once_right_after_the_jump():
    # Berlin: 2024-03-31 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    daily = ScheduleSpec(cron="30 2 * * *", timezone="Europe/Berlin")
    runs = ticks(daily, at(2024, 3, 29, 12), 3)
    local = [r.astimezone(BERLIN) for r in runs]
    assert local[0].strftime("%m-%d %H:%M") == "03-30 02:30"
    assert local[1].date() == dt.date(2024, 3, 31) and local[1].hour == 3  # once, just after the jump
    assert local[2].strftime("%m-%d %H:%M") == "04-01 02:30"


def test_fixed_time_cron_runs_once_when_clocks_go_back():
    # Berlin: 2024-10-27 03:00 CEST goes back to 02:00 CET; 02:30 happens twice but runs once.
    daily = ScheduleSpec(cron="30 2 * * *", timezone="Europe/Berlin")
    runs = ticks(daily, at(2024, 10, 25, 12), 3)
    assert [r.astimezone(BERLIN).strftime("%m-%d %H:%M") for r in runs] == ["10-26 02:30", "10-27 02:30", "10-28 02:30"]
    assert runs[2] - runs[1] == dt.timedelta(hours=25)


def test_wildcard_cron_follows_real_time_when_clocks_go_back():
    # An hourly job runs every real hour: both 02:00 (CEST, then CET) on the day clocks go back.
    hourly = ScheduleSpec(cron="0 * * * *", timezone="Europe/Berlin")
    runs = ticks(hourly, at(2024, 10, 26, 23, 30), 4)
    assert runs == [at(2024, 10, 27, 0), at(2024, 10, 27, 1), at(2024, 10, 27, 2), at(2024, 10, 27, 3)]
    assert [r.astimezone(BERLIN).strftime("%H:%M%z") for r in runs] == ["02:00+0200", "02:00+0100", "03:00+0100", "04:00+0100"]


def test_hourly_cron_across_spring_forward_has_no_gap_or_double():
    hourly = ScheduleSpec(cron="0 * * * *", timezone="Europe/Berlin")
    runs = ticks(hourly, at(2024, 3, 30, 23, 30), 3)
    assert runs == [at(2024, 3, 31, 0), at(2024, 3, 31, 1), at(2024, 3, 31, 2)]


def test_cron_and_interval_are_validated_when_loaded(tmp_path):
    base = {"id": "p", "source": {"type": "rss", "url": "http://x/feed"}, "sink": {"type": "jsonl", "path": "o"}}
    with pytest.raises(ConfigError) as info:
        parse_pipeline({**base, "schedule": {"cron": "61 * * * *", "timezone": "Mars/Olympus"}}, path=str(tmp_path / "p.yaml"))
    assert any("schedule.cron: invalid cron expression '61 * * * *'" in p for p in info.value.problems)
    assert any("schedule.timezone" in p for p in info.value.problems)
    spec = parse_pipeline({**base, "schedule": {"every": "30s"}}, path=str(tmp_path / "p.yaml"))
    assert spec.schedule.every == 30 * S
    spec = parse_pipeline({**base, "schedule": {"interval_minutes": 15}}, path=str(tmp_path / "p.yaml"))
    assert spec.schedule.every == dt.timedelta(minutes=15)


# -- backoff ------------------------------------------------------------------------------------------
def test_backoff_doubles_and_is_capped():
    base, cap = dt.timedelta(seconds=30), dt.timedelta(minutes=5)
    assert [backoff_delay(n, base, cap).total_seconds() for n in range(0, 7)] == [0, 30, 60, 120, 240, 300, 300]
    assert backoff_delay(10_000, base, cap) == cap  # no overflow after a very long outage
    assert backoff_delay(3, dt.timedelta(0), cap) == dt.timedelta(0)


def test_next_attempt_after_failures_backs_off_but_never_runs_before_the_schedule():
    base, cap = dt.timedelta(seconds=30), dt.timedelta(hours=1)
    fast = ScheduleSpec(every=S)
    slot = at(2024, 5, 1, 12, 0, 0)
    failed_at = slot + 2 * S
    assert next_attempt(fast, slot, failed_at) == failed_at  # no failures: due again (coalesced)
    assert next_attempt(fast, slot, failed_at, failures=1, base=base, cap=cap) == failed_at + 30 * S
    assert next_attempt(fast, slot, failed_at, failures=3, base=base, cap=cap) == failed_at + 120 * S
    assert next_attempt(fast, slot, failed_at, failures=50, base=base, cap=cap) == failed_at + cap
    # A slow schedule is never retried sooner than its own next tick.
    hourly = ScheduleSpec(cron="0 * * * *")
    assert next_attempt(hourly, slot, failed_at, failures=1, base=base, cap=cap) == at(2024, 5, 1, 13, 0, 0)
    daily = ScheduleSpec(every=dt.timedelta(days=1))
    assert next_attempt(daily, slot, failed_at, failures=20, base=base, cap=cap) == slot + dt.timedelta(days=1)


def test_success_resets_to_the_plain_schedule():
    every = ScheduleSpec(every=dt.timedelta(minutes=15))
    slot = at(2024, 5, 1, 12, 0, 0)
    assert next_attempt(every, slot, slot + 3 * S, failures=0) == next_run(every, slot, slot + 3 * S)

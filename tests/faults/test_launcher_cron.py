"""A cron expression that never fires (30 February) fails ``validate`` and ``launch`` clearly, and never spins."""
from __future__ import annotations

import datetime as dt

import pytest

from osmosis_beam.config import ScheduleSpec, parse_pipeline
from osmosis_beam.core.errors import ConfigError, ScheduleError
from osmosis_beam.scheduler.launcher import SyncScheduler
from osmosis_beam.scheduler.schedule import next_run
from osmosis_beam.state.sqlite import SQLiteStateStore
from tests.integration.test_launcher import write_pipeline

NEVER = "0 0 30 2 *"


def test_validate_and_launch_refuse_a_cron_that_never_fires(tmp_path, home, osmosis_cli, faults):
    path = write_pipeline(tmp_path, "feb30", {"count": 3}, schedule={"cron": NEVER})
    faults.injected()
    checked = osmosis_cli("validate", path, timeout=60)
    assert checked.returncode != 0
    assert f"schedule.cron: '{NEVER}' never fires" in checked.stderr + checked.stdout
    assert "Traceback" not in checked.stderr

    launched = osmosis_cli("launch", "--once", path, timeout=60)  # returns at once: nothing to spin on
    assert launched.returncode != 0
    out = launched.stderr + launched.stdout
    assert out.count("never fires") == 1, out
    assert "Traceback" not in out
    assert not (home / "state.db").exists() or not SQLiteStateStore(home / "state.db").list_runs("feb30")


def test_a_leap_day_cron_is_fine_and_a_schedule_built_in_python_fails_once(tmp_path, home, faults):
    spec = parse_pipeline({"id": "leap", "source": {"type": "rss", "url": "http://127.0.0.1:9/feed"},
                           "sink": {"type": "jsonl", "path": str(tmp_path / "out")},
                           "schedule": {"cron": "0 0 29 2 *"}})
    now = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)
    assert next_run(spec.schedule, now, now) == dt.datetime(2028, 2, 29, tzinfo=dt.timezone.utc)

    faults.injected()
    never = ScheduleSpec(cron=NEVER)
    with pytest.raises(ScheduleError, match="never fires"):
        next_run(never, now, now)
    bad = parse_pipeline({"id": "feb30", "source": {"type": "rss", "url": "http://127.0.0.1:9/feed"},
                          "sink": {"type": "jsonl", "path": str(tmp_path / "out2")}, "schedule": {"every": "1h"}})
    object.__setattr__(bad, "schedule", never)  # a library user's spec, never validated from YAML
    with pytest.raises(ConfigError, match="never fires"):
        SyncScheduler([bad], SQLiteStateStore(home / "state.db"))

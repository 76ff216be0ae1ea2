"""The state-store contract suite: watermarks, atomic commits, history and leases, as pytest tests.

A store author subclasses :class:`StateStoreContract` and gives two fixtures: ``store`` (an empty store)
and ``other_store`` (a second store over the same data, as another launcher opens it)::

    import pytest
    from osmosis_beam.testing import StateStoreContract

    class TestMyStoreContract(StateStoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            return MyStore(tmp_path / "state")

        @pytest.fixture
        def other_store(self, store, tmp_path):
            return MyStore(tmp_path / "state")

The built-in SQLite and PostgreSQL stores run it (``tests/contracts/test_state_contracts.py``); what is
particular to one backend (migrations, its locking across processes) stays in that backend's tests.
"""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import pytest

from osmosis_beam.core.errors import StateError
from osmosis_beam.core.models import SyncJob, SyncRun
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.state.store import holder_is_dead, new_holder_id

__all__ = ["StateStoreContract", "new_run", "succeed"]

UTC = dt.timezone.utc


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def new_run(run_id: str = "r1", pipeline: str = "orders", started: dt.datetime | None = None,
            window: SyncWindow | None = None) -> SyncRun:
    return SyncRun(run_id=run_id, pipeline_id=pipeline, status="running", started_at=started or utc(2024, 5, 1, 10),
                   window=window, runner="direct")


def succeed(run: SyncRun, read: int = 10, written: int = 9, dead: int = 1) -> SyncRun:
    run.status, run.finished_at = "succeeded", run.started_at + dt.timedelta(seconds=5)
    run.records_read, run.records_written, run.dead_letter = read, written, dead
    return run


class StateStoreContract:
    """The contract tests; subclass it as ``Test...`` and give ``store`` and ``other_store`` fixtures."""

    # -- sources and jobs ---------------------------------------------------------------------------
    def test_sources_round_trip(self, store):
        store.put_source("b", "rss", {"url": "http://h/b", "n": [1, 2]}, "/p/b.yaml")
        store.put_source("a", "rss", {"url": "http://h/a"}, None)
        assert [s.id for s in store.list_sources()] == ["a", "b"]
        b = store.get_source("b")
        assert (b.type, b.config, b.pipeline_path) == ("rss", {"url": "http://h/b", "n": [1, 2]}, "/p/b.yaml")
        assert b.created_at.utcoffset() == dt.timedelta(0)
        assert store.remove_source("a") is True and store.remove_source("a") is False
        assert store.get_source("a") is None

    def test_jobs_round_trip(self, store):
        job = SyncJob("orders", "orders", interval_minutes=15, last_run=utc(2024, 5, 1, 10, 0, 0, 1),
                      next_run=utc(2024, 5, 1, 10, 15), consecutive_failures=1, spec_path="/p/orders.yaml")
        store.put_job(job)
        store.put_job(SyncJob("news", "news", cron="0 * * * *", timezone="Europe/Berlin"))
        assert store.get_job("orders") == job
        assert [j.pipeline_id for j in store.list_jobs()] == ["news", "orders"]
        job.status, job.consecutive_failures = "failing", 2
        store.put_job(job)
        assert store.get_job("orders").consecutive_failures == 2
        assert store.get_job("nope") is None

    # -- watermarks and commits -----------------------------------------------------------------------
    def test_no_watermark_before_the_first_commit(self, store):
        wm = store.get_watermark("orders")
        assert wm.value is None and wm.state == {}

    def test_commit_sets_watermark_state_and_run_status_together(self, store):
        hi = utc(2024, 5, 1, 9, 59, 59, 123456)
        run = new_run(window=SyncWindow(utc(2024, 5, 1, 9), hi))
        store.start_run(run, holder="me")
        assert store.get_run("r1").status == "running"
        assert store.running_runs("orders")[0][1] == "me"
        store.commit_run(succeed(run), hi, {"etag": "W/1"})
        wm = store.get_watermark("orders")
        assert wm.value == hi and wm.value.tzinfo is not None  # microsecond precision, UTC-aware
        assert wm.state == {"etag": "W/1"}
        saved = store.get_run("r1")
        assert (saved.status, saved.records_read, saved.records_written, saved.dead_letter) == ("succeeded", 10, 9, 1)
        assert saved.window == SyncWindow(utc(2024, 5, 1, 9), hi)
        assert saved.finished_at == utc(2024, 5, 1, 10, 0, 5)
        assert store.running_runs() == []

    def test_an_open_window_round_trips(self, store):
        hi = utc(2024, 5, 1, 9, 59, 55, 123456)
        store.start_run(new_run(window=SyncWindow(None, hi)), "me")
        store.commit_run(succeed(new_run(window=SyncWindow(None, hi))), hi, None)
        assert store.get_run("r1").window == SyncWindow(None, hi)

    def test_commit_without_a_new_watermark_or_state_keeps_the_old_ones(self, store):
        store.start_run(new_run("r1"), "me")
        store.commit_run(succeed(new_run("r1")), utc(2024, 1, 1), {"cursor": 1})
        store.start_run(new_run("r2"), "me")
        store.commit_run(succeed(new_run("r2")), None, {"cursor": 2})  # state only
        assert store.get_watermark("orders").value == utc(2024, 1, 1)
        assert store.get_watermark("orders").state == {"cursor": 2}
        store.start_run(new_run("r3"), "me")
        store.commit_run(succeed(new_run("r3")), utc(2024, 2, 1), None)  # watermark only
        assert store.get_watermark("orders").value == utc(2024, 2, 1)
        assert store.get_watermark("orders").state == {"cursor": 2}

    def test_integer_watermarks(self, store):
        store.start_run(new_run(window=SyncWindow(None, 1000)), "me")
        store.commit_run(succeed(new_run(window=SyncWindow(None, 1000))), 1000, None)
        assert store.get_watermark("orders").value == 1000
        assert store.get_run("r1").window == SyncWindow(None, 1000)

    def test_commit_for_a_run_that_was_never_started_moves_nothing(self, store):
        with pytest.raises(StateError, match="run ghost was never started; watermark not moved"):
            store.commit_run(succeed(new_run("ghost")), utc(2024, 6, 1), {"v": 1})
        assert store.get_watermark("orders").value is None
        assert store.list_runs() == []

    def test_a_failed_run_leaves_the_watermark_and_reset_clears_it(self, store):
        store.start_run(new_run("r1"), "me")
        store.commit_run(succeed(new_run("r1")), utc(2024, 1, 1), {"x": 1})
        run = new_run("r2", window=SyncWindow(utc(2024, 1, 1), utc(2024, 2, 1)))
        store.start_run(run, "me")
        run.status, run.error, run.finished_at = "failed", "connection refused", utc(2024, 5, 1, 10, 1)
        store.fail_run(run)
        assert store.get_watermark("orders").value == utc(2024, 1, 1)
        saved = store.get_run("r2")
        assert (saved.status, saved.error) == ("failed", "connection refused")
        store.reset_watermark("orders")
        assert store.get_watermark("orders").value is None and store.get_watermark("orders").state == {}

    def test_a_run_round_trips_through_the_store(self, store):
        run = new_run(window=SyncWindow(None, utc(2024, 1, 2, 3, 4, 5, 6)))
        run.full_refresh, run.note = True, "first run"
        store.start_run(run, "me")
        store.commit_run(succeed(run), run.window.hi, None)
        assert store.get_run("r1") == run

    def test_another_store_over_the_same_data_sees_commits(self, store, other_store):
        store.start_run(new_run(), "me")
        store.commit_run(succeed(new_run()), utc(2024, 1, 1), {"etag": "x"})
        assert other_store.get_watermark("orders").value == utc(2024, 1, 1)
        assert other_store.get_run("r1").status == "succeeded"

    # -- history ----------------------------------------------------------------------------------------
    def test_history_is_newest_first_with_ties_by_insert_order(self, store):
        starts = {
            "old": utc(2024, 5, 1, 9),
            "newest": utc(2024, 5, 1, 11),
            "mid_whole_second": utc(2024, 5, 1, 10, 0, 0),
            "mid_plus_half": utc(2024, 5, 1, 10, 0, 0, 500000),  # without vs with microseconds
            "other_pipeline": utc(2024, 5, 1, 12),
        }
        for run_id, started in starts.items():
            pipeline = "news" if run_id == "other_pipeline" else "orders"
            store.start_run(new_run(run_id, pipeline=pipeline, started=started), "me")
        for run_id in ("tie_1", "tie_2", "tie_3"):
            store.start_run(new_run(run_id, started=utc(2024, 5, 1, 8)), "me")
        assert [r.run_id for r in store.list_runs("orders")] == [
            "newest", "mid_plus_half", "mid_whole_second", "old", "tie_3", "tie_2", "tie_1"]
        assert [r.run_id for r in store.list_runs()][0] == "other_pipeline"
        assert [r.run_id for r in store.list_runs("orders", limit=2)] == ["newest", "mid_plus_half"]
        assert store.list_runs("nobody") == []

    def test_run_ids_are_unique(self, store):
        store.start_run(new_run("r1"), "me")
        with pytest.raises(StateError):
            store.start_run(new_run("r1"), "me")

    def test_running_runs_report_their_holder(self, store):
        store.start_run(new_run("a"), "host:1:x")
        store.start_run(new_run("b", pipeline="news"), "host:2:y")
        store.commit_run(succeed(new_run("a")), None, None)
        assert [(r.run_id, holder) for r, holder in store.running_runs()] == [("b", "host:2:y")]
        assert store.running_runs("orders") == []

    # -- leases -----------------------------------------------------------------------------------------
    def test_a_lease_is_exclusive_renewable_and_releasable(self, store):
        a, b = new_holder_id(), new_holder_id()
        lease = store.acquire_lease("orders", a, ttl=60)
        assert lease is not None and lease.holder == a
        assert lease.expires_at - lease.acquired_at == dt.timedelta(seconds=60)
        assert store.acquire_lease("orders", b, ttl=60) is None
        assert store.get_lease("orders").holder == a
        assert store.acquire_lease("news", b, ttl=60) is not None  # other pipelines are independent
        again = store.acquire_lease("orders", a, ttl=90)  # the holder may take it again
        assert again is not None and again.expires_at > lease.expires_at
        assert store.renew_lease("orders", a, ttl=120) is True
        assert store.get_lease("orders").expires_at > again.expires_at
        assert store.renew_lease("orders", b, ttl=120) is False  # not b's lease
        store.release_lease("orders", b)  # not the holder: no effect
        assert store.get_lease("orders").holder == a
        store.release_lease("orders", a)
        assert store.get_lease("orders") is None
        assert store.acquire_lease("orders", b, ttl=60).holder == b

    def test_another_launcher_cannot_take_a_held_lease_but_takes_an_expired_one(self, store, other_store):
        a, b = new_holder_id(), new_holder_id()  # both alive (this process)
        assert store.acquire_lease("orders", a, ttl=0.4) is not None
        assert other_store.acquire_lease("orders", b, ttl=60) is None
        time.sleep(0.5)
        taken = other_store.acquire_lease("orders", b, ttl=60)
        assert taken is not None and taken.holder == b
        assert store.renew_lease("orders", a, ttl=60) is False  # the old holder learns it lost it
        assert store.acquire_lease("orders", a, ttl=60) is None

    def test_a_lease_held_by_a_dead_process_on_this_host_is_taken_at_once(self, store):
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        dead = new_holder_id().rsplit(":", 2)[0] + f":{proc.pid}:dead0000"
        assert holder_is_dead(dead)
        assert store.acquire_lease("orders", dead, ttl=3600) is not None
        mine = new_holder_id()
        assert store.acquire_lease("orders", mine, ttl=60).holder == mine
        assert store.acquire_lease("orders", new_holder_id(), ttl=60) is None  # a live holder keeps it

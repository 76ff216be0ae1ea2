"""`osmosis launch --metrics-port`: a real launcher process, its real HTTP endpoint scraped with prometheus-client's parser."""
from __future__ import annotations

import signal
import socket
import time
import urllib.request

import prometheus_client.parser as prometheus_parser  # the test extra brings it: a missing one fails, never skips
import pytest

from osmosis_beam.state.sqlite import SQLiteStateStore
from tests.integration.test_launcher import finish, start, wait_for, write_pipeline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples = {}
    for family in prometheus_parser.text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_a_running_launcher_exposes_runs_records_durations_freshness_and_leases(tmp_path):
    home = tmp_path / "home"
    good = write_pipeline(tmp_path, "good", {"count": 12, "first": "2024-01-01T00:00:00Z"}, schedule={"every": "1h"})
    bad = write_pipeline(tmp_path, "bad", {"count": 5, "fail_after": 0}, schedule={"every": "1h"})
    slow = write_pipeline(tmp_path, "slow", {"count": 150, "sleep_per_record": 0.05}, schedule={"every": "1h"})
    port = free_port()
    proc = start(home, str(good), str(bad), str(slow), "--concurrency", "3", "--metrics-port", str(port))
    try:
        def ready():
            try:
                return scrape(port)
            except OSError:
                return None

        wait_for(ready, 30, "the metrics endpoint")
        store = SQLiteStateStore(home / "state.db")
        wait_for(lambda: {r.pipeline_id for r in store.query_runs(status=("succeeded", "failed"))} >= {"good", "bad"},
                 60, "the good and the bad run to finish")
        wait_for(lambda: store.get_lease("slow") is not None, 30, "the slow run to hold its lease")
        # The launcher counts a run once it has reaped it: give its loop a tick.
        def counted():
            m = scrape(port)
            return (m.get(("osmosis_runs_total", (("pipeline", "bad"), ("status", "failed")))) == 1
                    and m.get(("osmosis_runs_total", (("pipeline", "good"), ("status", "succeeded")))) == 1)

        wait_for(counted, 10, "both finished runs in the metrics")
        m = scrape(port)
        assert m[("osmosis_runs_total", (("pipeline", "good"), ("status", "succeeded")))] == 1
        assert m[("osmosis_runs_total", (("pipeline", "good"), ("status", "failed")))] == 0
        assert m[("osmosis_records_read_total", (("pipeline", "good"),))] == 12
        assert m[("osmosis_records_written_total", (("pipeline", "good"),))] == 12
        assert m[("osmosis_records_dead_letter_total", (("pipeline", "good"),))] == 0
        assert m[("osmosis_run_duration_seconds_count", (("pipeline", "good"),))] == 1
        good_run = store.query_runs("good")[0]
        took = (good_run.finished_at - good_run.started_at).total_seconds()
        assert m[("osmosis_run_duration_seconds_sum", (("pipeline", "good"),))] == pytest.approx(took, abs=0.01)
        # Freshness is computed at scrape time: it grows between two scrapes.
        watermark = store.get_watermark("good").value
        fresh = m[("osmosis_freshness_seconds", (("pipeline", "good"),))]
        assert 0 <= fresh < 60 and m[("osmosis_watermark_timestamp_seconds", (("pipeline", "good"),))] == pytest.approx(watermark.timestamp())
        time.sleep(0.3)
        assert scrape(port)[("osmosis_freshness_seconds", (("pipeline", "good"),))] > fresh
        assert ("osmosis_freshness_seconds", (("pipeline", "bad"),)) not in m  # no watermark yet
        holder = store.get_lease("slow").holder
        assert m[("osmosis_lease_held", (("holder", holder), ("pipeline", "slow")))] == 1
        assert not any(name == "osmosis_lease_held" and dict(labels)["pipeline"] == "good" for name, labels in m)
        assert m[("osmosis_state_store_up", ())] == 1
        assert m[("osmosis_job_paused", (("pipeline", "good"),))] == 0
        # The slow run ends by itself (its read cannot be interrupted mid-record) and frees its lease.
        wait_for(lambda: scrape(port).get(("osmosis_runs_total", (("pipeline", "slow"), ("status", "succeeded")))) == 1,
                 60, "the slow run to finish")
        m = scrape(port)
        assert m[("osmosis_records_written_total", (("pipeline", "slow"),))] == 150
        assert not any(name == "osmosis_lease_held" for name, _ in m)
    finally:
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc)
    assert code == 0, err
    with pytest.raises(OSError):
        scrape(port)  # the endpoint stops with the launcher

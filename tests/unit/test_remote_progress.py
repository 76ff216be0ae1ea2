"""Live progress of remote jobs never fails or slows a run: a Flink REST API that refuses or hangs gives no counts.

The counts themselves are tested against the real Flink cluster (tests/integration/test_cluster_progress.py);
here the REST API is a port nothing listens on, or a socket that accepts and never answers.
"""
from __future__ import annotations

import socket
import time

import pytest

from osmosis_beam.runners.flink import _varint
from osmosis_beam.sync.job import PROGRESS_DEADLINE, PROGRESS_EVERY, JobRunner


class _RunningResult:
    """What a submitted job's result offers here: an id and a state; its metrics are not there yet."""

    state = "RUNNING"

    def job_id(self) -> str:
        return "osmosis-orders-20240101t000000-0abc_2f1c0000-0000-4000-8000-000000000000"

    def metrics(self):
        raise RuntimeError("no metrics while the job runs")


def _job(master: str) -> JobRunner:
    return JobRunner("flink", {"flink_master": master, "job_endpoint": "localhost:1"}, [], pipeline_id="orders")


def test_a_refused_rest_api_gives_the_job_state_only():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    job = _job(f"localhost:{port}")
    started = time.monotonic()
    assert job.running_counts(_RunningResult()) == {"job_state": "RUNNING"}
    assert time.monotonic() - started < PROGRESS_DEADLINE


def test_a_hanging_rest_api_is_given_up_after_the_deadline_and_not_asked_again_at_once():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # accepts connections (the kernel does), never answers
        job = _job(f"localhost:{server.getsockname()[1]}")
        started = time.monotonic()
        assert job.running_counts(_RunningResult()) == {"job_state": "RUNNING"}
        took = time.monotonic() - started
        assert PROGRESS_DEADLINE * 0.9 <= took < PROGRESS_DEADLINE + 2, took
        # A terminal redraws twice a second: the next look within PROGRESS_EVERY reuses the last answer.
        again = time.monotonic()
        assert job.running_counts(_RunningResult()) == {"job_state": "RUNNING"}
        assert time.monotonic() - again < min(1.0, PROGRESS_EVERY)


@pytest.mark.parametrize("payload, value", [(b"\x00", 0), (b"\x1e", 30), (b"\xc8\x01", 200),
                                            (b"\x80\xa4\xa7\xda\x06", 1_800_000_000),
                                            (b"\xff" * 9 + b"\x01", -1)])
def test_sum_int64_payloads(payload, value):
    # Payloads as Flink's REST API returned them for the osmosis counters (base64-decoded), and -1.
    assert _varint(payload) == value


def test_a_refused_spark_ui_gives_the_job_state_only():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    job = JobRunner("spark", {"job_endpoint": "localhost:1", "spark_ui": f"localhost:{port}"}, [], pipeline_id="orders")
    assert job.progress_source(_options("spark", spark_ui=f"localhost:{port}")).startswith(
        f"the Spark driver's REST API at http://localhost:{port}")
    started = time.monotonic()
    assert job.running_counts(_RunningResult()) == {"job_state": "RUNNING"}
    assert time.monotonic() - started < PROGRESS_DEADLINE


def _options(runner: str, **extra):
    from osmosis_beam.runners.options import pipeline_options

    return pipeline_options(runner, {"job_endpoint": "localhost:8099", "environment_type": "EXTERNAL",
                                     "environment_config": "localhost:50000", **extra})


def test_spark_ui_option_is_checked_and_kept_out_of_beams_options():
    from osmosis_beam.core.errors import ConfigError
    from osmosis_beam.runners.spark import spark_ui_url

    assert "spark_ui" not in _options("spark", spark_ui="driver:4041").get_all_options(retain_unknown_options=True)
    assert spark_ui_url({"job_endpoint": "driver:8099", "spark_ui": "driver:4041"}) == "http://driver:4041"
    assert spark_ui_url({"job_endpoint": "driver:8099"}) == "http://driver:4040"  # the job server is the driver
    with pytest.raises(ConfigError, match="spark_ui: only for the spark runner"):
        _options("flink", spark_ui="driver:4041")
    with pytest.raises(ConfigError, match="spark_ui: must be host:port"):
        _options("spark", spark_ui="driver 4041")


def test_spark_counters_from_the_accumulators_text():
    from osmosis_beam.runners.spark import parse_counters

    # As the Spark driver's REST API showed Beam.Metrics mid-run (abridged: a system counter, then ours).
    text = ("MetricQueryResults(Counters(ref_PCollection_PCollection_7:beam:metric:ptransform_execution_time:total_msecs:v1 "
            "{PTRANSFORM=fn/read/ref_PCollection_PCollection_7:0}: 0, ref_PCollection_PCollection_8/SplitAndSize0:"
            "beam:metric:user:sum_int64:v1 {NAMESPACE=osmosis, NAME=records_read, PTRANSFORM=ref_AppliedPTransform_Read"
            "-window-Pa_17/ProcessSizedElementsAndRestrictions0}: 170, x:beam:metric:user:sum_int64:v1 {NAMESPACE=osmosis, "
            "NAME=dead_letter, PTRANSFORM=a}: 2, y:beam:metric:user:sum_int64:v1 {NAMESPACE=osmosis, NAME=dead_letter, "
            "PTRANSFORM=b}: 3, z:beam:metric:user:sum_int64:v1 {NAMESPACE=theirs, NAME=records_read, PTRANSFORM=c}: 9))")
    assert parse_counters(text, "osmosis") == {"records_read": 170, "dead_letter": 5}

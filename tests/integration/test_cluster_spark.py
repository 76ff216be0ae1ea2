"""The same pipelines on a real standalone Spark cluster (a master + two one-core workers on loopback) and on direct.

The session's ``spark_cluster`` (tests/conftest.py, tests/services/spark_cluster.py) is started once per
session. The pipelines are the Flink tests' (tests/integration/cluster_support.py); every run goes through
the CLI the way a user runs it::

    osmosis run P.yaml --runner spark -- --job_endpoint=localhost:JOBPORT --spark_master_url=spark://127.0.0.1:PORT \
        --environment_type=LOOPBACK --job_timeout=200s

Beam's Spark job server is the Spark driver; each job gets executors on both workers, which hand bundles to
the SDK worker in the launcher (LOOPBACK; no Docker here). Each Spark job costs 30-60 s here (the job server
stages its classpath to the executors), so there are three.
"""
from __future__ import annotations

import pytest

from tests.integration.cluster_support import (
    same_postgres_to_jsonl_with_dead_letters,
    same_postgres_upsert,
    same_rss_to_jsonl,
)

LIMIT = "200s"  # job_timeout of every Spark job here

# One xdist worker runs every test on the Spark cluster, so the session starts it once (pytest.ini).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.xdist_group("spark_cluster")]


def spark_args(cluster) -> list[str]:
    return ["--runner", "spark", "--", f"--job_endpoint={cluster.job_endpoint}",
            f"--spark_master_url={cluster.master_url}", "--environment_type=LOOPBACK", f"--job_timeout={LIMIT}"]


def assert_executors_on_both_workers(cluster, app_id: str) -> None:
    """From the master's JSON API and the workers: the application ran an executor on each worker, and each
    executor ran tasks (its log says so)."""
    app = cluster.wait_finished(app_id)
    assert app["state"] == "FINISHED", app
    assert app["cores"] == 2, app
    executors = cluster.executor_logs(app_id)
    assert set(executors) == {"w1", "w2"}, executors
    for worker, log in executors.items():
        assert "Finished task" in log, (worker, log[-2000:])


def test_postgres_upsert_gives_the_same_table_on_direct_and_spark(tmp_path, pg_dsn, spark_cluster):
    before = set(spark_cluster.apps())
    same_postgres_upsert(tmp_path, pg_dsn, spark_args(spark_cluster))
    assert_executors_on_both_workers(spark_cluster, spark_cluster.new_app(before))


def test_postgres_to_jsonl_with_dead_letters_matches_direct(tmp_path, pg_dsn, spark_cluster):
    same_postgres_to_jsonl_with_dead_letters(tmp_path, pg_dsn, spark_args(spark_cluster))


def test_rss_to_jsonl_matches_direct(tmp_path, feed_server, spark_cluster):
    same_rss_to_jsonl(tmp_path, feed_server, spark_args(spark_cluster))

"""Live progress of runs on the real Flink and Spark clusters (issue 13, item 1): piped, a line every second.

One slow PostgreSQL run per case: a server-side function sleeps per row (``pg_sleep``), so the read takes a
few seconds while the job runs on the session's cluster (tests/services/flink_cluster.py, spark_cluster.py).

- LOOPBACK workers (Spark; Flink LOOPBACK is the same in-process counting, tested on the portable job service): the SDK
  workers run in the launcher, which counts as they read.
- EXTERNAL workers (a Beam worker pool process of its own): the launcher counts nothing itself; the counts
  come from the cluster's REST API, where each finished bundle's Beam counters arrive: Flink's
  (``/jobs/<id>/accumulators``) and the Spark driver's web UI (``/api/v1/applications/<app>/stages``). A
  batch job's read task is one bundle, so the rows are spread unevenly over the two sub-windows: the first
  task to finish shows its counts while the other still reads.

Run as a user does::

    osmosis --log-format json run slow.yaml --progress-every 1s --runner flink -- --flink_master=... \
        --environment_type=EXTERNAL --environment_config=localhost:POOL
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cluster_support import ROOT, osmosis, write_yaml
from tests.integration.pg_support import execute
from tests.services.java import free_port, wait_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

LIMIT = "200s"  # job_timeout of every job here


def flink_args(cluster, *environment: str) -> list[str]:
    return ["--runner", "flink", "--", f"--flink_master={cluster.master}", f"--job_endpoint={cluster.job_endpoint}",
            "--parallelism=2", *(environment or ("--environment_type=LOOPBACK",)), f"--job_timeout={LIMIT}"]


def spark_args(cluster, *environment: str) -> list[str]:
    return ["--runner", "spark", "--", f"--job_endpoint={cluster.job_endpoint}",
            f"--spark_master_url={cluster.master_url}", *(environment or ("--environment_type=LOOPBACK",)),
            f"--job_timeout={LIMIT}"]


def slow_orders(tmp_path: Path, dsn: str, offsets: list[int], span: int, sleep: float) -> Path:
    """Table ``orders`` with one row at each offset (seconds) from ``span`` s ago, read through a query that
    sleeps ``sleep`` s per row, in two sub-windows of [span s ago, now); the pipeline's YAML."""
    start = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=span)).replace(microsecond=0)
    execute(
        dsn,
        "CREATE TABLE orders (id int PRIMARY KEY, total numeric, updated_at timestamptz NOT NULL)",
        "CREATE INDEX ON orders (updated_at)",
        f"CREATE FUNCTION slow(x int) RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN PERFORM pg_sleep({sleep}); "
        "RETURN x; END $$",
    )
    execute(dsn, "INSERT INTO orders SELECT i - 1, i * 1.5, %s::timestamptz + o * interval '1 second' "
                 "FROM unnest(%s::int[]) WITH ORDINALITY AS t(o, i)", args=(start.isoformat(), offsets))
    return write_yaml(tmp_path / "slow.yaml", {
        "id": "slow_orders",
        "source": {"type": "postgres", "dsn": "${PG_DSN}", "query": "SELECT id, slow(id) AS n, total, updated_at FROM orders",
                   "fetch_size": 25},
        "incremental": {"cursor_field": "updated_at", "start": start.isoformat(), "safety_lag": "0s"},
        # The typed path: on the zero-decode path a slow query's rows reach the worker in one burst at the end.
        "read": {"splits": 2, "batch_size": 25, "path": "typed"},
        "sink": {"type": "jsonl", "path": str(tmp_path / "out")},
    })


def progress_events(stderr: str) -> list[dict]:
    events = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "progress":
                events.append(event)
    return events


def run_with_progress(home: Path, path: Path, dsn: str, cluster_args: list[str]) -> tuple[dict, list[dict]]:
    done = osmosis(home, "--log-format", "json", "-v", "run", path, "--progress-every", "1s", *cluster_args,
                   env={"PG_DSN": dsn})
    assert done["rc"] == 0, done["stderr"][-4000:]
    # The summary is the last line of stdout (``osmosis`` parses only that line).
    assert done["status"] == "succeeded", done
    return done, progress_events(done["stderr"])


def assert_counts_grew_while_running(summary: dict, progress: list[dict], total: int) -> list[dict]:
    """Progress lines counted the records while the job ran, monotone, with the window share and an ETA."""
    assert summary["records_read"] == summary["records_written"] == total
    assert progress, "no progress line"
    for e in progress:
        assert e["pipeline"] == "slow_orders" and e["run_id"] == summary["run_id"]
        assert {"records_read", "records_written", "records_per_second", "elapsed_seconds", "share", "eta_seconds"} <= set(e)
    reads = [e["records_read"] for e in progress]
    shares = [e["share"] for e in progress]
    assert reads == sorted(reads) and shares == sorted(shares), progress
    moving = [e for e in progress if 0 < e["records_read"] < total]
    assert moving, progress  # seen while the job was still reading, not only at its end
    assert all(0 < e["share"] < 1 and e["eta_seconds"] is not None and e["records_per_second"] > 0 for e in moving), moving
    return moving


# -- LOOPBACK: the SDK workers run in the launcher ---------------------------------------------------------------
EVEN_ROWS = 600


def even_pipeline(tmp_path: Path, dsn: str) -> Path:
    # 600 rows, one every 2 s over the last 20 minutes; 10 ms each: about 3 s per sub-window, side by side.
    return slow_orders(tmp_path, dsn, [2 * i for i in range(EVEN_ROWS)], span=1200, sleep=0.01)


def assert_share_tracks_the_records(moving: list[dict]) -> None:
    # Rows are spread evenly, so the share of the window read follows the share of the rows read.
    for e in moving:
        assert abs(e["share"] - e["records_read"] / EVEN_ROWS) < 0.15, e


@pytest.mark.xdist_group("spark_cluster")  # with the other tests on this cluster (pytest.ini)
def test_spark_loopback_progress_counts_while_the_job_runs(tmp_path, home, pg_dsn, spark_cluster):
    summary, progress = run_with_progress(home, even_pipeline(tmp_path, pg_dsn), pg_dsn, spark_args(spark_cluster))
    moving = assert_counts_grew_while_running(summary, progress, EVEN_ROWS)
    assert len({e["records_read"] for e in moving}) >= 2, moving
    assert_share_tracks_the_records(moving)


# -- EXTERNAL workers on Flink: the counts come from Flink's REST API ---------------------------------------------
# Beam's worker pool (``python -m apache_beam.runners.worker.worker_pool_main``) starts each worker as a process
# and keeps it by the worker id the runner gives. Both TaskManagers (or executors) ask for id "1-1" (Beam numbers
# workers per JVM), so when the first releases its worker, the pool may stop the other's: the job then fails with
# "CANCELLED: client cancelled" as the first read task ends (2 of 4 Flink runs here, --environment_cache_millis
# or not). In production each TaskManager has a pool of its own; here one pool serves both, so it runs its
# workers as threads (the pool's use_process=False), which a stop leaves alone. They are still outside the
# launcher's process, which is what these tests are about.
POOL = ("import logging, sys, time\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer as Pool\n"
        "address, server = Pool.start(use_process=False, port=int(sys.argv[1]))\n"
        "print('worker pool at', address, flush=True)\n"
        "time.sleep(10 ** 9)\n")


@pytest.fixture
def worker_pool(tmp_path, pg_dsn):
    """Beam's Python SDK worker pool in a process of its own (``--environment_type=EXTERNAL``), with the
    test database's DSN as ``PG_DSN`` (secrets reach workers by name only)."""
    port = free_port()
    log = tmp_path / "pool.log"
    env = dict(os.environ, PG_DSN=pg_dsn,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", POOL, str(port)], cwd=str(ROOT), env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port(port, None, 60, "the Beam worker pool")
        yield f"localhost:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


SMALL, BIG = 125, 275  # rows in the first and the second half of the window
ROW_SLEEP = 0.03  # s per row: about 4 s of reading for the small sub-window's task, 8 s for the big one's


def uneven_pipeline(tmp_path: Path, dsn: str) -> Path:
    # The last 20 minutes: 125 rows in its first 500 s (one every 4 s), 275 from 700 s on (one a second), so the
    # launch's few seconds past the 20 minutes never move a row across the middle.
    # One task's counts are on show while the other still reads, for at least 4 s whatever the order: side by
    # side (Flink), the big task reads 4 s longer; one after the other (Spark, when one executor registers well
    # before the other and takes both tasks in turn), the second task reads for at least the small one's 4 s.
    # The launcher asks the REST API every 2 s (PROGRESS_EVERY), so it sees them at least once.
    offsets = [4 * i for i in range(SMALL)] + [700 + i for i in range(BIG)]
    return slow_orders(tmp_path, dsn, offsets, span=1200, sleep=ROW_SLEEP)


def assert_one_task_reported_first(tmp_path: Path, summary: dict, progress: list[dict], where: str,
                                   first: set[int]) -> None:
    """The counts came from the cluster's REST API: one read task's rows (and half the window) while the
    other still read, then the whole run's; every row written once."""
    stderr = summary["stderr"]
    assert f"live progress comes from {where}" in stderr, stderr[-3000:]  # said once, at -v
    assert stderr.count("live progress comes from") == 1
    moving = assert_counts_grew_while_running(summary, progress, SMALL + BIG)
    [(read, written)] = {(e["records_read"], e["records_written"]) for e in moving}
    assert read == written and read in first, moving
    assert all(abs(e["share"] - 0.5) < 0.01 for e in moving), moving
    rows = sorted(json.loads(line)["id"] for f in (tmp_path / "out").rglob("*.jsonl") for line in f.read_text().splitlines())
    assert rows == list(range(SMALL + BIG))


@pytest.mark.xdist_group("flink_cluster")  # with the other tests on this cluster (pytest.ini)
def test_flink_external_workers_progress_comes_from_flinks_rest_api(tmp_path, home, pg_dsn, flink_cluster, worker_pool):
    args = flink_args(flink_cluster, "--environment_type=EXTERNAL", f"--environment_config={worker_pool}")
    summary, progress = run_with_progress(home, uneven_pipeline(tmp_path, pg_dsn), pg_dsn, args)
    # The two read tasks run side by side: the small sub-window's finishes first.
    assert_one_task_reported_first(tmp_path, summary, progress, "Flink's REST API", {SMALL})


@pytest.mark.xdist_group("spark_cluster")  # with the other tests on this cluster (pytest.ini)
def test_spark_external_workers_progress_comes_from_the_drivers_rest_api(tmp_path, home, pg_dsn, spark_cluster,
                                                                         worker_pool):
    args = spark_args(spark_cluster, "--environment_type=EXTERNAL", f"--environment_config={worker_pool}",
                      f"--spark_ui={spark_cluster.driver_ui}")
    summary, progress = run_with_progress(home, uneven_pipeline(tmp_path, pg_dsn), pg_dsn, args)
    # Spark may start the two read tasks apart (an executor comes later): either may report first.
    assert_one_task_reported_first(tmp_path, summary, progress, "the Spark driver's REST API", {SMALL, BIG})

"""Live progress of runs on the real Flink and Spark clusters (issue 13, item 1): piped, a line every second.

One slow PostgreSQL run per case: a server-side function sleeps per row (``pg_sleep``), so the read takes a
few seconds while the job runs on the session's cluster (tests/services/flink_cluster.py, spark_cluster.py).

- LOOPBACK workers (Spark; Flink LOOPBACK is the same in-process counting, tested on the portable job service): the SDK
  workers run in the launcher, which counts as they read.
- EXTERNAL workers (a Beam worker pool process of its own): the launcher counts nothing itself; the counts
  come from the cluster's REST API, where each finished bundle's Beam counters arrive: Flink's
  (``/jobs/<id>/accumulators``) and the Spark driver's web UI (``/api/v1/applications/<app>/stages``). A
  batch job's read task is one bundle, so the second sub-window's rows wait at a gate (an advisory lock the
  test holds) until the launcher has shown the first task's counts; then the test opens it.

Run as a user does::

    osmosis --log-format json run slow.yaml --progress-every 1s --runner flink -- --flink_master=... \
        --environment_type=EXTERNAL --environment_config=localhost:POOL
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from tests.integration.cluster_support import ROOT, osmosis, osmosis_watching, write_yaml
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


GATE_WAIT = 240  # seconds a gated row waits for the gate at most (never a hang)
GATE_LOCK = 4242  # the advisory lock the test holds while the gate is shut (closed_gate)


def slow_orders(tmp_path: Path, dsn: str, offsets: list[int], span: int, sleep: float,
                gated_from: int | None = None) -> Path:
    """Table ``orders`` with one row at each offset (seconds) from ``span`` s ago, read through a query that
    sleeps ``sleep`` s per row, in two sub-windows of [span s ago, now); the pipeline's YAML.

    With ``gated_from``, the rows from that id on also wait while the gate is shut (``closed_gate``).
    """
    start = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=span)).replace(microsecond=0)
    gate = "" if gated_from is None else (
        # An advisory lock, not a table: a STABLE function's queries see the read's snapshot, and a VOLATILE
        # one is evaluated for every row before the query's sort hands out the first.
        f"IF x >= {gated_from} THEN FOR i IN 1..{GATE_WAIT * 20} LOOP "
        f"IF pg_try_advisory_lock_shared({GATE_LOCK}) THEN PERFORM pg_advisory_unlock_shared({GATE_LOCK}); EXIT; "
        "END IF; PERFORM pg_sleep(0.05); END LOOP; END IF; ")
    execute(
        dsn,
        "CREATE TABLE orders (id int PRIMARY KEY, total numeric, updated_at timestamptz NOT NULL)",
        "CREATE INDEX ON orders (updated_at)",
        f"CREATE FUNCTION slow(x int) RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN {gate}"
        f"PERFORM pg_sleep({sleep}); RETURN x; END $$",
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


def run_with_progress(home: Path, path: Path, dsn: str, cluster_args: list[str],
                      open_gate_at: int | None = None) -> tuple[dict, list[dict]]:
    """Run the pipeline with a progress line every second; with ``open_gate_at``, open the gate
    (``slow_orders(gated_from=...)``) once a progress line shows that many records read, or after
    GATE_WAIT s (then the test's assertions say what was seen)."""
    args = ["--log-format", "json", "-v", "run", path, "--progress-every", "1s", *cluster_args]
    if open_gate_at is None:
        done = osmosis(home, *args, env={"PG_DSN": dsn})
    else:
        def seen(line: str) -> bool:
            return line.startswith("{") and json.loads(line).get("records_read") == open_gate_at

        with closed_gate(dsn) as open_gate:
            done = osmosis_watching(home, *args, env={"PG_DSN": dsn}, until=seen, then=open_gate, wait=GATE_WAIT)
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


SMALL, BIG = 50, 350  # rows in the first and the second half of the window


def uneven_pipeline(tmp_path: Path, dsn: str) -> Path:
    # The last 20 minutes: 50 rows in its first 500 s (one every 10 s), 350 from 700 s on (one a second), so the
    # launch's few seconds past the 20 minutes never move a row across the middle; 15 ms each. The second
    # half's rows wait at the gate, which the test opens once the launcher has shown the first half's counts:
    # whether the two read tasks start side by side or one after the other (on Spark, when one executor
    # registers long before the other), and however long a loaded machine takes to start them, the first
    # task's counts are on show while the second still reads.
    offsets = [10 * i for i in range(SMALL)] + [700 + i for i in range(BIG)]
    return slow_orders(tmp_path, dsn, offsets, span=1200, sleep=0.015, gated_from=SMALL)


@contextlib.contextmanager
def closed_gate(dsn: str):
    """Shut the gate (hold the advisory lock) until the block ends; yields the function that opens it."""
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK,))
        yield conn.close
    finally:
        conn.close()


def assert_one_task_reported_first(tmp_path: Path, summary: dict, progress: list[dict], where: str) -> None:
    """The counts came from the cluster's REST API: the first read task's rows (and half the window) while
    the other still read (held at the gate), then the whole run's; every row written once."""
    stderr = summary["stderr"]
    assert f"live progress comes from {where}" in stderr, stderr[-3000:]  # said once, at -v
    assert stderr.count("live progress comes from") == 1
    moving = assert_counts_grew_while_running(summary, progress, SMALL + BIG)
    [(read, written)] = {(e["records_read"], e["records_written"]) for e in moving}
    assert read == written == SMALL, moving
    assert all(abs(e["share"] - 0.5) < 0.01 for e in moving), moving
    rows = sorted(json.loads(line)["id"] for f in (tmp_path / "out").rglob("*.jsonl") for line in f.read_text().splitlines())
    assert rows == list(range(SMALL + BIG))


@pytest.mark.xdist_group("flink_cluster")  # with the other tests on this cluster (pytest.ini)
def test_flink_external_workers_progress_comes_from_flinks_rest_api(tmp_path, home, pg_dsn, flink_cluster, worker_pool):
    args = flink_args(flink_cluster, "--environment_type=EXTERNAL", f"--environment_config={worker_pool}")
    summary, progress = run_with_progress(home, uneven_pipeline(tmp_path, pg_dsn), pg_dsn, args, open_gate_at=SMALL)
    assert_one_task_reported_first(tmp_path, summary, progress, "Flink's REST API")


@pytest.mark.xdist_group("spark_cluster")  # with the other tests on this cluster (pytest.ini)
def test_spark_external_workers_progress_comes_from_the_drivers_rest_api(tmp_path, home, pg_dsn, spark_cluster,
                                                                         worker_pool):
    args = spark_args(spark_cluster, "--environment_type=EXTERNAL", f"--environment_config={worker_pool}",
                      f"--spark_ui={spark_cluster.driver_ui}")
    summary, progress = run_with_progress(home, uneven_pipeline(tmp_path, pg_dsn), pg_dsn, args, open_gate_at=SMALL)
    assert_one_task_reported_first(tmp_path, summary, progress, "the Spark driver's REST API")

"""PostgreSQL -> PostgreSQL upsert on ``direct`` and on a real Flink cluster (parallelism 2), side by side.

Reproduce (3M rows takes a long while on a 2-core machine; try ``--rows 200000`` first)::

    .venv/bin/python bench/cluster_upsert.py --rows 3000000

It starts a throwaway PostgreSQL cluster (or uses ``$OSMOSIS_TEST_PG_DSN``) and a Flink cluster on loopback
(tests/services/flink_cluster.py: a JobManager, two one-slot TaskManagers, Beam's Flink job server; LOOPBACK
SDK workers, i.e. the launcher process), generates an ``orders`` table and runs, each in its own process,
``osmosis run`` of one pipeline (postgres -> map step -> postgres upsert by ``id``, ``read.splits: 4``):

- ``direct``: the in-process runner;
- ``flink``: ``--runner flink`` with ``--parallelism=2``;
- the fixed cost of a job on each runner: the same pipeline over a 1-row table (process start, window,
  submission, job start and finish, commit), after one such job that warms the runner up (not counted), so
  ``rows/s net`` is ``rows / (wall - fixed)``.

Every run's output table is checked (row count and a checksum) against the source before a number is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.services.flink_cluster import FlinkCluster  # noqa: E402
from tests.services.postgres_server import PostgresServer  # noqa: E402

PY = sys.executable


def generate(dsn: str, table: str, rows: int) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, customer integer NOT NULL, status text NOT NULL, "
                    "total numeric(12,2) NOT NULL, updated_at timestamptz NOT NULL)")
        cur.execute(
            f"INSERT INTO {table} SELECT g, (g::bigint * 7919) %% 100000, (ARRAY['new','paid','shipped'])[1 + g %% 3], "
            "(g %% 100000) / 100.0, timestamptz '2024-01-01 00:00:00+00' + g * interval '10 milliseconds' "
            "FROM generate_series(1, %s) g", (rows,))
        cur.execute(f"VACUUM ANALYZE {table}")
    conn.close()


def checksum(dsn: str, table: str, cents: str = "total_cents") -> tuple[int, str]:
    """(rows, md5 over id:total:cents) of ``table``; ``cents`` is the SQL for the cents column."""
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*), md5(string_agg(id::text || ':' || total::text || ':' || ({cents})::text, ',' "
                    f"ORDER BY id)) FROM {table}")
        count, digest = cur.fetchone()
    conn.close()
    return count, digest


def pipeline(work: Path, source: str) -> Path:
    path = work / f"{source}.yaml"
    path.write_text(yaml.safe_dump({
        "id": f"bench_{source}",
        "source": {"type": "postgres", "dsn": "${PG_DSN}", "table": source, "primary_key": ["id"],
                   "fetch_size": 10000},
        "incremental": {"cursor_field": "updated_at", "start": "2024-01-01T00:00:00Z", "safety_lag": "0s"},
        "read": {"splits": 4, "batch_size": 5000},
        "steps": [{"map": {"total_cents": "int(total * 100)"}}],
        "sink": {"type": "postgres", "dsn": "${PG_DSN}", "table": "${OUT_TABLE}", "key": ["id"]},
    }, sort_keys=False))
    return path


def run(work: Path, path: Path, name: str, dsn: str, out_table: str, extra: list[str]) -> dict:
    home = work / f"home_{name}_{out_table}"
    cmd = [PY, str(ROOT / "bench" / "_measure.py"), "--", PY, "-m", "osmosis_beam.cli", "--home", str(home),
           "run", str(path), *extra]
    env = {**os.environ, "PG_DSN": dsn, "OUT_TABLE": out_table, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"{name} run failed:\n" + "\n".join(result["stderr_tail"]))
    summary = json.loads(result["stdout_tail"][-1])
    if summary.get("status") != "succeeded":
        raise SystemExit(f"{name} run did not succeed: {summary}")
    return {"wall": result["wall"], "peak_mb": result["peak_mb"], "written": summary["records_written"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--out", help="write the Markdown table to this file as well")
    args = parser.parse_args()
    server = PostgresServer(server_options={"shared_buffers": "256MB"})
    server.start()
    flink = FlinkCluster(taskmanagers=2, slots=1)
    results: dict[str, dict] = {}
    try:
        started = time.perf_counter()
        flink.start()
        cluster_start = time.perf_counter() - started
        dsn = server.create_database("bench_cluster")
        generate(dsn, "orders", args.rows)
        generate(dsn, "orders_one", 1)
        flink_args = ["--runner", "flink", "--", f"--flink_master={flink.master}", f"--job_endpoint={flink.job_endpoint}",
                      f"--parallelism={args.parallelism}", "--environment_type=LOOPBACK", "--job_timeout=3h"]
        want = checksum(dsn, "orders", "(total * 100)::bigint")
        with tempfile.TemporaryDirectory(prefix="osmosis-bench-") as tmp:
            work = Path(tmp)
            big, one = pipeline(work, "orders"), pipeline(work, "orders_one")
            # Interleaved: a slow phase of the shared machine hits both runners alike.
            for name, extra in (("direct", []), ("flink", flink_args)):
                # A first job warms the cluster up (class loading, JIT; on Flink the first job costs several times
                # the next one); not counted.
                print(f"{name}: warm-up (1 row) ...", file=sys.stderr)
                run(work, one, name, dsn, f"warm_{name}", extra)
                print(f"{name}: fixed cost (1 row) ...", file=sys.stderr)
                results[f"{name}_fixed"] = run(work, one, name, dsn, f"one_{name}", extra)
                print(f"{name}: {args.rows:,} rows ...", file=sys.stderr)
                results[name] = run(work, big, name, dsn, f"out_{name}", extra)
                got = checksum(dsn, f"out_{name}")
                if got != want:
                    raise SystemExit(f"{name}: output table differs from the source: {got} != {want}")
    finally:
        flink.stop()
        server.stop()
    lines = ["| runner | rows | wall s | rows/s | fixed cost s (1 row) | rows/s net of the fixed cost | peak MB (launcher) | vs direct |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    base = args.rows / results["direct"]["wall"]
    for name in ("direct", "flink"):
        r, fixed = results[name], results[f"{name}_fixed"]["wall"]
        rate = args.rows / r["wall"]
        net = f"{args.rows / (r['wall'] - fixed):,.0f}" if r["wall"] > fixed else "-"
        label = name if name == "direct" else f"flink, parallelism {args.parallelism}"
        lines.append(f"| {label} | {args.rows:,} | {r['wall']:.1f} | {rate:,.0f} | {fixed:.1f} | {net} | "
                     f"{r['peak_mb']:.0f} | {rate / base:.2f}x |")
    header = (f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}; "
              f"Flink cluster start {cluster_start:.0f} s (not counted); command: "
              f"`.venv/bin/python bench/cluster_upsert.py --rows {args.rows} --parallelism {args.parallelism}`")
    table = "\n".join(lines)
    print(header)
    print(table)
    print(json.dumps(results), file=sys.stderr)
    if args.out:
        Path(args.out).write_text(header + "\n\n" + table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PostgreSQL -> JSONL throughput, side by side with two baselines on the same table.

Reproduce (takes a few minutes at 1M and 3M rows)::

    .venv/bin/python bench/pg_throughput.py --rows 1000000 3000000 --repeat 3

It starts a throwaway PostgreSQL cluster (or uses $OSMOSIS_TEST_PG_DSN), generates an ``events``
table (id, updated_at timestamptz, a few scalar columns, a small jsonb payload), and for each size runs,
each in its own process, measuring wall time and peak RSS:

- ``copy``: ``COPY (SELECT row_to_json(t) ...) TO STDOUT`` into a file (the physical limit);
- ``psycopg2``: a plain named cursor writing JSON lines;
- ``osmosis``: ``osmosis run`` of a postgres -> jsonl pipeline on the DirectRunner (in-process runner);
- ``osmosis (no change)``: the same pipeline again, with no new rows.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.services.postgres_server import PostgresServer  # noqa: E402

PY = sys.executable


def generate(dsn: str, rows: int) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS events")
        cur.execute(
            """
            CREATE TABLE events (
                id bigserial PRIMARY KEY,
                updated_at timestamptz NOT NULL,
                user_id integer NOT NULL,
                kind text NOT NULL,
                amount numeric(12, 2) NOT NULL,
                active boolean NOT NULL,
                payload jsonb NOT NULL
            )
            """
        )
        cur.execute(
            """
            INSERT INTO events (updated_at, user_id, kind, amount, active, payload)
            SELECT timestamptz '2024-01-01 00:00:00+00' + (g * interval '10 milliseconds'),
                   ((g::bigint * 7919) %% 100000)::integer,
                   (ARRAY['click','view','purchase','signup'])[1 + g %% 4],
                   ((g %% 100000) / 100.0)::numeric(12,2),
                   g %% 3 = 0,
                   jsonb_build_object('sku', 'SKU-' || (g %% 5000), 'qty', g %% 10, 'tags', jsonb_build_array('a', 'b'))
            FROM generate_series(1, %s) AS g
            """,
            (rows,),
        )
        cur.execute("CREATE INDEX events_updated_at ON events (updated_at)")
        cur.execute("VACUUM ANALYZE events")
    conn.close()


def measure(cmd: list[str], env: dict | None = None) -> dict:
    out = subprocess.run([PY, str(ROOT / "bench" / "_measure.py"), "--", *cmd], capture_output=True, text=True,
                         env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n" + "\n".join(result["stderr_tail"]))
    return result


def pipeline_yaml(work: Path, dsn: str) -> Path:
    path = work / "events.yaml"
    path.write_text(
        "id: events\n"
        "source:\n"
        "  type: postgres\n"
        "  dsn: ${BENCH_PG_DSN}\n"
        "  table: events\n"
        "  primary_key: [id]\n"
        "  fetch_size: 10000\n"
        "incremental:\n"
        "  cursor_field: updated_at\n"
        "  safety_lag: 0s\n"
        "read:\n"
        "  splits: 1\n"
        "  batch_size: 5000\n"
        "sink:\n"
        "  type: jsonl\n"
        f"  path: {work / 'out'}\n"
    )
    return path


def _median(samples: list[dict]) -> dict:
    """The sample with the median wall time (the machine is shared: single runs vary by +-15%)."""
    ordered = sorted(samples, key=lambda r: r["wall"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["walls"] = [round(r["wall"], 2) for r in samples]
    chosen["peak_mb"] = max(r["peak_mb"] for r in samples)
    return chosen


def run_size(dsn: str, rows: int, work: Path, repeat: int) -> dict:
    generate(dsn, rows)
    yaml_path = pipeline_yaml(work, dsn)
    home = work / "home"
    env = dict(os.environ, BENCH_PG_DSN=dsn)
    osmosis = [PY, "-m", "osmosis_beam.cli", "--home", str(home), "run", str(yaml_path)]
    samples: dict[str, list[dict]] = {"copy": [], "psycopg2": [], "osmosis": [], "osmosis_nochange": []}
    for _ in range(repeat):  # interleaved, so a slow phase of the machine hits every method alike
        samples["copy"].append(measure([PY, str(ROOT / "bench" / "baselines.py"), "copy", dsn, str(work / "copy.jsonl")]))
        samples["psycopg2"].append(
            measure([PY, str(ROOT / "bench" / "baselines.py"), "psycopg2", dsn, str(work / "plain.jsonl")])
        )
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work / "out", ignore_errors=True)
        full = measure(osmosis, env)
        summary = json.loads(full["stdout_tail"][0])
        if summary["records_written"] != rows:
            raise SystemExit(f"osmosis wrote {summary['records_written']} rows, expected {rows}")
        samples["osmosis"].append(full)
        samples["osmosis_nochange"].append(measure(osmosis, env))
        for path in (work / "copy.jsonl", work / "plain.jsonl"):
            path.unlink(missing_ok=True)
        shutil.rmtree(work / "out", ignore_errors=True)
    results = {name: _median(runs) for name, runs in samples.items()}
    for name in ("copy", "psycopg2", "osmosis"):
        results[name]["rows_per_s"] = rows / results[name]["wall"]
    return results


def report(all_results: dict[int, dict]) -> str:
    lines = [
        "| rows | method | rows/s (median) | wall s (median) | wall s (each run) | peak MB | osmosis / method |",
        "|---:|---|---:|---:|---|---:|---:|",
    ]
    for rows, res in all_results.items():
        ours = res["osmosis"]["rows_per_s"]
        for name in ("copy", "psycopg2", "osmosis"):
            r = res[name]
            ratio = ours / r["rows_per_s"]
            each = ", ".join(f"{w:.2f}" for w in r["walls"])
            lines.append(
                f"| {rows:,} | {name} | {r['rows_per_s']:,.0f} | {r['wall']:.2f} | {each} | {r['peak_mb']:.0f} | {ratio:.2f}x |"
            )
        nc = res["osmosis_nochange"]
        each = ", ".join(f"{w:.2f}" for w in nc["walls"])
        lines.append(f"| {rows:,} | osmosis, no new rows | - | {nc['wall']:.2f} | {each} | {nc['peak_mb']:.0f} | - |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the median is reported")
    parser.add_argument("--out", help="write the Markdown table to this file as well")
    args = parser.parse_args()
    server = PostgresServer(server_options={"shared_buffers": "256MB"})
    server.start()
    try:
        dsn = server.create_database("bench")
        all_results = {}
        with tempfile.TemporaryDirectory(prefix="osmosis-bench-") as tmp:
            for rows in args.rows:
                print(f"running {rows:,} rows ...", file=sys.stderr)
                all_results[rows] = run_size(dsn, rows, Path(tmp), args.repeat)
        table = report(all_results)
    finally:
        server.stop()
    header = (f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"{time.strftime('%Y-%m-%d')}; command: `.venv/bin/python bench/pg_throughput.py --rows "
              f"{' '.join(map(str, args.rows))} --repeat {args.repeat}`")
    print(header)
    print(table)
    print(json.dumps({str(k): v for k, v in all_results.items()}, default=str), file=sys.stderr)
    if args.out:
        Path(args.out).write_text(header + "\n\n" + table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The pipelines the cluster tests run on ``direct`` and on a real cluster, and what they compare.

Each ``same_*`` function writes one pipeline YAML, runs it with ``osmosis run`` (a subprocess, the way a user
runs it) on ``direct`` and with ``cluster_args`` (``--runner flink -- --flink_master=...``), and asserts
that both runs give the same output and the right counts. tests/integration/test_cluster_flink.py and
test_cluster_spark.py call them with their cluster's arguments::

    same_postgres_upsert(tmp_path, pg_dsn, ["--runner", "spark", "--", "--job_endpoint=localhost:8099", ...])
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import psycopg2
import yaml

from osmosis_beam.io.files.jsonl import read_jsonl_dir
from osmosis_beam.state.sqlite import SQLiteStateStore

ROOT = Path(__file__).resolve().parents[2]
SYNTH = "tests.integration.synthetic:SyntheticConnector"


def _summary(rc: int, stdout: str, stderr: str) -> dict:
    lines = stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return {"rc": rc, "stderr": stderr, **summary}


def osmosis(home: Path, *args, env: dict | None = None, timeout: float = 280) -> dict:
    """``osmosis run ...`` in a subprocess; the run summary (last stdout line) with the exit code."""
    done = subprocess.run([sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout,
                          cwd=str(ROOT))
    return _summary(done.returncode, done.stdout, done.stderr)


def osmosis_watching(home: Path, *args, env: dict | None = None, until: Callable[[str], bool],
                     then: Callable[[], None], wait: float, timeout: float = 280) -> dict:
    """``osmosis ...`` in a subprocess that calls ``then()`` once, as soon as a stderr line satisfies
    ``until`` or after ``wait`` seconds, whichever comes first; the run summary, as ``osmosis`` gives it."""
    proc = subprocess.Popen([sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, cwd=str(ROOT))
    stderr: list[str] = []
    stdout: list[str] = []
    seen = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:
            stderr.append(line)
            if not seen.is_set() and until(line):
                seen.set()

    readers = [threading.Thread(target=read_stderr, daemon=True),
               threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        seen.wait(wait)
        then()
        proc.wait(timeout=timeout)
        for reader in readers:
            reader.join(10)
        return _summary(proc.returncode, "".join(stdout), "".join(stderr))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def osmosis_side_by_side(*calls: tuple[Path, list, dict], timeout: float = 280) -> list[dict]:
    """Several ``osmosis`` commands at once, each ``(home, args, env)``; their summaries in the same order.

    The direct run and the cluster run of a comparison go side by side: the cluster run mostly waits.
    """
    procs = [subprocess.Popen([sys.executable, "-m", "osmosis_beam.cli", "--home", str(home), *map(str, args)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **(env or {})}, cwd=str(ROOT)) for home, args, env in calls]
    out = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=timeout)
            out.append(_summary(proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return out


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def rows(dsn: str, query: str) -> list[tuple]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(query)
        out = cur.fetchall()
    conn.close()
    return out


def make_orders(dsn: str, count: int) -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE orders (id int PRIMARY KEY, status text, total numeric(10,2), "
                    "updated_at timestamptz NOT NULL)")
        cur.execute(
            "INSERT INTO orders SELECT i, CASE WHEN i %% 7 = 0 THEN 'draft' ELSE 'paid' END, i * 1.25, "
            "timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second' FROM generate_series(1, %s) i", (count,))
    conn.close()


def runs(home: Path, pid: str):
    """The pipeline's runs in history, oldest first."""
    return list(reversed(SQLiteStateStore(home / "state.db").list_runs(pid)))


def runner_name(cluster_args: list[str]) -> str:
    return cluster_args[cluster_args.index("--runner") + 1]


# -- PostgreSQL -> steps -> PostgreSQL upsert ------------------------------------------------------------------
def same_postgres_upsert(tmp_path: Path, pg_dsn: str, cluster_args: list[str]) -> None:
    make_orders(pg_dsn, 400)
    path = write_yaml(tmp_path / "orders.yaml", {
        "id": "orders",
        "source": {"type": "postgres", "dsn": "${PG_DSN}", "table": "orders", "primary_key": ["id"]},
        "incremental": {"cursor_field": "updated_at", "start": "2024-01-01T00:00:00Z", "safety_lag": "0s"},
        "read": {"splits": 4, "batch_size": 50},
        "steps": [{"filter": "status != 'draft'"}, {"map": {"total_eur": "round(total * Decimal('0.92'), 2)"}}],
        "sink": {"type": "postgres", "dsn": "${PG_DSN}", "table": "${OUT_TABLE}", "key": ["id"]},
    })
    env = {"PG_DSN": pg_dsn}
    name = runner_name(cluster_args)
    direct, remote = osmosis_side_by_side(
        (tmp_path / "home_direct", ["run", path], {**env, "OUT_TABLE": "out_direct"}),
        (tmp_path / "home_remote", ["run", path, *cluster_args], {**env, "OUT_TABLE": "out_remote"}))
    assert direct["rc"] == 0, direct["stderr"][-3000:]
    assert remote["rc"] == 0, remote["stderr"][-3000:]
    assert remote["status"] == "succeeded"
    assert [r.runner for r in runs(tmp_path / "home_remote", "orders")] == [name]
    expected = 400 - 400 // 7
    for summary in (direct, remote):
        assert (summary["records_read"], summary["records_written"], summary["dead_letter"]) == (400, expected, 0)
    columns = "id, status, total, total_eur, updated_at"
    table = rows(pg_dsn, f"SELECT {columns} FROM out_direct ORDER BY id")
    assert len(table) == expected
    assert rows(pg_dsn, f"SELECT {columns} FROM out_remote ORDER BY id") == table


# -- PostgreSQL -> JSONL, with dead letters ---------------------------------------------------------------------
def same_postgres_to_jsonl_with_dead_letters(tmp_path: Path, pg_dsn: str, cluster_args: list[str]) -> None:
    make_orders(pg_dsn, 300)
    path = write_yaml(tmp_path / "orders_files.yaml", {
        "id": "orders_files",
        "source": {"type": "postgres", "dsn": "${PG_DSN}", "table": "orders"},
        "incremental": {"cursor_field": "updated_at", "start": "2024-01-01T00:00:00Z", "safety_lag": "0s"},
        "read": {"splits": 4, "batch_size": 40},
        # every 20th row divides by zero: 15 dead letters (5%, inside the default dead-letter budget), the rest written
        "steps": [{"map": {"share": "round(total / (id % 20), 2)"}}],
        "sink": {"type": "jsonl", "path": "${OUT_PATH}"},
        "dead_letter": "${DEAD_PATH}",
    })
    results = {}
    names = (("direct", []), ("remote", cluster_args))
    summaries = osmosis_side_by_side(*(
        (tmp_path / f"home_{name}", ["run", path, *extra],
         {"PG_DSN": pg_dsn, "OUT_PATH": str(tmp_path / f"out_{name}"), "DEAD_PATH": str(tmp_path / f"dead_{name}")})
        for name, extra in names))
    for (name, _), summary in zip(names, summaries):
        assert summary["rc"] == 0, summary["stderr"][-3000:]
        assert (summary["records_read"], summary["records_written"], summary["dead_letter"]) == (300, 285, 15), summary
        out = sorted(read_jsonl_dir(tmp_path / f"out_{name}"), key=lambda r: r["id"])
        dead = list(read_jsonl_dir(tmp_path / f"dead_{name}"))
        assert all("division" in str(d.get("error", "")).lower() or "zero" in str(d.get("error", "")).lower()
                   for d in dead), dead[:2]
        results[name] = (out, sorted(json.dumps(d.get("record", d), sort_keys=True, default=str) for d in dead))
        [run] = runs(tmp_path / f"home_{name}", "orders_files")
        assert (run.status, run.records_written, run.dead_letter) == ("succeeded", 285, 15)
    assert len(results["remote"][0]) == 285 and len(results["remote"][1]) == 15
    assert results["remote"] == results["direct"]


# -- RSS -> JSONL ------------------------------------------------------------------------------------------------
def same_rss_to_jsonl(tmp_path: Path, feed_server, cluster_args: list[str]) -> None:
    items = "".join(
        f"<item><title>Story {i}</title><link>http://127.0.0.1/news/{i}</link><guid>news-{i}</guid>"
        f"<pubDate>Mon, 0{1 + i // 10} Jan 2024 {i % 10:02d}:00:00 GMT</pubDate><description>Body {i}</description></item>"
        for i in range(25))
    feed_server.set("/feed.xml", f'<?xml version="1.0"?><rss version="2.0"><channel><title>Loopback</title>{items}'
                    "</channel></rss>", content_type="application/rss+xml")
    path = write_yaml(tmp_path / "news.yaml", {
        "id": "news",
        "source": {"type": "rss", "url": feed_server.url("/feed.xml"), "timeout": "10s"},
        "incremental": {"cursor_field": "published", "start": "2024-01-01T00:00:00Z", "lookback": "0s", "safety_lag": "0s"},
        "sink": {"type": "jsonl", "path": "${OUT_PATH}"},
    })
    outputs = {}
    names = (("direct", []), ("remote", cluster_args))
    summaries = osmosis_side_by_side(*(
        (tmp_path / f"home_{name}", ["run", path, *extra], {"OUT_PATH": str(tmp_path / f"out_{name}")})
        for name, extra in names))
    for (name, _), summary in zip(names, summaries):
        assert summary["rc"] == 0, summary["stderr"][-3000:]
        assert (summary["status"], summary["records_written"]) == ("succeeded", 25)
        outputs[name] = sorted(read_jsonl_dir(tmp_path / f"out_{name}"), key=lambda r: json.dumps(r, sort_keys=True))
    assert outputs["remote"] == outputs["direct"] and len(outputs["remote"]) == 25

"""Every route of issue 14 against its baseline, in one run: whole processes, interleaved, median of N.

Reproduce (starts its own throwaway PostgreSQL cluster and CongoDB, or uses $OSMOSIS_TEST_PG_DSN and
$OSMOSIS_TEST_MONGO_URI; serves the RSS feed on loopback)::

    python bench/routes.py --rows 1000000 3000000 --repeat 3 --out bench/results.md
    python bench/routes.py --rows 200000 --routes pg_jsonl pg_pg       # a subset, smaller

Each method runs as its own process, from start to finish (for osmosis: to the committed watermark),
measured by ``bench/_measure.py`` (wall time, peak RSS of the process). For each size the methods of
a route run one after the other, ``--repeat`` times, interleaved, so a slow phase of this shared machine
hits a route and its baseline alike; the tables show the median run and each run.

Routes and baselines:

- ``pg_jsonl``: ``osmosis run`` postgres -> jsonl, no steps (the zero-decode path), with the pipeline defaults
  (4 splits, which the direct runner reads on one thread per core: two connections, so two server backends, at
  once; the baseline uses one) vs
  ``psql \\copy (SELECT row_to_json(t) FROM events t ORDER BY updated_at) TO file``.
- ``pg_jsonl_1``: the same pipeline read in 1 split (one connection, one thread), same baseline.
- ``pg_jsonl_typed``: the same with a Python ``map`` step (the typed path) vs a plain psycopg2 loop.
- ``pg_jsonl_filter``: the same with a ``filter`` step the source does in its query (the zero-decode path) vs
  ``psql \\copy`` of ``row_to_json`` with the same condition in its WHERE; ``osmosis_typed`` runs the same
  pipeline with ``read.path: typed`` (the filter in Python), interleaved, for the pushdown's own gain.
- ``pg_parquet``: postgres -> parquet vs dlt ``sql_table`` (pyarrow backend) into Parquet, run from the
  benchmark's own virtualenv (``--dlt-python``; dlt is not a dependency of the package).
- ``pg_pg_upsert``/``pg_pg_append``: postgres -> postgres vs ``psql \\copy ... to stdout | psql \\copy ... from stdin``.
- ``mongo_jsonl``: mongodb -> jsonl vs a pymongo loop writing ``bson.json_util`` lines (rows / 10 documents).
- ``rss``: a feed of ``--rss-items`` entries -> jsonl vs ``requests`` + ``feedparser`` + a JSON dump.
- ``launcher``: ``osmosis launch --once`` over 200 pipelines with nothing new (no baseline: < 10 s).
- ``nochange``: ``osmosis run`` with nothing new (no baseline: < 0.5 s).
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

from bench.pg_throughput import generate  # noqa: E402
from tests.services.postgres_server import PostgresServer  # noqa: E402

PY = sys.executable
PG_ROUTES = ("pg_jsonl", "pg_jsonl_1", "pg_jsonl_filter", "pg_jsonl_typed", "pg_parquet", "pg_pg_upsert", "pg_pg_append")
BENCH = ROOT / "bench"
TARGETS = {  # route -> (baseline label, target ratio: baseline time / osmosis time, at least)
    "pg_jsonl": ("psql COPY row_to_json", 0.6),
    "pg_jsonl_1": ("psql COPY row_to_json", 0.6),
    "pg_jsonl_typed": ("plain psycopg2 loop", 2.0),
    "pg_jsonl_filter": ("psql COPY row_to_json WHERE <the filter>", 0.6),
    "pg_parquet": ("dlt sql_table (pyarrow) -> parquet", 3.0),
    "pg_pg_upsert": ("psql COPY TO | psql COPY FROM", 0.5),
    "pg_pg_append": ("psql COPY TO | psql COPY FROM", 0.5),
    "mongo_jsonl": ("pymongo loop + bson.json_util", 2.0),
    "rss": ("feedparser + JSON dump", 0.8),
}


def measure(cmd: list[str], env: dict | None = None, shell: bool = False) -> dict:
    argv = [PY, str(BENCH / "_measure.py"), "--", *(["/bin/sh", "-c", cmd] if shell else cmd)]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"benchmark command failed: {cmd}\n" + "\n".join(result["stderr_tail"]))
    return result


def _median(samples: list[dict]) -> dict:
    ordered = sorted(samples, key=lambda r: r["wall"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["walls"] = [round(r["wall"], 2) for r in samples]
    chosen["peak_mb"] = max(r["peak_mb"] for r in samples)
    chosen.setdefault("cpu", 0.0)
    return chosen


def _yaml(work: Path, name: str, source: str, sink: str, extra: str = "") -> Path:
    path = work / f"{name}.yaml"
    path.write_text(f"id: {name}\n{source}{extra}{sink}")
    return path


_PG_SOURCE = (
    "source:\n  type: postgres\n  dsn: ${BENCH_PG_DSN}\n  table: events\n  fetch_size: 10000\n"
    "incremental:\n  cursor_field: updated_at\n  safety_lag: 0s\n"
    "read:\n  batch_size: 5000\n"  # the default 4 splits
)


class Bench:
    def __init__(self, args, work: Path) -> None:
        self.args, self.work = args, work
        self.results: dict[str, dict[int, dict]] = {}
        self.pg: PostgresServer | None = None
        self.dsn = ""

    # -- helpers ----------------------------------------------------------------------------
    def env(self, **extra) -> dict:
        env = dict(os.environ, BENCH_PG_DSN=self.dsn, PYTHONPATH=f"{ROOT}{os.pathsep}{BENCH}", **extra)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure processes as users run them: with cached bytecode
        return env

    def osmosis(self, yaml_path: Path, home: Path, *args: str) -> list[str]:
        return [PY, "-m", "osmosis_beam.cli", "--home", str(home), *args, "run", str(yaml_path)]

    def run_route(self, route: str, rows: int, methods: dict, reset=None, check=None) -> None:
        samples: dict[str, list[dict]] = {name: [] for name in methods}
        for _ in range(self.args.repeat):
            for name, (cmd, env, shell) in methods.items():
                if reset is not None:
                    reset(name)
                result = measure(cmd, env, shell)
                if check is not None:
                    check(name, result)
                samples[name].append(result)
        self.results.setdefault(route, {})[rows] = {name: _median(s) for name, s in samples.items()}
        print(f"  {route} {rows:,}: " + ", ".join(f"{n} {_median(s)['wall']:.2f}s" for n, s in samples.items()),
              file=sys.stderr)

    def _summary_check(self, expected: int):
        def check(name: str, result: dict) -> None:
            if name.startswith("osmosis") and result["stdout_tail"]:
                summary = json.loads(result["stdout_tail"][0])
                if summary.get("records_written") != expected:
                    raise SystemExit(f"{name} wrote {summary.get('records_written')} records, expected {expected}")
        return check

    # -- PostgreSQL routes ------------------------------------------------------------------------
    def pg_routes(self, rows: int) -> None:
        # The upsert/append routes' tables (LIKE events INCLUDING ALL) use events' id sequence: drop them before
        # the next size drops events.
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        with conn, conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS copy_upsert, copy_append, baseline_copy")
        conn.close()
        generate(self.dsn, rows)
        w = self.work
        out, home = w / "out", w / "home"
        plain = _yaml(w, "pg_jsonl", _PG_SOURCE, f"sink:\n  type: jsonl\n  path: {out}\n")
        one = _yaml(w, "pg_jsonl_1", _PG_SOURCE.replace("batch_size: 5000", "splits: 1\n  batch_size: 5000"),
                    f"sink:\n  type: jsonl\n  path: {out}\n")
        typed = _yaml(w, "pg_jsonl_typed", _PG_SOURCE, f"sink:\n  type: jsonl\n  path: {out}\n",
                      "steps:\n  - python: bench_steps:tag\n")
        parquet = _yaml(w, "pg_parquet", _PG_SOURCE, f"sink:\n  type: parquet\n  path: {out}\n")

        def reset(_name: str) -> None:
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            for f in w.glob("baseline*"):
                shutil.rmtree(f) if f.is_dir() else f.unlink()

        check = self._summary_check(rows)
        env = self.env()
        wanted = set(self.args.routes)
        copy_sql = r"\copy (SELECT row_to_json(t) FROM events t ORDER BY updated_at) TO " + f"'{w / 'baseline.jsonl'}'"
        if "pg_jsonl" in wanted:
            self.run_route("pg_jsonl", rows, {
                "osmosis": (self.osmosis(plain, home), env, False),
                "baseline": (["psql", self.dsn, "-qAt", "-c", copy_sql], env, False),
            }, reset, check)
            # The run with nothing new: the same pipeline right after a full run.
            reset("")
            measure(self.osmosis(plain, home), env)
            samples = [measure(self.osmosis(plain, home), env) for _ in range(self.args.repeat)]
            self.results.setdefault("nochange", {})[rows] = {"osmosis": _median(samples)}
        if "pg_jsonl_1" in wanted:
            self.run_route("pg_jsonl_1", rows, {
                "osmosis": (self.osmosis(one, home), env, False),
                "baseline": (["psql", self.dsn, "-qAt", "-c", copy_sql], env, False),
            }, reset, check)
        if "pg_jsonl_filter" in wanted:
            # A filter on NOT NULL columns, kept by 3 rows in 8: pushed into the query's SQL.
            steps = "steps:\n  - filter: \"kind in ['click', 'purchase'] and amount > 250\"\n"
            pushed = _yaml(w, "pg_jsonl_filter", _PG_SOURCE, f"sink:\n  type: jsonl\n  path: {out}\n", steps)
            forced = _yaml(w, "pg_jsonl_filter_typed", _PG_SOURCE.replace("batch_size: 5000", "batch_size: 5000\n  path: typed"),
                           f"sink:\n  type: jsonl\n  path: {out}\n", steps)
            where = "kind IN ('click', 'purchase') AND amount > 250"
            filter_sql = (r"\copy (SELECT row_to_json(t) FROM events t WHERE " + where + " ORDER BY updated_at) TO "
                          + f"'{w / 'baseline.jsonl'}'")
            conn = psycopg2.connect(self.dsn)
            with conn.cursor() as cur:
                cur.execute(f"SELECT count(*) FROM events WHERE {where}")
                kept = cur.fetchone()[0]
            conn.close()
            self.run_route("pg_jsonl_filter", rows, {
                "osmosis": (self.osmosis(pushed, home), env, False),
                "osmosis_typed": (self.osmosis(forced, home), env, False),
                "baseline": (["psql", self.dsn, "-qAt", "-c", filter_sql], env, False),
            }, reset, self._summary_check(kept))
        if "pg_jsonl_typed" in wanted:
            self.run_route("pg_jsonl_typed", rows, {
                "osmosis": (self.osmosis(typed, home), env, False),
                "baseline": ([PY, str(BENCH / "baselines.py"), "psycopg2", self.dsn, str(w / "baseline.jsonl")], env, False),
            }, reset, check)
        if "pg_parquet" in wanted:
            dlt = self.args.dlt_python
            if not dlt or not Path(dlt).exists():
                print(f"  pg_parquet: no dlt interpreter at {dlt!r}; create it with bench/README instructions", file=sys.stderr)
            else:
                self.run_route("pg_parquet", rows, {
                    "osmosis": (self.osmosis(parquet, home), env, False),
                    "baseline": ([dlt, str(BENCH / "dlt_baseline.py"), self.dsn, str(w / "baseline_dlt")], env, False),
                }, reset, check)
        for mode in ("upsert", "append"):
            route = f"pg_pg_{mode}"
            if route not in wanted:
                continue
            key = "  key: [id]\n" if mode == "upsert" else ""
            sink_yaml = _yaml(w, route, _PG_SOURCE, f"sink:\n  type: postgres\n  dsn: ${{BENCH_PG_DSN}}\n"
                                                    f"  table: copy_{mode}\n  mode: {mode}\n{key}")
            pipe = (f"psql '{self.dsn}' -qAt -c '\\copy events to stdout' | "
                    f"psql '{self.dsn}' -qAt -c '\\copy baseline_copy from stdin'")

            def reset_pg(_name: str, mode=mode) -> None:
                reset(_name)
                conn = psycopg2.connect(self.dsn)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"DROP TABLE IF EXISTS copy_{mode}; DROP TABLE IF EXISTS baseline_copy; "
                                "CREATE TABLE baseline_copy (LIKE events INCLUDING ALL)")
                    if mode == "upsert":  # upserts into an existing table with its key, as in production
                        cur.execute(f"CREATE TABLE copy_{mode} (LIKE events INCLUDING ALL)")
                conn.close()

            self.run_route(route, rows, {
                "osmosis": (self.osmosis(sink_yaml, home), env, False),
                "baseline": (pipe, env, True),
            }, reset_pg, check)

    # -- MongoDB --------------------------------------------------------------------------------
    def mongo_route(self, rows: int) -> None:
        from tests.services.mongo_server import MongoServer

        docs = self.args.mongo_docs or max(1, rows // 10)
        server = MongoServer(os.environ.get("OSMOSIS_TEST_MONGO_URI")).start()
        try:
            client = server.client()
            coll = client["bench"]["events"]
            coll.drop()
            import datetime as dt
            import decimal

            from bson.decimal128 import Decimal128

            t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
            batch = []
            for i in range(docs):
                batch.append({"updated_at": t0 + dt.timedelta(milliseconds=10 * i), "user_id": i % 100000,
                              "kind": ("click", "view", "purchase", "signup")[i % 4],
                              "amount": Decimal128(decimal.Decimal(i % 100000) / 100), "active": i % 3 == 0,
                              "payload": {"sku": f"SKU-{i % 5000}", "qty": i % 10, "tags": ["a", "b"]}})
                if len(batch) == 10000:
                    coll.insert_many(batch)
                    batch = []
            if batch:
                coll.insert_many(batch)
            coll.create_index("updated_at")
            # Closed before the runs: against CongoDB, a pymongo client's (streaming) monitor sends about a
            # thousand hellos a second while it is open, taking CPU from both methods and the server.
            client.close()
            w, out, home = self.work, self.work / "out", self.work / "home"
            source = ("source:\n  type: mongodb\n  uri: ${BENCH_MONGO_URI}\n  database: bench\n  collection: events\n"
                      "  cursor_field: updated_at\n  batch_size: 5000\nincremental:\n  cursor_field: updated_at\n"
                      "  safety_lag: 0s\nread:\n  batch_size: 5000\n")  # the default 4 splits
            sink = f"sink:\n  type: jsonl\n  path: {out}\n"
            yaml_path = _yaml(w, "mongo_jsonl", source, sink)
            typed_path = _yaml(w, "mongo_jsonl_typed", source + "  path: typed\n", sink)  # under read:
            env = self.env(BENCH_MONGO_URI=server.uri)
            # The server's own CPU time during each run (CongoDB is one Node process; none for an external server).
            server_pid = server._proc.pid if server._proc is not None else None
            started: dict[str, float] = {}

            def reset(name: str) -> None:
                shutil.rmtree(home, ignore_errors=True)
                shutil.rmtree(out, ignore_errors=True)
                started[name] = _process_cpu(server_pid)

            summary = self._summary_check(docs)

            def check(name: str, result: dict) -> None:
                summary(name, result)
                result["server_cpu"] = round(_process_cpu(server_pid) - started[name], 2)
                print(f"    {name}: wall {result['wall']:.2f}s, CPU {result['cpu']:.2f}s, "
                      f"server CPU {result['server_cpu']:.2f}s", file=sys.stderr)

            methods = {
                "osmosis": (self.osmosis(yaml_path, home), env, False),
                "baseline": ([PY, str(BENCH / "baselines.py"), "pymongo", server.uri, str(w / "baseline.jsonl")], env, False),
            }
            if self.args.mongo_typed:  # the typed path too (read.path: typed), for the zero-decode path's gain
                methods["osmosis_typed"] = (self.osmosis(typed_path, home), env, False)
            self.run_route("mongo_jsonl", docs, methods, reset, check)
        finally:
            server.stop()

    # -- RSS -------------------------------------------------------------------------------------
    def rss_route(self) -> None:
        from tests.http_fixtures import FeedServer

        items = self.args.rss_items
        body = _feed(items)
        server = FeedServer().start()
        try:
            server.set("/feed.xml", body, content_type="application/rss+xml")
            url = server.url("/feed.xml")
            w, out, home = self.work, self.work / "out", self.work / "home"
            yaml_path = _yaml(w, "rss", f"source:\n  type: rss\n  url: {url}\n",
                              f"sink:\n  type: jsonl\n  path: {out}\n",
                              "incremental:\n  cursor_field: published\n  safety_lag: 0s\n")

            def reset(_name: str) -> None:
                shutil.rmtree(home, ignore_errors=True)
                shutil.rmtree(out, ignore_errors=True)

            self.run_route("rss", items, {
                "osmosis": (self.osmosis(yaml_path, home), self.env(), False),
                "baseline": ([PY, str(BENCH / "baselines.py"), "feedparser", url, str(w / "baseline.jsonl")], self.env(), False),
            }, reset, self._summary_check(items))
        finally:
            server.stop()

    # -- the launcher ------------------------------------------------------------------------------
    def launcher_route(self) -> None:
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            # Nothing new: an empty table, so every pipeline is due (a fresh home) and finds nothing to read.
            cur.execute("DROP TABLE IF EXISTS quiet; CREATE TABLE quiet (id int, updated_at timestamptz); "
                        "CREATE INDEX ON quiet (updated_at)")
        conn.close()
        folder = self.work / "many"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for i in range(200):
            (folder / f"p{i:03d}.yaml").write_text(
                f"id: quiet{i:03d}\nsource:\n  type: postgres\n  dsn: ${{BENCH_PG_DSN}}\n  table: quiet\n"
                "incremental:\n  cursor_field: updated_at\n  safety_lag: 0s\n"
                f"schedule:\n  every: 1m\nsink:\n  type: jsonl\n  path: {self.work / 'many_out' / str(i)}\n"
            )
        home = self.work / "many_home"
        cmd = [PY, "-m", "osmosis_beam.cli", "--home", str(home), "launch", "--dir", str(folder), "--once"]
        samples = []
        for _ in range(self.args.repeat):
            shutil.rmtree(home, ignore_errors=True)
            samples.append(measure(cmd, self.env()))
        ran = sum(1 for _ in (home).glob("**/state.db"))
        self.results["launcher"] = {200: {"osmosis": _median(samples)}}
        print(f"  launcher 200: {_median(samples)['wall']:.2f}s (state files: {ran})", file=sys.stderr)

    # -- report ------------------------------------------------------------------------------------
    def report(self) -> str:
        parts = []
        for route, by_size in self.results.items():
            if route in TARGETS:
                label, target = TARGETS[route]
                parts.append(f"### {route}\n\nbaseline: {label}; target: osmosis at >= {target}x the baseline's speed\n")
                parts.append("| rows | method | wall s (median) | wall s (each run) | CPU s | rows/s | peak MB | osmosis vs baseline |")
                parts.append("|---:|---|---:|---|---:|---:|---:|---:|")
                for rows, res in by_size.items():
                    ratio = res["baseline"]["wall"] / res["osmosis"]["wall"]
                    for name in ("osmosis", "baseline"):
                        r = res[name]
                        mark = f"{ratio:.2f}x ({'meets' if ratio >= target else 'misses'} {target}x)" if name == "osmosis" else ""
                        parts.append(f"| {rows:,} | {name} | {r['wall']:.2f} | {', '.join(map(str, r['walls']))} | "
                                     f"{r['cpu']:.1f} | {rows / r['wall']:,.0f} | {r['peak_mb']:.0f} | {mark} |")
                parts.append("")
            else:
                parts.append(f"### {route}\n")
                parts.append("| size | wall s (median) | wall s (each run) | CPU s | peak MB |")
                parts.append("|---:|---:|---|---:|---:|")
                for size, res in by_size.items():
                    r = res["osmosis"]
                    parts.append(f"| {size:,} | {r['wall']:.2f} | {', '.join(map(str, r['walls']))} | {r['cpu']:.2f} | {r['peak_mb']:.0f} |")
                parts.append("")
        return "\n".join(parts)


def _process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far (0 when there is none to see)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _feed(items: int) -> bytes:
    import email.utils

    base = 1704067200
    entries = []
    for i in range(items):
        date = email.utils.formatdate(base + i * 60, usegmt=True)
        entries.append(
            f"<item><title>Item {i} &amp; more</title><link>https://example.org/items/{i}</link>"
            f"<guid>https://example.org/items/{i}</guid><pubDate>{date}</pubDate>"
            f"<description>Summary of item {i}: " + "lorem ipsum dolor sit amet " * 12 + "</description>"
            f"<category>news</category><category>tag{i % 50}</category></item>"
        )
    return ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>Bench</title>"
            "<link>https://example.org/</link><description>bench feed</description>"
            + "".join(entries) + "</channel></rss>").encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--routes", nargs="+", default=["pg_jsonl", "pg_jsonl_typed", "pg_parquet", "pg_pg_upsert",
                                                          "pg_pg_append", "mongo_jsonl", "rss", "launcher"])
    parser.add_argument("--rss-items", type=int, default=20000)
    parser.add_argument("--mongo-docs", type=int, help="documents of the mongo_jsonl route (default: rows / 10)")
    parser.add_argument("--mongo-typed", action="store_true",
                        help="mongo_jsonl also runs osmosis on the typed path (read.path: typed)")
    parser.add_argument("--dlt-python", default=str(Path.home() / ".cache/osmosis-beam/bench-dlt-venv/bin/python"),
                        help="a Python with dlt 1.31 installed (the baseline's own virtualenv)")
    parser.add_argument("--out", help="write the Markdown tables to this file as well")
    args = parser.parse_args()
    started = time.time()
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "osmosis_beam")], check=False)  # cached bytecode, as installed
    with tempfile.TemporaryDirectory(prefix="osmosis-routes-") as tmp:
        bench = Bench(args, Path(tmp))
        server = PostgresServer(server_options={"shared_buffers": "256MB"})
        server.start()
        try:
            bench.dsn = server.create_database("bench")
            for rows in args.rows:
                print(f"{rows:,} rows ...", file=sys.stderr)
                if set(args.routes) & set(PG_ROUTES):
                    bench.pg_routes(rows)
                if "mongo_jsonl" in args.routes:
                    bench.mongo_route(rows)
            if "rss" in args.routes:
                bench.rss_route()
            if "launcher" in args.routes:
                bench.launcher_route()
        finally:
            server.stop()
        table = bench.report()
    header = (f"Machine: {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
              f"load average at the end {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{time.time() - started:.0f} s in all; command: `python bench/routes.py {' '.join(sys.argv[1:])}`")
    print(header + "\n\n" + table)
    if args.out:
        Path(args.out).write_text(header + "\n\n" + table + "\n", encoding="utf-8")
    print(json.dumps(bench.results, default=str), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

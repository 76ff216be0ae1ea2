"""A Beam user's incremental pipeline: PostgreSQL -> osmosis steps and beam.Map -> PostgreSQL upserts.

No ``osmosis`` command, no state store: the pipeline reads the orders changed since the timestamp it
stored last time, keeps the big ones, computes two fields (one with an osmosis step, one with a plain
``beam.Map``), upserts them by ``id`` into another table, and, only once the pipeline is DONE, stores
the window's upper bound for the next run. Rows that change while it runs fall in the next window
(the window's upper bound is the server's clock minus the safety lag, fixed when the pipeline is built).

Run it::

    export SOURCE_DSN=postgresql://reader:${PW}@db/shop TARGET_DSN=postgresql://writer:${PW}@db/reporting
    python pipelines/beam_user_postgres.py --state-file ./orders.since.json
    python pipelines/beam_user_postgres.py --state-file ./orders.since.json -- --runner=DirectRunner

The first run reads everything (``--since`` sets a start instead); each later run reads what changed since.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from osmosis_beam.io import ReadFromPostgres, WriteToPostgres
from osmosis_beam.steps import Filter, MapFields


def load_since(path: Path, default: str | None) -> str | None:
    """The window's ``hi`` stored by the last successful run, else ``default``."""
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))["since"]
    return default


def store_since(path: Path, hi: dt.datetime) -> None:
    """Store ``hi`` atomically (write a temporary file, then rename it over the old one)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"since": hi.isoformat()}) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def add_priority(order: dict) -> dict:
    return {**order, "priority": "high" if order["total"] >= 500 else "normal"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--source-dsn", default=os.environ.get("SOURCE_DSN"), help="default: $SOURCE_DSN")
    parser.add_argument("--target-dsn", default=os.environ.get("TARGET_DSN"), help="default: $TARGET_DSN")
    parser.add_argument("--source-table", default="orders")
    parser.add_argument("--target-table", default="big_orders")
    parser.add_argument("--state-file", type=Path, required=True, help="where the last window's hi is kept")
    parser.add_argument("--since", help="the first run's start (ISO-8601), when no state file exists yet")
    parser.add_argument("--safety-lag", default="5s", help="how far behind the server's clock to stop")
    parser.add_argument("--min-total", default="100")
    args, beam_args = parser.parse_known_args(argv)
    if not args.source_dsn or not args.target_dsn:
        parser.error("give --source-dsn and --target-dsn (or set SOURCE_DSN and TARGET_DSN)")

    read = ReadFromPostgres(
        dsn=args.source_dsn, table=args.source_table, cursor_field="updated_at",
        since=load_since(args.state_file, args.since), safety_lag=args.safety_lag,
    )
    write = WriteToPostgres(dsn=args.target_dsn, table=args.target_table, key=["id"])
    options = PipelineOptions([a for a in beam_args if a != "--"])
    try:
        with beam.Pipeline(options=options) as p:
            (
                p
                | "Read orders" >> read
                | "Big orders" >> Filter(f"total > Decimal('{args.min_total}')")
                | "With tax" >> MapFields(total_with_tax="round(total * Decimal('1.2'), 2)")
                | "Priority" >> beam.Map(add_priority)
                | "Upsert" >> write
            )
    except Exception:
        write.abort()  # removes what the failed pipeline staged (upserts have nothing staged)
        raise
    # The with-block returns once the pipeline is DONE (it raises otherwise): the rows are stored, so the
    # window's hi can be kept. A failed run keeps the old timestamp, and the next run reads the window again.
    store_since(args.state_file, read.window.hi)
    summary = {"since": read.window.lo.isoformat() if read.window.lo else None, "until": read.window.hi.isoformat()}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    from osmosis_beam.core.errors import OsmosisError

    try:
        main(sys.argv[1:])
    except OsmosisError as exc:  # a config or source problem: the message says what to fix
        sys.exit(f"error: {exc}")

"""The Parquet baseline: dlt's ``sql_table`` (pyarrow backend) into Parquet files, run from dlt's own venv.

    BENCH_VENV/bin/python bench/dlt_baseline.py DSN OUT_DIR
"""
from __future__ import annotations

import json
import sys

import dlt
from dlt.sources.sql_database import sql_table


def main(dsn: str, out: str) -> int:
    if dsn.startswith("postgresql://"):
        dsn = "postgresql+psycopg2://" + dsn[len("postgresql://"):]  # SQLAlchemy 2.1 defaults to psycopg 3
    table = sql_table(credentials=dsn, table="events", backend="pyarrow", chunk_size=50000)
    pipeline = dlt.pipeline(pipeline_name="bench", destination=dlt.destinations.filesystem(bucket_url=f"file://{out}"),
                            dataset_name="bench", pipelines_dir=f"{out}/_pipelines")
    info = pipeline.run(table, loader_file_format="parquet")
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("events", 0)
    print(json.dumps({"rows": rows, "failed": info.has_failed_jobs}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))

"""``pipelines/beam_user_postgres.py``, the README's Beam user example, run as a user runs it (a subprocess)
against the real PostgreSQL server: the first run reads everything, a second reads only what changed since
the stored timestamp and upserts it, and a failed run keeps the stored timestamp."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from tests.integration.pg_support import execute, fetch, pg_dsn, pg_module_database  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "pipelines" / "beam_user_postgres.py"


def _run(dsn: str, state: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOURCE_DSN": dsn, "TARGET_DSN": dsn}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--state-file", str(state), "--safety-lag", "0s", *extra],
        capture_output=True, text=True, env=env, timeout=300, cwd=str(ROOT),
    )


def test_beam_user_pipeline_reads_since_the_stored_timestamp_and_upserts(pg_dsn, tmp_path):
    execute(
        pg_dsn,
        "CREATE TABLE orders (id int PRIMARY KEY, total numeric(12,2) NOT NULL, status text, updated_at timestamptz NOT NULL)",
        "INSERT INTO orders SELECT g, g * 50, 'new', now() - interval '1 hour' + make_interval(secs => g) "
        "FROM generate_series(1, 12) g",
    )
    state = tmp_path / "orders.since.json"
    first = _run(pg_dsn, state)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["since"] is None and json.loads(state.read_text())["since"] == summary["until"]
    rows = fetch(pg_dsn, "SELECT id, total, total_with_tax, priority FROM big_orders ORDER BY id")
    assert [r[0] for r in rows] == list(range(3, 13))  # total > 100
    assert rows[0][1:] == (Decimal("150.00"), Decimal("180.00"), "normal")
    assert rows[-1][1:] == (Decimal("600.00"), Decimal("720.00"), "high")

    # changes after the stored timestamp: one order grows, one becomes big, a new one arrives
    execute(
        pg_dsn,
        "UPDATE orders SET total = 1000, updated_at = clock_timestamp() WHERE id IN (3, 1)",
        "INSERT INTO orders VALUES (13, 20, 'new', clock_timestamp())",
    )
    execute(pg_dsn, "SELECT pg_sleep(0.01)")
    second = _run(pg_dsn, state)
    assert second.returncode == 0, second.stderr[-3000:]
    summary2 = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary2["since"] == summary["until"]  # read only since the stored hi
    rows = dict((r[0], r[1:]) for r in fetch(pg_dsn, "SELECT id, total, priority FROM big_orders"))
    assert sorted(rows) == [1, *range(3, 13)]  # 1 is big now, 13 is not; no duplicates
    assert rows[1] == (Decimal("1000.00"), "high") and rows[3] == (Decimal("1000.00"), "high")
    assert rows[4] == (Decimal("200.00"), "normal")

    # a failing run (the source table is gone) fails clearly and keeps the stored timestamp
    stored = state.read_text()
    execute(pg_dsn, "ALTER TABLE orders RENAME TO orders_old")
    third = _run(pg_dsn, state)
    assert third.returncode != 0
    assert "error: " in third.stderr and "orders" in third.stderr and "Traceback" not in third.stderr
    assert pg_dsn.split(":")[2].split("@")[0] not in third.stderr  # the password is not shown
    assert state.read_text() == stored

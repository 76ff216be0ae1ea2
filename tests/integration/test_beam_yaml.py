"""The Beam YAML provider shipped in the package, end to end: ``python -m apache_beam.yaml.main`` in a
subprocess runs a pipeline that mixes osmosis transforms (a PostgreSQL read, a PostgreSQL upsert) with
Beam's own (``MapToFields``, ``Filter``, ``WriteToJson``), against the real PostgreSQL server; unreadable
rows go to an ``error_handling`` output. One subprocess (Beam YAML takes ~20 s to start here); config
mistakes are checked through the same entry point in this process, since they fail before anything runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from osmosis_beam.io.beam_yaml import PROVIDER_FILE
from tests.integration.pg_support import execute, fetch, pg_dsn, pg_module_database  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]


def _beam_yaml(pipeline: str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "pipeline.yaml"
    path.write_text(pipeline, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "apache_beam.yaml.main", f"--yaml_pipeline_file={path}"],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path), env={**os.environ, **(env or {})},
    )


def _orders(dsn: str) -> None:
    execute(
        dsn,
        "CREATE TABLE orders (id int PRIMARY KEY, total numeric(12,2), status text, paid boolean, "
        "tags text[], updated_at timestamptz NOT NULL)",
        "INSERT INTO orders SELECT g, g * 25.5, CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'open' END, g % 2 = 0, "
        "ARRAY['t' || g], '2024-01-01T00:00:00Z'::timestamptz + make_interval(hours => g) FROM generate_series(1, 10) g",
    )


def test_the_provider_file_is_shipped_as_package_data():
    assert PROVIDER_FILE.is_file()
    text = PROVIDER_FILE.read_text()
    for name in ("ReadFromOsmosisPostgres", "ReadFromOsmosisMongoDB", "ReadFromOsmosisWeb", "ReadFromOsmosisRSS",
                 "WriteToOsmosisJsonl", "WriteToOsmosisParquet", "WriteToOsmosisPostgres", "WriteToOsmosisMongoDB"):
        assert f"{name}: osmosis_beam.io.beam_yaml.{name}" in text


def test_osmosis_read_beside_beams_map_to_fields_and_write_to_json(pg_dsn, tmp_path):
    _orders(pg_dsn)
    execute(pg_dsn, "ALTER TABLE orders ADD COLUMN due date", "UPDATE orders SET due = '10000-01-01' WHERE id = 5")
    out = tmp_path / "out" / "orders"
    pipeline = f"""
pipeline:
  transforms:
    - type: ReadFromOsmosisPostgres
      name: ReadOrders
      config:
        dsn: "${{ORDERS_DSN}}"
        table: orders
        cursor_field: updated_at
        since: "2024-01-01T03:00:00Z"
        until: "2024-01-01T09:00:00Z"
        error_handling: {{output: unreadable}}
    - type: WriteToJson
      name: Unreadable
      input: ReadOrders.unreadable
      config:
        path: {tmp_path / "bad" / "orders"}
    - type: MapToFields
      input: ReadOrders
      config:
        language: python
        fields:
          id: id
          doubled: "float(total) * 2"
          total: total
          status: status
          paid: paid
          first_tag: "tags[0]"
          updated_at: updated_at
    - type: Filter
      input: MapToFields
      config:
        language: python
        keep: "status == 'paid'"
    - type: WriteToJson
      input: Filter
      config:
        path: {out}
    - type: WriteToOsmosisPostgres
      input: ReadOrders
      config:
        dsn: "${{ORDERS_DSN}}"
        table: orders_copy
        key: [id]
providers:
  - include: {PROVIDER_FILE}
"""
    # Beam YAML has no ${{ENV}}: the test writes the DSN in through jinja-free text replacement
    done = _beam_yaml(pipeline.replace("${ORDERS_DSN}", pg_dsn), tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    files = sorted(out.parent.glob("orders*"))
    assert files, list(tmp_path.rglob("*"))
    rows = sorted((json.loads(line) for f in files for line in f.read_text().splitlines() if line),
                  key=lambda r: r["id"])
    assert [r["id"] for r in rows] == [4, 6, 8]  # [03:00, 09:00) and paid
    assert rows[0] == {"id": 4, "doubled": 204.0, "total": "102.00", "status": "paid", "paid": True,
                       "first_tag": "t4", "updated_at": "2024-01-01T04:00:00+00:00"}
    copied = fetch(pg_dsn, "SELECT id, total::text, status FROM orders_copy ORDER BY id")
    assert [r[0] for r in copied] == [3, 4, 6, 7, 8]  # 5 could not be read (a date in year 10000)
    assert copied[0][1:] == ("76.50", "open")
    bad = [json.loads(line) for f in (tmp_path / "bad").glob("orders*") for line in f.read_text().splitlines() if line]
    [letter] = bad
    assert letter["step"] == "read: postgres" and "year 10000" in letter["error"]
    assert json.loads(letter["record"])["id"] == 5


def test_config_mistakes_fail_clearly_before_anything_runs(pg_dsn, tmp_path):
    pipeline = f"""
pipeline:
  type: chain
  transforms:
    - type: ReadFromOsmosisPostgres
      config: {{dsn: "mysql://app:s3cret-pw@db/shop", table: orders, fetch_size: 0, since: "soon"}}
    - type: WriteToJson
      config: {{path: {tmp_path / "out"}}}
providers:
  - include: {PROVIDER_FILE}
"""
    path = tmp_path / "pipeline.yaml"
    path.write_text(pipeline, encoding="utf-8")
    from apache_beam.yaml import main  # the same entry point, in this process: it fails while building

    with pytest.raises(ValueError) as info:
        main.run([f"--yaml_pipeline_file={path}"])
    err = str(info.value)
    assert "ReadFromOsmosisPostgres" in err
    assert "source.fetch_size: must be at least 1" in err and "ReadFromPostgres.since: invalid timestamp" in err
    assert "s3cret-pw" not in err

"""PostgreSQL -> Parquet keeps the declared precision of numeric columns: numeric(12,2) is decimal(12,2)."""
from __future__ import annotations

import decimal

import pyarrow as pa

from osmosis_beam.io.files.parquet import ParquetSink, read_parquet_table
from tests.integration.pg_support import (  # noqa: F401  (fixtures)
    execute,
    pg_dsn,
    pg_module_database,
    source,
    sync_once,
)
from tests.integration.test_zero_decode import WINDOW


def test_numeric_columns_keep_their_declared_precision(pg_dsn, tmp_path):
    execute(
        pg_dsn,
        "CREATE TABLE prices (id integer, updated_at timestamptz, amount numeric(12, 2), whole numeric(5), "
        "free numeric, tiny numeric(3, 3))",
        "INSERT INTO prices SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', "
        "g * 1000.25, g, g / 8.0, 0.125 FROM generate_series(1, 500) AS g",
        "INSERT INTO prices VALUES (501, '2024-01-01 01:00:00+00', 9999999999.99, 99999, 1e30, -0.999)",
    )
    connector = source(pg_dsn, table="prices")
    sink = ParquetSink({"path": str(tmp_path / "out")})
    sink.use_schema(connector.get_schema())
    details, dead = sync_once(connector, sink, WINDOW, "run-1", splits=2)
    assert dead == []
    table = read_parquet_table(tmp_path / "out")
    assert table.schema.field("amount").type == pa.decimal128(12, 2)
    assert table.schema.field("whole").type == pa.decimal128(5, 0)
    assert table.schema.field("tiny").type == pa.decimal128(3, 3)
    assert pa.types.is_decimal(table.schema.field("free").type)  # no declared precision: from the values
    rows = {r["id"]: r for r in table.to_pylist()}
    assert len(rows) == 501
    assert rows[501]["amount"] == decimal.Decimal("9999999999.99") and rows[501]["tiny"] == decimal.Decimal("-0.999")
    assert rows[7]["amount"] == decimal.Decimal("7001.75") and rows[7]["free"] == decimal.Decimal("0.875")
    assert rows[501]["free"] == decimal.Decimal("1E+30")

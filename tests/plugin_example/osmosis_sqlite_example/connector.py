"""The ``sqlite_example`` connector: rows of a SQLite table whose cursor column holds epoch microseconds."""
from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from osmosis_beam.core.errors import FatalConnectorError
from osmosis_beam.core.options import Option
from osmosis_beam.io.base import BaseConnector

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(value: dt.datetime) -> int:
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def from_micros(value: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=value)


class SQLiteConnector(BaseConnector):
    type_name = "sqlite_example"
    options = (
        Option("path", "str", required=True, help="the database file"),
        Option("table", "str", required=True, help="the table to read"),
    )
    cursor_fields = ("at",)

    def connect(self) -> None:
        if self._client is None:
            path = Path(self.config["path"])
            if not path.is_file():
                raise FatalConnectorError(f"sqlite_example: no database file at {path}; check source.path")
            self._client = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)

    def disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _rows(self, sql: str, args=()) -> list[tuple]:
        self.connect()
        try:
            return self._client.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise FatalConnectorError(f"sqlite_example: table {self.config['table']!r}: {exc}; check source.table") from None

    def _columns(self) -> list[str]:
        table = self.config["table"].replace('"', '""')
        columns = [r[1] for r in self._rows(f'PRAGMA table_info("{table}")')]
        if not columns:
            raise FatalConnectorError(f"sqlite_example: table {self.config['table']!r} does not exist; check source.table")
        return columns

    def test_connection(self) -> str:
        return f"sqlite_example: {len(self._columns())} columns"

    def get_schema(self):
        return {"fields": [{"name": c, "type": "timestamp" if c == "at" else "any"} for c in self._columns()],
                "cursor_field": self.cursor_field}

    def read_window(self, lo, hi):
        columns = self._columns()
        table = self.config["table"].replace('"', '""')
        where, args = "at < ?", [to_micros(hi)]
        if lo is not None:
            where, args = "at >= ? AND " + where, [to_micros(lo), *args]
        for row in self._rows(f'SELECT * FROM "{table}" WHERE {where} ORDER BY at', args):
            record = dict(zip(columns, row))
            record["at"] = from_micros(record["at"])
            yield record

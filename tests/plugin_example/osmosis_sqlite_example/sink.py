"""The ``sqlite_example`` sink: upserts by ``id`` into a SQLite table, staged per run, published in one transaction."""
from __future__ import annotations

import json
import sqlite3

from osmosis_beam.core.errors import SinkError
from osmosis_beam.core.options import Option
from osmosis_beam.io.base import BaseSink


def _stage(run_id: str) -> str:
    return "_stage_" + "".join(c if c.isalnum() else "_" for c in run_id)


def _insert_batch(batch, path: str, stage: str) -> int:
    """On a worker: one batch into the run's staging table, in one transaction."""
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.executemany(f'INSERT INTO "{stage}" (id, record) VALUES (?, ?)',
                         [(r["id"], json.dumps(r, default=str)) for r in batch])
        conn.execute("COMMIT")
    finally:
        conn.close()
    return len(batch)


class SQLiteSink(BaseSink):
    type_name = "sqlite_example"
    options = (
        Option("path", "str", required=True, help="the database file (created when missing)"),
        Option("table", "str", required=True, help="the table to write"),
    )

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.config["path"], timeout=10, isolation_level=None)
        except sqlite3.Error as exc:
            raise SinkError(f"sqlite_example: cannot open {self.config['path']}: {exc}") from None
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{self.config["table"]}" (id PRIMARY KEY, record TEXT NOT NULL)')
        conn.execute("CREATE TABLE IF NOT EXISTS _published (run_id TEXT PRIMARY KEY)")
        return conn

    def prepare(self, run_id, *, full_refresh=False):
        conn = self._connect()
        try:
            conn.execute(f'DROP TABLE IF EXISTS "{_stage(run_id)}"')
            conn.execute(f'CREATE TABLE "{_stage(run_id)}" (seq INTEGER PRIMARY KEY, id, record TEXT NOT NULL)')
        finally:
            conn.close()

    def write(self, run_id):
        import apache_beam as beam

        return beam.Map(_insert_batch, self.config["path"], _stage(run_id))

    def publish(self, run_id, *, window_hi, full_refresh=False):
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("SELECT 1 FROM _published WHERE run_id = ?", (run_id,)).fetchone():
                conn.execute("ROLLBACK")
                return {"already_published": True}
            table, stage = self.config["table"], _stage(run_id)
            staged = conn.execute("SELECT name FROM sqlite_master WHERE name = ?", (stage,)).fetchone()
            if full_refresh:
                conn.execute(f'DELETE FROM "{table}"')
            count = 0
            if staged:
                count = conn.execute(f'INSERT OR REPLACE INTO "{table}" (id, record) '
                                     f'SELECT id, record FROM "{stage}" ORDER BY seq').rowcount
                conn.execute(f'DROP TABLE "{stage}"')
            conn.execute("INSERT INTO _published VALUES (?)", (run_id,))
            conn.execute("COMMIT")
            return {"records": count}
        finally:
            conn.close()

    def abort(self, run_id):
        conn = self._connect()
        try:
            conn.execute(f'DROP TABLE IF EXISTS "{_stage(run_id)}"')
        finally:
            conn.close()

    def is_published(self, run_id):
        conn = self._connect()
        try:
            return conn.execute("SELECT 1 FROM _published WHERE run_id = ?", (run_id,)).fetchone() is not None
        finally:
            conn.close()

"""The plug-in's own tests: osmosis-beam's contract suites against its connector and sink, found through the
entry points of the installed package (run by tests/contracts/test_plugin_example.py, after installing it)."""
from __future__ import annotations

import sqlite3

import pytest

from osmosis_beam.registry import default_registry
from osmosis_beam.testing import ConnectorContract, ConnectorHarness, SinkContract, SinkHarness


def registered(kind: str):
    registry = default_registry()
    assert "sqlite_example" in registry.names(kind), registry.names(kind)
    return registry.lookup(kind, "sqlite_example")


class Harness(ConnectorHarness):
    no_password_reason = "SQLite files have no passwords"

    def __init__(self, tmp_path) -> None:
        self.path = tmp_path / "events.db"
        self.cls = registered("connector")

    def connector(self, rows):
        from osmosis_sqlite_example.connector import to_micros

        with sqlite3.connect(self.path) as conn:
            conn.execute("CREATE TABLE events (id TEXT PRIMARY KEY, at INTEGER NOT NULL)")
            conn.executemany("INSERT INTO events VALUES (?, ?)", [(r["id"], to_micros(r["at"])) for r in rows])
        return self.cls({"path": str(self.path), "table": "events"})

    def record_id(self, record):
        return record["id"]

    def unreachable(self, secret):
        return self.cls({"path": str(self.path.parent / "missing-dir" / "events.db"), "table": "events"})

    def wrong_password(self, secret):
        return None

    def missing_table(self, secret):
        self.connector([])
        return self.cls({"path": str(self.path), "table": "no_such_events"})


class TestSQLiteExampleConnector(ConnectorContract):
    @pytest.fixture
    def harness(self, tmp_path):
        return Harness(tmp_path)


class SinkSide(SinkHarness):
    staged, full_refresh_replaces, upserts = True, True, True

    def __init__(self, tmp_path) -> None:
        self.path = tmp_path / "copy.db"
        self.cls = registered("sink")

    def sink(self):
        return self.cls({"path": str(self.path), "table": "copy"})

    def read_back(self):
        import json

        if not self.path.exists():
            return []
        with sqlite3.connect(self.path) as conn:
            try:
                return [json.loads(r) for (r,) in conn.execute("SELECT record FROM copy")]
            except sqlite3.OperationalError:
                return []

    def leftovers(self):
        if not self.path.exists():
            return []
        with sqlite3.connect(self.path) as conn:
            return [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '\\_stage\\_%' ESCAPE '\\'")]


class TestSQLiteExampleSink(SinkContract):
    @pytest.fixture
    def harness(self, tmp_path):
        return SinkSide(tmp_path)

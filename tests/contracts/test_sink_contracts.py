"""The sink contract suite (``osmosis_beam.testing.SinkContract``) on every built-in sink: JSONL, Parquet,
PostgreSQL (upsert and append) and MongoDB (upsert, on CongoDB and FerretDB)."""
from __future__ import annotations

from pathlib import Path

import pytest

from osmosis_beam.io.files.jsonl import JSONLSink, read_jsonl_dir
from osmosis_beam.io.files.parquet import ParquetSink, read_parquet_dir
from osmosis_beam.io.mongodb.sink import MongoDBSink
from osmosis_beam.io.postgres.client import STAGE_PREFIX
from osmosis_beam.io.postgres.sink import PostgresSink
from osmosis_beam.testing import SinkContract, SinkHarness
from tests.integration.mongo_support import mongo_db  # noqa: F401  (fixture)
from tests.integration.pg_support import fetch, pg_dsn, pg_module_database  # noqa: F401  (fixtures)


class FilesHarness(SinkHarness):
    staged, full_refresh_replaces, upserts = True, True, False

    def __init__(self, root: Path, sink_class, read) -> None:
        self.root, self.sink_class, self.read = root, sink_class, read

    def sink(self):
        return self.sink_class({"path": str(self.root)})

    def read_back(self):
        return list(self.read(self.root))

    def leftovers(self):
        return sorted(p.name for p in self.root.glob("_*")) if self.root.is_dir() else []


class TestJsonlSinkContract(SinkContract):
    @pytest.fixture
    def harness(self, tmp_path):
        return FilesHarness(tmp_path / "out", JSONLSink, read_jsonl_dir)


class TestParquetSinkContract(SinkContract):
    @pytest.fixture
    def harness(self, tmp_path):
        return FilesHarness(tmp_path / "out", ParquetSink, read_parquet_dir)


class PostgresHarness(SinkHarness):
    full_refresh_replaces = True

    def __init__(self, dsn: str, mode: str) -> None:
        self.dsn, self.mode = dsn, mode
        self.staged = mode == "append"
        self.upserts = mode == "upsert"

    def sink(self):
        options = {"dsn": self.dsn, "table": "out"}
        options.update({"key": ["id"]} if self.mode == "upsert" else {"mode": "append"})
        return PostgresSink(options)

    def read_back(self):
        if fetch(self.dsn, "SELECT to_regclass('public.out')") == [(None,)]:
            return []
        return [{"id": i, "value": v} for i, v in fetch(self.dsn, "SELECT id, value FROM out")]

    def leftovers(self):
        return [n for (n,) in fetch(self.dsn, "SELECT tablename FROM pg_tables WHERE starts_with(tablename, %s)",
                                    (STAGE_PREFIX,))]


class TestPostgresUpsertSinkContract(SinkContract):
    @pytest.fixture
    def harness(self, pg_dsn):
        return PostgresHarness(pg_dsn, "upsert")


class TestPostgresAppendSinkContract(SinkContract):
    @pytest.fixture
    def harness(self, pg_dsn):
        return PostgresHarness(pg_dsn, "append")


class MongoHarness(SinkHarness):
    # Upserts are visible as they are written; a full refresh upserts and keeps documents the run did not
    # rewrite (README, "Design notes": the mongodb sink only upserts).
    staged, full_refresh_replaces, upserts = False, False, True

    def __init__(self, db) -> None:
        self.db = db

    def sink(self):
        return MongoDBSink({"uri": self.db.uri, "database": self.db.name, "collection": "out", "key": ["id"]})

    def read_back(self):
        return list(self.db.db.out.find({}, {"_id": 0}))


class TestMongoDBSinkContract(SinkContract):
    @pytest.fixture
    def harness(self, mongo_db):
        return MongoHarness(mongo_db)

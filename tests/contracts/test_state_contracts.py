"""The state-store contract suite (``osmosis_beam.testing.StateStoreContract``) on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest

from osmosis_beam.state.postgres import PostgresStateStore
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.testing import StateStoreContract
from tests.integration.pg_support import pg_dsn, pg_module_database  # noqa: F401  (fixtures)


class TestSQLiteStateStore(StateStoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        return SQLiteStateStore(tmp_path / "home" / "state.db")

    @pytest.fixture
    def other_store(self, store, tmp_path):
        return SQLiteStateStore(tmp_path / "home" / "state.db")  # another process's view of the same home


class TestPostgresStateStore(StateStoreContract):
    @pytest.fixture
    def store(self, pg_dsn):
        s = PostgresStateStore(pg_dsn)
        yield s
        s.close()

    @pytest.fixture
    def other_store(self, store, pg_dsn):
        s = PostgresStateStore(pg_dsn)  # another launcher, its own connection
        yield s
        s.close()

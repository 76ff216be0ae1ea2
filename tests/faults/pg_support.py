"""Shared by the PostgreSQL fault tests: the real pagila sample database loaded once per session, SQL helpers.

The sample lives in /work/shared/data/pagila/ (or ``$OSMOSIS_PAGILA_DIR``); it is loaded from there with
``psql`` into the session's test server, never copied into the repository.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg2
import pytest

from tests.services import unavailable

PAGILA = Path(os.environ.get("OSMOSIS_PAGILA_DIR", "/work/shared/data/pagila"))


def execute(dsn: str, *statements: str, params=None):
    """Run statements in autocommit; the rows of the last one (or None)."""
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        conn.autocommit = True
        rows = None
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement, params)
                rows = cur.fetchall() if cur.description else None
        return rows
    finally:
        conn.close()


def _psql() -> str | None:
    from tests.services.postgres_server import find_pg_bindir

    bindir = find_pg_bindir()
    found = os.path.join(bindir, "psql") if bindir else shutil.which("psql")
    return found if found and os.access(found, os.X_OK) else None


@pytest.fixture(scope="session")
def pagila_dsn(pg_server):
    """The pagila sample database (schema and data), loaded once into the session's server."""
    psql = _psql()
    if not (PAGILA / "pagila-schema.sql").is_file() or psql is None:
        unavailable("pagila sample database", f"needs {PAGILA}/pagila-*.sql and psql")
    dsn = pg_server.create_database("pagila")
    for part in ("pagila-schema.sql", "pagila-data.sql"):
        # The dump's ALTER ... OWNER TO postgres fail on a cluster without that role; nothing else does.
        done = subprocess.run([psql, "-q", "-X", "-d", dsn, "-f", str(PAGILA / part)],
                              capture_output=True, text=True, timeout=300)
        errors = [line for line in done.stderr.splitlines() if "ERROR" in line and 'role "postgres"' not in line]
        assert done.returncode == 0 and not errors, done.stderr[-2000:]
    yield dsn
    pg_server.drop_database("pagila")

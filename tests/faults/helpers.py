"""Steps and scripts the fault tests run inside real runs (imported by path from pipeline YAML)."""
from __future__ import annotations

import os

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

LOCK_OUT_AT = 30


def set_connections(dsn: str, allowed: bool) -> None:
    """ALTER DATABASE ... ALLOW_CONNECTIONS: the server then refuses every new connection to it (a real refusal)."""
    params = psycopg2.extensions.parse_dsn(dsn)
    conn = psycopg2.connect(psycopg2.extensions.make_dsn(dsn, dbname="postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(params["dbname"]), sql.SQL("true" if allowed else "false")))
    finally:
        conn.close()


def lock_out_then_fail(record: dict) -> dict:
    """At record ``LOCK_OUT_AT``: make the sink's database refuse new connections, then fail the run, so the
    run's cleanup (dropping its stage table) cannot reach the server."""
    if record["id"] == LOCK_OUT_AT:
        set_connections(os.environ["FAULT_PG_DSN"], False)
        raise RuntimeError(f"fault: failing at record {LOCK_OUT_AT} with the sink's database locked out")
    return record

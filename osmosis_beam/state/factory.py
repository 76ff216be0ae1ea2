"""Opening the state store named on the command line: SQLite in the home, or a shared PostgreSQL.

Example::

    from osmosis_beam.state.factory import open_store
    store = open_store(home="./.osmosis")                         # SQLite at ./.osmosis/state.db
    store = open_store(url="postgresql://osmosis@db/osmosis")      # shared by several launchers
"""
from __future__ import annotations

import os

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.state.sqlite import SQLiteStateStore
from osmosis_beam.state.store import StateStore, resolve_home

__all__ = ["open_store"]


def open_store(home: str | os.PathLike | None = None, url: str | None = None, *, read_only: bool = False) -> StateStore:
    """The state store: ``url`` (or ``$OSMOSIS_STATE_URL``) when given, else SQLite under the home.

    ``read_only`` is for commands that only read: an existing SQLite file is opened without writing to it, and
    a PostgreSQL store whose schema is current is used without its migration lock or DDL.
    """
    url = url or os.environ.get("OSMOSIS_STATE_URL")
    if url:
        if url.startswith(("postgresql://", "postgres://")):
            try:  # psycopg2 comes with the postgres extra: imported only when asked for
                from osmosis_beam.state.postgres import PostgresStateStore
            except ImportError as exc:
                raise ConfigError(f"--state {url.split('://')[0]}://...: PostgreSQL state is not available ({exc})") from None
            return PostgresStateStore(url, read_only=read_only)
        if url.startswith("sqlite:///"):
            return SQLiteStateStore(
                url[len("sqlite:///") - 1 :] if url.startswith("sqlite:////") else url[len("sqlite:///") :], read_only=read_only
            )
        raise ConfigError(f"--state: unsupported state URL scheme in {url.split('://')[0]!r}; use postgresql://... or sqlite:///path")
    return SQLiteStateStore(resolve_home(home) / "state.db", read_only=read_only)

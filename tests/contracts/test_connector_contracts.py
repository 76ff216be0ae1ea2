"""The connector contract suite (``osmosis_beam.testing.ConnectorContract``) on every built-in connector:
PostgreSQL, MongoDB (CongoDB and FerretDB), RSS and web pages over loopback HTTP."""
from __future__ import annotations

import email.utils
import socket

import psycopg2
import pytest

from osmosis_beam.core.window import IncrementalSpec
from osmosis_beam.io.mongodb.source import MongoDBConnector
from osmosis_beam.io.postgres.source import PostgresConnector
from osmosis_beam.io.rss.source import RSSConnector
from osmosis_beam.io.web.source import WebConnector
from osmosis_beam.testing import ConnectorContract, ConnectorHarness
from tests.integration.mongo_support import mongo_db  # noqa: F401  (fixture)
from tests.integration.pg_support import execute, pg_dsn, pg_module_database  # noqa: F401  (fixtures)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- PostgreSQL -------------------------------------------------------------------------------------------------


class PostgresHarness(ConnectorHarness):
    def __init__(self, dsn: str, server) -> None:
        self.dsn, self.server = dsn, server
        self.dbname = psycopg2.extensions.parse_dsn(dsn)["dbname"]

    def _source(self, dsn: str, table: str = "events") -> PostgresConnector:
        return PostgresConnector({"dsn": dsn, "table": table}, incremental=IncrementalSpec(cursor_field="at"))

    def connector(self, rows):
        execute(self.dsn, "CREATE TABLE events (id text PRIMARY KEY, at timestamptz NOT NULL, n int)")
        conn = psycopg2.connect(self.dsn)
        try:
            with conn, conn.cursor() as cur:
                for i, row in enumerate(rows):
                    cur.execute("INSERT INTO events VALUES (%s, %s, %s)", (row["id"], row["at"], i))
        finally:
            conn.close()
        return self._source(self.dsn)

    def record_id(self, record):
        return record["id"]

    def unreachable(self, secret):
        return self._source(f"postgresql://app:{secret}@127.0.0.1:{_free_port()}/{self.dbname}?connect_timeout=5")

    def wrong_password(self, secret):
        return self._source(self.server.dsn_for(self.dbname, user=self.server.user, password=secret))

    def missing_table(self, secret):
        return self._source(self.dsn, table="no_such_events"), self.server.password


class TestPostgresConnectorContract(ConnectorContract):
    @pytest.fixture
    def harness(self, pg_dsn, pg_server):
        return PostgresHarness(pg_dsn, pg_server)


# -- MongoDB ----------------------------------------------------------------------------------------------------


class MongoHarness(ConnectorHarness):
    """On the ``mongo_db`` server (CongoDB or FerretDB, neither authenticating); ``wrong_password`` on the
    session's authenticating FerretDB (``ferretdb_auth_server``), started only when that case runs."""

    def __init__(self, db, auth_server) -> None:
        self.db = db
        self._auth_server = auth_server  # () -> the authenticating FerretDB

    def _source(self, uri: str, collection: str = "events", database: str | None = None) -> MongoDBConnector:
        return MongoDBConnector({"uri": uri, "database": database or self.db.name, "collection": collection,
                                 "cursor_field": "at", "timeout": "3s"})

    def connector(self, rows):
        self.db.db.events.insert_many([{"key": r["id"], "at": r["at"]} for r in rows])
        return self._source(self.db.uri)

    def record_id(self, record):
        return record["key"]

    def unreachable(self, secret):
        return self._source(f"mongodb://app:{secret}@127.0.0.1:{_free_port()}/?directConnection=true")

    def wrong_password(self, secret):
        server = self._auth_server()
        assert secret != server.password
        return self._source(server.uri_with(secret), database=server.database)

    def missing_table(self, secret):
        self.db.db.events.insert_one({"key": "x", "at": None})  # the database exists; the collection does not
        return self._source(self.db.uri, collection="no_such_events")


class TestMongoDBConnectorContract(ConnectorContract):
    @pytest.fixture
    def harness(self, mongo_db, request):
        return MongoHarness(mongo_db, lambda: request.getfixturevalue("ferretdb_auth_server"))


# -- RSS --------------------------------------------------------------------------------------------------------


def _rss(rows) -> str:
    items = "".join(
        f"<item><guid>{r['id']}</guid><title>{r['id']}</title>"
        f"<pubDate>{email.utils.format_datetime(r['at'], usegmt=True)}</pubDate></item>"
        for r in rows
    )
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>http://x/</link>'
            f"<description>d</description>{items}</channel></rss>")


class RSSHarness(ConnectorHarness):
    def __init__(self, server) -> None:
        self.server = server

    def _source(self, url: str, secret: str | None = None) -> RSSConnector:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return RSSConnector({"url": url, "headers": headers, "timeout": "5s", "connect_timeout": "3s"},
                            incremental=IncrementalSpec(cursor_field="published"))

    def connector(self, rows):
        self.server.set("/feed.xml", _rss(rows), content_type="application/rss+xml")
        return self._source(self.server.url("/feed.xml"))

    def record_id(self, record):
        return record["id"]

    def unreachable(self, secret):
        return self._source(f"http://127.0.0.1:{_free_port()}/feed.xml", secret)

    def wrong_password(self, secret):
        self.server.set("/private.xml", b"no", status=401, content_type="text/plain")
        return self._source(self.server.url("/private.xml"), secret)

    def missing_table(self, secret):
        return self._source(self.server.url("/no-such-feed.xml"), secret)


class TestRSSConnectorContract(ConnectorContract):
    @pytest.fixture
    def harness(self, feed_server):
        return RSSHarness(feed_server)


# -- web pages --------------------------------------------------------------------------------------------------


def _page(rows) -> str:
    items = "".join(f"<article><h2>{r['id']}</h2><time datetime='{r['at'].isoformat()}'></time></article>" for r in rows)
    return f"<html><body>{items}</body></html>"


class WebHarness(RSSHarness):
    def _source(self, url: str, secret: str | None = None) -> WebConnector:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return WebConnector({"url": url, "item_selector": "article", "fields": {"id": "h2", "at": "time::attr(datetime)"},
                             "date_field": "at", "request_interval": "0s", "respect_robots_txt": False,
                             "retries": 0, "headers": headers, "timeout": "5s", "connect_timeout": "3s"})

    def connector(self, rows):
        self.server.set("/news", _page(rows), content_type="text/html; charset=utf-8")
        return self._source(self.server.url("/news"))


class TestWebConnectorContract(ConnectorContract):
    @pytest.fixture
    def harness(self, feed_server):
        return WebHarness(feed_server)

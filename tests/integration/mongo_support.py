"""Helpers for the MongoDB connector and sink tests: a fresh database per test, and Beam runs.

Import the ``mongo_db`` fixture into a test module (``from tests.integration.mongo_support import mongo_db``).
A test that uses it runs once per MongoDB-wire server (``tests/conftest.py`` parametrizes ``mongo_kind``):

- ``congodb``: the session's ``mongo_server`` (CongoDB, or a real mongod from ``$OSMOSIS_TEST_MONGO_URI``).
  It holds every BSON type, but garbles Decimal128, Int64 and Binary on ``$set`` and does not enforce
  unique indexes.
- ``ferretdb``: the session's ``ferretdb_server`` (FerretDB 1.x, SQLite backend). It keeps types on update
  and enforces unique indexes, but has no Decimal128, Code, MinKey/MaxKey, DBRef or nested arrays.

``@only_on("congodb", reason=...)`` (the ``mongo_servers`` marker) narrows a test to the servers that have
what it needs; say why in ``reason``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
import uuid
from typing import Any, Callable

import pytest

UTC = dt.timezone.utc
BASE = dt.datetime(2024, 1, 1, tzinfo=UTC)


@dataclasses.dataclass
class MongoDB:
    """One test's database on the session's server."""

    uri: str
    name: str
    client: Any
    kind: str = "congodb"  # which server: congodb or ferretdb

    @property
    def db(self):
        return self.client[self.name]

    def source(self, collection: str, **options: Any):
        from osmosis_beam.io.mongodb.source import MongoDBConnector

        options.setdefault("cursor_field", "ts")
        return MongoDBConnector({"uri": self.uri, "database": self.name, "collection": collection, **options})

    def sink(self, collection: str, **options: Any):
        from osmosis_beam.io.mongodb.sink import MongoDBSink

        return MongoDBSink({"uri": self.uri, "database": self.name, "collection": collection, **options})


SERVERS = ("congodb", "ferretdb")
_SERVER_FIXTURE = {"congodb": "mongo_server", "ferretdb": "ferretdb_server"}


def only_on(*names: str, reason: str):
    """Runs a ``mongo_db`` test only on the servers ``names`` (``reason``: what the others lack)."""
    unknown = set(names) - set(SERVERS)
    if unknown or not names:
        raise ValueError(f"only_on: unknown servers {sorted(unknown)}; known: {SERVERS}")
    return pytest.mark.mongo_servers(*names, reason=reason)


def servers_for(item) -> list[str]:
    """The servers a test runs on: all of them, or those its ``mongo_servers`` marker names."""
    marker = item.get_closest_marker("mongo_servers")
    return list(marker.args) if marker else list(SERVERS)


@pytest.fixture
def mongo_db(mongo_kind, request):
    """A uniquely named database for this test on the ``mongo_kind`` server, dropped afterwards."""
    import pymongo

    mongo_server = request.getfixturevalue(_SERVER_FIXTURE[mongo_kind])

    stem = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    name = f"t_{stem}_{uuid.uuid4().hex[:6]}"
    client = pymongo.MongoClient(
        mongo_server.uri,
        serverSelectionTimeoutMS=5000,
        tz_aware=True,
        tzinfo=UTC,
        uuidRepresentation="standard",
        serverMonitoringMode="poll",  # CongoDB answers awaitable hellos at once: a streaming monitor spins
    )
    try:
        yield MongoDB(mongo_server.uri, name, client, mongo_kind)
    finally:
        try:
            client.drop_database(name)
        finally:
            client.close()


def at(seconds: float = 0, ms: int = 0) -> dt.datetime:
    """``BASE`` plus ``seconds`` and ``ms`` milliseconds."""
    return BASE + dt.timedelta(seconds=seconds, milliseconds=ms)


def run_beam(build: Callable[[Any], Any]) -> dict[str, int]:
    """Builds a pipeline with ``build(p)`` on Beam's in-process runner, runs it, returns the osmosis counters."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    p = beam.Pipeline(runner=FnApiRunner())
    build(p)
    result = p.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace("osmosis"))["counters"]
    out: dict[str, int] = {}
    for counter in counters:
        out[counter.key.metric.name] = out.get(counter.key.metric.name, 0) + counter.committed
    return out


def watch_cursors(source, uri: str, kill_after: int | None = None):
    """Give ``source`` a client that records its server cursors: returns the listener, whose ``finds`` counts
    the ``find`` commands and ``ids`` holds each ``find``'s cursor id (for a test that kills them).

    With ``kill_after``, the first cursor is killed (from another client) as soon as its ``kill_after``-th
    ``getMore`` has answered, in the thread that sent it and before that thread can send the next: a kill
    from the test's thread could meet a getMore in flight in a prefetching thread, which a server may
    finish as if nothing happened. ``killed`` then holds the server's list of the cursors it killed.
    """
    import pymongo
    from pymongo import monitoring

    class Cursors(monitoring.CommandListener):
        def __init__(self):
            self.finds, self.ids, self.getmores, self.killed = 0, [], 0, None

        def started(self, event):
            self.finds += event.command_name == "find"

        def succeeded(self, event):
            if event.command_name == "find":
                self.ids.append(event.reply["cursor"]["id"])
            elif event.command_name == "getMore":
                self.getmores += 1
                if self.getmores == kill_after:
                    with pymongo.MongoClient(uri, serverMonitoringMode="poll") as killer:
                        reply = killer[source.config["database"]].command(
                            "killCursors", source.config["collection"], cursors=self.ids[:1])
                    self.killed = reply["cursorsKilled"]

        def failed(self, event):
            pass

    listener = Cursors()
    source._client = pymongo.MongoClient(uri, event_listeners=[listener], tz_aware=True, tzinfo=UTC,
                                         uuidRepresentation="standard", serverMonitoringMode="poll")
    return listener


@contextlib.contextmanager
def own_congodb(monkeypatch):
    """A CongoDB of the test's own, never the server of $OSMOSIS_TEST_MONGO_URI (for tests that freeze or kill
    it); stopped on exit. Unavailable: the test fails under CI=true, else skips."""
    from tests.services import unavailable
    from tests.services.mongo_server import ENV_URI, MongoServer, available

    monkeypatch.delenv(ENV_URI, raising=False)
    ok, reason = available(install=True)
    if not ok:
        unavailable("CongoDB (a MongoDB-wire server of the test's own)", reason)
    server = MongoServer().start()
    try:
        yield server
    finally:
        server.stop()

"""Helpers for the MongoDB connector and sink tests: a fresh database per test, and Beam runs.

Import the ``mongo_db`` fixture into a test module (``from tests.integration.mongo_support import mongo_db``);
it needs the session's ``mongo_server`` fixture from ``tests/conftest.py``.
"""
from __future__ import annotations

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


@pytest.fixture
def mongo_db(mongo_server, request):
    """A uniquely named database for this test, dropped afterwards."""
    import pymongo

    stem = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    name = f"t_{stem}_{uuid.uuid4().hex[:6]}"
    client = pymongo.MongoClient(
        mongo_server.uri,
        serverSelectionTimeoutMS=5000,
        tz_aware=True,
        tzinfo=UTC,
        uuidRepresentation="standard",
    )
    try:
        yield MongoDB(mongo_server.uri, name, client)
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

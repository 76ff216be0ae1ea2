"""The MongoDB sink: idempotent bulk writes into one collection, so a re-run of a window changes nothing.

``mode: upsert`` (the default) finds the document by the ``key`` fields (dotted paths allowed; the key
need not be ``_id``) and, with ``update: replace`` (the default), makes it exactly the record:
``ReplaceOne({key...}, record, upsert=True)``. Fields the source dropped disappear from the target too,
so the collection always equals what one run over the same windows would leave. ``update: merge``
sets the record's fields instead (``UpdateOne({key...}, {$set: record}, upsert=True)``) and keeps
fields that other writers added. A record's ``_id`` (a 24-hex string, as the ``mongodb`` connector
writes ObjectIds, becomes an ObjectId again) is the ``_id`` of a document the sink inserts; a stored
document whose ``_id`` differs keeps its own (MongoDB never rewrites ``_id``: the sink retries the
replacement without it), so references to stored documents never break.

``mode: append`` inserts each record once and never updates it: the record's ``_id`` or, without
one, an ObjectId derived from a hash of the record's content is the identity, and a duplicate
``_id`` means "already stored", so re-sending a record is a no-op. (So in append mode two records
identical in every field are stored once.)

Writes go in bulk batches of ``batch_size`` (ordered for upserts, so that of two records with the
same key in one batch the later one wins). A record that cannot be stored (a missing or
null key field, a value BSON cannot hold, a write error the server reports for it) goes to the
dead-letter output with the reason; the rest of the batch is still written. Connection faults fail
the bundle, and the run is retried as a whole, which the idempotent writes make safe. Writes are
visible as they happen: ``publish`` has nothing to do and ``is_published`` is False, so a crash
before the commit simply re-runs the window.

Values are the pipeline's native ones turned into BSON: ``Decimal`` -> Decimal128, aware ``datetime``
-> date, ``date`` -> midnight UTC, ``uuid.UUID`` -> UUID binary, ``bytes`` -> binary, ``time`` and
``timedelta`` -> ISO-8601 text, sets and tuples -> arrays; MongoDB Extended JSON wrappers written by the
``mongodb`` connector (``{"$regularExpression": ...}``, ``{"$timestamp": ...}``) become BSON again.
ObjectIds other than ``_id`` reach the sink as hex strings and are stored as strings.

Example (pipeline YAML)::

    sink:
      type: mongodb
      uri: ${TARGET_MONGO_URI}
      database: analytics
      collection: orders
      key: [order_id]
      update: replace                   # or merge

Or in Python::

    from osmosis_beam.io.mongodb.transforms import WriteToMongoDB
    records | "Write orders" >> WriteToMongoDB(uri=uri, database="analytics", collection="orders", key=["order_id"])
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Mapping

from osmosis_beam.core.errors import ConnectorError, SinkError
from osmosis_beam.core.options import Option
from osmosis_beam.core.secrets import redact_url, reveal
from osmosis_beam.io.base import BaseSink
from osmosis_beam.io.mongodb.client import MODES, UPDATES, check_sink_options
from osmosis_beam.io.mongodb.source import (
    new_client,
    scrub,
)

__all__ = ["MongoDBSink"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Records -> BSON
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# The Beam write
# ---------------------------------------------------------------------------------------------


class MongoDBSink(BaseSink):
    """A MongoDB collection, written with idempotent upserts by key (or insert-once appends)."""

    type_name = "mongodb"
    options = (
        Option("uri", "str", required=True, secret=True, help="mongodb://user:${PASSWORD}@host:27017/?authSource=admin"),
        Option("database", "str", required=True, help="the database name"),
        Option("collection", "str", required=True, help="the collection name"),
        Option("mode", "str", default="upsert", choices=MODES, help="upsert by key, or append (insert once)"),
        Option("key", "list", help="the fields that identify a record (upsert); dotted paths allowed"),
        Option("update", "str", default="replace", choices=UPDATES,
               help="upsert: replace the document with the record, or merge (set) the record's fields into it"),
        Option("batch_size", "int", default=1000, minimum=1, help="operations per bulk write"),
        Option("create_index", "bool", default=True, help="create a unique index on the key fields in prepare()"),
        Option("timeout", "duration", default=dt.timedelta(seconds=10), help="server selection and connect timeout"),
        Option("write_timeout", "duration", default=dt.timedelta(minutes=5),
               help="the deadline of each server round trip (a bulk write, the key index): a server that stops "
                    "answering fails the run after it"),
    )

    def __init__(self, options: Mapping[str, Any] | None = None, *, pipeline_id: str = "", **kwargs: Any) -> None:
        super().__init__(options, pipeline_id=pipeline_id, **kwargs)
        self.key: tuple[str, ...] = tuple(self.config.get("key") or ())

    @classmethod
    def check_options(cls, values: Mapping[str, Any]) -> list[str]:
        problems = check_sink_options(values)
        for name in ("timeout", "write_timeout"):
            value = values.get(name)
            if isinstance(value, dt.timedelta) and value <= dt.timedelta(0):
                problems.append(f"{name}: must be a positive duration")
        return problems

    @property
    def _uri(self) -> str:
        return reveal(self.config["uri"])

    @property
    def _where(self) -> str:
        return f"sink {self.config['database']}.{self.config['collection']}"

    def _error(self, exc: Exception, doing: str) -> SinkError:
        return SinkError(f"{self._where}: {doing} at {redact_url(self._uri)} failed ({scrub(exc, self._uri)})")

    def prepare(self, run_id: str, *, full_refresh: bool = False) -> None:
        """Checks the server answers and, in upsert mode, makes sure a unique index covers the key."""
        try:
            client = new_client(self._uri, self.config["timeout"], app="osmosis-beam sink",
                                round_trip=self.config["write_timeout"])
        except ConnectorError as exc:
            raise SinkError(f"sink.{exc.message}") from None
        try:
            try:
                client.admin.command("ping")
            except Exception as exc:  # noqa: BLE001
                raise SinkError(
                    f"{self._where}: cannot reach MongoDB at {redact_url(self._uri)} ({scrub(exc, self._uri)}); "
                    "check the host and port in sink.uri and that the server is up"
                ) from None
            if self.config["mode"] == "upsert" and self.config["create_index"] and self.key != ("_id",):
                self._ensure_index(client)
        finally:
            client.close()

    def _ensure_index(self, client) -> None:
        from pymongo.errors import DuplicateKeyError, OperationFailure

        collection = client.get_database(self.config["database"]).get_collection(self.config["collection"])
        spec = [(name, 1) for name in self.key]
        try:
            for index in collection.list_indexes():
                if list(index["key"].items()) == spec:
                    if not index.get("unique"):
                        log.warning("%s: index %s on the key is not unique; concurrent upserts may duplicate documents",
                                    self._where, index.get("name"))
                    return
            collection.create_index(spec, unique=True, name="osmosis_key_" + "_".join(self.key).replace(".", "_"))
        except DuplicateKeyError as exc:
            raise SinkError(
                f"{self._where}: cannot create a unique index on {list(self.key)}: the collection already holds documents "
                f"with the same key ({scrub(exc, self._uri)}); remove the duplicates, or set sink.create_index: false"
            ) from None
        except OperationFailure as exc:
            raise self._error(exc, "creating the key index") from None
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "creating the key index") from None

    def write(self, run_id: str):
        from osmosis_beam.io.mongodb.write import MongoDBBatchWrite

        return MongoDBBatchWrite(
            uri=self.config["uri"],
            database=self.config["database"],
            collection=self.config["collection"],
            mode=self.config["mode"],
            key=list(self.key),
            update=self.config["update"],
            batch_size=self.config["batch_size"],
            timeout=self.config["timeout"],
            write_timeout=self.config["write_timeout"],
        )

    def publish(self, run_id: str, *, window_hi: dt.datetime, full_refresh: bool = False) -> dict[str, Any]:
        """Nothing to publish: writes were visible as they happened."""
        if full_refresh:
            log.warning("%s: full refresh keeps documents that this run did not write (the mongodb sink only upserts)",
                        self._where)
        return {"collection": f"{self.config['database']}.{self.config['collection']}", "mode": self.config["mode"]}

    def abort(self, run_id: str) -> None:
        """Nothing to undo: what a failed run wrote is rewritten identically when its window is read again."""

    def is_published(self, run_id: str) -> bool:
        return False

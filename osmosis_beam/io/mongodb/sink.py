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
import decimal
import enum
import hashlib
import ipaddress
import json
import logging
import uuid
from typing import Any, Mapping

from osmosis_beam.core.encoding import dumps, format_timedelta, json_default
from osmosis_beam.core.errors import ConnectorError, SinkError
from osmosis_beam.core.options import Option
from osmosis_beam.core.secrets import Secret, redact_url, reveal
from osmosis_beam.core.timefmt import UTC
from osmosis_beam.io.base import BaseSink
from osmosis_beam.io.mongodb.source import (
    EXTJSON_KEYS,
    from_extjson,
    new_client,
    scrub,
)

__all__ = ["MongoDBSink"]

log = logging.getLogger(__name__)

MODES = ("upsert", "append")
UPDATES = ("replace", "merge")
MISSING = object()
STEP = "sink: mongodb"


class Reject(ValueError):
    """A record that cannot be written (goes to the dead-letter output)."""


def check_sink_options(values: Mapping[str, Any]) -> list[str]:
    """Problems with the sink's coerced option values, each as ``"option: what is wrong"``."""
    problems: list[str] = []
    uri = reveal(values.get("uri"))
    if isinstance(uri, str) and not uri.startswith(("mongodb://", "mongodb+srv://")):
        problems.append(f"uri: must start with mongodb:// or mongodb+srv://, got {redact_url(uri)!r}")
    mode = values.get("mode") or "upsert"
    key = values.get("key")
    if mode == "upsert":
        if not key:
            problems.append("key: required when mode is upsert (the fields that identify a record, e.g. [order_id])")
        else:
            for name in key:
                if not isinstance(name, str) or not name.strip() or name.startswith("$") or ".." in name:
                    problems.append(f"key: {name!r} is not a field name")
            if len(set(key)) != len(key):
                problems.append(f"key: lists a field twice: {key!r}")
    elif key:
        problems.append("key: only used when mode is upsert; remove it, or set mode: upsert")
    if mode == "append" and values.get("update") == "merge":
        problems.append("update: merge is only used when mode is upsert")
    return problems


# ---------------------------------------------------------------------------------------------
# Records -> BSON
# ---------------------------------------------------------------------------------------------


def _bson_types():
    from bson import (
        Binary,
        Code,
        DBRef,
        Decimal128,
        Int64,
        MaxKey,
        MinKey,
        ObjectId,
        Regex,
        Timestamp,
    )
    from bson.datetime_ms import DatetimeMS

    return (Binary, Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp, DatetimeMS)


_PASS = (str, int, float, bool, type(None), dt.datetime, bytes, uuid.UUID)


def to_bson(value: Any, *, _bson: tuple = ()) -> Any:
    """A native record value as a value pymongo can encode (raises ``Reject`` when there is none)."""
    bson_types = _bson or _bson_types()
    kind = type(value)
    if kind in _PASS:
        if kind is int and not -(2**63) <= value < 2**63:
            raise Reject(f"integer {value} does not fit a 64-bit BSON integer")
        return value
    if isinstance(value, Mapping):
        if value and all(isinstance(k, str) and k.startswith("$") for k in value) and EXTJSON_KEYS.intersection(value):
            try:
                return from_extjson(value)
            except Exception as exc:  # noqa: BLE001
                raise Reject(f"invalid Extended JSON value {value!r}: {exc}") from None
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise Reject(f"field name {k!r} is not text")
            out[k] = to_bson(v, _bson=bson_types)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_bson(v, _bson=bson_types) for v in value]
    if isinstance(value, decimal.Decimal):
        from bson import Decimal128

        try:
            return Decimal128(value)
        except (decimal.DecimalException, ValueError, TypeError):
            raise Reject(f"decimal {value} does not fit a BSON Decimal128 (34 digits)") from None
    if isinstance(value, bson_types):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return format_timedelta(value)
    if isinstance(value, enum.Enum):
        return to_bson(value.value, _bson=bson_types)
    if isinstance(value, (ipaddress._BaseAddress, ipaddress._BaseNetwork)):
        return str(value)
    if isinstance(value, Secret):
        return "***"
    for base in (int, float, str):  # subclasses of the plain types (IntEnum and friends are handled above)
        if isinstance(value, base):
            return to_bson(base(value), _bson=bson_types)
    raise Reject(f"cannot store {type(value).__name__} in MongoDB")


def to_document(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record as a BSON-ready document; a 24-hex ``_id`` becomes an ObjectId again."""
    if not isinstance(record, Mapping):
        raise Reject(f"a record must be a mapping, got {type(record).__name__}")
    doc = to_bson(record)
    oid = doc.get("_id")
    if isinstance(oid, str) and len(oid) == 24:
        from bson import ObjectId

        if ObjectId.is_valid(oid):
            doc["_id"] = ObjectId(oid)
    return doc


def content_id(record: Mapping[str, Any]):
    """An ObjectId that is a function of the record's content (for append mode without ``_id``)."""
    from bson import ObjectId

    def default(v: Any) -> Any:
        try:
            return json_default(v)
        except TypeError:
            return repr(v)

    text = json.dumps(record, sort_keys=True, default=default, separators=(",", ":"), ensure_ascii=False)
    return ObjectId(hashlib.sha256(text.encode("utf-8")).digest()[:12])


def shown(record: Any) -> Any:
    """The record as the dead-letter output keeps it (JSON-safe)."""
    try:
        dumps(record)
        return record
    except (TypeError, ValueError):
        return repr(record)


# ---------------------------------------------------------------------------------------------
# The Beam write
# ---------------------------------------------------------------------------------------------


def pymongo_op(op: tuple[str, dict[str, Any], dict[str, Any], bool]):
    from pymongo import InsertOne, ReplaceOne, UpdateOne

    kind, query, document, upsert = op
    if kind == "insert":
        return InsertOne(document)
    return (ReplaceOne if kind == "replace" else UpdateOne)(query, document, upsert=upsert)


def duplicate_id(error: Mapping[str, Any]) -> bool | None:
    """Whether a write error is a duplicate ``_id`` (in append mode: the record is already stored).

    None for a duplicate key error that does not say which index (FerretDB names neither the index
    nor its key pattern): the caller looks for the ``_id`` instead.
    """
    if error.get("code") not in (11000, 11001):
        return False
    pattern = error.get("keyPattern")
    if isinstance(pattern, Mapping):
        return list(pattern) == ["_id"]
    errmsg = str(error.get("errmsg", ""))
    if "index: " in errmsg:
        return "index: _id_ " in errmsg
    return None


def encode_problem(op: tuple[str, dict[str, Any], dict[str, Any], bool]) -> str | None:
    import bson

    try:
        bson.encode(op[1])
        bson.encode(op[2])
    except Exception as exc:  # noqa: BLE001
        return f"cannot encode as BSON: {exc}"
    return None


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
    )

    def __init__(self, options: Mapping[str, Any] | None = None, *, pipeline_id: str = "", **kwargs: Any) -> None:
        super().__init__(options, pipeline_id=pipeline_id, **kwargs)
        self.key: tuple[str, ...] = tuple(self.config.get("key") or ())

    @classmethod
    def check_options(cls, values: Mapping[str, Any]) -> list[str]:
        return check_sink_options(values)

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
            client = new_client(self._uri, self.config["timeout"], app="osmosis-beam sink")
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

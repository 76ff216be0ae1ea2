"""What the MongoDB sink's launcher side and its Beam side share: modes, option checks, documents, bulk ops.

Example::

    from osmosis_beam.io.mongodb.client import content_id
    content_id({"a": 1})          # a stable _id for an append-mode record without one
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
from osmosis_beam.core.secrets import Secret, redact_url, reveal
from osmosis_beam.core.timefmt import UTC
from osmosis_beam.io.mongodb.source import (
    EXTJSON_KEYS,
    from_extjson,
)

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

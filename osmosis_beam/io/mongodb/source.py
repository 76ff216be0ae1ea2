"""The MongoDB connector: reads one collection incrementally over a time window, with pymongo.

Each (sub-)window runs one query, ``{cursor_field: {$gte: lo, $lt: hi}}`` ANDed with the optional
``filter``, sorted by the cursor then ``_id`` and streamed with batched cursors (``batch_size``
documents per round trip), so a window is never held in memory. The cursor is a date field, or
``_id`` for the ObjectId creation time (second precision; only right for insert-only collections).
The source clock is the server's (``hello`` reports ``localTime``); when a server does not report one
the launcher's clock is used and a warning is logged.

Example (pipeline YAML)::

    source:
      type: mongodb
      uri: ${MONGO_URI}                 # mongodb://app:${MONGO_PASSWORD}@db:27017/?authSource=admin
      database: shop
      collection: orders
      cursor_field: updated_at
      filter: {status: {$ne: draft}}    # Extended JSON works: {created: {$gte: {$date: "2024-01-01T00:00:00Z"}}}
      projection: [status, total, items, updated_at]

Or in Python::

    from osmosis_beam.io.mongodb.transforms import ReadFromMongoDB
    records = p | "Read orders" >> ReadFromMongoDB(
        uri="mongodb://127.0.0.1:27017", database="shop", collection="orders",
        cursor_field="updated_at", since="2024-06-01T00:00:00Z", splits=4)

MongoDB compares dates only with dates, so a document whose cursor is missing or not a date is in
no window and never read; ``test_connection()`` warns when there are such documents, and when no index
starts with the cursor field.

Values. Records keep native Python values inside the pipeline (DESIGN.md: sinks encode them), so the
cursor stays a ``datetime`` and decimals stay exact; the JSON-safe forms are what sinks write (the
JSONL sink writes ISO-8601 with the UTC offset, decimal strings and base64). BSON types with no
native Python value become JSON-safe here already. The conversions run inside the driver's decoder:

==========================  ===============================================================
BSON                        record value
==========================  ===============================================================
ObjectId                    its 24-digit hex string (``_id`` too)
date                        UTC-aware ``datetime`` (millisecond precision, as stored)
Decimal128                  ``decimal.Decimal`` (exact)
Binary subtype 4 (UUID)     ``uuid.UUID``
Binary subtype 0            ``bytes``
other Binary subtypes       ``bson.Binary`` (a ``bytes`` subclass that keeps its subtype)
int32 / int64               ``int``
double, string, bool, null  ``float``, ``str``, ``bool``, ``None``
document / array            ``dict`` / ``list`` (converted recursively)
regex, JavaScript code,     canonical MongoDB Extended JSON v2, e.g.
timestamp, min/max key,     ``{"$regularExpression": {"pattern": "^a", "options": "i"}}``,
DBRef, dates outside        ``{"$timestamp": {"t": 1, "i": 2}}``, ``{"$date": {"$numberLong": "..."}}``
years 1-9999                (lossless, and the ``mongodb`` sink turns them back into BSON)
==========================  ===============================================================

What a round trip through the ``mongodb`` sink cannot restore: an ObjectId other than ``_id`` comes
back as its hex string, and int32 versus int64 follows the value's size.

The ``_id`` and the cursor field are always read, whatever the ``projection`` says (the read sorts
and resumes on them); ``_id`` is dropped from the records again when the projection excludes it.
A document that cannot be decoded goes to the dead-letter output instead of failing the run. A
cursor lost mid-window (server restart, cursor timeout) is re-opened after the last document read.
A thread of the read fetches the next raw batch while the last one is decoded; every server reply
has a deadline (``query_timeout``), so a server that stops answering fails the run instead of hanging it.

Into the ``jsonl`` sink with no steps (or only ``select``/``drop``/``rename``) the read takes the
zero-decode path of ``encoded.py``: raw batches become JSON lines without the per-value conversions
above, and the lines are the typed path's, value for value.
"""
from __future__ import annotations

import base64
import datetime as dt
import logging
import uuid
from typing import Any, ClassVar, Iterator, Mapping

from osmosis_beam.core.errors import (
    ConfigError,
    ConnectorError,
    FatalConnectorError,
    RetriableConnectorError,
)
from osmosis_beam.core.options import Option, suggest
from osmosis_beam.core.records import DeadLetter, EncodedBatch, Record
from osmosis_beam.core.secrets import redact_text, redact_url, reveal
from osmosis_beam.core.timefmt import UTC, format_duration, from_micros, to_micros, utcnow
from osmosis_beam.core.window import IncrementalSpec, SyncWindow, cursor_micros
from osmosis_beam.io.base import BaseConnector
from osmosis_beam.io.files.jsonl import typed_line
from osmosis_beam.io.mongodb.encoded import FieldPlan, Unsupported, fast_codec_options, fast_lines, naive_micros

__all__ = ["MongoDBConnector"]

log = logging.getLogger(__name__)

_SCHEMES = ("mongodb://", "mongodb+srv://")
_RESUME_ATTEMPTS = 3
_OID_MIN = dt.datetime(1970, 1, 1, tzinfo=UTC)
_OID_MAX = _OID_MIN + dt.timedelta(seconds=2**32 - 1)
#: Extended JSON v2 wrapper keys that name a BSON value (``$regex`` is left out: it is a query operator).
EXTJSON_KEYS = frozenset(
    {
        "$oid", "$date", "$numberDecimal", "$numberLong", "$numberInt", "$numberDouble", "$binary",
        "$uuid", "$timestamp", "$regularExpression", "$minKey", "$maxKey", "$code", "$ref", "$symbol",
        "$dbPointer", "$undefined",
    }
)


# ---------------------------------------------------------------------------------------------
# pymongo helpers (imported lazily: the driver is an extra)
# ---------------------------------------------------------------------------------------------


def _pymongo():
    try:
        import pymongo
    except ImportError:  # pragma: no cover - depends on the environment
        raise FatalConnectorError("the mongodb connector needs pymongo: pip install 'pymongo>=4.6'") from None
    return pymongo


def _codec_options():
    """Plain BSON values, with dates as UTC-aware datetimes and UUIDs as ``uuid.UUID``."""
    from bson.binary import UuidRepresentation
    from bson.codec_options import CodecOptions, DatetimeConversion

    return CodecOptions(
        tz_aware=True,
        tzinfo=UTC,
        uuid_representation=UuidRepresentation.STANDARD,
        datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    )


def _extjson_options():
    from bson.binary import UuidRepresentation
    from bson.codec_options import DatetimeConversion
    from bson.json_util import JSONMode, JSONOptions

    return JSONOptions(
        json_mode=JSONMode.CANONICAL,
        tz_aware=True,
        tzinfo=UTC,
        uuid_representation=UuidRepresentation.STANDARD,
        datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    )


def new_client(uri: str, timeout: dt.timedelta, app: str = "osmosis-beam", *, round_trip: dt.timedelta | None = None,
               **options: Any):
    """A MongoClient that decodes dates as UTC-aware datetimes; errors name the URI without its password.

    ``round_trip`` is the deadline of each server round trip once connected (``socketTimeoutMS``). The client's
    monitor polls the server every heartbeat interval instead of streaming awaitable ``hello``s: a sync job is
    short-lived and gains nothing from instant topology changes, and a server that answers an awaitable hello
    at once (CongoDB) would otherwise have the monitor send about a thousand a second, taking CPU from the
    read on both sides. ``options`` go to ``MongoClient`` as they are.
    """
    pymongo = _pymongo()
    from bson.codec_options import DatetimeConversion

    ms = max(1, int(timeout.total_seconds() * 1000))
    extra = {} if round_trip is None else {"socketTimeoutMS": max(1, int(round_trip.total_seconds() * 1000))}
    try:
        return pymongo.MongoClient(
            uri,
            serverSelectionTimeoutMS=ms,
            connectTimeoutMS=ms,
            appname=app,
            tz_aware=True,
            tzinfo=UTC,
            uuidRepresentation="standard",
            datetime_conversion=DatetimeConversion.DATETIME_AUTO,
            serverMonitoringMode="poll",
            **extra,
            **options,
        )
    except Exception as exc:  # InvalidURI, ConfigurationError, DNS failures for mongodb+srv
        raise FatalConnectorError(
            f"uri {redact_url(uri)}: not a usable MongoDB URI ({scrub(exc, uri)}); fix the URI"
        ) from None


def uri_secrets(uri: str) -> list[str]:
    """The pieces of ``uri`` that must never be shown: the URI itself and its password (raw and decoded)."""
    import urllib.parse

    out = [uri]
    try:
        password = urllib.parse.urlsplit(uri).password
    except ValueError:
        password = None
    if password:
        out += [password, urllib.parse.unquote_plus(password), urllib.parse.unquote(password)]
    return out


def scrub(exc: BaseException | str, uri: str) -> str:
    """The text of a driver error, shortened to its first part and without the password in ``uri``."""
    text = str(exc)
    for cut in (" (configured timeouts", ", Timeout:", ", full error:"):
        if cut in text:
            text = text.split(cut, 1)[0]
    return redact_text(text, uri_secrets(uri)) or type(exc).__name__


def driver_error(exc: Exception, uri: str, what: str) -> ConnectorError:
    """A pymongo error as a ConnectorError: retriable for network faults, fatal otherwise."""
    from pymongo import errors

    where = redact_url(uri)
    reason = scrub(exc, uri)
    if isinstance(exc, errors.ServerSelectionTimeoutError):
        return RetriableConnectorError(
            f"{what}: cannot reach MongoDB at {where} ({reason}); check the host and port in the URI and that the server is up"
        )
    if isinstance(exc, (errors.AutoReconnect, errors.NetworkTimeout, errors.ConnectionFailure, errors.CursorNotFound)):
        return RetriableConnectorError(f"{what}: lost the connection to MongoDB at {where} ({reason}); the next run retries")
    if isinstance(exc, errors.OperationFailure):
        code = exc.code
        if code in (18, 8000):  # AuthenticationFailed (8000: Atlas's "bad auth")
            return FatalConnectorError(
                f"{what}: authentication failed: MongoDB at {where} refused the user name or password ({reason}); "
                "check the user and password in the URI and its authSource (the database that holds the user)"
            )
        if code == 13:  # Unauthorized: no credentials, or a user without the role for this
            return FatalConnectorError(
                f"{what}: not authorized: MongoDB at {where} refused the request ({reason}); "
                "give the URI a user and password, or grant the user read access to the database"
            )
        return FatalConnectorError(f"{what}: MongoDB at {where} rejected the request ({reason})")
    if isinstance(exc, errors.ConfigurationError):
        return FatalConnectorError(f"{what}: invalid MongoDB configuration for {where} ({reason}); fix the URI")
    return FatalConnectorError(f"{what}: MongoDB error at {where} ({type(exc).__name__}: {reason})")


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


_RECORD_CODEC = None


def record_codec_options():
    """Codec options that decode BSON straight into record values (see the table in the module docstring).

    The conversions run inside the driver's C decoder through a type registry, so a document is
    never walked a second time in Python.
    """
    global _RECORD_CODEC
    if _RECORD_CODEC is not None:
        return _RECORD_CODEC
    from bson import (
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
    from bson.codec_options import TypeDecoder, TypeRegistry
    from bson.datetime_ms import DatetimeMS
    from bson.json_util import default as extjson_default

    options = _extjson_options()

    def to_extjson(value: Any) -> Any:
        return extjson_default(value, json_options=options)

    def dbref(value: DBRef) -> Any:
        out = to_extjson(value)
        if isinstance(value.id, str) and ObjectId.is_valid(value.id):  # the ObjectId decoder ran first
            out["$id"] = {"$oid": value.id}
        return out

    def decoder(bson_type: type, fn) -> TypeDecoder:
        return type(f"_{bson_type.__name__}Decoder", (TypeDecoder,), {"bson_type": bson_type, "transform_bson": staticmethod(fn)})()

    conversions = [
        (ObjectId, str),
        (Decimal128, lambda v: v.to_decimal()),
        (Int64, int),
        (DatetimeMS, to_extjson),
        (Regex, to_extjson),
        (Code, to_extjson),
        (Timestamp, to_extjson),
        (MinKey, to_extjson),
        (MaxKey, to_extjson),
        (DBRef, dbref),
    ]
    base = _codec_options()
    _RECORD_CODEC = base.with_options(type_registry=TypeRegistry([decoder(t, fn) for t, fn in conversions]))
    return _RECORD_CODEC


def from_extjson(value: Any) -> Any:
    """``value`` with every Extended JSON v2 wrapper (``{"$date": ...}``, ``{"$oid": ...}``) turned into BSON.

    Used for the ``filter`` option and by the ``mongodb`` sink to restore what the connector wrote.
    Wrappers are converted bottom-up, as ``json_util.loads`` would; query operators are left alone.
    """
    from bson.json_util import object_hook

    options = _extjson_options()

    def walk(v: Any) -> Any:
        if isinstance(v, Mapping):
            out = {k: walk(x) for k, x in v.items()}
            if out and all(isinstance(k, str) and k.startswith("$") for k in out) and EXTJSON_KEYS.intersection(out):
                return object_hook(out, json_options=options)
            return out
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


def get_path(doc: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """The value at dotted ``path`` in nested mappings (``default`` when a part is missing)."""
    if path in doc:
        return doc[path]
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return value


def _ceil_to(value: dt.datetime, unit_micros: int) -> dt.datetime:
    micros = to_micros(value)
    return from_micros(-(-micros // unit_micros) * unit_micros)


def _bson_type(value: Any) -> str:
    """The BSON type alias of a decoded value (as ``$type`` names it)."""
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

    table = (
        (bool, "bool"), (Int64, "long"), (int, "int"), (float, "double"), (str, "string"),
        (dt.datetime, "date"), (DatetimeMS, "date"), (ObjectId, "objectId"), (Decimal128, "decimal"),
        (uuid.UUID, "uuid"), (Binary, "binData"), (bytes, "binData"), (type(None), "null"),
        (DBRef, "dbRef"), (Mapping, "object"), (list, "array"), (Regex, "regex"), (Code, "javascript"),
        (Timestamp, "timestamp"), (MinKey, "minKey"), (MaxKey, "maxKey"),
    )
    for cls, name in table:
        if isinstance(value, cls):
            if name == "int" and not -(2**31) <= value < 2**31:
                return "long"
            return name
    return type(value).__name__


# ---------------------------------------------------------------------------------------------
# The connector
# ---------------------------------------------------------------------------------------------


class MongoDBConnector(BaseConnector):
    """MongoDB collections, read incrementally by a date field (or ``_id`` creation time)."""

    type_name = "mongodb"
    options = (
        Option("uri", "str", required=True, secret=True, help="mongodb://user:${PASSWORD}@host:27017/?authSource=admin"),
        Option("database", "str", required=True, help="the database name"),
        Option("collection", "str", required=True, help="the collection name"),
        Option("cursor_field", "str", help="a date field, or _id (ObjectId creation time; insert-only collections)"),
        Option("filter", "dict", default={}, help="an extra query ANDed with the window (Extended JSON allowed)"),
        Option("projection", "any", help="fields to read: a list of names or a MongoDB projection document"),
        Option("batch_size", "int", default=1000, minimum=1, help="documents per server round trip"),
        Option("sample_size", "int", default=1000, minimum=1, help="documents get_schema() samples"),
        Option("timeout", "duration", default=dt.timedelta(seconds=10), help="server selection and connect timeout"),
        Option("query_timeout", "duration", default=dt.timedelta(minutes=10),
               help="longest wait for one server reply (a find or getMore of the read); the run then fails, retriable"),
    )
    default_safety_lag: ClassVar[dt.timedelta] = dt.timedelta(seconds=5)

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        *,
        incremental: IncrementalSpec | None = None,
        pipeline_id: str = "",
        **kwargs: Any,
    ) -> None:
        problems: list[str] = []
        try:
            super().__init__(options, incremental=incremental, pipeline_id=pipeline_id, **kwargs)
        except ConfigError as exc:
            problems += exc.problems
        config = getattr(self, "config", {}) or {}
        option_cursor = config.get("cursor_field")
        spec_cursor = (incremental or IncrementalSpec()).cursor_field
        if option_cursor and spec_cursor and option_cursor != spec_cursor:
            problems.append(
                f"source.cursor_field: {option_cursor!r} differs from incremental.cursor_field {spec_cursor!r}; set one of them"
            )
        cursor = spec_cursor or option_cursor
        self.cursor_field = cursor
        if not cursor:
            problems.append(
                "source.cursor_field: required (a date field such as updated_at, or _id for insert-only collections)"
            )
        elif not problems:
            try:
                self._projection, self._drop_id = self._server_projection(config.get("projection"))
            except ConfigError as exc:
                problems += exc.problems
        if problems:
            raise ConfigError(problems=problems)
        self._filter = from_extjson(config.get("filter") or {})
        self._clock_warned = False
        self._lower: tuple[Any, dt.datetime | None] | None = None  # (hi, smallest cursor) of an open window
        self._fields: FieldPlan | None = None  # the zero-decode path's field steps (see use_encoding)

    @classmethod
    def check_options(cls, values: Mapping[str, Any]) -> list[str]:
        """Problems with already-coerced option values (also used by the pipeline loader)."""
        problems: list[str] = []
        uri = reveal(values.get("uri"))
        if isinstance(uri, str) and not uri.startswith(_SCHEMES):
            problems.append(f"uri: must start with mongodb:// or mongodb+srv://, got {redact_url(uri)!r}")
        projection = values.get("projection")
        if projection is not None:
            if isinstance(projection, list):
                bad = [p for p in projection if not isinstance(p, str) or not p]
                if bad or not projection:
                    problems.append("projection: a list of projection fields must hold field names")
            elif not isinstance(projection, Mapping):
                problems.append(f"projection: must be a list of field names or a projection document, got {projection!r}")
        cursor = values.get("cursor_field")
        if cursor is not None and (not isinstance(cursor, str) or cursor.startswith("$") or not cursor.strip()):
            problems.append(f"cursor_field: {cursor!r} is not a field name")
        filter_ = values.get("filter")
        if filter_:
            try:
                from_extjson(filter_)
            except Exception as exc:  # noqa: BLE001 - any parse error is a config problem
                problems.append(f"filter: invalid Extended JSON value ({exc})")
        return problems

    def _server_projection(self, projection: Any) -> tuple[dict[str, Any] | None, bool]:
        """The projection sent to the server (always with ``_id`` and the cursor) and whether to drop ``_id``."""
        if projection is None:
            return None, False
        if isinstance(projection, list):
            projection = {name: 1 for name in projection}
        proj = dict(projection)
        drop_id = proj.get("_id", 1) in (0, False)
        if drop_id and self.cursor_field == "_id":
            raise ConfigError("source.projection: excludes _id, which is the cursor field; keep _id")
        proj.pop("_id", None)
        cursor = self.cursor_field
        values = [v for v in proj.values() if not isinstance(v, Mapping)]
        exclusion = bool(values) and all(v in (0, False) for v in values)
        if exclusion:
            if cursor in proj or any(cursor.startswith(k + ".") for k in proj):
                raise ConfigError(f"source.projection: excludes the cursor field {cursor!r}; it must be read")
        elif cursor != "_id" and not any(cursor == k or cursor.startswith(k + ".") for k in proj):
            proj[cursor] = 1
        return (proj or None), drop_id

    # -- connection -------------------------------------------------------------------------------
    @property
    def _uri(self) -> str:
        return reveal(self.config["uri"])

    @property
    def _where(self) -> str:
        return f"source {self.config['database']}.{self.config['collection']}"

    def connect(self) -> None:
        if self._client is None:
            self._client = new_client(self._uri, self.config["timeout"], round_trip=self.config["query_timeout"])

    def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _collection(self):
        self.connect()
        db = self._client.get_database(self.config["database"], codec_options=_codec_options())
        return db.get_collection(self.config["collection"])

    def _error(self, exc: Exception, what: str | None = None) -> ConnectorError:
        return driver_error(exc, self._uri, what or self._where)

    # -- queries ------------------------------------------------------------------------------------
    def _window_query(self, lo: dt.datetime | None, hi: dt.datetime | None) -> dict[str, Any]:
        """``{cursor: {$gte: lo, $lt: hi}}`` with bounds rounded up to what the server stores.

        BSON dates hold milliseconds (ObjectIds seconds) while a window bound has microseconds: a
        stored value ``t`` is ``>= lo`` exactly when ``t >= ceil(lo)``, so both bounds round up.
        """
        for name, bound in (("lo", lo), ("hi", hi)):
            if bound is not None and not isinstance(bound, dt.datetime):
                raise FatalConnectorError(
                    f"{self._where}: window.{name} is {bound!r}; the mongodb connector reads date cursors only"
                )
        cond: dict[str, Any] = {}
        if self.cursor_field == "_id":
            from bson import ObjectId

            # An ObjectId holds whole seconds since 1970 in 32 bits: bounds outside that bound nothing.
            if lo is not None and _OID_MIN < lo:
                cond["$gte"] = ObjectId.from_datetime(min(_ceil_to(lo, 1_000_000), _OID_MAX))
            if hi is not None and hi <= _OID_MAX:
                cond["$lt"] = ObjectId.from_datetime(_ceil_to(hi, 1_000_000))
            if not cond:
                cond["$type"] = "objectId"
        else:
            if lo is not None:
                cond["$gte"] = _ceil_to(lo, 1000)
            if hi is not None:
                cond["$lt"] = _ceil_to(hi, 1000)
            if not cond:
                cond["$type"] = "date"
        return self._and({self.cursor_field: cond})

    def _and(self, query: dict[str, Any]) -> dict[str, Any]:
        return {"$and": [self._filter, query]} if self._filter else query

    def _sort(self) -> list[tuple[str, int]]:
        return [("_id", 1)] if self.cursor_field == "_id" else [(self.cursor_field, 1), ("_id", 1)]

    def _after(self, cursor_value: Any, id_value: Any) -> dict[str, Any]:
        """Documents after ``(cursor_value, _id)`` in the read order (to resume a lost cursor)."""
        if self.cursor_field == "_id":
            return {"_id": {"$gt": id_value}}
        return {"$or": [{self.cursor_field: {"$gt": cursor_value}}, {self.cursor_field: cursor_value, "_id": {"$gt": id_value}}]}

    # -- sync hooks -----------------------------------------------------------------------------------
    def source_clock(self) -> dt.datetime:
        """The server's clock from ``hello`` (``localTime``); the launcher's, with a warning, when absent."""
        self.connect()
        admin = self._client.get_database("admin", codec_options=_codec_options())
        reply: Mapping[str, Any] = {}
        try:
            reply = admin.command("hello", codec_options=_codec_options())
        except Exception as exc:  # noqa: BLE001 - old servers only know isMaster
            from pymongo.errors import OperationFailure

            if not isinstance(exc, OperationFailure):
                raise self._error(exc) from None
            try:
                reply = admin.command("isMaster", codec_options=_codec_options())
            except Exception as exc2:  # noqa: BLE001
                raise self._error(exc2) from None
        now = reply.get("localTime")
        if isinstance(now, dt.datetime):
            return now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
        if not self._clock_warned:
            log.warning(
                "%s: the server does not report its clock (hello.localTime); using this machine's clock for the window",
                self._where,
            )
            self._clock_warned = True
        return utcnow()

    def window_is_empty(self, window: SyncWindow) -> bool:
        """Whether no document is in ``window``. With ``lo`` open the read asks :meth:`lower_bound` next, so
        this asks for it here, in the one query (a server without an index on the cursor, CongoDB, scans the
        whole collection for each)."""
        if window.lo is None:
            self._lower = (window.hi, self._extreme(window, 1))
            return self._lower[1] is None
        query = self._window_query(window.lo, window.hi)
        try:
            return self._collection().find_one(query, {"_id": 1}) is None
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None

    def lower_bound(self, window: SyncWindow) -> dt.datetime | None:
        """The smallest cursor in ``window`` (where the split points start); the one :meth:`window_is_empty`
        found for the same open window, when it was asked."""
        known = self._lower
        if window.lo is None and known is not None and known[0] == window.hi:
            return known[1]
        return self._extreme(window, 1)

    def upper_bound(self, window: SyncWindow) -> dt.datetime | None:
        """The largest cursor in the window (the end of the documents, for the progress share)."""
        return self._extreme(window, -1)

    def _extreme(self, window: SyncWindow, direction: int) -> dt.datetime | None:
        query = self._window_query(window.lo, window.hi)
        # The smallest cursor needs no tie-break on _id: an index on the cursor alone answers it without a sort.
        sort = [(self.cursor_field, direction)]
        try:
            doc = self._collection().find_one(query, {self.cursor_field: 1}, sort=sort)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None
        if doc is None:
            return None
        value = doc["_id"].generation_time if self.cursor_field == "_id" else get_path(doc, self.cursor_field)
        return value if isinstance(value, dt.datetime) else None

    # -- the read -------------------------------------------------------------------------------------
    def read_window(self, lo: dt.datetime | None, hi: dt.datetime) -> Iterator[Record | DeadLetter]:
        """The documents whose cursor is in ``[lo, hi)``, sorted by the cursor then ``_id``, streamed.

        Batches of ``batch_size`` documents arrive as raw BSON and are decoded one batch at a time, so
        memory holds one batch whatever the size of the window.
        """
        import bson

        codec = record_codec_options()
        for data in self._raw_batches(lo, hi, self._projection):
            for _offset, record in self._decode_batch(bson, data, codec):
                if not isinstance(record, DeadLetter) and self._drop_id:
                    record.pop("_id", None)
                yield record

    def _raw_batches(self, lo, hi, projection) -> Iterator[bytes]:
        """The raw BSON batches of the window's query, fetched by a thread of their own one batch ahead of
        their decoding (the server prepares the next batch while this thread decodes the last)."""
        return _prefetched(self._fetch_batches(lo, hi, projection), self.config["query_timeout"])

    def _fetch_batches(self, lo, hi, projection) -> Iterator[bytes]:
        """The raw BSON batches of the window's query; a cursor lost mid-window is re-opened after the last
        document of the last batch fetched (every batch fetched is handed out, in order)."""
        from pymongo import errors

        collection = self._collection()
        window = self._window_query(lo, hi)
        batch_size = self.config["batch_size"]
        after: tuple[Any, Any] | None = None  # (cursor, _id) of the last document handed out
        last: bytes | None = None
        failures = 0
        while True:
            if last is not None:
                after = self._last_key(last) or after
                last = None
            query = window if after is None else {"$and": [window, self._after(*after)]}
            cursor = collection.find_raw_batches(query, projection, sort=self._sort(), batch_size=batch_size)
            try:
                for data in cursor:
                    failures = 0
                    last = data
                    yield data
                return
            except errors.NetworkTimeout:  # the server did not answer in time: asking again would wait as long
                raise RetriableConnectorError(
                    f"{self._where}: MongoDB at {redact_url(self._uri)} sent no reply within query_timeout "
                    f"({format_duration(self.config['query_timeout'])}); the next run retries (raise source.query_timeout "
                    "for a slow query, or add an index on the cursor field)"
                ) from None
            except (errors.CursorNotFound, errors.AutoReconnect) as exc:
                failures += 1
                if failures > _RESUME_ATTEMPTS or isinstance(exc, errors.ServerSelectionTimeoutError):
                    raise self._error(exc) from None
                log.warning("%s: cursor lost (%s); resuming after the last document read", self._where, scrub(exc, self._uri))
            except errors.PyMongoError as exc:
                raise self._error(exc) from None
            finally:
                cursor.close()

    reads_batches = True  # sorted by the cursor: ReadWindow checks and claims at batch edges only

    def read_window_batches(self, lo, hi, batch_size: int) -> Iterator[list[Record] | EncodedBatch | DeadLetter]:
        """The documents of ``[lo, hi)`` in lists of up to ``batch_size`` (each server batch is decoded at once),
        or as JSON lines (:class:`EncodedBatch`) on the zero-decode path."""
        if self._fields is not None:
            yield from self._read_json(lo, hi, batch_size)
            return
        batch: list[Record] = []
        for item in self.read_window(lo, hi):
            if isinstance(item, DeadLetter):
                yield item
                continue
            batch.append(item)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    # -- the zero-decode read ---------------------------------------------------------------------------
    encodings = ("json",)  # JSON lines in the jsonl sink's encoding, straight from raw BSON batches

    def use_encoding(self, encoding: str | None, fields: tuple = ()) -> str | None:
        """Read JSON lines instead of records (``encoding`` "json"), doing the ``fields`` steps; None to read typed.

        Returns why it cannot (the read then stays typed), or None. Called on the launcher.
        """
        self._fields = None
        if encoding is None:
            return None
        if encoding not in self.encodings:
            return f"the mongodb source cannot write {encoding}"
        try:
            self._fields = FieldPlan.of(fields, self.cursor_field)
        except Unsupported as exc:
            return f"{self._where}: {exc}"
        return None

    def _read_json(self, lo, hi, batch_size: int) -> Iterator[EncodedBatch | DeadLetter]:
        """The zero-decode read: each raw batch decoded without the type registry and encoded by orjson.

        Documents the fast encoder leaves alone (rare BSON types, NaN) are encoded by the typed path, one
        by one; a batch with a document the driver cannot decode goes the typed path as a whole.
        """
        import bson

        plan = self._fields
        fast = fast_codec_options()
        projection = self._projection if self._projection is not None else plan.projection()
        prev: int | None = None
        for data in self._raw_batches(lo, hi, projection):
            try:
                docs = bson.decode_all(data, codec_options=fast)
            except Exception:  # noqa: BLE001 - an undecodable document: the typed path finds and dead-letters it
                docs = None
            if docs is None:
                items = self._typed_items(data)
            else:
                items = self._fast_items(data, docs)
            if isinstance(items, tuple):  # every document encoded and placed: no work per document here
                positions, lines = items
                prev = positions[-1] if positions else prev
                for start in range(0, len(lines), batch_size):
                    yield EncodedBatch("json", lines[start:start + batch_size], positions[start:start + batch_size])
                continue
            positions = []
            lines = []
            unencodable: list[int] = []  # documents read that the sink cannot encode (a NaN): counted as read
            for item in items:
                if isinstance(item, DeadLetter):
                    if item.position is not None:
                        unencodable.append(item.position)
                    yield item
                    continue
                position, line = item
                if position is None:  # an array of dates matched the window: it sorts by its smallest date
                    if prev is None:
                        raise FatalConnectorError(
                            f"{self._where}: a document has no single date in cursor field {self.cursor_field!r} "
                            "(an array of dates?); give each document one date there"
                        )
                    position = prev
                prev = position
                positions.append(position)
                lines.append(line)
                if len(lines) >= batch_size:
                    yield EncodedBatch("json", lines, positions, dropped=unencodable)
                    positions, lines, unencodable = [], [], []
            if lines or unencodable:
                yield EncodedBatch("json", lines, positions, dropped=unencodable)

    def _fast_items(self, data: bytes, docs: list[dict]):
        """``(position, line)`` per document of a decoded batch (a document the typed path must encode: its
        line or dead letter from there); or, when every document has its line and position, the two lists."""
        positions = self._positions(docs)
        if self._drop_id:
            for doc in docs:
                doc.pop("_id", None)
        steps = self._fields
        lines, failed = fast_lines(steps.apply(docs) if steps.steps else docs)
        if not failed and None not in positions:
            return positions, lines
        items: list = list(zip(positions, lines))
        if failed:
            import bson

            offsets = _offsets(data)
            codec = record_codec_options()
            for i in failed:
                raw = data[offsets[i]:offsets[i + 1]]
                try:
                    record = bson.decode(raw, codec_options=codec)
                except Exception as exc:  # noqa: BLE001 - as the typed path: one bad document must not stop the run
                    items[i] = DeadLetter("read: mongodb", f"cannot decode BSON document: {exc}", _raw_summary(raw))
                    continue
                line = self._typed_line(record)
                if isinstance(line, DeadLetter):
                    line.position = positions[i]  # the read emits it with the claim covering the document
                items[i] = line if isinstance(line, DeadLetter) else (positions[i], line)
        return items

    def _typed_items(self, data: bytes) -> Iterator[tuple[int, bytes] | DeadLetter]:
        """``(position, line)`` per document of a batch, all by the typed path (its dead letters included)."""
        import bson

        for _offset, record in self._decode_batch(bson, data, record_codec_options()):
            if isinstance(record, DeadLetter):
                yield record
                continue
            position = self.cursor_position(record)
            line = self._typed_line(record)
            if isinstance(line, DeadLetter):
                line.position = position
            yield line if isinstance(line, DeadLetter) else (position, line)

    def _typed_line(self, record: Record) -> bytes | DeadLetter:
        """The record's line as the typed path encodes it, as UTF-8 bytes like the fast lines (or its dead letter)."""
        if self._drop_id:
            record.pop("_id", None)
        steps = self._fields
        if steps.steps:
            record = steps.apply([record])[0]
        line = typed_line(record)
        return line if isinstance(line, DeadLetter) else line.encode("utf-8")

    def _positions(self, docs: list[dict]) -> list[int | None]:
        """The cursor positions of documents decoded by ``fast_codec_options`` (ObjectIds, naive UTC dates)."""
        cursor = self.cursor_field
        if cursor == "_id":
            return [int.from_bytes(d["_id"].binary[:4], "big") * 1_000_000 if hasattr(d.get("_id"), "binary") else None
                    for d in docs]
        values = [d.get(cursor) for d in docs] if "." not in cursor else [get_path(d, cursor) for d in docs]
        return [naive_micros(v) if isinstance(v, dt.datetime) else None for v in values]

    def _last_key(self, data: bytes) -> tuple[Any, Any] | None:
        """The sort key of the last decodable document of a raw batch (None when there is none)."""
        offsets = _offsets(data)
        for start in reversed(offsets[:-1]):
            try:
                return self._sort_key(data, start)
            except Exception:  # noqa: BLE001 - an undecodable document: the one before it
                continue
        return None

    def _decode_batch(self, bson: Any, data: bytes, codec: Any) -> Iterator[tuple[int, Record | DeadLetter]]:
        """``(offset, record)`` for each document of a raw batch; undecodable documents as dead letters."""
        try:
            docs = bson.decode_all(data, codec_options=codec)
        except Exception:  # noqa: BLE001 - find the bad document(s) one by one
            docs = None
        offset = 0
        for doc in docs if docs is not None else ():
            yield offset, doc
            offset += int.from_bytes(data[offset:offset + 4], "little")
        if docs is not None:
            return
        while offset + 4 <= len(data):
            size = int.from_bytes(data[offset:offset + 4], "little")
            if size < 5 or offset + size > len(data):
                yield offset, DeadLetter("read: mongodb", "truncated BSON batch from the server", None)
                return
            raw = data[offset:offset + size]
            try:
                yield offset, bson.decode(raw, codec_options=codec)
            except Exception as exc:  # noqa: BLE001 - one bad document must not stop the run
                yield offset, DeadLetter("read: mongodb", f"cannot decode BSON document: {exc}", _raw_summary(raw))
            offset += size

    def _sort_key(self, data: bytes, offset: int) -> tuple[Any, Any]:
        """The cursor value and ``_id`` (as BSON values) of the document at ``offset`` in a raw batch."""
        import bson

        size = int.from_bytes(data[offset:offset + 4], "little")
        doc = bson.decode(data[offset:offset + size], codec_options=_codec_options())
        cursor = doc["_id"] if self.cursor_field == "_id" else get_path(doc, self.cursor_field)
        return cursor, doc["_id"]

    def cursor_position(self, record: Record) -> int | None:
        if self.cursor_field == "_id":
            value = record.get("_id")
            if isinstance(value, str) and len(value) == 24:
                try:
                    return int(value[:8], 16) * 1_000_000
                except ValueError:
                    return None
            return None
        value = get_path(record, self.cursor_field)
        if not isinstance(value, dt.datetime):
            return None
        return cursor_micros(value, self.cursor_field)

    # -- the seed interface -------------------------------------------------------------------------
    def test_connection(self) -> str:
        """Pings the server and checks the collection exists; returns a one-line description."""
        database, name = self.config["database"], self.config["collection"]
        self.connect()
        try:
            self._client.admin.command("ping")
            try:
                version = self._client.admin.command("buildInfo").get("version", "?")
            except Exception:  # noqa: BLE001 - informational only
                version = "?"
            db = self._client.get_database(database)
            if not db.list_collection_names(filter={"name": name}):
                known = sorted(db.list_collection_names())
                if not known:
                    dbs = sorted(self._client.list_database_names())
                    raise FatalConnectorError(
                        f"source.database: database {database!r} does not exist or has no collections"
                        f"{suggest(database, dbs)}; known: {', '.join(dbs) or 'none'}"
                    )
                raise FatalConnectorError(
                    f"source.collection: collection {name!r} does not exist in database {database!r}"
                    f"{suggest(name, known)}; known: {', '.join(known)}"
                )
            collection = self._collection()
            count = collection.estimated_document_count()
            notes = self._cursor_notes(collection)
        except ConnectorError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "source") from None
        for note in notes:
            log.warning("%s: %s", self._where, note)
        line = f"mongodb: {redact_url(self._uri)} (MongoDB {version}), {database}.{name}: about {count} documents"
        return "; ".join([line, *notes])

    def _cursor_notes(self, collection) -> list[str]:
        notes = []
        cursor = self.cursor_field
        if cursor != "_id":
            bad = collection.find_one(self._and({cursor: {"$not": {"$type": "date"}}}), {"_id": 1})
            if bad is not None:
                notes.append(
                    f"some documents (e.g. _id {bad['_id']}) have no date in {cursor!r}; they are never read"
                )
            indexed = any(next(iter(ix["key"]), None) == cursor for ix in collection.list_indexes())
            if not indexed:
                notes.append(f"no index starts with {cursor!r}: create {{{cursor}: 1, _id: 1}} for large collections")
        return notes

    def get_schema(self) -> dict[str, Any]:
        """Samples the most recent documents; reports field paths, the BSON types seen, and presence."""
        size = self.config["sample_size"]
        collection = self._collection()
        sort = [(f, -1) for f, _ in self._sort()]
        try:
            docs = list(collection.find(self._filter, self._projection, sort=sort, limit=size, batch_size=min(size, 1000)))
            total = collection.estimated_document_count()
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None
        seen: dict[str, dict[str, int]] = {}
        present: dict[str, int] = {}
        for doc in docs:
            types: dict[str, set[str]] = {}
            _walk_types(doc, "", types)
            for path, kinds in types.items():
                present[path] = present.get(path, 0) + 1
                counts = seen.setdefault(path, {})
                for kind in kinds:
                    counts[kind] = counts.get(kind, 0) + 1
        n = len(docs)
        fields = []
        for path in sorted(seen, key=_path_order):
            counts = dict(sorted(seen[path].items(), key=lambda kv: (-kv[1], kv[0])))
            non_null = [k for k in counts if k != "null"]
            fields.append(
                {
                    "name": path,
                    "type": non_null[0] if non_null else "null",
                    "types": counts,
                    "nullable": "null" in counts or present[path] < n,
                    "present": present[path],
                    "presence": round(present[path] / n, 4) if n else 0.0,
                }
            )
        return {
            "fields": fields,
            "cursor_field": self.cursor_field,
            "database": self.config["database"],
            "collection": self.config["collection"],
            "sampled": n,
            "estimated_count": total,
        }


def _walk_types(value: Any, path: str, out: dict[str, set[str]]) -> None:
    if isinstance(value, Mapping) and not _is_dbref(value):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            out.setdefault(sub, set()).add(_bson_type(item))
            _walk_types(item, sub, out)
    elif isinstance(value, list):
        sub = f"{path}[]"
        for item in value:
            out.setdefault(sub, set()).add(_bson_type(item))
            _walk_types(item, sub, out)


def _is_dbref(value: Any) -> bool:
    from bson import DBRef

    return isinstance(value, DBRef)


def _path_order(path: str) -> tuple:
    return (path != "_id", path)


_END = object()
_PREFETCH = 2  # batches fetched ahead of the one being decoded


def _prefetched(batches: Iterator[bytes], deadline: dt.timedelta) -> Iterator[bytes]:
    """``batches`` produced by a thread of their own, up to ``_PREFETCH`` ahead; errors arrive here, in order.

    Closing the iterator stops the thread (it closes ``batches``, and so the cursor, itself). Every network
    call of the thread has the client's deadlines, so a wait here ends with a batch or an error.
    """
    import queue
    import threading

    ready: queue.Queue = queue.Queue(maxsize=_PREFETCH)
    stop = threading.Event()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for data in batches:
                if not hand_over((data, None)):
                    return
            hand_over((_END, None))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the reading thread
            hand_over((None, exc))
        finally:
            batches.close()

    thread = threading.Thread(target=produce, name="osmosis-mongodb-fetch", daemon=True)
    thread.start()
    patience = deadline.total_seconds() + 30  # the thread's own calls end within the deadline
    try:
        while True:
            try:
                data, exc = ready.get(timeout=patience)
            except queue.Empty:
                raise RetriableConnectorError(
                    f"the MongoDB read got no batch within {format_duration(deadline)} and its fetch thread is stuck"
                ) from None
            if exc is not None:
                raise exc
            if data is _END:
                return
            yield data
    finally:
        stop.set()


def _offsets(data: bytes) -> list[int]:
    """Where each document of a well-formed raw batch starts, and the batch's end."""
    out = [0]
    end = len(data)
    offset = 0
    while offset + 4 <= end:
        offset += int.from_bytes(data[offset:offset + 4], "little")
        out.append(offset)
    return out


def _raw_summary(raw: bytes) -> dict[str, Any]:
    """What the dead-letter output keeps of a document that could not be read: its bytes, and _id if readable."""
    out: dict[str, Any] = {"bson_base64": base64.b64encode(raw).decode("ascii")}
    try:
        from bson.raw_bson import RawBSONDocument

        out["_id"] = str(RawBSONDocument(raw)["_id"])
    except Exception:  # noqa: BLE001
        pass
    return out

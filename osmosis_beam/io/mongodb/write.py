"""The Beam side of the mongodb sink (imported only when a job is built: Beam takes ~1 s to import)."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterator, Mapping

import apache_beam as beam
from apache_beam.metrics import Metrics

from osmosis_beam.core.errors import ConfigError, ConnectorError, SinkError
from osmosis_beam.core.records import DEAD_LETTER_TAG, METRICS_NAMESPACE, DeadLetter
from osmosis_beam.core.secrets import Secret, redact_url, reveal
from osmosis_beam.core.timefmt import format_duration
from osmosis_beam.io.mongodb.client import (
    MISSING,
    MODES,
    STEP,
    UPDATES,
    Reject,
    check_sink_options,
    content_id,
    duplicate_id,
    encode_problem,
    pymongo_op,
    shown,
    to_document,
)
from osmosis_beam.io.mongodb.source import get_path, new_client, scrub


#: The deadline of each server round trip of a write (``socketTimeoutMS``), unless the sink says otherwise.
DEFAULT_WRITE_TIMEOUT = dt.timedelta(minutes=5)


class _WriteMongoFn(beam.DoFn):
    """Writes each batch of records with bulk writes; records that cannot be stored go to the dead-letter output."""

    def __init__(self, uri: Secret, database: str, collection: str, mode: str, key: tuple[str, ...],
                 batch_size: int, timeout: dt.timedelta, update: str = "replace",
                 write_timeout: dt.timedelta = DEFAULT_WRITE_TIMEOUT) -> None:
        self._uri = uri
        self._database = database
        self._collection_name = collection
        self._mode = mode
        self._update = update
        self._key = tuple(key)
        self._batch_size = batch_size
        self._timeout = timeout
        self._write_timeout = write_timeout  # each round trip's deadline (socketTimeoutMS)
        self._client = None
        self._written = Metrics.counter(METRICS_NAMESPACE, "records_written")
        self._dead = Metrics.counter(METRICS_NAMESPACE, "dead_letter")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        state.pop("_coll", None)
        return state

    def setup(self) -> None:
        try:
            self._client = new_client(reveal(self._uri), self._timeout, app="osmosis-beam sink",
                                      round_trip=self._write_timeout)
        except ConnectorError as exc:
            raise SinkError(f"sink.{exc.message}") from None
        self._coll = self._client.get_database(self._database).get_collection(self._collection_name)

    def teardown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def process(self, batch):
        if isinstance(batch, Mapping):  # tolerate single records
            batch = [batch]
        for start in range(0, len(batch), self._batch_size):
            yield from self._write_chunk(batch[start:start + self._batch_size])

    def _dead_letter(self, record: Any, error: str):
        self._dead.inc()
        return beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, DeadLetter(STEP, error, shown(record)).to_dict())

    def _ops(self, record: Mapping[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any], bool]]:
        """The ``(kind, filter, document, upsert)`` operations that store ``record`` (kind: insert, replace, update)."""
        doc = to_document(record)
        oid = doc.pop("_id", MISSING)
        if self._mode == "append":
            if oid is MISSING:
                oid = content_id(record)
            return [("insert", {}, {"_id": oid, **doc}, False)]
        query = {}
        for name in self._key:
            value = get_path(doc, name, MISSING) if name != "_id" else oid
            if value is MISSING:
                raise Reject(f"record has no value for key field {name!r}")
            if value is None:
                raise Reject(f"key field {name!r} is null")
            query[name] = value
        if self._update == "merge":
            update: dict[str, Any] = {}
            if doc:
                update["$set"] = doc
            if oid is not MISSING and "_id" not in self._key:
                update["$setOnInsert"] = {"_id": oid}
            return [("update", query, update or {"$setOnInsert": dict(query)}, True)]
        if oid is not MISSING:
            doc = {"_id": oid, **doc}
        return [("replace", query, doc, True)]

    def _write_chunk(self, records: list) -> Iterator[Any]:
        ops, kept = [], []
        for record in records:
            try:
                record_ops = self._ops(record)
            except Reject as exc:
                yield self._dead_letter(record, str(exc))
                continue
            ops += [(len(kept), op) for op in record_ops]
            kept.append(record)
        yield from self._apply(ops, kept)

    def _apply(self, ops: list[tuple[int, tuple]], records: list) -> Iterator[Any]:
        """Runs ``ops`` (each tagged with the index of its record) as bulk writes.

        Upserts run ordered (a key that appears twice in a batch ends with the later record). A
        write error dead-letters the record at fault and the rest resumes after it, except: a
        replacement whose ``_id`` differs from the stored document's (MongoDB error 66) is retried
        without ``_id``, so the stored document keeps its own. Appends run unordered, and a
        duplicate ``_id`` means the record is already stored.
        """
        from bson.errors import InvalidDocument
        from pymongo.errors import BulkWriteError, PyMongoError

        ordered = self._mode != "append"
        ops = list(ops)
        start = 0
        while start < len(ops):
            pending = ops[start:]
            try:
                self._coll.bulk_write([pymongo_op(op) for _, op in pending], ordered=ordered)
                self._written.inc(len({owner for owner, _ in pending}))
                return
            except BulkWriteError as exc:
                details = exc.details or {}
                if details.get("writeConcernErrors"):
                    raise SinkError(f"{self._where()}: write concern error: {self._scrub(details['writeConcernErrors'][0])}") from None
                errors = details.get("writeErrors") or []
                if not errors:
                    raise SinkError(f"{self._where()}: bulk write failed: {self._scrub(exc)}") from None
                if not ordered:
                    dead: dict[int, dict[str, Any]] = {}
                    unsure: list[tuple[int, dict[str, Any], Any]] = []  # duplicates that name no index
                    for error in errors:
                        owner, op = pending[error["index"]]
                        is_duplicate = duplicate_id(error)
                        if is_duplicate is None:
                            unsure.append((owner, error, op[2].get("_id")))
                        elif not is_duplicate:
                            dead.setdefault(owner, error)
                    if unsure:
                        stored = self._stored_ids([oid for _, _, oid in unsure])
                        for owner, error, oid in unsure:
                            if oid not in stored:
                                dead.setdefault(owner, error)
                    for owner, error in dead.items():
                        yield self._dead_letter(records[owner], self._describe(error))
                    self._written.inc(len({owner for owner, _ in pending}) - len(dead))
                    return
                error = errors[0]
                failed = start + error["index"]
                owner, op = ops[failed]
                self._written.inc(len({o for o, _ in ops[start:failed] if o != owner}))
                kind, query, document, upsert = op
                if error.get("code") == 66 and kind == "replace" and "_id" in document and "_id" not in query:
                    ops[failed] = (owner, (kind, query, {k: v for k, v in document.items() if k != "_id"}, upsert))
                    start = failed
                    continue
                yield self._dead_letter(records[owner], self._describe(error))
                start = failed
                while start < len(ops) and ops[start][0] == owner:
                    start += 1
            except (InvalidDocument, OverflowError, TypeError, ValueError):
                # A value pymongo cannot encode: find the records at fault, write the others.
                bad = {}
                for owner, op in pending:
                    problem = encode_problem(op)
                    if problem and owner not in bad:
                        bad[owner] = problem
                if not bad:
                    raise  # not a per-record problem after all
                for owner, problem in bad.items():
                    yield self._dead_letter(records[owner], problem)
                ops = [(o, op) for o, op in pending if o not in bad]
                start = 0
            except PyMongoError as exc:
                raise self._failed(exc, "write to") from None

    def _failed(self, exc: Exception, doing: str) -> SinkError:
        from pymongo.errors import NetworkTimeout

        if isinstance(exc, NetworkTimeout):
            return SinkError(
                f"{self._where()}: MongoDB at {redact_url(reveal(self._uri))} sent no reply within write_timeout "
                f"({format_duration(self._write_timeout)}); the run fails and its window is written again by the next "
                "run (raise sink.write_timeout if the server is only slow)"
            )
        return SinkError(
            f"{self._where()}: cannot {doing} MongoDB at {redact_url(reveal(self._uri))} ({self._scrub(exc)}); "
            "the run fails and its window is written again by the next run"
        )

    def _stored_ids(self, ids: list[Any]) -> set[Any]:
        """Which of ``ids`` are the ``_id`` of a stored document."""
        from pymongo.errors import PyMongoError

        try:
            return {doc["_id"] for doc in self._coll.find({"_id": {"$in": ids}}, {"_id": 1})}
        except PyMongoError as exc:
            raise self._failed(exc, "read from") from None

    def _describe(self, error: Mapping[str, Any]) -> str:
        return f"write error {error.get('code')}: {self._scrub(error.get('errmsg', 'unknown'))}"

    def _where(self) -> str:
        return f"sink {self._database}.{self._collection_name}"

    def _scrub(self, text: Any) -> str:
        return scrub(str(text), reveal(self._uri))


class MongoDBBatchWrite(beam.PTransform):
    """Writes batches of records into one collection (upsert by ``key``, or append); dead letters on ``dead_letter``.

    Arguments are checked here, when the pipeline is built.
    """

    def __init__(self, *, uri: str | Secret, database: str, collection: str, mode: str = "upsert",
                 key: list[str] | tuple[str, ...] | None = None, update: str = "replace", batch_size: int = 1000,
                 timeout: dt.timedelta = dt.timedelta(seconds=10),
                 write_timeout: dt.timedelta = DEFAULT_WRITE_TIMEOUT) -> None:
        super().__init__()
        values = {"uri": uri, "database": database, "collection": collection, "mode": mode, "key": key, "update": update}
        problems = check_sink_options(values)
        if mode not in MODES:
            problems.append(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
        if update not in UPDATES:
            problems.append(f"update: must be one of {', '.join(UPDATES)}, got {update!r}")
        if batch_size < 1:
            problems.append("batch_size: must be at least 1")
        for name in ("database", "collection"):
            if not isinstance(values[name], str) or not values[name]:
                problems.append(f"{name}: required")
        if not isinstance(write_timeout, dt.timedelta) or write_timeout <= dt.timedelta(0):
            problems.append("write_timeout: must be a positive duration")
        if problems:
            raise ConfigError(problems=[f"sink.{p}" for p in problems])
        self._fn = _WriteMongoFn(Secret(uri), database, collection, mode, tuple(key or ()), batch_size, timeout, update,
                                 write_timeout)
        self._label = f"{database}.{collection}"
        self._mode = mode

    def expand(self, batches):
        return batches | f"Write MongoDB {self._label}" >> beam.ParDo(self._fn).with_outputs(DEAD_LETTER_TAG, main="written")

    def display_data(self) -> dict[str, Any]:
        return {"collection": self._label, "mode": self._mode, "update": self._fn._update}

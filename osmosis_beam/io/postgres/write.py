"""The Beam side of the postgres sink: batches upserted, or staged for an append run (imported when a job is built).

Example::

    from osmosis_beam.io.postgres.write import WritePostgres
    batches | WritePostgres(target)            # the sink's write(run_id) builds this for a run
"""
from __future__ import annotations

import io
from typing import Any

import apache_beam as beam
import psycopg2.extras
from apache_beam.metrics import Metrics
from psycopg2 import sql

from osmosis_beam.core.encoding import dumps
from osmosis_beam.core.errors import SinkError
from osmosis_beam.core.records import DEAD_LETTER_TAG, METRICS_NAMESPACE, DeadLetter, EncodedBatch
from osmosis_beam.io.postgres.client import (
    JSON_TYPES,
    POSITION,
    SEQ,
    VALUE_ERRORS,
    Target,
    add_columns,
    create_target_table,
    infer_type,
    is_value_error,
    lock,
    read_columns,
    record_fields,
    sink_error,
    value_error,
)
from osmosis_beam.io.postgres.source import quoted

__all__ = ["WritePostgres"]


class _WritePostgresFn(beam.DoFn):
    """Writes each record batch in one statement and one transaction (DDL first, when needed)."""

    def __init__(self, target: Target, stage: str | None, stage_comment: str | None = None) -> None:
        self._target = target
        self._stage = stage  # the staging table, or None for direct upserts
        self._stage_comment = stage_comment  # names the pipeline and run, so a later run can drop it
        self._written = Metrics.counter(METRICS_NAMESPACE, "records_written")
        self._dead = Metrics.counter(METRICS_NAMESPACE, "dead_letter")

    def setup(self) -> None:
        self._conn = self._target.connect()
        self._dest_columns: dict[str, str] | None = None
        self._target_columns: dict[str, str] | None = None
        self._parts: set[str] = set()  # the stage parts (one per restriction) this instance created or found

    def teardown(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None and not conn.closed:
            conn.close()

    # -- schema ----------------------------------------------------------------------------------
    @property
    def _dest(self) -> tuple[str, str]:
        return (self._target.schema, self._stage or self._target.name)

    def _dest_ident(self) -> sql.Identifier:
        return sql.Identifier(*self._dest)

    def _load_columns(self, cur) -> None:
        target = self._target
        self._target_columns = read_columns(cur, target.schema, target.name)
        self._dest_columns = self._target_columns if self._stage is None else read_columns(cur, *self._dest)

    def _ensure_columns(self, cur, batch: list[dict], fields: list[str]) -> None:
        """Create the destination or add columns for ``fields`` it lacks (in this batch's transaction)."""
        target = self._target
        if self._dest_columns is None or any(f not in self._dest_columns for f in fields):
            self._load_columns(cur)
        missing = [f for f in fields if self._dest_columns is None or f not in self._dest_columns]
        if not missing:
            return
        if not target.create:
            what = "does not exist" if self._dest_columns is None else f"has no column {', '.join(map(repr, missing))}"
            raise SinkError(
                f"{target.label}: the table {what} and create_table is false; create it, or drop the fields with a step"
            )
        lock(cur, target)
        self._load_columns(cur)  # another worker may have done it while we waited
        types: dict[str, str] = {}
        for field in fields:
            if self._dest_columns is not None and field in self._dest_columns:
                continue
            known = (self._target_columns or {}).get(field) or target.schema_types.get(field)
            if known is None:
                known = next((t for t in (infer_type(r.get(field)) for r in batch) if t is not None), None)
            if known is not None:
                types[field] = known
        if not types and self._dest_columns is not None:
            return
        if self._stage is None:
            if self._dest_columns is None:
                create_target_table(cur, target, types, with_key=True)
            else:
                add_columns(cur, target.ident(), types, target.label)
        else:
            if self._dest_columns is None:
                # No autovacuum: it would vacuum and analyze a stage of 1M rows while the run writes it (0.3 s of
                # server CPU and a pass over every page), for a table read once at publish and then dropped.
                cur.execute(
                    sql.SQL("CREATE UNLOGGED TABLE IF NOT EXISTS {} ({} bigserial) "
                            "WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)").format(
                        self._dest_ident(), sql.Identifier(SEQ))
                )
                if self._stage_comment:
                    cur.execute(
                        sql.SQL("COMMENT ON TABLE {} IS {}").format(self._dest_ident(), sql.Literal(self._stage_comment))
                    )
            add_columns(cur, self._dest_ident(), types, f"{target.label} (staging)")
        self._load_columns(cur)

    # -- rows --------------------------------------------------------------------------------------
    def _statement(self, columns: list[str]) -> sql.Composed:
        # Executed with parameters (execute_values): names are rendered with % doubled.
        conn = self._conn
        insert = sql.SQL("INSERT INTO {} ({}) VALUES %s").format(
            quoted(conn, self._dest_ident()), quoted(conn, sql.SQL(", ").join(map(sql.Identifier, columns)))
        )
        if self._stage is not None or self._target.mode != "upsert":
            return insert
        key = self._target.key
        updates = [c for c in columns if c not in key]
        conflict = sql.SQL(" ON CONFLICT ({}) ").format(quoted(conn, sql.SQL(", ").join(map(sql.Identifier, key))))
        if not updates:
            return insert + conflict + sql.SQL("DO NOTHING")
        return insert + conflict + sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(quoted(conn, sql.Identifier(c))) for c in updates
        )

    def _rows(self, batch: list[dict], columns: list[str]) -> list[tuple]:
        json_at = [i for i, c in enumerate(columns) if self._dest_columns.get(c, "").split("(")[0] in JSON_TYPES]
        rows = [tuple(map(record.get, columns)) for record in batch]
        if json_at:
            wrap = psycopg2.extras.Json
            for n, row in enumerate(rows):
                values = list(row)
                for i in json_at:
                    if values[i] is not None:
                        values[i] = wrap(values[i], dumps=dumps)
                rows[n] = tuple(values)
        return rows

    def _copy(self, batch: EncodedBatch) -> None:
        """COPY text rows from a postgres source into the stage (the zero-decode path), in one transaction."""
        target = self._target
        if batch.encoding != "pgcopy" or self._stage is None:
            raise SinkError(f"{target.label}: cannot write {batch.encoding!r} batches here")
        fields = list(batch.columns)
        conn = self._conn
        try:
            with conn.cursor() as cur:
                self._ensure_columns(cur, [], fields)
                missing = [f for f in fields if f not in (self._dest_columns or {})]
                if missing:
                    raise SinkError(
                        f"{target.label}: no column type is known for {', '.join(map(repr, missing))}; "
                        "create the table first, or set read.path: typed"
                    )
                if POSITION not in self._dest_columns:
                    lock(cur, target)
                    add_columns(cur, self._dest_ident(), {POSITION: "bigint"}, f"{target.label} (staging)")
                    self._load_columns(cur)
                dest, part = self._dest_ident(), None
                if batch.origin is not None:
                    part = self._part(cur, batch.origin)
                    dest = sql.Identifier(target.schema, part)
                names = sql.SQL(", ").join(map(sql.Identifier, [POSITION, *fields]))
                statement = sql.SQL("COPY {} ({}) FROM STDIN").format(dest, names).as_string(conn)
                cur.copy_expert(statement, io.BytesIO(b"".join(batch.lines)), size=1 << 18)
            conn.commit()
            if part is not None:
                self._parts.add(part)
        except SinkError:
            conn.rollback()
            raise
        except psycopg2.Error as exc:
            raise self._write_failed(conn, exc) from None
        self._written.inc(len(batch))

    def _part(self, cur, origin: int) -> str:
        """The stage part for the rows of the restriction starting at ``origin``, created in this transaction
        when new.

        Each restriction's rows go into a table of their own (inheriting the stage, so the stage reads them
        all), in cursor order. The publish then merges the parts one after the other: where the key follows
        the cursor, the table and its indexes take the rows in key order, instead of the splits' batches
        interleaved as their COPYs came (a MERGE of 1M rows 3.7-4.1 s interleaved, 2.4-2.9 s in key order).
        """
        part = Target.stage_part_name(self._stage, origin)
        if part not in self._parts:
            lock(cur, self._target)  # against another worker creating it (a retried bundle) meanwhile
            cur.execute(
                sql.SQL("CREATE UNLOGGED TABLE IF NOT EXISTS {} () INHERITS ({}) "
                        "WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)").format(
                    sql.Identifier(self._target.schema, part), self._dest_ident())
            )
        return part

    def _write_failed(self, conn, exc: psycopg2.Error) -> SinkError:
        """Roll back a failed write (the columns are looked up again next time); the error to raise."""
        try:
            conn.rollback()
        except psycopg2.Error:
            pass
        self._dest_columns = None
        target = self._target
        return sink_error(exc, f"{target.label}: write failed", target.dsn, target.deadlines)

    def process(self, batch):
        if not batch:
            return
        if isinstance(batch, EncodedBatch):
            self._copy(batch)
            return
        target = self._target
        if target.mode == "upsert":
            batch, unkeyed = self._keyed(batch)
            for item in unkeyed:
                self._dead.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, item.to_dict())
        if not batch:
            return
        dead: list[DeadLetter] = []
        fields = record_fields(batch)
        conn = self._conn
        try:
            with conn.cursor() as cur:
                self._ensure_columns(cur, batch, fields)
                columns = [f for f in fields if f in (self._dest_columns or {})]
                if not columns:  # every field of every record is null: there is no column to write
                    conn.rollback()
                    for record in batch:
                        self._dead.inc()
                        yield beam.pvalue.TaggedOutput(
                            DEAD_LETTER_TAG, DeadLetter(target.step, "no field has a value; nothing to write", record).to_dict()
                        )
                    return
                statement = self._statement(columns).as_string(conn)
                rows = self._rows(batch, columns)
                cur.execute("SAVEPOINT osmosis_batch")
                try:
                    psycopg2.extras.execute_values(cur, statement, rows, page_size=len(rows))
                    written = len(rows)
                except VALUE_ERRORS as exc:
                    if not is_value_error(exc):
                        raise  # an SQL problem, not a bad value
                    cur.execute("ROLLBACK TO SAVEPOINT osmosis_batch")
                    written = 0
                    for record, row in zip(batch, rows):
                        cur.execute("SAVEPOINT osmosis_row")
                        try:
                            psycopg2.extras.execute_values(cur, statement, [row])
                            written += 1
                        except VALUE_ERRORS as row_exc:
                            if not is_value_error(row_exc):
                                raise
                            cur.execute("ROLLBACK TO SAVEPOINT osmosis_row")
                            dead.append(DeadLetter(target.step, value_error(row_exc, target.dsn), record))
            conn.commit()
        except SinkError:
            conn.rollback()
            raise
        except psycopg2.Error as exc:
            raise self._write_failed(conn, exc) from None
        self._written.inc(written)
        for item in dead:
            self._dead.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, item.to_dict())

    def _keyed(self, batch: list[dict]) -> tuple[list[dict], list[DeadLetter]]:
        """Records with a complete key, the last one per key (one statement cannot update a row twice)."""
        key = self._target.key
        by_key: dict[Any, dict] = {}
        dead = []
        for record in batch:
            values = tuple(record.get(k) for k in key)
            if None in values:
                missing = [k for k, v in zip(key, values) if v is None]
                dead.append(DeadLetter(self._target.step, f"key field {', '.join(missing)} is missing or null", record))
                continue
            try:
                by_key.pop(values, None)
                by_key[values] = record
            except TypeError:
                by_key[repr(values)] = record
        if len(by_key) == len(batch):
            return batch, dead
        return list(by_key.values()), dead


class WritePostgres(beam.PTransform):
    """Writes record batches (dead letters on the ``dead_letter`` tag; main output ``written``)."""

    def __init__(self, target: Target, stage: str | None = None, stage_comment: str | None = None) -> None:
        super().__init__()
        self._target = target
        self._stage = stage
        self._stage_comment = stage_comment

    def expand(self, batches):
        verb = "Upsert into" if (self._target.mode == "upsert" and self._stage is None) else "Stage for"
        return batches | f"{verb} {self._target.schema}.{self._target.name}" >> beam.ParDo(
            _WritePostgresFn(self._target, self._stage, self._stage_comment)
        ).with_outputs(DEAD_LETTER_TAG, main="written")

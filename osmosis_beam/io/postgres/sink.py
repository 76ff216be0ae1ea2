"""The PostgreSQL sink: batched upserts by key, or appends staged per run and published atomically.

``mode: upsert`` (the default when ``key`` is given) writes each record batch with one
``INSERT ... ON CONFLICT (key) DO UPDATE``: a window read twice leaves the table exactly as one
read would, so ``publish`` has nothing to do. COPY rows of the zero-decode path go into a stage instead,
and ``publish`` upserts them in one statement (``MERGE`` on PostgreSQL 15+, see :func:`_upsert_from_stage`).
``mode: append`` (the default without a key) writes
into a per-run staging table that ``publish`` copies into the table in one transaction, and each run
is published once, so a failed run that is read again never duplicates rows. (A window read again after
it was published, by ``lookback`` or a reset watermark, is appended again: pair those with upserts.)

The table is created when it is missing: from the source schema when the run hands one over
(:meth:`PostgresSink.use_schema`), else from the values of the first records (int -> bigint,
Decimal -> numeric, aware datetime -> timestamptz, dict/list -> jsonb, ...), with the key as its
primary key. Fields that appear later are added as columns (``create_table: false`` turns all DDL off).

Full refresh: a run prepared with ``prepare(run_id, full_refresh=True)`` is staged, and ``publish``
replaces the table's rows in one transaction (rows deleted at the source disappear; readers see the
old rows until the commit). A run whose window held no rows empties the table. A direct upsert run
that is told only at ``publish`` that it was a full refresh keeps rows deleted at the source, and
says so in the details it returns.

Bookkeeping lives beside the table: ``_osmosis_sink_runs`` (one row per published run) and
``_osmosis_stage_*`` staging tables (UNLOGGED, dropped at publish or abort).

Example (pipeline YAML)::

    sink:
      type: postgres
      dsn: postgresql://loader:${WAREHOUSE_PASSWORD}@warehouse:5432/dw
      table: raw.orders
      key: [id]
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any, Mapping, Sequence

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from psycopg2 import sql

from osmosis_beam.core.errors import SinkError
from osmosis_beam.core.options import Option
from osmosis_beam.core.secrets import reveal
from osmosis_beam.io.base import BaseSink
from osmosis_beam.io.postgres.session import deadline_options, deadlines_from
from osmosis_beam.io.postgres.client import (
    POSITION,
    SEQ,
    STAGE_PREFIX,
    Target,
    add_columns,
    create_target_table,
    lock,
    read_columns,
    sink_error,
)
from osmosis_beam.io.postgres.source import (
    check_dsn_and_tables,
    describe_dsn,
    quoted,
)

__all__ = ["PostgresSink"]

log = logging.getLogger(__name__)


RUNS_TABLE = "_osmosis_sink_runs"
_STAGE_COMMENT = "osmosis stage: pipeline={} run={}"


def stage_comment(pipeline_id: str, run_id: str) -> str:
    """The comment a run's staging table carries: which pipeline and run it belongs to."""
    return _STAGE_COMMENT.format(pipeline_id, run_id)

# uuid.UUID values are written as uuid (psycopg2 cannot adapt them otherwise).
psycopg2.extensions.register_adapter(uuid.UUID, psycopg2.extras.UUID_adapter)


def _unique_keys(cur, schema: str, name: str, key: Sequence[str]) -> list[bool]:
    """One entry per unique index (no predicate, no expression) on exactly the columns ``key``: whether it
    catches a repeated key at once (its columns NOT NULL and the index immediate, not deferrable)."""
    cur.execute(
        "SELECT array_agg(a.attname::text), bool_and(a.attnotnull) AND bool_and(i.indimmediate) "
        "FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey) "
        "WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL "
        "GROUP BY i.indexrelid",
        (schema, name),
    )
    wanted = sorted(key)
    return [strict for names, strict in cur.fetchall() if sorted(names) == wanted]


def _has_unique_key(cur, schema: str, name: str, key: Sequence[str]) -> bool:
    return bool(_unique_keys(cur, schema, name, key))


# ---------------------------------------------------------------------------------------------
# The stage and its parts
# ---------------------------------------------------------------------------------------------


def _stage_parts(cur, schema: str, stage: str) -> list[str]:
    """The stage's parts (the tables inheriting it that the writers created, one per restriction read), in
    cursor order of their restrictions."""
    cur.execute(
        "SELECT c.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%s) AND starts_with(c.relname, %s) ORDER BY c.relname",
        (sql.Identifier(schema, stage).as_string(cur.connection), stage + "_"),
    )
    return [name for (name,) in cur.fetchall()]


def _drop_stage(cur, schema: str, stage: str) -> None:
    """Drop a stage and its parts (in one statement, so without CASCADE: nothing else is dropped)."""
    names = [stage, *_stage_parts(cur, schema, stage)]
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.SQL(", ").join(sql.Identifier(schema, n) for n in names)))


def _ordered_stage(schema: str, stage: str, parts: list[str], columns: list[str],
                   stage_order: sql.Composable | None = None) -> sql.Composable:
    """The stage's rows as a subquery: its own rows (``stage_order``, when given), then each part's, one
    part after the other in cursor order; the stage itself when it has no parts."""
    ident = sql.Identifier(schema, stage)
    if not parts and stage_order is None:
        return ident
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    own = sql.SQL("SELECT {} FROM ONLY {}").format(cols, ident)
    if stage_order is not None:
        own += sql.SQL(" ORDER BY ") + stage_order
    selects = [sql.SQL("({})").format(own)]
    selects += [sql.SQL("(SELECT {} FROM {})").format(cols, sql.Identifier(schema, p)) for p in parts]
    return sql.SQL("({})").format(sql.SQL(" UNION ALL ").join(selects))


# ---------------------------------------------------------------------------------------------
# The upsert from a stage (publish)
# ---------------------------------------------------------------------------------------------

# Errors after which a MERGE is rolled back to its savepoint and the upsert runs as INSERT ... ON CONFLICT
# (or, for a MERGE straight from the stage, as the checked MERGE): a key inserted twice, by another session
# meanwhile or from the stage itself (unique_violation), a matched row updated or deleted by another session
# (serialization_failure), a key matched twice (cardinality_violation), and comparisons MERGE's join needs
# that ON CONFLICT does not (indeterminate collation, no = operator between the stage's and the table's
# types, a type mismatch).
_MERGE_FALLBACK = frozenset({"23505", "40001", "21000", "42P22", "42883", "42804"})


def _stage_keys_unique(cur, stage_ident: sql.Composable, key: Sequence[str]) -> bool:
    """Whether no key occurs twice in the stage (a NULL key part counts as a repeat: then it dedups as before)."""
    keys = [sql.Identifier(k) for k in key]
    distinct = keys[0] if len(keys) == 1 else sql.SQL("ROW({})").format(sql.SQL(", ").join(keys))
    cur.execute(sql.SQL("SELECT count(*) = count(DISTINCT {}) FROM {}").format(distinct, stage_ident))
    return bool(cur.fetchone()[0])


def _is_empty(cur, ident: sql.Composable) -> bool:
    cur.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(ident))
    return bool(cur.fetchone()[0])


def _key_catches_repeats(cur, target: Target) -> bool:
    """Whether a statement that writes one key twice into the table fails at once: the key's columns are NOT
    NULL and an immediate (not deferrable) unique index covers exactly them."""
    return any(_unique_keys(cur, target.schema, target.name, target.key))


def _upsert_from_stage(cur, target: Target, stage_ident: sql.Composable, stage_columns: Mapping[str, str],
                       columns: list[str], ordered: sql.Composable | None = None) -> int:
    """Upsert the stage into the table, the last row per key winning; returns the rows written.

    The last row per key is the one with the highest cursor position (COPY stages carry it), then the last
    one written (``_osmosis_seq``): ``DISTINCT ON`` keeps it. When no key repeats in the stage (a source
    whose primary key is the sink's key, read once), that sort of every row is skipped. On PostgreSQL 15+
    the rows go in with ``MERGE`` (a join with the table, then plain inserts and updates), which costs
    about half of ``INSERT ... ON CONFLICT``'s speculative insertion per row; a MERGE that fails for one
    of the reasons in ``_MERGE_FALLBACK`` is undone to its savepoint and the upsert runs as
    ``INSERT ... ON CONFLICT``, which handles keys other sessions insert meanwhile.

    When the table itself catches a repeated key at once (``_key_catches_repeats``), the first MERGE goes
    straight from the stage, without the check of the stage's keys (a sort of every key): a key the stage
    holds twice fails it (``cardinality_violation`` when the table has the key, ``unique_violation`` when
    not), and it is undone to its savepoint before the check and the steps above. The more keys repeat, the
    sooner that MERGE fails; a stage whose source key is the sink's key repeats none.

    ``ordered`` is the stage's rows part after part (:func:`_ordered_stage`); the MERGEs of a stage whose
    keys do not repeat read them that way.
    """
    ordered = stage_ident if ordered is None else ordered
    ident = target.ident()
    key = list(target.key)
    keys = sql.SQL(", ").join(map(sql.Identifier, key))
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    updates = [c for c in columns if c not in key]
    modern = cur.connection.server_version >= 150000

    def merge_from(rows: sql.Composable) -> sql.Composable:
        match = sql.SQL(" AND ").join(sql.SQL("t.{0} = s.{0}").format(sql.Identifier(k)) for k in key)
        merge = sql.SQL("MERGE INTO {t} AS t USING {r} AS s ON {m} ").format(t=ident, r=rows, m=match)
        if updates:
            merge += sql.SQL("WHEN MATCHED THEN UPDATE SET ") + sql.SQL(", ").join(
                sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in updates
            ) + sql.SQL(" ")
        return merge + sql.SQL("WHEN NOT MATCHED THEN INSERT ({c}) VALUES ({v})").format(
            c=cols, v=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in columns)
        )

    # Into an empty table (a first load) the upsert inserts every row: a plain INSERT does that with less work
    # per row than MERGE's join and actions. A key another session inserts meanwhile fails it like the MERGE
    # (unique_violation), and the MERGEs after it run as usual.
    empty = modern and _is_empty(cur, ident)

    def verb(insert: bool) -> str:
        return "INSERT (the table is empty)" if insert else "MERGE"

    def try_merge(rows: sql.Composable, savepoint: str, insert: bool) -> tuple[int | None, str]:
        """(rows written, "") by a MERGE from ``rows`` (``insert``: an INSERT, into an empty table); (None, why)
        when it failed for a reason in ``_MERGE_FALLBACK`` and was undone to its savepoint."""
        cur.execute(f"SAVEPOINT {savepoint}")
        try:
            if insert:
                cur.execute(sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {r} AS s").format(t=ident, c=cols, r=rows))
            else:
                cur.execute(merge_from(rows))
        except psycopg2.Error as exc:
            if getattr(exc, "pgcode", None) not in _MERGE_FALLBACK:
                raise
            cur.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
            return None, str(getattr(exc, "pgerror", None) or exc).replace("ERROR:  ", "").strip().splitlines()[0]
        written = cur.rowcount
        cur.execute(f"RELEASE SAVEPOINT {savepoint}")
        return written, ""

    if modern and _key_catches_repeats(cur, target):
        written, why = try_merge(ordered, "osmosis_merge_stage", empty)
        if written is not None:
            log.info("%s: upserted %d rows with %s (no key repeats in the stage: the table's unique key "
                     "would have caught one)", target.label, written, verb(empty))
            return written
        log.info("%s: %s straight from the stage failed (%s); checking the stage for repeated keys",
                 target.label, verb(empty), why)
        empty = False  # or another session's key met the INSERT
    unique = _stage_keys_unique(cur, stage_ident, key)
    how = "no key repeats in the stage" if unique else "keys repeat in the stage: the last row per key"
    if unique:
        rows = ordered
    else:
        order = [sql.SQL("{} DESC NULLS LAST").format(sql.Identifier(POSITION))] if POSITION in stage_columns else []
        order.append(sql.SQL("{} DESC").format(sql.Identifier(SEQ)))
        rows = sql.SQL("(SELECT DISTINCT ON ({k}) {c} FROM {s} ORDER BY {k}, {o})").format(
            k=keys, c=cols, s=stage_ident, o=sql.SQL(", ").join(order)
        )
    if modern:
        written, why = try_merge(rows, "osmosis_merge", empty)
        if written is not None:
            log.info("%s: upserted %d rows with %s (%s)", target.label, written, verb(empty), how)
            return written
        log.info("%s: %s failed (%s); upserting with INSERT ... ON CONFLICT instead", target.label, verb(empty), why)
    action = (
        sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates)
        if updates else sql.SQL("DO NOTHING")
    )
    select = sql.SQL("SELECT {c} FROM {r} AS s").format(c=cols, r=rows)
    cur.execute(sql.SQL("INSERT INTO {t} ({c}) {s} ON CONFLICT ({k}) ").format(t=ident, c=cols, s=select, k=keys) + action)
    log.info("%s: upserted %d rows with INSERT ... ON CONFLICT (%s)", target.label, cur.rowcount, how)
    return cur.rowcount


# ---------------------------------------------------------------------------------------------
# The write (workers)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# The sink (launcher)
# ---------------------------------------------------------------------------------------------


class PostgresSink(BaseSink):
    """A PostgreSQL table: batched upserts by key, or appends published once per run."""

    type_name = "postgres"
    encodings = ("pgcopy",)  # COPY text rows from a postgres source go into the stage with COPY FROM
    options = (
        Option("dsn", "str", required=True, secret=True,
               help="postgresql://user:password@host:5432/dbname or libpq keywords; put the password in ${ENV}"),
        Option("table", "str", required=True, help="the table to write: name or schema.name (created when missing)"),
        Option("key", "list", help="the key columns for upserts"),
        Option("mode", "str", choices=("upsert", "append"), help="upsert (default with a key) or append"),
        Option("create_table", "bool", default=True, help="create the table and add new columns when needed"),
        *deadline_options(Option),
    )

    @classmethod
    def check_options(cls, values: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        check_dsn_and_tables(values, ("table",), ("key",), problems)
        if values.get("mode") == "upsert" and not values.get("key"):
            problems.append("key: required for mode upsert (the columns that identify a row), or set mode: append")
        return problems

    def __init__(self, options: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.mode = self.config.get("mode") or ("upsert" if self.config.get("key") else "append")
        self._schema_types: dict[str, str] = {}
        self._staged: dict[str, bool] = {}  # run_id -> staged, for runs prepared by this object

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def _dsn(self) -> str:
        return reveal(self.config["dsn"])

    def _target(self) -> Target:
        return Target(self.config["dsn"], self.config["table"], self.config.get("key") or [], self.mode,
                       self.config["create_table"], self._schema_types, deadlines_from(self.config))

    def _open(self) -> tuple[Any, Target]:
        target = self._target()
        conn = target.connect()
        try:
            target.resolve_schema(conn)
            conn.commit()
        except psycopg2.Error as exc:
            conn.close()
            raise sink_error(exc, target.label, self._dsn, target.deadlines) from None
        return conn, target

    wants_schema = True

    def use_schema(self, schema: Mapping[str, Any] | None) -> None:
        """Take column types from a PostgreSQL source's schema (``connector.get_schema()``) to create the table.

        Schemas of other sources (their types are not SQL types) are ignored: types then come from the values.
        """
        if not schema or schema.get("dialect") != "postgresql":
            self._schema_types = {}
            return
        fields = (schema or {}).get("fields") or []
        self._schema_types = {f["name"]: f["type"] for f in fields if f.get("name") and f.get("type")}

    def display(self) -> dict[str, Any]:
        shown = super().display()
        shown["dsn"] = describe_dsn(self._dsn)
        return shown

    # -- the run ---------------------------------------------------------------------------------
    def prepare(self, run_id: str, *, full_refresh: bool = False) -> None:
        """Check (or create) the table; a staged run (append, full refresh) starts from an empty stage."""
        staged = self.mode == "append" or full_refresh
        conn, target = self._open()
        try:
            with conn.cursor() as cur:
                columns = read_columns(cur, target.schema, target.name)
                if columns is None:
                    if not target.create:
                        raise SinkError(f"{target.label}: the table does not exist and create_table is false; create it")
                    if self._schema_types:
                        lock(cur, target)
                        create_target_table(cur, target, self._schema_types, with_key=True)
                elif self.mode == "upsert" and not _has_unique_key(cur, target.schema, target.name, target.key):
                    raise SinkError(
                        f"{target.label}: upserts need a primary key or unique index on ({', '.join(target.key)}); "
                        f"add one (CREATE UNIQUE INDEX ON {target.schema}.{target.name} ({', '.join(target.key)})) "
                        "or set mode: append"
                    )
                elif self.mode == "upsert":
                    absent = [k for k in target.key if k not in columns]
                    if absent:
                        raise SinkError(f"{target.label}: key column {', '.join(absent)} does not exist in the table")
                self._ensure_runs_table(cur, target)
                if staged:
                    _drop_stage(cur, target.schema, target.stage_name(run_id))
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            raise sink_error(exc, f"{target.label}: cannot prepare", self._dsn, target.deadlines) from None
        finally:
            conn.close()
        self._staged[run_id] = staged
        self._resolved_schema = target.schema

    def write(self, run_id: str):
        from osmosis_beam.io.postgres.write import WritePostgres

        target = self._target()
        target.schema = getattr(self, "_resolved_schema", None)
        if target.schema is None:
            conn, resolved = self._open()
            conn.close()
            target.schema = resolved.schema
        staged = self._staged.get(run_id, self.mode == "append")
        if self.encoding == "pgcopy" and not staged:
            # COPY rows go into a stage; publish then upserts them in one statement, as for a full refresh.
            staged = self._staged[run_id] = True
        if not staged:
            return WritePostgres(target, None)
        return WritePostgres(target, target.stage_name(run_id), stage_comment=stage_comment(self.pipeline_id, run_id))

    def _ensure_runs_table(self, cur, target: Target) -> None:
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (target text NOT NULL, run_id text NOT NULL, "
                "published_at timestamptz NOT NULL DEFAULT now(), window_hi timestamptz, records bigint, "
                "PRIMARY KEY (target, run_id))"
            ).format(sql.Identifier(target.schema, RUNS_TABLE))
        )

    def publish(self, run_id: str, *, window_hi: dt.datetime, full_refresh: bool = False) -> dict[str, Any]:
        """Copy a staged run into the table (replacing its rows on a full refresh), in one transaction."""
        conn, target = self._open()
        ident = target.ident()
        label = f"{target.schema}.{target.name}"
        details: dict[str, Any] = {"table": label, "mode": self.mode}
        try:
            with conn.cursor() as cur:
                lock(cur, target)
                self._ensure_runs_table(cur, target)
                runs = quoted(conn, sql.Identifier(target.schema, RUNS_TABLE))
                cur.execute(sql.SQL("SELECT 1 FROM {} WHERE target = %s AND run_id = %s").format(runs), (label, run_id))
                if cur.fetchone():
                    conn.rollback()
                    return {**details, "already_published": True}
                stage = target.stage_name(run_id)
                stage_columns = read_columns(cur, target.schema, stage)
                records = None
                if stage_columns is not None:
                    records = self._merge(cur, target, stage, stage_columns, full_refresh)
                    _drop_stage(cur, target.schema, stage)
                elif full_refresh:
                    if self._staged.get(run_id) is False:
                        details["warning"] = (
                            "full refresh written as direct upserts: rows deleted at the source were kept "
                            "(the run must call prepare(run_id, full_refresh=True) to replace the table)"
                        )
                    elif read_columns(cur, target.schema, target.name) is not None:
                        cur.execute(sql.SQL("DELETE FROM {}").format(ident))
                        details["deleted"] = cur.rowcount
                        records = 0
                if records is not None:
                    details["records"] = records
                cur.execute(
                    sql.SQL("INSERT INTO {} (target, run_id, window_hi, records) VALUES (%s, %s, %s, %s)").format(runs),
                    (label, run_id, window_hi, records),
                )
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE target = %s AND published_at < now() - interval '90 days'").format(runs),
                    (label,),
                )
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            raise sink_error(exc, f"{target.label}: cannot publish run {run_id}", self._dsn, target.deadlines) from None
        finally:
            conn.close()
        self._staged.pop(run_id, None)
        if "warning" in details:
            log.warning("%s: %s", target.label, details["warning"])
        return details

    def _merge(self, cur, target: Target, stage: str, stage_columns: dict[str, str], full_refresh: bool) -> int:
        ident = target.ident()
        stage_ident = sql.Identifier(target.schema, stage)
        columns = [c for c in stage_columns if c not in (SEQ, POSITION)]
        table_columns = read_columns(cur, target.schema, target.name)
        if table_columns is None:
            if not target.create:
                raise SinkError(f"{target.label}: the table does not exist and create_table is false; create it")
            create_target_table(cur, target, {c: stage_columns[c] for c in columns}, with_key=self.mode == "upsert")
        else:
            absent = {c: stage_columns[c] for c in columns if c not in table_columns}
            if absent and not target.create:
                raise SinkError(f"{target.label}: the table has no column {', '.join(absent)} and create_table is false")
            add_columns(cur, ident, absent, target.label)
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        parts = _stage_parts(cur, target.schema, stage)
        if parts:
            log.info("%s: publishing the stage's %d parts (one per restriction read) one after the other, in cursor "
                     "order", target.label, len(parts))
        if self.mode == "upsert":
            absent_key = [k for k in target.key if k not in columns]
            if absent_key:
                raise SinkError(f"{target.label}: no record had the key field {', '.join(absent_key)}")
            if full_refresh:
                match = sql.SQL(" AND ").join(sql.SQL("s.{0} = t.{0}").format(sql.Identifier(k)) for k in target.key)
                cur.execute(
                    sql.SQL("DELETE FROM {} AS t WHERE NOT EXISTS (SELECT 1 FROM {} AS s WHERE {})").format(ident, stage_ident, match)
                )
            return _upsert_from_stage(cur, target, stage_ident, stage_columns, columns,
                                      _ordered_stage(target.schema, stage, parts, columns))
        if full_refresh:
            cur.execute(sql.SQL("DELETE FROM {}").format(ident))
        # In write order: the stage's own rows by their sequence, then each part's (a restriction's rows, in
        # cursor order), without sorting them all.
        rows = _ordered_stage(target.schema, stage, parts, columns, sql.Identifier(SEQ))
        cur.execute(sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {r} AS s").format(t=ident, c=cols, r=rows))
        return cur.rowcount

    def abort(self, run_id: str) -> None:
        """Drop the run's staging table (direct upserts stay: they are correct rows of the source)."""
        conn, target = self._open()
        try:
            with conn.cursor() as cur:
                _drop_stage(cur, target.schema, target.stage_name(run_id))
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            raise sink_error(exc, f"{target.label}: cannot abort run {run_id}", self._dsn, target.deadlines) from None
        finally:
            conn.close()
        self._staged.pop(run_id, None)

    def clean_stale_staging(self) -> int:
        """Drop the staging tables this pipeline's failed or killed runs left beside the table.

        Only tables whose comment names this pipeline (see :func:`stage_comment`); the caller holds the
        pipeline's lease, so none of them belongs to a live run. Another pipeline's stages stay.
        """
        if not self.pipeline_id:
            return 0
        conn, target = self._open()
        prefix = _STAGE_COMMENT.format(self.pipeline_id, "")
        dropped = 0
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_catalog.pg_class c "
                    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relkind = 'r' AND starts_with(c.relname, %s)",
                    (target.schema, STAGE_PREFIX),
                )
                for name, comment in cur.fetchall():
                    if not comment or not comment.startswith(prefix):
                        continue
                    run_id = comment[len(prefix):]
                    if run_id in self._staged or name != target.stage_name(run_id):
                        continue  # a run this object prepared, or a stage of another table
                    _drop_stage(cur, target.schema, name)
                    dropped += 1
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            raise sink_error(exc, f"{target.label}: cannot drop stale staging tables", self._dsn) from None
        finally:
            conn.close()
        return dropped

    def is_published(self, run_id: str) -> bool:
        conn, target = self._open()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass(%s)", (sql.Identifier(target.schema, RUNS_TABLE).as_string(conn),))
                if cur.fetchone()[0] is None:
                    return False
                cur.execute(
                    sql.SQL("SELECT 1 FROM {} WHERE target = %s AND run_id = %s").format(
                        quoted(conn, sql.Identifier(target.schema, RUNS_TABLE))
                    ),
                    (f"{target.schema}.{target.name}", run_id),
                )
                return cur.fetchone() is not None
        except psycopg2.Error as exc:
            raise sink_error(exc, f"{target.label}: cannot check run {run_id}", self._dsn, target.deadlines) from None
        finally:
            conn.close()

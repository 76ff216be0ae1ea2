"""The PostgreSQL sink: batched upserts by key, or appends staged per run and published atomically.

``mode: upsert`` (the default when ``key`` is given) writes each record batch with one
``INSERT ... ON CONFLICT (key) DO UPDATE``: a window read twice leaves the table exactly as one
read would, so ``publish`` has nothing to do. ``mode: append`` (the default without a key) writes
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
import decimal
import hashlib
import logging
import uuid
from typing import Any, Mapping, Sequence

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from psycopg2 import sql

from osmosis_beam.core.errors import ConnectorError, SinkError
from osmosis_beam.core.options import Option
from osmosis_beam.core.secrets import redact_text, reveal
from osmosis_beam.io.base import BaseSink
from osmosis_beam.io.postgres.source import (
    check_dsn_and_tables,
    describe_dsn,
    open_connection,
    parse_table_name,
    quoted,
)

__all__ = ["PostgresSink"]

log = logging.getLogger(__name__)

RUNS_TABLE = "_osmosis_sink_runs"
STAGE_PREFIX = "_osmosis_stage_"
SEQ = "_osmosis_seq"
JSON_TYPES = ("json", "jsonb")
# A bad value fails the batch with one of these; the batch is then written row by row.
VALUE_ERRORS = (psycopg2.DataError, psycopg2.IntegrityError, psycopg2.ProgrammingError, ValueError)

# uuid.UUID values are written as uuid (psycopg2 cannot adapt them otherwise).
psycopg2.extensions.register_adapter(uuid.UUID, psycopg2.extras.UUID_adapter)


def infer_type(value: Any) -> str | None:
    """The column type for a Python value (None for None: decide on a later value)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double precision"
    if isinstance(value, decimal.Decimal):
        return "numeric"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dt.datetime):
        return "timestamp with time zone" if value.tzinfo is not None else "timestamp without time zone"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dt.time):
        return "time with time zone" if value.tzinfo is not None else "time without time zone"
    if isinstance(value, dt.timedelta):
        return "interval"
    if isinstance(value, (dict, list, tuple)):
        return "jsonb"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytea"
    if isinstance(value, uuid.UUID):
        return "uuid"
    return "text"


def sink_error(exc: BaseException, what: str, dsn: str) -> SinkError:
    if isinstance(exc, ConnectorError):
        return SinkError(exc.message)
    text = redact_text(str(getattr(exc, "pgerror", None) or exc).strip(), [dsn]) or type(exc).__name__
    return SinkError(f"{what}: {text.replace('ERROR:  ', '')}")


class Target:
    """Where and how to write: picklable facts shared by the launcher side and the workers."""

    def __init__(self, dsn: str, table: str, key: Sequence[str], mode: str, create: bool,
                 schema_types: Mapping[str, str] | None) -> None:
        self.dsn = dsn
        self.table = table
        self.key = list(key)
        self.mode = mode
        self.create = create
        self.schema_types = dict(schema_types or {})
        self.schema: str | None = None  # resolved on the launcher
        self.name = parse_table_name(table)[1]

    @property
    def label(self) -> str:
        return f"sink postgres {self.schema}.{self.name}" if self.schema else f"sink postgres {self.table}"

    @property
    def step(self) -> str:
        return f"sink: postgres {self.schema}.{self.name}"

    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def stage_name(self, run_id: str) -> str:
        digest = hashlib.sha1(f"{self.schema}.{self.name}\x00{run_id}".encode()).hexdigest()[:24]
        return STAGE_PREFIX + digest

    def connect(self):
        try:
            return open_connection(self.dsn, "sink postgres")
        except ConnectorError as exc:
            raise sink_error(exc, self.label, self.dsn) from None

    def resolve_schema(self, conn) -> str:
        """The table's schema: as written, else where the search path finds it, else the current schema."""
        schema, name = parse_table_name(self.table)
        if schema is None:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relname = %s AND n.nspname = ANY (current_schemas(false)) AND c.relkind IN ('r', 'p') "
                    "ORDER BY array_position(current_schemas(false), n.nspname) LIMIT 1",
                    (name,),
                )
                row = cur.fetchone()
                if row is None:
                    cur.execute("SELECT current_schema()")
                    row = cur.fetchone()
                    if row[0] is None:
                        raise SinkError(f"sink postgres {self.table}: no schema to create it in; write schema.table")
            schema = row[0]
        self.schema = schema
        return schema


def read_columns(cur, schema: str, name: str) -> dict[str, str] | None:
    """Column name -> type of a table, or None when it does not exist."""
    cur.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
        "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, name),
    )
    rows = cur.fetchall()
    if rows:
        return dict(rows)
    cur.execute(
        "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    )
    return {} if cur.fetchone() else None


def _has_unique_key(cur, schema: str, name: str, key: Sequence[str]) -> bool:
    cur.execute(
        "SELECT array_agg(a.attname ORDER BY a.attname) FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey) "
        "WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL "
        "GROUP BY i.indexrelid",
        (schema, name),
    )
    wanted = sorted(key)
    return any(sorted(r[0]) == wanted for r in cur.fetchall())


def lock(cur, target: Target) -> None:
    """Serialize DDL and publishing on one table across processes (held to the end of the transaction)."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7707))", (f"osmosis-sink:{target.schema}.{target.name}",))


def _safe_type(cur, type_text: str) -> str:
    """``type_text`` as PostgreSQL spells it, when it names a type in this database; else text (or text[])."""
    try:
        cur.execute("SAVEPOINT osmosis_type")
        cur.execute("SELECT to_regtype(%s)::text", (type_text,))
        found = cur.fetchone()[0]
        cur.execute("RELEASE SAVEPOINT osmosis_type")
    except psycopg2.Error:
        cur.execute("ROLLBACK TO SAVEPOINT osmosis_type")
        found = None
    if found:
        return found
    return "text[]" if type_text.rstrip().endswith("]") else "text"


def create_target_table(cur, target: Target, types: Mapping[str, str], with_key: bool) -> None:
    items = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_safe_type(cur, t))) for c, t in types.items()]
    if with_key and target.key:
        items.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, target.key))))
    cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(target.ident(), sql.SQL(", ").join(items)))
    log.info("%s: created the table with columns %s", target.label, ", ".join(types))


def add_columns(cur, ident: sql.Composable, types: Mapping[str, str], label: str) -> None:
    for column, type_text in types.items():
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                ident, sql.Identifier(column), sql.SQL(_safe_type(cur, type_text))
            )
        )
    if types:
        log.info("%s: added columns %s", label, ", ".join(types))


# ---------------------------------------------------------------------------------------------
# The write (workers)
# ---------------------------------------------------------------------------------------------


def record_fields(batch: list[dict]) -> list[str]:
    """Every field of the batch, in first-seen order."""
    first = list(batch[0])
    seen = set(first)
    extra: set[str] = set()
    for record in batch:
        if len(record) != len(first) or not seen.issuperset(record):
            extra.update(k for k in record if k not in seen)
    return first + sorted(extra)


def is_value_error(exc: Exception) -> bool:
    """Whether ``exc`` blames a value (dead-letter the record) rather than the statement (fail the run)."""
    if isinstance(exc, psycopg2.ProgrammingError):
        return getattr(exc, "pgcode", None) in (None, "42804")  # cannot adapt; datatype mismatch
    return True


def value_error(exc: Exception, dsn: str) -> str:
    text = redact_text(str(getattr(exc, "pgerror", None) or exc).strip(), [dsn]) or type(exc).__name__
    return text.replace("ERROR:  ", "").splitlines()[0]


# ---------------------------------------------------------------------------------------------
# The sink (launcher)
# ---------------------------------------------------------------------------------------------


class PostgresSink(BaseSink):
    """A PostgreSQL table: batched upserts by key, or appends published once per run."""

    type_name = "postgres"
    options = (
        Option("dsn", "str", required=True, secret=True,
               help="postgresql://user:password@host:5432/dbname or libpq keywords; put the password in ${ENV}"),
        Option("table", "str", required=True, help="the table to write: name or schema.name (created when missing)"),
        Option("key", "list", help="the key columns for upserts"),
        Option("mode", "str", choices=("upsert", "append"), help="upsert (default with a key) or append"),
        Option("create_table", "bool", default=True, help="create the table and add new columns when needed"),
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
        return Target(self._dsn, self.config["table"], self.config.get("key") or [], self.mode,
                       self.config["create_table"], self._schema_types)

    def _open(self) -> tuple[Any, Target]:
        target = self._target()
        conn = target.connect()
        try:
            target.resolve_schema(conn)
            conn.commit()
        except psycopg2.Error as exc:
            conn.close()
            raise sink_error(exc, target.label, self._dsn) from None
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
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(target.schema, target.stage_name(run_id))))
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            raise sink_error(exc, f"{target.label}: cannot prepare", self._dsn) from None
        finally:
            conn.close()
        self._staged[run_id] = staged
        self._resolved_schema = target.schema

    def write(self, run_id: str):
        from osmosis_beam.io.postgres.transforms import WritePostgres

        target = self._target()
        target.schema = getattr(self, "_resolved_schema", None)
        if target.schema is None:
            conn, resolved = self._open()
            conn.close()
            target.schema = resolved.schema
        staged = self._staged.get(run_id, self.mode == "append")
        return WritePostgres(target, target.stage_name(run_id) if staged else None)

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
                    cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(target.schema, stage)))
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
            raise sink_error(exc, f"{target.label}: cannot publish run {run_id}", self._dsn) from None
        finally:
            conn.close()
        self._staged.pop(run_id, None)
        if "warning" in details:
            log.warning("%s: %s", target.label, details["warning"])
        return details

    def _merge(self, cur, target: Target, stage: str, stage_columns: dict[str, str], full_refresh: bool) -> int:
        ident = target.ident()
        stage_ident = sql.Identifier(target.schema, stage)
        columns = [c for c in stage_columns if c != SEQ]
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
        if self.mode == "upsert":
            absent_key = [k for k in target.key if k not in columns]
            if absent_key:
                raise SinkError(f"{target.label}: no record had the key field {', '.join(absent_key)}")
            keys = sql.SQL(", ").join(map(sql.Identifier, target.key))
            if full_refresh:
                match = sql.SQL(" AND ").join(sql.SQL("s.{0} = t.{0}").format(sql.Identifier(k)) for k in target.key)
                cur.execute(
                    sql.SQL("DELETE FROM {} AS t WHERE NOT EXISTS (SELECT 1 FROM {} AS s WHERE {})").format(ident, stage_ident, match)
                )
            updates = [c for c in columns if c not in target.key]
            action = (
                sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates)
                if updates else sql.SQL("DO NOTHING")
            )
            cur.execute(
                sql.SQL("INSERT INTO {t} ({c}) SELECT DISTINCT ON ({k}) {c} FROM {s} ORDER BY {k}, {seq} DESC ON CONFLICT ({k}) ").format(
                    t=ident, c=cols, k=keys, s=stage_ident, seq=sql.Identifier(SEQ)
                ) + action
            )
        else:
            if full_refresh:
                cur.execute(sql.SQL("DELETE FROM {}").format(ident))
            cur.execute(
                sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s} ORDER BY {seq}").format(
                    t=ident, c=cols, s=stage_ident, seq=sql.Identifier(SEQ)
                )
            )
        return cur.rowcount

    def abort(self, run_id: str) -> None:
        """Drop the run's staging table (direct upserts stay: they are correct rows of the source)."""
        conn, target = self._open()
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(target.schema, target.stage_name(run_id))))
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            raise sink_error(exc, f"{target.label}: cannot abort run {run_id}", self._dsn) from None
        finally:
            conn.close()
        self._staged.pop(run_id, None)

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
            raise sink_error(exc, f"{target.label}: cannot check run {run_id}", self._dsn) from None
        finally:
            conn.close()

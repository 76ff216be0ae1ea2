"""What the PostgreSQL sink's launcher side and its Beam side share: the target, its columns and types, errors.

Example::

    from osmosis_beam.io.postgres.client import infer_type
    infer_type(Decimal("1.50"))      # 'numeric'
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
from osmosis_beam.core.secrets import redact_text, reveal
from osmosis_beam.io.postgres.session import (
    DEFAULT_DEADLINES,
    Deadlines,
    StalledError,
    timeout_hint,
    wait_longer_for_locks,
)
from osmosis_beam.io.postgres.source import (
    open_connection,
    parse_table_name,
)

log = logging.getLogger(__name__)




STAGE_PREFIX = "_osmosis_stage_"


SEQ = "_osmosis_seq"
# The cursor position column of a stage filled by COPY (the zero-decode path); never published.
POSITION = "_osmosis_position"


JSON_TYPES = ("json", "jsonb")


# A bad value fails the batch with one of these; the batch is then written row by row.
VALUE_ERRORS = (psycopg2.DataError, psycopg2.IntegrityError, psycopg2.ProgrammingError, ValueError)


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


def sink_error(exc: BaseException, what: str, dsn: str, deadlines: Deadlines | None = None) -> SinkError:
    if isinstance(exc, ConnectorError):
        return SinkError(exc.message)
    text = redact_text(str(getattr(exc, "pgerror", None) or exc).strip(), [dsn]) or type(exc).__name__
    hint = timeout_hint(exc, deadlines)
    if isinstance(exc, StalledError):
        return SinkError(f"{what}: {text}")
    text = text.replace("ERROR:  ", "").splitlines()[0]  # not the "LINE 1: ..." echo of the statement
    return SinkError(f"{what}: {text}" + (f"; {hint}" if hint else ""))


class Target:
    """Where and how to write: picklable facts shared by the launcher side and the workers."""

    def __init__(self, dsn: Any, table: str, key: Sequence[str], mode: str, create: bool,
                 schema_types: Mapping[str, str] | None, deadlines: Deadlines = DEFAULT_DEADLINES) -> None:
        # The Secret itself, not its value: prepared for a remote runner it pickles as its ${VAR} text, and
        # the workers fill it in from their own environment (a revealed DSN would travel inside the job).
        self._dsn = dsn
        self.deadlines = deadlines
        self.table = table
        self.key = list(key)
        self.mode = mode
        self.create = create
        self.schema_types = dict(schema_types or {})
        self.schema: str | None = None  # resolved on the launcher
        self.name = parse_table_name(table)[1]

    @property
    def dsn(self) -> str:
        return reveal(self._dsn)

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

    @staticmethod
    def stage_part_name(stage: str, origin: int) -> str:
        """The stage's part for the COPY rows read from the restriction starting at ``origin`` (a table that
        inherits the stage). The names sort as the origins do (the position offset by 2**63, in 16 hex digits)."""
        return f"{stage}_{(origin + (1 << 63)) & ((1 << 64) - 1):016x}"

    def connect(self):
        try:
            return open_connection(self.dsn, "sink postgres", deadlines=self.deadlines)
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


def lock(cur, target: Target) -> None:
    """Serialize DDL and publishing on one table across processes (held to the end of the transaction)."""
    # Another run's publish may hold it for as long as its merge takes: wait up to statement_timeout.
    restore = wait_longer_for_locks(cur, target.deadlines)
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7707))", (f"osmosis-sink:{target.schema}.{target.name}",))
    restore()


def _safe_type(cur, type_text: str) -> str:
    """``type_text`` when it names a type in this database, modifier included (``character(20)``,
    ``numeric(4,2)``: ``to_regtype`` parses the whole text as one type name, so nothing else can hide in
    it); else text (or text[]) for a type this database lacks (an enum or extension type of the source)."""
    try:
        cur.execute("SAVEPOINT osmosis_type")
        cur.execute("SELECT to_regtype(%s)::text", (type_text,))
        found = cur.fetchone()[0]
        cur.execute("RELEASE SAVEPOINT osmosis_type")
    except psycopg2.Error:
        cur.execute("ROLLBACK TO SAVEPOINT osmosis_type")
        found = None
    if found:
        # to_regtype drops the modifier (numeric(12,2) -> numeric, character(5) -> character, i.e. char(1)):
        # keep the text as written, which to_regtype just parsed as exactly one type name.
        return type_text.strip() if "(" in type_text else found
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

"""The PostgreSQL connector: incremental reads over server-side cursors (psycopg2).

A table (or a SELECT) is read window by window on its cursor column: ``cursor >= lo AND cursor < hi``
ordered by the cursor, through a named (server-side) cursor that fetches ``fetch_size`` rows per round
trip. Identifiers are always quoted as identifiers and values always bound as parameters. The session
runs read-only with ``TimeZone = UTC``, so ``timestamptz`` values arrive as UTC-aware datetimes.

Cursor columns may be ``timestamptz``; ``timestamp`` (without time zone) with ``timezone`` declared;
``date`` (a day counts from midnight UTC); or an integer (``bigserial`` ids: the window is
``[lo, max(id) + 1)``). Values keep their meaning: numeric is ``Decimal``, jsonb is dicts and lists,
arrays are lists, uuid is ``uuid.UUID``, bytea is ``bytes``, interval is ``timedelta`` (a month counts
as 30 days), enums are text, NULL is None. A row whose value Python cannot represent (a date in year
10000, or BC) goes to the dead letters with the raw text instead of failing the run.

Example (pipeline YAML)::

    source:
      type: postgres
      dsn: postgresql://app:${PG_PASSWORD}@db.internal:5432/shop
      table: public.orders
      primary_key: [id]
    incremental:
      cursor_field: updated_at

In Python::

    from osmosis_beam.io.postgres.source import PostgresConnector
    from osmosis_beam.core.window import IncrementalSpec
    orders = PostgresConnector({"dsn": dsn, "table": "public.orders"},
                               incremental=IncrementalSpec(cursor_field="updated_at"))
    orders.test_connection()     # 'postgres: connected to app@db.internal:5432/shop ...'
    rows = orders.fetch()        # every row up to the server's now()
"""
from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import logging
import queue
import re
import threading
import uuid
import zoneinfo
from typing import Any, Iterable, Iterator, Mapping

import psycopg2
import psycopg2.errorcodes
import psycopg2.extensions
import psycopg2.extras
from psycopg2 import sql

from osmosis_beam.core.errors import (
    ConfigError,
    ConnectorError,
    FatalConnectorError,
    RetriableConnectorError,
)
from osmosis_beam.core.options import Option, suggest
from osmosis_beam.core.records import DeadLetter, EncodedBatch, Record
from osmosis_beam.core.secrets import redact_text, reveal
from osmosis_beam.core.timefmt import MIN_MICROS, UTC
from osmosis_beam.core.window import SyncWindow, cursor_micros
from osmosis_beam.io.base import BaseConnector
from osmosis_beam.io.files.arrow import declared_decimals
from osmosis_beam.io.files.jsonl import typed_line
from osmosis_beam.io.postgres.arrow import ARROW, ArrowDecoder, ArrowPlan, build_arrow_plan
from osmosis_beam.io.postgres.decode import RowDecoder, loads_json
from osmosis_beam.io.postgres.encoded import (
    ENCODINGS,
    EncodedPlan,
    Unsupported,
    build_encoded_plan,
    run_steps,
)
from osmosis_beam.io.postgres.session import (
    DEFAULT_DEADLINES,
    Deadlines,
    StalledError,
    connect,
    deadline_options,
    deadlines_from,
    timeout_hint,
)

__all__ = ["PostgresConnector"]

log = logging.getLogger(__name__)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
# A naive timestamp's offset from UTC differs from the offset at the window bound by less than this
# (DST and zone changes), so ``cursor BETWEEN bound -/+ slack`` lets an index narrow the scan.
_ZONE_SLACK = dt.timedelta(hours=3)

# Type OIDs (pg_type.oid) of the cursor types.
_TIMESTAMPTZ, _TIMESTAMP, _DATE = 1184, 1114, 1082
_INTEGERS = {20: "bigint", 21: "smallint", 23: "integer"}
_NUMERIC = 1700  # numeric: its declared scale (numeric(12,2)) tells the zero-decode read which values it can hold
# Types whose psycopg2 conversion can fail on legal PostgreSQL values (years outside 1..9999).
_FRAGILE_CASTERS = ("PYDATE", "PYDATETIME", "PYDATETIMETZ", "PYINTERVAL", "PYTIME",
                    "PYDATEARRAY", "PYDATETIMEARRAY", "PYDATETIMETZARRAY", "PYINTERVALARRAY", "PYTIMEARRAY")
_CAST_ERRORS = (ValueError, OverflowError, psycopg2.DataError)

# schema.name or name; a part is a bare word (no dots or quotes) or a double-quoted identifier.
_NAME_PART = r'(?:"(?:[^"]|"")+"|[^".]+)'
_TABLE_NAME = re.compile(rf"^(?:(?P<schema>{_NAME_PART})\.)?(?P<name>{_NAME_PART})$")
_SELECT_START = re.compile(r"^\s*(\(|select\b|with\b|values\b|table\b)", re.I)


# ---------------------------------------------------------------------------------------------
# Helpers shared with the PostgreSQL sink
# ---------------------------------------------------------------------------------------------


def parse_table_name(text: str) -> tuple[str | None, str]:
    """``(schema, name)`` of ``name`` or ``schema.name``; parts are exact (case-sensitive) names.

    A part with dots or double quotes is written double-quoted: ``"odd.schema"."my ""t"" table"``.
    Raises ValueError for anything else.
    """
    match = _TABLE_NAME.match(text or "")
    if not match:
        raise ValueError(
            f"{text!r} is not a table name: write name or schema.name, and double-quote a part "
            'that contains dots or quotes ("my.schema"."orders")'
        )

    def unquote(part: str | None) -> str | None:
        if part is None:
            return None
        if part.startswith('"'):
            return part[1:-1].replace('""', '"')
        return part

    return unquote(match.group("schema")), unquote(match.group("name"))


def dsn_params(dsn: str) -> dict[str, str]:
    """The libpq parameters of a URL or keyword DSN (raises ValueError with the password scrubbed)."""
    try:
        return psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        raise ValueError(redact_text(str(exc).strip(), [dsn]) or "invalid DSN") from None


def describe_dsn(dsn: str) -> str:
    """``user@host:port/dbname`` for messages: never the password."""
    try:
        params = dsn_params(dsn)
    except ValueError:
        return "<invalid dsn>"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    user = params.get("user") or "(default user)"
    return f"{user}@{host}:{port}/{params.get('dbname') or user}"


def explain_connect_error(exc: psycopg2.Error, dsn: str, what: str) -> ConnectorError:
    """A plain message for a failed connection: which of host, port, password, database is wrong."""
    params = {}
    try:
        params = dsn_params(dsn)
    except ValueError:
        pass
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    user = params.get("user") or "(default user)"
    dbname = params.get("dbname") or user
    text = redact_text(str(exc).strip(), [dsn, params.get("password")]) or type(exc).__name__
    lower = text.lower()
    where = f"{what} {describe_dsn(dsn)}"
    if "password authentication failed" in lower or "no password supplied" in lower or "authentication failed" in lower:
        return FatalConnectorError(f"{where}: the server refused the password for user {user!r}; check the password in the dsn")
    if "does not exist" in lower and "database" in lower:
        return FatalConnectorError(f"{where}: database {dbname!r} does not exist on {host}:{port}; check the database name in the dsn")
    if "role" in lower and "does not exist" in lower:
        return FatalConnectorError(f"{where}: user {user!r} does not exist on {host}:{port}; check the user name in the dsn")
    if "could not translate host name" in lower or "name or service not known" in lower or "nodename nor servname" in lower:
        return FatalConnectorError(f"{where}: unknown host {host!r}; check the host name in the dsn")
    if "connection refused" in lower:
        return RetriableConnectorError(
            f"{where}: nothing accepts connections on {host}:{port} (connection refused); check the host and port, "
            "and that the server is running"
        )
    if "timeout expired" in lower or "timed out" in lower:
        return RetriableConnectorError(f"{where}: no answer from {host}:{port} in time (timeout); check the host, port and firewall")
    if "pg_hba.conf" in lower:
        return FatalConnectorError(f"{where}: the server does not allow this user/host/database (pg_hba.conf): {text}")
    if "ssl" in lower:
        return FatalConnectorError(f"{where}: TLS problem: {text}")
    return RetriableConnectorError(f"{where}: cannot connect: {text}")


def open_connection(dsn: str, what: str, *, application_name: str = "osmosis-beam",
                    deadlines: Deadlines = DEFAULT_DEADLINES) -> Any:
    """A psycopg2 connection with the session osmosis expects (UTC, ISO dates, postgres intervals) and
    ``deadlines`` (connect, statement and lock timeouts, keepalives, a client-side deadline)."""
    dsn_params(dsn)  # a bad DSN raises ValueError with the password scrubbed
    try:
        conn = connect(
            dsn, deadlines, application_name=application_name, what=f"{what} {describe_dsn(dsn)}",
            setup="SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'",
        )
    except psycopg2.OperationalError as exc:
        if isinstance(exc, StalledError):
            raise RetriableConnectorError(str(exc)) from None
        raise explain_connect_error(exc, dsn, what) from None
    except psycopg2.Error as exc:
        text = redact_text(str(exc).strip(), [dsn])
        raise RetriableConnectorError(f"{what} {describe_dsn(dsn)}: cannot set up the session: {text}") from None
    return conn


def quoted(conn: Any, composable: sql.Composable) -> sql.SQL:
    """``composable`` rendered with ``%`` doubled, for a statement executed with parameters.

    psycopg2 applies ``%`` formatting to the whole text of a statement that has parameters, identifiers
    and literals included, so a name like ``"50%_share"`` must reach it as ``"50%%_share"``.
    """
    return sql.SQL(composable.as_string(conn).replace("%", "%%"))


def check_dsn_and_tables(
    values: Mapping[str, Any], tables: Iterable[str], column_lists: Iterable[str], problems: list[str]
) -> None:
    """Offline checks shared by the connector and the sink: the DSN parses, table names parse,
    and every list of column names is non-empty text."""
    dsn = reveal(values.get("dsn"))
    if dsn:
        try:
            dsn_params(dsn)
        except ValueError as exc:
            problems.append(f"dsn: not a valid PostgreSQL DSN ({exc}); use postgresql://user@host:5432/dbname")
    for name in tables:
        table = values.get(name)
        if table:
            try:
                parse_table_name(table)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
    for name in column_lists:
        items = values.get(name)
        if items is not None:
            if not items:
                problems.append(f"{name}: must not be empty")
            for item in items:
                if not isinstance(item, str) or not item:
                    problems.append(f"{name}: column names must be non-empty text, got {item!r}")


def _bytes_caster(value, cur):
    return None if value is None else bytes(psycopg2.BINARY(value, cur))


_BYTES = psycopg2.extensions.new_type(psycopg2.BINARY.values, "OSMOSIS_BYTES", _bytes_caster)
_BYTES_ARRAY = psycopg2.extensions.new_array_type((1001,), "OSMOSIS_BYTES_ARRAY", _BYTES)


def _json_caster(value, cur):
    return None if value is None else loads_json(value)


_JSON = psycopg2.extensions.new_type((114, 3802), "OSMOSIS_JSON", _json_caster)
_JSON_ARRAY = psycopg2.extensions.new_array_type((199, 3807), "OSMOSIS_JSON_ARRAY", _JSON)


def register_value_types(conn: Any, arrays: Iterable[tuple[int, int]] = ()) -> None:
    """Make ``conn`` return uuid.UUID, bytes (not memoryview), and lists for arrays psycopg2 does not know."""
    psycopg2.extras.register_uuid(conn_or_curs=conn)
    psycopg2.extensions.register_type(_BYTES, conn)
    psycopg2.extensions.register_type(_BYTES_ARRAY, conn)
    psycopg2.extensions.register_type(_JSON, conn)
    psycopg2.extensions.register_type(_JSON_ARRAY, conn)
    for array_oid, element_oid in arrays:
        element = psycopg2.extensions.string_types.get(element_oid, psycopg2.STRING)
        psycopg2.extensions.register_type(
            psycopg2.extensions.new_array_type((array_oid,), f"OSMOSIS_ARRAY_{array_oid}", element), conn
        )


# ---------------------------------------------------------------------------------------------
# Unreadable values
# ---------------------------------------------------------------------------------------------


class _Unreadable:
    """A value psycopg2 could not convert (kept as the server's text, with the reason)."""

    __slots__ = ("text", "error")

    def __init__(self, text: str, error: str) -> None:
        self.text, self.error = text, error


def _robust(caster):
    def cast(value, cur):
        try:
            return caster(value, cur)
        except _CAST_ERRORS as exc:
            return _Unreadable(value, str(exc))

    return psycopg2.extensions.new_type(caster.values, f"OSMOSIS_ROBUST_{caster.name}", cast)


_ROBUST_CASTERS = [_robust(getattr(psycopg2.extensions, name)) for name in _FRAGILE_CASTERS]


def _unreadable_fields(record: Record) -> list[str]:
    return [k for k, v in record.items() if isinstance(v, _Unreadable)]


# ---------------------------------------------------------------------------------------------
# The read plan: resolved once on the launcher, pickled to the workers
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Plan:
    """What to read and how: final SQL texts (psycopg2 ``%(name)s`` parameters) and column facts."""

    source: str                 # "public.orders" or "query", for messages
    columns: list[str]
    kind: str | None            # timestamptz | timestamp | date | integer | None (no cursor)
    cursor_type: str | None     # the cursor column's SQL type, for messages
    select: dict[str, str]      # "window", "from" (lo open), "all" (no cursor)
    probe: str                  # SELECT 1 ... LIMIT 1 over the window
    lowest: str | None          # SELECT min(cursor) ... < hi
    clock: str                  # now(), or max(id)
    arrays: list[tuple[int, int]]
    table: tuple[str, str] | None = None  # (schema, name) when reading a table
    oids: list[int] = dataclasses.field(default_factory=list)  # result type of each column, as read
    highest: str | None = None  # SELECT max(cursor) ... < hi
    scales: dict[str, int] = dataclasses.field(default_factory=dict)  # numeric columns that declare a scale


class PostgresConnector(BaseConnector):
    """A PostgreSQL table or query, read incrementally on a cursor column over server-side cursors."""

    type_name = "postgres"
    reads_batches = True  # WHERE cursor >= lo AND cursor < hi ORDER BY cursor: the fast read path
    encodings = ENCODINGS + (ARROW,)  # the zero-decode path: server-built JSON lines, COPY text rows, Arrow tables
    options = (
        Option("dsn", "str", required=True, secret=True,
               help="postgresql://user:password@host:5432/dbname or libpq keywords; put the password in ${ENV}"),
        Option("table", "str", help="the table or view to read: name or schema.name (exact, case-sensitive)"),
        Option("query", "str", help="instead of table: a SELECT that returns the cursor column"),
        Option("primary_key", "list", help="the key columns (read from the catalog for tables when not given)"),
        Option("columns", "list", help="the columns to read (default: all); the cursor column is always read"),
        Option("fetch_size", "int", default=10000, minimum=1, help="rows per round trip of the server-side cursor"),
        Option("timezone", "str", help="the zone of `timestamp without time zone` values, e.g. UTC or Europe/Paris"),
        Option("wait_for_open_transactions", "bool", default=True,
               help="cap the window at the start of the oldest open writing transaction, so rows it commits late "
                    "are not missed (needs pg_read_all_stats to see other roles' sessions)"),
        *deadline_options(Option),
    )
    default_safety_lag = dt.timedelta(seconds=5)

    @classmethod
    def check_options(cls, values: Mapping[str, Any]) -> list[str]:
        """Problems in validated option values, without touching the network."""
        problems: list[str] = []
        table, query = values.get("table"), values.get("query")
        if table and query:
            problems.append("table: give table or query, not both")
        elif not table and not query:
            problems.append("table: required (or give query: a SELECT that returns the cursor column)")
        if table:
            try:
                parse_table_name(table)
            except ValueError as exc:
                problems.append(f"table: {exc}")
        if query:
            problem = _check_query(query)
            if problem:
                problems.append(f"query: {problem}")
        check_dsn_and_tables(values, (), ("primary_key", "columns"), problems)
        tz = values.get("timezone")
        if tz:
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                problems.append(f"timezone: unknown time zone {tz!r}; use an IANA name like UTC or Europe/Paris")
        return problems

    def __init__(self, options: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        if self.cursor_field is None:
            # No cursor: every run reads the whole relation as one piece (pair with an upsert sink).
            self.splittable = False
        self._plan: _Plan | None = None
        self._encoded: EncodedPlan | ArrowPlan | None = None
        self._zone = zoneinfo.ZoneInfo(self.config["timezone"]) if self.config.get("timezone") else None

    # -- connection -------------------------------------------------------------------------------
    @property
    def _dsn(self) -> str:
        return reveal(self.config["dsn"])

    @property
    def _what(self) -> str:
        return "postgres source"

    @property
    def _name(self) -> str:
        return self.config.get("table") or "query"

    def connect(self) -> None:
        if self._client is not None and not self._client.closed:
            return
        conn = open_connection(self._dsn, self._what, deadlines=deadlines_from(self.config))
        try:
            # Text in UTF-8 whatever the database's encoding: the zero-decode path writes the server's bytes.
            if conn.encoding != "UTF8":
                conn.set_client_encoding("UTF8")
            # One consistent snapshot per read; read-only guards a `query` against writes.
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True, autocommit=False)
            if self._plan is None:
                self._plan = self._resolve(conn)
            register_value_types(conn, self._plan.arrays)
        except BaseException:
            conn.close()
            raise
        self._client = conn

    def disconnect(self) -> None:
        conn, self._client = self._client, None
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except psycopg2.Error:
                pass

    def _conn(self):
        if self._client is None or self._client.closed:
            self.connect()
        return self._client

    def _fail(self, exc: psycopg2.Error, doing: str) -> ConnectorError:
        text = redact_text(str(getattr(exc, "pgerror", None) or exc).strip(), [self._dsn]) or type(exc).__name__
        text = text.replace("ERROR:  ", "").splitlines()[0]
        where = f"{self._what} {self._name}: {doing}"
        code = getattr(exc, "pgcode", None) or ""
        hint = timeout_hint(exc, deadlines_from(self.config))
        if hint is not None:
            return RetriableConnectorError(f"{where}: {text}" + ("" if isinstance(exc, StalledError) else f"; {hint}"))
        if code == psycopg2.errorcodes.INSUFFICIENT_PRIVILEGE:
            user = dsn_params(self._dsn).get("user") or "the connecting user"
            on = self.config.get("table") or "the tables of the query"
            return FatalConnectorError(f"{where}: {text}; grant it with GRANT SELECT ON {on} TO {user}")
        if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) or code.startswith(("08", "57", "40", "53")):
            return RetriableConnectorError(f"{where}: {text}")
        return FatalConnectorError(f"{where}: {text}")

    def _query(self, statement: str, params: Mapping[str, Any] | None = None, doing: str = "query") -> list[tuple]:
        """One short query on the launcher (its own read-only transaction)."""
        conn = self._conn()
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params or {})  # always formatted: the plan's texts have %% for %
                rows = cur.fetchall()
            conn.rollback()
            return rows
        except psycopg2.Error as exc:
            try:
                conn.rollback()
            except psycopg2.Error:
                self.disconnect()
            raise self._fail(exc, doing) from None

    # -- resolving what to read ---------------------------------------------------------------
    def _relation(self, conn) -> tuple[sql.Composable, str | None, str | None]:
        """The FROM item, and the table's (schema, name) when reading a table."""
        table = self.config.get("table")
        if table is None:
            query = self.config["query"].strip().rstrip(";").strip().replace("%", "%%")
            return sql.SQL("(") + sql.SQL(query) + sql.SQL("\n) AS _osmosis_source"), None, None
        schema, name = parse_table_name(table)
        with conn.cursor() as cur:
            if schema is None:
                cur.execute(
                    "SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relname = %s AND n.nspname = ANY (current_schemas(false)) AND c.relkind IN ('r', 'v', 'm', 'p', 'f') "
                    "ORDER BY array_position(current_schemas(false), n.nspname) LIMIT 1",
                    (name,),
                )
            else:
                cur.execute(
                    "SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relname = %s AND n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f')",
                    (name, schema),
                )
            row = cur.fetchone()
            if row is None:
                cur.execute(
                    "SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c "
                    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') "
                    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'"
                )
                known = [r[0] for r in cur.fetchall()]
                wanted = f"{schema}.{name}" if schema else f"public.{name}"
                hint = suggest(wanted, known) or suggest(wanted.lower(), known)
                raise FatalConnectorError(
                    f"{self._what} {describe_dsn(self._dsn)}: table {table!r} does not exist{hint}; "
                    "names are exact (case-sensitive); write schema.name for a table outside the search path"
                )
        return quoted(conn, sql.Identifier(row[0], name)), row[0], name

    def _resolve(self, conn) -> _Plan:
        try:
            plan = self._build_plan(conn)
            conn.rollback()
            return plan
        except psycopg2.Error as exc:
            conn.rollback()
            raise self._fail(exc, "cannot read the columns") from None

    def _build_plan(self, conn) -> _Plan:
        relation, schema, name = self._relation(conn)
        source = f"{schema}.{name}" if schema else "query"
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(relation), {})
            described = [(d.name, d.type_code) for d in cur.description]
            scales = {d.name: d.scale for d in cur.description if d.type_code == _NUMERIC and d.scale is not None}
            names = [n for n, _ in described]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ConfigError(
                    f"source.query: returns more than one column named {', '.join(duplicates)}; give each column its own alias"
                )
            oids = sorted({oid for _, oid in described})
            cur.execute(
                "SELECT oid, typcategory, typelem, typbasetype, format_type(oid, NULL) FROM pg_catalog.pg_type WHERE oid = ANY (%s)",
                (oids,),
            )
            types = {r[0]: r[1:] for r in cur.fetchall()}
        type_of = dict(described)

        def base(oid: int) -> int:
            info = types.get(oid)
            return info[2] if info and info[2] else oid

        wanted = list(self.config.get("columns") or names)
        cursor = self.cursor_field
        for column in wanted + ([cursor] if cursor else []) + list(self.config.get("primary_key") or []):
            if column not in type_of:
                raise FatalConnectorError(
                    f"{self._what} {source}: column {column!r} does not exist{suggest(column, names)}; "
                    f"its columns are {', '.join(names)}"
                    + ("" if column != cursor else " (set incremental.cursor_field to one of them)")
                )
        if cursor and cursor not in wanted:
            wanted.append(cursor)

        kind = cursor_type = None
        if cursor:
            oid = base(type_of[cursor])
            cursor_type = types.get(type_of[cursor], (None, None, None, str(oid)))[3]
            if oid == _TIMESTAMPTZ:
                kind = "timestamptz"
            elif oid == _TIMESTAMP:
                if self._zone is None:
                    raise ConfigError(
                        f"source.timezone: cursor column {cursor!r} of {source} is timestamp without time zone; "
                        "say which zone its values are in (timezone: UTC, or e.g. Europe/Paris)"
                    )
                kind = "timestamp"
            elif oid == _DATE:
                kind = "date"
            elif oid in _INTEGERS:
                kind = "integer"
            else:
                raise FatalConnectorError(
                    f"{self._what} {source}: cursor column {cursor!r} has type {cursor_type}; "
                    "a cursor must be timestamptz, timestamp (with source.timezone), date, or an integer"
                )

        zone = quoted(conn, sql.Literal(self.config.get("timezone"))) if self._zone else None
        items = []
        for column in wanted:
            ident = quoted(conn, sql.Identifier(column))
            if zone is not None and base(type_of[column]) == _TIMESTAMP:
                items.append(sql.SQL("({} AT TIME ZONE {}) AS {}").format(ident, zone, ident))
            else:
                items.append(ident)
        select_list = sql.SQL(", ").join(items)

        arrays = []
        for column in wanted:
            oid = type_of[column]
            info = types.get(oid)
            if info and info[0] == "A" and oid not in psycopg2.extensions.string_types:
                arrays.append((oid, info[1]))

        def text(composed: sql.Composable) -> str:
            return composed.as_string(conn)

        oids = [_TIMESTAMPTZ if zone is not None and base(type_of[c]) == _TIMESTAMP else type_of[c] for c in wanted]
        src = sql.SQL("SELECT {} FROM {}").format(select_list, relation)
        probe_src = sql.SQL("SELECT 1 FROM {}").format(relation)
        table = (schema, name) if schema else None
        if kind is None:
            return _Plan(source, wanted, None, None, {"all": text(src)}, text(probe_src + sql.SQL(" LIMIT 1")), None,
                         "SELECT now()", arrays, table, oids)
        col = quoted(conn, sql.Identifier(cursor))
        if kind == "timestamp":
            local = sql.SQL("({} AT TIME ZONE {})").format(col, zone)
            lower = sql.SQL("{c} >= %(lo_naive)s AND {l} >= %(lo)s").format(c=col, l=local)
            upper = sql.SQL("{c} < %(hi_naive)s AND {l} < %(hi)s").format(c=col, l=local)
            order = sql.SQL(" ORDER BY {}").format(local)
            key = local
        else:
            lower = sql.SQL("{} >= %(lo)s").format(col)
            upper = sql.SQL("{} < %(hi)s").format(col)
            order = sql.SQL(" ORDER BY {}").format(col)
            key = col
        window = sql.SQL(" WHERE {} AND {}").format(lower, upper)
        open_lo = sql.SQL(" WHERE {}").format(upper)
        select = {
            "window": text(src + window + order),
            "from": text(src + open_lo + order),
        }
        probe = text(probe_src + window + sql.SQL(" LIMIT 1"))
        lowest = text(sql.SQL("SELECT min({}) FROM {}").format(key, relation) + open_lo)
        highest = text(sql.SQL("SELECT max({}) FROM {}").format(key, relation) + open_lo)
        clock = "SELECT now()" if kind != "integer" else text(sql.SQL("SELECT max({}) FROM {}").format(col, relation))
        return _Plan(source, wanted, kind, cursor_type, select, probe, lowest, clock, arrays, table, oids, highest,
                     {c: scales[c] for c in wanted if c in scales})

    @property
    def plan(self) -> _Plan:
        if self._plan is None:
            self.connect()
        assert self._plan is not None
        return self._plan

    # -- window bounds as parameters --------------------------------------------------------------
    def _params(self, lo, hi) -> dict[str, Any]:
        kind = self.plan.kind
        if kind is None:
            return {}
        if kind == "date":
            return {"lo": _ceil_date(lo), "hi": _ceil_date(hi), **(self._encoded.params if self._encoded else {})}
        params: dict[str, Any] = {"lo": lo, "hi": hi}
        if self._encoded is not None and self._encoded.params:
            params.update(self._encoded.params)  # the values of pushed filter steps, bound as parameters
        if kind == "timestamp":
            params["lo_naive"] = None if lo is None else lo.astimezone(self._zone).replace(tzinfo=None) - _ZONE_SLACK
            params["hi_naive"] = hi.astimezone(self._zone).replace(tzinfo=None) + _ZONE_SLACK
        return params

    def _check_bounds(self, lo, hi) -> None:
        integer = self.plan.kind == "integer"
        for bound in (lo, hi):
            if bound is None or self.plan.kind is None:
                continue
            if integer != (isinstance(bound, int) and not isinstance(bound, bool)):
                raise FatalConnectorError(
                    f"{self._what} {self.plan.source}: cursor {self.cursor_field!r} is {self.plan.cursor_type}, "
                    f"but the window bound {bound!r} is not {'an integer' if integer else 'a timestamp'}; "
                    "the stored watermark belongs to another cursor: rerun with --full-refresh"
                )

    # -- the sync hooks (launcher) ----------------------------------------------------------------
    def source_clock(self) -> dt.datetime | int:
        """The server's ``now()`` (UTC-aware), or ``max(id) + 1`` for an integer cursor.

        With ``wait_for_open_transactions`` (the default) a time cursor's clock is capped at the start of
        the oldest transaction in this database that has written and is still open, less
        ``OPEN_TRANSACTION_MARGIN``: its rows are stamped at or after its start (``now()``, defaults,
        triggers), so they fall at or after ``hi`` and into a later window once it commits.
        """
        if self.plan.kind == "integer" or self.plan.kind is None or not self.config.get("wait_for_open_transactions", True):
            value = self._query(self.plan.clock, doing="cannot read the source clock")[0][0]
            if self.plan.kind == "integer":
                return MIN_MICROS if value is None else int(value) + 1
            return value.astimezone(UTC)
        now, oldest, pid, who, hidden, hidden_writers, can_see = self._query(
            _CLOCK_AND_OPEN_TRANSACTIONS, doing="cannot read the source clock"
        )[0]
        now = now.astimezone(UTC)
        if not can_see and hidden:
            user = dsn_params(self._dsn).get("user") or "the connecting user"
            writing = f", {hidden_writers} of them in a writing transaction now" if hidden_writers else ""
            log.warning(
                "%s %s: the role cannot see the transactions of %d other sessions in this database%s, so rows they "
                "commit more than safety_lag after their timestamp can be missed; let it see them with "
                "GRANT pg_read_all_stats TO %s", self._what, self.plan.source, hidden, writing, user,
            )
        if oldest is None:
            return now
        cap = oldest.astimezone(UTC) - OPEN_TRANSACTION_MARGIN
        if cap >= now:
            return now
        if now - cap > _LONG_OPEN_TRANSACTION:
            log.warning(
                "%s %s: a transaction open since %s (pid %s, %s) holds the window back at its start, so that the "
                "rows it commits are not missed; end it to let the sync move on (or set "
                "source.wait_for_open_transactions: false to accept losing them)",
                self._what, self.plan.source, oldest.astimezone(UTC).isoformat(), pid, who,
            )
        else:
            log.info("%s %s: window capped at an open transaction's start (pid %s, since %s)",
                     self._what, self.plan.source, pid, oldest.astimezone(UTC).isoformat())
        return cap

    def window_is_empty(self, window: SyncWindow) -> bool | None:
        """True when no row lies in ``window`` (one index probe: ``SELECT 1 ... LIMIT 1``)."""
        plan = self.plan
        if plan.kind is None:
            return not self._query(plan.probe, doing="cannot probe the window")
        self._check_bounds(window.lo, window.hi)
        if window.is_empty:
            return True
        if window.lo is None:
            return self.lower_bound(window) is None
        return not self._query(plan.probe, self._params(window.lo, window.hi), doing="cannot probe the window")

    def lower_bound(self, window: SyncWindow) -> dt.datetime | int | None:
        """The smallest cursor value below ``window.hi`` (to place split points when ``lo`` is open)."""
        return self._extreme(self.plan.lowest, window, "lowest")

    def upper_bound(self, window: SyncWindow) -> dt.datetime | int | None:
        """The largest cursor value below ``window.hi`` (the end of the records, for the progress share)."""
        return self._extreme(self.plan.highest, window, "highest")

    def _extreme(self, query: str | None, window: SyncWindow, which: str) -> dt.datetime | int | None:
        plan = self.plan
        if query is None:
            return None
        self._check_bounds(None, window.hi)
        value = self._query(query, self._params(None, window.hi), doing=f"cannot read the {which} cursor")[0][0]
        if value is None:
            return None
        if plan.kind == "integer":
            return int(value)
        if plan.kind == "date":
            return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
        return value.astimezone(UTC)

    def split_points(self, lo: int, hi: int, splits: int) -> tuple[int, ...] | None:
        """Cut points from the table's statistics (``pg_stats.histogram_bounds`` of the cursor column, which
        ``ANALYZE`` keeps in equal-count buckets), so sub-windows hold about as many rows each; None when
        the source is a query, the cursor is a ``timestamp`` read in a zone, or there are no statistics."""
        plan = self.plan
        if plan.table is None or plan.kind not in ("timestamptz", "date", "integer") or splits < 2:
            return None
        element = {"timestamptz": "timestamptz", "date": "date", "integer": "bigint"}[plan.kind]
        python_range = "" if plan.kind == "integer" else " AND b > '0001-01-02' AND b < '9999-12-30'"
        try:
            rows = self._query(
                f"SELECT b FROM pg_catalog.pg_stats s, unnest(s.histogram_bounds::text::{element}[]) AS b "
                "WHERE s.schemaname = %(schema)s AND s.tablename = %(table)s AND s.attname = %(column)s" + python_range,
                {"schema": plan.table[0], "table": plan.table[1], "column": self.cursor_field},
                doing="cannot read the cursor column's statistics",
            )
        except ConnectorError as exc:  # statistics only place the cuts: without them the window is cut evenly
            log.info("%s", exc)
            return None
        bounds = []
        for (value,) in rows:
            if plan.kind == "date":
                value = dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
            position = self.cursor_position({self.cursor_field: value}) if plan.kind != "integer" else int(value)
            if lo < position < hi:
                bounds.append(position)
        bounds.sort()  # a partitioned table has two histograms (with and without its partitions)
        if len(bounds) < splits - 1:
            return None
        return tuple(sorted({bounds[(len(bounds) * k) // splits] for k in range(1, splits)}))

    # -- the read (workers) -------------------------------------------------------------------------
    def read_window(self, lo, hi) -> Iterator[Record | DeadLetter]:
        """The rows whose cursor lies in ``[lo, hi)``, in cursor order, as dicts."""
        for batch in self.read_window_batches(lo, hi, self.config["fetch_size"]):
            if isinstance(batch, DeadLetter):
                yield batch
            else:
                yield from batch

    def read_window_batches(self, lo, hi, batch_size: int) -> Iterator[list[Record] | DeadLetter]:
        """The rows whose cursor lies in ``[lo, hi)``, in cursor order, as lists of dicts."""
        plan = self.plan
        if plan.kind is None:
            # A full read cannot resume after a row Python cannot convert: convert safely from the start.
            yield from _batched(self._read_robust(None, None, []), batch_size)
            return
        self._check_bounds(lo, hi)
        if lo is not None and hi <= lo:
            return
        which = "window" if lo is not None else "from"
        if self._encoded is not None:
            read = {"json": self._read_json, "pgcopy": self._read_copy, ARROW: self._read_arrow}[self._encoded.encoding]
            yield from read(self._encoded.select[which], lo, hi, batch_size)
            return
        yield from self._read(plan.select[which], lo, hi, batch_size)

    def _read(self, statement: str, lo, hi, batch_size: int) -> Iterator[list[Record] | DeadLetter]:
        conn = self._conn()
        params = self._params(lo, hi)
        names = self.plan.columns
        key = names.index(self.cursor_field)
        fetch_size = self.config["fetch_size"]
        tail: list[tuple] = []  # the rows yielded last that share the last cursor value
        decoder: RowDecoder | None = None  # made at the first fetch, from the result's column types
        cur = conn.cursor(name=f"osmosis_{uuid.uuid4().hex[:12]}")
        cur.itersize = fetch_size
        RowDecoder.register(cur)  # json and jsonb arrive as text: the decoder parses them a batch at a time
        fetcher: _Prefetch | None = None
        try:
            try:
                cur.execute(statement, params)
                fetcher = _Prefetch(cur, fetch_size)
                while True:
                    try:
                        rows = fetcher.next()
                    except _CAST_ERRORS as exc:
                        if isinstance(exc, psycopg2.Error) and getattr(exc, "pgcode", None):
                            raise
                        log.warning("%s %s: a value cannot be converted (%s); reading the rest row by row",
                                    self._what, self.plan.source, exc)
                        fetcher.close(conn)
                        cur.close()
                        cur = None
                        robust = self._read_robust(lo, hi, decoder.records(tail) if decoder is not None else [])
                        yield from _batched(robust, batch_size)
                        return
                    if not rows:
                        break
                    if decoder is None:
                        decoder = RowDecoder(names, fetcher.type_codes)
                    _update_tail(tail, rows, key)
                    for i in range(0, len(rows), batch_size):
                        yield decoder.records(rows[i : i + batch_size])
            except psycopg2.Error as exc:
                raise self._fail(exc, "read failed") from None
        finally:
            if fetcher is not None:
                fetcher.close(conn)
            try:
                if cur is not None and not cur.closed:
                    cur.close()
                conn.rollback()
            except psycopg2.Error:
                self.disconnect()

    def _read_robust(self, lo, hi, tail: list[Record]) -> Iterator[Record | DeadLetter]:
        """Re-read from the last cursor value yielded with converters that never raise.

        Rows already yielded at that value (``tail``) are skipped; rows holding a value Python cannot
        represent go to the dead letters with the server's text of the value.
        """
        conn = self._conn()  # still in the failed read's transaction: the same snapshot
        plan = self.plan
        names = plan.columns
        if plan.kind is None:
            statement, start = plan.select["all"], None
        elif tail:
            start = tail[-1][self.cursor_field]
            if plan.kind == "date":
                start = dt.datetime(start.year, start.month, start.day, tzinfo=UTC)
            statement = plan.select["window"]
        else:
            start = lo
            statement = plan.select["window" if lo is not None else "from"]
        remaining = list(tail)
        cur = conn.cursor(name=f"osmosis_{uuid.uuid4().hex[:12]}")
        for caster in _ROBUST_CASTERS:
            psycopg2.extensions.register_type(caster, cur)
        try:
            cur.execute(statement, self._params(start, hi))
            for row in cur:
                record = dict(zip(names, row))
                if remaining and record in remaining:
                    remaining.remove(record)
                    continue
                bad = _unreadable_fields(record)
                if bad:
                    yield self._unreadable_letter(record, bad)
                    continue
                yield record
        except psycopg2.Error as exc:
            raise self._fail(exc, "read failed") from None
        finally:
            self._end_read(conn, cur)

    def _unreadable_letter(self, record: Record, bad: list[str], position: int | None = None) -> DeadLetter:
        """The dead letter of a row holding values Python cannot represent (``bad``: their columns), each
        replaced in the record by the server's text of it."""
        errors = "; ".join(f"column {k!r}: {record[k].error} (value {record[k].text!r})" for k in bad)
        for k in bad:
            record[k] = record[k].text
        return DeadLetter(f"read: {self.type_name}", f"{self.plan.source}: cannot convert {errors}", record, position)

    def _end_read(self, conn, cur) -> None:
        """Close a read's cursor and end its transaction; a connection that cannot is dropped."""
        try:
            if not cur.closed:
                cur.close()
            conn.rollback()
        except psycopg2.Error:
            self.disconnect()

    def use_encoding(self, encoding: str | None, fields: tuple = ()) -> str | None:
        """Read pre-encoded ``encoding`` (``json``, ``pgcopy``, ``arrow``) instead of Python values; None to read typed.

        ``fields``: the steps done in the query, ``(name, config[, label, on_error])``: ``select``/``drop``/
        ``rename``, and ``filter``/``cast`` where they translate exactly (``io/postgres/pushdown.py``).
        Returns why it cannot (the read then stays typed), or None. Called on the launcher.
        """
        self._encoded = None
        if encoding is None:
            return None
        plan = self.plan
        if plan.kind is None:
            return "the source has no cursor field (a whole-table read stays typed)"
        # The Parquet sink gives a decimal column the numeric(p,s) the source's schema declares for its field.
        declared = declared_decimals(self.get_schema()) if encoding == ARROW else {}
        conn = self._conn()
        try:
            base = {k: plan.select[k] for k in ("window", "from")}
            if encoding == ARROW:
                self._encoded = build_arrow_plan(
                    conn, base, plan.columns, plan.oids, self.cursor_field, plan.kind, fields, declared=declared
                )
                log.info("%s %s: Arrow columns %s", self._what, plan.source, self._encoded.describe())
            else:
                not_null, utf8 = frozenset(), True
                if any(step[0] in ("filter", "cast") for step in fields):
                    not_null, utf8 = self._column_facts(conn)
                self._encoded = build_encoded_plan(
                    conn, encoding, base, plan.columns, plan.oids, self.cursor_field, plan.kind, fields, not_null, utf8,
                    plan.scales,
                )
        except Unsupported as exc:
            return f"{plan.source}: {exc}"
        except psycopg2.Error as exc:
            raise self._fail(exc, "cannot read the column types") from None
        finally:
            try:
                conn.rollback()
            except psycopg2.Error:
                self.disconnect()
        return None

    def _column_facts(self, conn) -> tuple[frozenset[str], bool]:
        """The columns declared NOT NULL (a table's; none for a query), and whether the database is UTF8."""
        with conn.cursor() as cur:
            cur.execute("SHOW server_encoding")
            utf8 = cur.fetchone()[0].upper() in ("UTF8", "UTF-8")
            if self._plan.table is None:
                return frozenset(), utf8
            cur.execute(
                "SELECT a.attname FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND a.attnotnull AND NOT a.attisdropped",
                self._plan.table,
            )
            return frozenset(r[0] for r in cur.fetchall()), utf8

    def _read_json(self, statement: str, lo, hi, batch_size: int) -> Iterator[EncodedBatch | DeadLetter]:
        """The zero-decode read for JSON lines: ``(position, line)`` rows, streamed by COPY.

        ``COPY (SELECT ...) TO STDOUT`` keeps the server producing rows while this process writes the
        previous batch (a server-side cursor's FETCH leaves one side idle at each round trip). Lines are
        UTF-8 bytes; a row the server flagged sends the record of its typed columns in place of its line,
        whose values the typed read's casters decode, so it is encoded by the typed path's own code.
        """
        if self._encoded.steps is not None:
            yield from self._read_json_steps(statement, lo, hi, batch_size)
            return
        conn = self._conn()
        encoded = self._encoded
        casters = _Casters(conn, dict(zip(self.plan.columns, self.plan.oids)), encoded.typed_columns)
        for rows in self._copy_rows(statement, lo, hi, batch_size):
            positions, lines, flagged = _json_rows(rows)
            dropped = None
            if flagged:
                positions, lines, dead, dropped = self._typed_rows(positions, lines, flagged, casters)
                yield from dead
                if not lines and not dropped:
                    continue
            yield EncodedBatch("json", lines, positions, dropped=dropped)

    def _typed_rows(self, positions: list[int], lines: list, flagged: dict[int, list], casters: "_Casters"
                    ) -> tuple[list[int], list[bytes], list[DeadLetter], list[int]]:
        """A batch in which the server sent some rows typed (``flagged``: index -> text values): those rows
        are decoded by the typed read's casters and encoded as the typed path does. Fourth: the positions
        of rows read but not encodable (a float NaN: a dead letter of the sink's encoding), which count as
        read, as on the typed path."""
        encoded = self._encoded
        names = encoded.typed_columns
        out_positions: list[int] = []
        out_lines: list[bytes] = []
        dead: list[DeadLetter] = []
        unencodable: list[int] = []
        for i, (position, line) in enumerate(zip(positions, lines)):
            values = flagged.get(i)
            if values is not None:
                record = encoded.project(dict(zip(names, casters.cast(values))))
                bad = _unreadable_fields(record)
                if bad:
                    dead.append(self._unreadable_letter(record, bad, position))
                    continue
                text = typed_line(record)
                if isinstance(text, DeadLetter):
                    text.position = position  # the read emits it with the claim covering its row
                    dead.append(text)
                    unencodable.append(position)  # read, as the typed path counts it; the sink cannot encode it
                    continue
                line = text.encode("utf-8")
            out_positions.append(position)
            out_lines.append(line)
        return out_positions, out_lines, dead, unencodable

    def _read_json_steps(self, statement: str, lo, hi, batch_size: int) -> Iterator[EncodedBatch | DeadLetter]:
        """The JSON read with pushed filter/cast steps: ``(position, line, typed columns...)`` rows, FETCHed.

        A row the server cannot decide exactly carries every column typed (psycopg2's casters decode them)
        and goes through the Python steps; ``''`` marks a row a filter dropped (read and claimed, not written).
        """
        conn = self._conn()
        fetch_size = self.config["fetch_size"]
        fallback = self._encoded.fallback
        steps = self._encoded.steps is not None  # pushed filter/cast: '' marks a row a filter dropped
        cur = conn.cursor(name=f"osmosis_{uuid.uuid4().hex[:12]}")
        cur.itersize = fetch_size
        for caster in _ROBUST_CASTERS:  # only the rows the server flagged carry typed values
            psycopg2.extensions.register_type(caster, cur)
        try:
            try:
                cur.execute(statement, self._params(lo, hi))
                while True:
                    rows = cur.fetchmany(fetch_size)
                    if not rows:
                        break
                    for i in range(0, len(rows), batch_size):
                        chunk = rows[i : i + batch_size]
                        positions = [r[0] for r in chunk]
                        lines = [r[1] for r in chunk]
                        dropped = None
                        if fallback and (None in lines or (steps and "" in lines)):
                            positions, lines, dropped, dead = self._typed_step_rows(chunk)
                            yield from dead
                            if not lines and not dropped:
                                continue
                        yield EncodedBatch("json", lines, positions, dropped=dropped)
            except psycopg2.Error as exc:
                raise self._fail(exc, "read failed") from None
        finally:
            self._end_read(conn, cur)

    def _typed_step_rows(self, chunk: list[tuple]) -> tuple[list[int], list[str], list[int] | None, list[DeadLetter]]:
        """Lines for a chunk in which the server sent some rows typed: those are encoded as the typed path does.

        With pushed filter/cast steps, a typed row carries every column and goes through the steps themselves
        (kept, dropped, or a dead letter, as on the typed path), and ``''`` marks a row a filter dropped;
        the positions of the dropped rows come back third (None without steps), still read and claimed.
        """
        encoded = self._encoded
        names = encoded.typed_columns
        steps = encoded.steps
        positions: list[int] = []
        lines: list[str] = []
        dropped: list[int] | None = [] if steps is not None else None
        dead: list[DeadLetter] = []
        for row in chunk:
            line = row[1]
            if line == "" and steps is not None:
                dropped.append(row[0])
                continue
            if line is None:
                record = dict(zip(names, row[2:]))
                if steps is None:
                    record = encoded.project(record)
                bad = _unreadable_fields(record)
                if bad:
                    dead.append(self._unreadable_letter(record, bad, row[0]))
                    continue
                if steps is not None:
                    record = run_steps(steps, record)
                    if not isinstance(record, dict):
                        if record is not None:
                            record.position = row[0]
                            dead.append(record)
                        dropped.append(row[0])
                        continue
                line = typed_line(record)
                if isinstance(line, DeadLetter):
                    line.position = row[0]
                    dead.append(line)
                    if dropped is not None:
                        dropped.append(row[0])  # read, as the typed path counts it; the sink cannot encode it
                    continue
            positions.append(row[0])
            lines.append(line)
        return positions, lines, dropped, dead

    def _read_copy(self, statement: str, lo, hi, batch_size: int) -> Iterator[EncodedBatch]:
        """The zero-decode read for PostgreSQL sinks: COPY text rows (position first), streamed in batches."""
        columns = tuple(field for field, _ in self._encoded.projection)
        filtered = self._encoded.steps is not None
        for lines in self._copy_rows(statement, lo, hi, batch_size):
            dropped = None
            if filtered:  # rows a pushed filter dropped come as b"d<position>\t...": read, not written
                dropped = [int(line[1:].split(b"\t", 1)[0]) for line in lines if line[:1] == b"d"]
                if dropped:
                    lines = [line for line in lines if line[:1] != b"d"]
            yield EncodedBatch("pgcopy", lines, None, columns, dropped=dropped)

    def _read_arrow(self, statement: str, lo, hi, batch_size: int) -> Iterator[EncodedBatch | DeadLetter]:
        """The zero-decode read for the Parquet sink: COPY CSV rows turned into Arrow tables, batch by batch.

        A batch holding a value pyarrow will not parse as the typed path reads it is decoded by the typed
        path's casters (robust ones: a value Python cannot represent is the same dead letter as there).
        """
        caster = self._conn().cursor()
        for robust in _ROBUST_CASTERS:
            psycopg2.extensions.register_type(robust, caster)

        decoder = ArrowDecoder(self._encoded, cast=caster.cast, unreadable=_unreadable_fields,
                               dead_letter=self._unreadable_letter,
                               position=lambda value: self.cursor_position({self.cursor_field: value}))
        chunks = self._copy_rows(statement, lo, hi, batch_size, "(FORMAT csv)")
        try:
            for rows in chunks:
                yield from decoder.decode(rows)
        finally:
            chunks.close()  # a reader that stopped early (a split took the rest) ends the COPY now
            caster.close()

    def _copy_rows(self, statement: str, lo, hi, batch_size: int, options: str = "") -> Iterator[list[bytes]]:
        """``COPY (statement) TO STDOUT options`` (the text format by default) as lists of ``batch_size`` raw rows.

        The COPY runs in a thread of its own that hands batches over through a small queue, so the caller
        handles one batch while the next arrives, and memory stays flat. It is one statement: the server's
        ``statement_timeout`` (and the client deadline past it) bounds the whole sub-window's read.
        """
        conn = self._conn()
        with conn.cursor() as cur:
            text = cur.mogrify(statement, self._params(lo, hi)).decode("utf-8")
        chunks = _CopyBatches(batch_size)
        failure: list[BaseException] = []
        copy = f"COPY ({text}) TO STDOUT" + (f" {options}" if options else "")

        def pump() -> None:
            try:
                with conn.cursor() as cur:
                    cur.copy_expert(copy, chunks, size=1 << 16)
                chunks.flush()
            except BaseException as exc:  # handed to the reading thread
                failure.append(exc)
            finally:
                chunks.done()

        thread = threading.Thread(target=pump, name="osmosis-pg-copy", daemon=True)
        thread.start()
        finished = False
        try:
            while True:
                lines = chunks.get()
                if lines is None:
                    break
                yield lines
            finished = True  # a reader closed early (a split took the rest) ends the COPY and ignores its error
        finally:
            if not finished:
                chunks.stop()  # the reader stopped early (a split took the rest): end the COPY
                try:
                    conn.cancel()
                except psycopg2.Error:
                    pass
            thread.join()
            try:
                conn.rollback()
            except psycopg2.Error:
                self.disconnect()
        if finished and failure and not isinstance(failure[0], _Stopped):
            exc = failure[0]
            if isinstance(exc, psycopg2.Error):
                raise self._fail(exc, "read failed") from None
            raise exc

    def cursor_position(self, record: Record) -> int | None:
        value = record.get(self.cursor_field)
        if value is None:
            return None
        kind = self._plan.kind if self._plan is not None else None
        if kind == "integer":
            return value
        if kind in ("timestamptz", "timestamp") and type(value) is dt.datetime and value.tzinfo is not None:
            return (value - _EPOCH) // _MICROSECOND
        return cursor_micros(value, self.cursor_field)

    # -- the seed interface ---------------------------------------------------------------------
    def test_connection(self) -> str:
        """Connect and check the table, columns and cursor; a plain message names what is wrong."""
        self.disconnect()
        self._plan = None
        try:
            self.connect()  # resolves the plan: the table, the columns, the cursor and SELECT permission
            version = self._query("SHOW server_version", doing="cannot read the server version")[0][0]
            plan = self.plan
        finally:
            self.disconnect()
        cursor = f"cursor {self.cursor_field} ({plan.cursor_type})" if plan.kind else "no cursor (every run reads all rows)"
        return (
            f"{self.type_name}: connected to {describe_dsn(self._dsn)} (PostgreSQL {version.split()[0]}); "
            f"{plan.source}: {len(plan.columns)} columns, {cursor}"
        )

    def get_schema(self) -> dict[str, Any]:
        """Columns (name, SQL type, nullable), primary key and cursor, from the catalog."""
        was_open = self._client is not None
        try:
            conn = self._conn()
            try:
                fields, primary_key = self._catalog_schema(conn)
            except psycopg2.Error as exc:
                conn.rollback()
                raise self._fail(exc, "cannot read the schema") from None
        finally:
            if not was_open:
                self.disconnect()
        plan = self.plan
        if self.config.get("primary_key"):
            primary_key = list(self.config["primary_key"])
        return {
            "dialect": "postgresql",  # field types are PostgreSQL types
            "fields": fields,
            "primary_key": primary_key,
            "cursor_field": self.cursor_field,
            "cursor_type": plan.kind,
            "table": plan.source if plan.table else None,
        }

    def _catalog_schema(self, conn) -> tuple[list[dict[str, Any]], list[str]]:
        plan = self.plan
        with conn.cursor() as cur:
            if plan.table is not None:
                # The full type with its modifier (character(20), numeric(4,2), timestamp(3) ...), domains
                # (and arrays of domains) resolved to their base type: a sink creating the table elsewhere
                # keeps the type, where the domain itself may not exist.
                cur.execute(_COLUMN_TYPES, plan.table)
                by_name = {r[0]: {"name": r[0], "type": r[1], "nullable": r[2]} for r in cur.fetchall()}
                cur.execute(
                    "SELECT a.attname FROM pg_catalog.pg_index i "
                    "JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, pos) ON true "
                    "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
                    "WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary ORDER BY k.pos",
                    plan.table,
                )
                primary_key = [r[0] for r in cur.fetchall()]
            else:
                relation, _, _ = self._relation(conn)
                cur.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(relation), {})
                oids = [(d.name, d.type_code) for d in cur.description]
                cur.execute(
                    "SELECT oid, format_type(oid, NULL) FROM pg_catalog.pg_type WHERE oid = ANY (%s)",
                    (sorted({o for _, o in oids}),),
                )
                names = dict(cur.fetchall())
                by_name = {n: {"name": n, "type": names.get(o, str(o)), "nullable": True} for n, o in oids}
                primary_key = []
        conn.rollback()
        fields = []
        for column in plan.columns:
            field = dict(by_name[column])
            if self._zone is not None and field["type"].startswith("timestamp without time zone"):
                field["type"] = "timestamp with time zone"  # read AT TIME ZONE source.timezone
            fields.append(field)
        return fields, primary_key

    def display(self) -> dict[str, Any]:
        shown = super().display()
        shown["dsn"] = describe_dsn(self._dsn)
        return shown


class _Prefetch:
    """The next ``FETCH`` of a named cursor runs in a thread while the reader decodes the rows of the last one.

    psycopg2 waits for the server without holding the GIL, so the server prepares the next rows while Python
    decodes, steps and encodes these. One fetched batch at most waits in the queue: memory stays at about
    three fetches. A fetch that fails hands its exception to the reader, which raises it from ``next()``.
    ``type_codes`` (the result's column type OIDs) is set before the first batch is handed over: the reader must
    not read ``cursor.description`` itself, since psycopg2 clears it while the thread's next FETCH runs.
    """

    def __init__(self, cur, size: int) -> None:
        self._cur, self._size = cur, size
        self.type_codes: list[int] = []
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="osmosis-pg-fetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                rows = self._cur.fetchmany(self._size)
                if not self.type_codes and self._cur.description is not None:
                    self.type_codes = [d.type_code for d in self._cur.description]
                if not self._put((rows, None)) or not rows:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            self._put((None, exc))

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def next(self) -> list[tuple]:
        """The rows of the next fetch (empty at the end of the result); raises what the fetch raised."""
        rows, exc = self._queue.get()
        if exc is not None:
            raise exc
        return rows

    def close(self, conn) -> None:
        """Stop fetching and wait for the thread; a fetch still running after a few seconds is cancelled."""
        self._stop.set()
        try:
            self._queue.get_nowait()  # unblocks a waiting put
        except queue.Empty:
            pass
        self._thread.join(timeout=5.0)
        if self._thread.is_alive():
            try:
                conn.cancel()
            except psycopg2.Error:
                pass
            self._thread.join()


# COPY's text format escapes a backslash, the delimiter and the control characters \b \f \n \r \t \v
# (COPY FROM reads any other escaped character as itself); a field that is exactly \N is NULL.
_COPY_ESCAPE = re.compile(rb"\\(.)", re.S)
_COPY_CHARS = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def _copy_unescape(field: bytes) -> bytes:
    """One field of a COPY text row as the value's own text (bytes)."""
    if b"\\" not in field:
        return field
    return _COPY_ESCAPE.sub(lambda m: _COPY_CHARS.get(m.group(1), m.group(1)), field)


def _json_rows(rows: list[bytes]) -> tuple[Any, list, dict[int, list]]:
    """Positions and JSON lines (UTF-8 bytes: the connection's client encoding) of COPY rows ``position \t line``.

    A row the server flagged sends the record of its typed columns instead of the line (``\x01(v1,v2,...)``
    where a line starts with ``{``): it gets None as its line, and its typed values (the server's text of
    each, None for NULL) in the returned ``{index: values}``.
    """
    blob = b"".join(rows)
    if b"\\" not in blob and b"\x01" not in blob:  # two byte searches (memchr), no per-row test
        # Nothing escaped, nothing flagged: cut each row after its position; positions are parsed only
        # where the read looks (the batch's edges, and a cut when a split moves the stop).
        first, last = rows[0], rows[-1]
        cut = first.index(b"\t")
        if cut == last.index(b"\t") and (first[:1] == b"-") == (last[:1] == b"-"):
            # Rows come in cursor order: positions of one sign with as many digits at both ends of the
            # batch have as many digits in between, so every line starts at the same offset.
            cut += 1
            return _RowPositions(rows), [row[cut:-1] for row in rows], {}
        return _RowPositions(rows), [row[row.index(b"\t") + 1 : -1] for row in rows], {}
    positions: list[int] = []
    lines: list = []
    flagged: dict[int, list] = {}
    for row in rows:
        tab = row.index(b"\t")
        positions.append(int(row[:tab]))
        line = row[tab + 1 : -1]  # without the newline
        if b"\\" in line:
            line = _copy_unescape(line)
        if line[:1] == b"\x01":
            flagged[len(lines)] = _record_fields(line[1:].decode("utf-8"))
            line = None
        lines.append(line)
    return positions, lines, flagged


class _RowPositions(collections.abc.Sequence):
    """The cursor positions of COPY rows (``position \t ...``), each parsed when asked for."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[bytes]) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._rows)))]
        row = self._rows[index]
        return int(row[: row.index(b"\t")])

    def __reduce__(self):  # a batch that crosses to another worker carries its positions as a plain list
        return list, (list(self),)


def _record_fields(text: str) -> list[str | None]:
    """The fields of a record's text form, ``(1,"a b",,"x""y")``: each value's text, None for NULL.

    PostgreSQL's record output quotes a value that is empty or holds a quote, backslash, comma,
    parenthesis or white space, doubling quotes and backslashes inside; NULL is nothing at all.
    """
    fields: list[str | None] = []
    i, n = 1, len(text) - 1  # inside the parentheses
    while True:
        if i < n and text[i] == '"':
            i += 1
            out = []
            while True:
                c = text[i]
                if c == "\\":
                    out.append(text[i + 1])
                    i += 2
                elif c == '"' and text[i + 1] == '"':
                    out.append('"')
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    out.append(c)
                    i += 1
            fields.append("".join(out))
        else:
            j = text.find(",", i, n)
            j = n if j < 0 else j
            fields.append(text[i:j] or None)
            i = j
        if i >= n:
            return fields
        i += 1  # the comma


class _Casters:
    """Decodes the text of typed columns exactly as the typed read's cursor would (same casters, same order)."""

    def __init__(self, conn, oid_of: Mapping[str, int], columns: list[str]) -> None:
        self._cur = conn.cursor()  # never executes: holds the cursor-level casters, as the typed read registers them
        for caster in _ROBUST_CASTERS:
            psycopg2.extensions.register_type(caster, self._cur)
        found = []
        for column in columns:
            oid = oid_of[column]
            found.append(
                self._cur.string_types.get(oid)
                or conn.string_types.get(oid)
                or psycopg2.extensions.string_types.get(oid)
                or psycopg2.extensions.UNICODE
            )
        self._casters = found

    def cast(self, values: list) -> list:
        cur = self._cur
        return [caster(value, cur) if value is not None else None for caster, value in zip(self._casters, values)]


class _Stopped(Exception):
    """The reader no longer wants rows: ends a COPY early."""


class _CopyBatches:
    """The file object ``COPY ... TO STDOUT`` writes into (one row per write): rows in batches on a queue."""

    def __init__(self, batch_size: int) -> None:
        self._size = batch_size
        self._rows: list[bytes] = []
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._stopped = False

    def write(self, data) -> int:
        if self._stopped:
            raise _Stopped()
        rows = self._rows
        rows.append(data)
        if len(rows) >= self._size:
            self._put(rows)
            self._rows = []
        return len(data)

    def _put(self, item) -> None:
        while not self._stopped:
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Stopped()

    def flush(self) -> None:
        if self._rows:
            self._put(self._rows)
            self._rows = []

    def done(self) -> None:
        try:
            self._put(None)
        except _Stopped:
            pass

    def stop(self) -> None:
        self._stopped = True
        while True:  # unblock the writer
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def get(self):
        return self._queue.get()


# The server's clock, the oldest open writing transaction of another client session in this database
# (its start, pid, user and application), how many other roles' sessions this role cannot see (and how
# many of those are writing: backend_xid is shown to everyone, xact_start only with pg_read_all_stats),
# and whether the role sees everything.
_CLOCK_AND_OPEN_TRANSACTIONS = """
SELECT now(),
       (array_agg(a.xact_start ORDER BY a.xact_start) FILTER (WHERE a.backend_xid IS NOT NULL AND a.xact_start IS NOT NULL))[1],
       (array_agg(a.pid ORDER BY a.xact_start) FILTER (WHERE a.backend_xid IS NOT NULL AND a.xact_start IS NOT NULL))[1],
       (array_agg(coalesce(a.usename, '?') || ' ' || coalesce(nullif(a.application_name, ''), 'no application_name')
                  ORDER BY a.xact_start) FILTER (WHERE a.backend_xid IS NOT NULL AND a.xact_start IS NOT NULL))[1],
       count(*) FILTER (WHERE a.query = '<insufficient privilege>'),
       count(*) FILTER (WHERE a.query = '<insufficient privilege>' AND a.backend_xid IS NOT NULL),
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')
FROM pg_catalog.pg_stat_activity a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.usesysid IS NOT NULL
  AND coalesce(a.backend_type, 'client backend') = 'client backend'  -- hidden sessions show no backend_type
"""
# Rows are assumed stamped no earlier than this before their transaction began (now() - 1s, app clocks).
OPEN_TRANSACTION_MARGIN = dt.timedelta(seconds=5)
# A window held back longer than this by one open transaction is worth a warning.
_LONG_OPEN_TRANSACTION = dt.timedelta(minutes=5)

# The columns of one table (schema, name) with their types as format_type(oid, typmod) spells them
# (character(20), numeric(4,2), timestamp(3) with time zone), a domain or an array of a domain replaced
# by its base type and the domain's modifier, through any number of domain levels.
_COLUMN_TYPES = """
WITH RECURSIVE cols AS (
    SELECT a.attnum, a.attname AS name, NOT a.attnotnull AS nullable,
           (t.typcategory = 'A' AND e.typtype = 'd') AS of_domain,
           CASE WHEN t.typcategory = 'A' AND e.typtype = 'd' THEN e.oid ELSE a.atttypid END AS typid,
           a.atttypmod AS typmod
    FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_type t ON t.oid = a.atttypid LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem
    WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
), walk AS (
    SELECT attnum, typid, typmod, 0 AS depth FROM cols
    UNION ALL
    SELECT w.attnum, t.typbasetype, CASE WHEN t.typtypmod <> -1 THEN t.typtypmod ELSE w.typmod END, w.depth + 1
    FROM walk w JOIN pg_catalog.pg_type t ON t.oid = w.typid WHERE t.typtype = 'd' AND w.depth < 32
), base AS (
    SELECT DISTINCT ON (attnum) attnum, typid, typmod FROM walk ORDER BY attnum, depth DESC
)
SELECT c.name, CASE WHEN c.of_domain THEN format_type(bt.typarray, b.typmod) ELSE format_type(b.typid, b.typmod) END,
       c.nullable
FROM cols c JOIN base b USING (attnum) JOIN pg_catalog.pg_type bt ON bt.oid = b.typid
ORDER BY c.attnum
"""


def _batched(items: Iterable[Record | DeadLetter], size: int) -> Iterator[list[Record] | DeadLetter]:
    """Records in lists of up to ``size``; dead letters on their own."""
    batch: list[Record] = []
    for item in items:
        if isinstance(item, DeadLetter):
            yield item
            continue
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _update_tail(tail: list[tuple], rows: list[tuple], key: int) -> None:
    """Keep in ``tail`` the rows at the end of the stream that share the last cursor value."""
    last = rows[-1][key]
    i = len(rows) - 1
    while i > 0 and rows[i - 1][key] == last:
        i -= 1
    if i == 0 and tail and tail[-1][key] == last:
        tail.extend(rows)
    else:
        tail[:] = rows[i:]


def _ceil_date(bound: dt.datetime | None) -> dt.date | None:
    """The first day whose midnight (UTC) is at or after ``bound``."""
    if bound is None:
        return None
    utc = bound.astimezone(UTC)
    day = utc.date()
    if utc.time() != dt.time(0):
        day += dt.timedelta(days=1)
    return day


def _check_query(query: str) -> str | None:
    """Why ``query`` is not one SELECT statement, or None."""
    text = query.strip().rstrip(";").strip()
    if not _SELECT_START.match(_strip_comments(text)):
        return "must be a SELECT (or WITH ... SELECT) that returns the cursor column"
    depth = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "'" or c == '"':
            end = i + 1
            while True:
                end = text.find(c, end)
                if end == -1:
                    return f"unterminated {'string' if c == chr(39) else 'quoted identifier'} starting at character {i + 1}"
                if text[end + 1:end + 2] == c:
                    end += 2
                    continue
                break
            i = end + 1
            continue
        if c == "$":
            tag = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", text[i:])
            if tag:
                end = text.find(tag.group(0), i + len(tag.group(0)))
                if end == -1:
                    return f"unterminated dollar-quoted string starting at character {i + 1}"
                i = end + len(tag.group(0))
                continue
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end == -1 else end + 1
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end == -1:
                return f"unterminated comment starting at character {i + 1}"
            i = end + 2
            continue
        if c == ";":
            return "must be one statement (found ';' inside); remove everything after the SELECT"
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return f"unbalanced ')' at character {i + 1}"
        i += 1
    if depth:
        return "unbalanced parentheses"
    return None


def _strip_comments(text: str) -> str:
    while True:
        text = text.lstrip()
        if text.startswith("--"):
            end = text.find("\n")
            text = "" if end == -1 else text[end + 1:]
        elif text.startswith("/*"):
            end = text.find("*/")
            text = "" if end == -1 else text[end + 2:]
        else:
            return text

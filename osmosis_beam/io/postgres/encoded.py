"""The zero-decode read of the PostgreSQL connector: the server writes each record in the sink's encoding.

When no step needs Python values, decoding every value into Python (psycopg2's casters, jsonb parsing)
only to encode it again is the whole cost of a sync. Two encodings avoid it:

- ``json`` (for the jsonl sink): the server builds each JSON line in exactly osmosis's encoding, with
  ``row_to_json`` over one SQL expression per column: numerics as exact decimal text, timestamps in
  Python's ``isoformat`` (``2024-01-01T00:00:00.120000+00:00``, microseconds only when non-zero), bytea
  as base64 without line breaks, jsonb as it is. A row holding a value whose typed form differs (a float
  NaN, a date Python cannot represent, a decimal that Python writes in exponent form, a multi-dimensional
  array of timestamps, ...) is flagged by the server and sent typed instead: it is decoded and encoded
  by the typed path's own code, so both paths give the same output value for value. Such a row comes as
  the record of its typed columns (``(v1,v2,...)``, each value in its type's text form) in place of the
  line, which the connector decodes with the typed read's casters.
- ``pgcopy`` (for the postgres sink): ``COPY (SELECT position, columns ...) TO STDOUT`` in the text
  format, which the sink feeds to ``COPY ... FROM STDIN`` of its stage table: values never leave
  PostgreSQL's own text form.

Each line comes with the record's cursor position (epoch microseconds, or the integer cursor), computed
by the server exactly, so the splittable read claims and cuts batches by its usual rules.

Example::

    from osmosis_beam.io.postgres.encoded import json_plan
    statement, fallback = json_plan(conn, plan, "window")   # SELECT position, line (or typed record) ...
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

import psycopg2.extensions

from osmosis_beam.core.records import DeadLetter, Record
from osmosis_beam.io.postgres.pushdown import Ref, Unsupported, translate_cast, translate_filter
from osmosis_beam.steps.base import StepFailed, error_text
from osmosis_beam.steps.cast import CastStep
from osmosis_beam.steps.expressions import FilterStep
from osmosis_beam.steps.fields import DropStep, RenameStep, SelectStep

__all__ = ["EncodedPlan", "Unsupported", "build_encoded_plan", "project", "run_steps", "ENCODINGS"]

#: The encodings this connector can produce, by the sink that takes them.
ENCODINGS = ("json", "pgcopy")

_BOOL, _BYTEA, _CHAR, _NAME, _INT8, _INT2, _INT4, _TEXT, _OID = 16, 17, 18, 19, 20, 21, 23, 25, 26
_JSON, _JSONB, _FLOAT4, _FLOAT8, _BPCHAR, _VARCHAR = 114, 3802, 700, 701, 1042, 1043
_DATE, _TIME, _TIMESTAMP, _TIMESTAMPTZ, _NUMERIC, _UUID = 1082, 1083, 1114, 1184, 1700, 2950
_FIRST_USER_OID = 16384
# Positions (epoch microseconds) of Python's smallest datetime and of its largest datetime and date.
_MIN_MICROS, _MAX_MICROS, _MAX_DATE_MICROS = -62135596800000000, 253402300799999999, 253402214400000000

# Scalars the server writes as they are (row_to_json's own rendering equals the typed path's).
_AS_IS = {_BOOL, _INT8, _INT2, _INT4, _TEXT, _CHAR, _NAME, _BPCHAR, _VARCHAR, _JSON, _JSONB, _UUID}
_FLOATS = {_FLOAT4, _FLOAT8}
_TIMESTAMPS = {_TIMESTAMP, _TIMESTAMPTZ}

# The window of datetime values Python can represent.
_TS_RANGE = {
    _TIMESTAMPTZ: ("'0001-01-01 00:00:00+00'::timestamptz", "'10000-01-01 00:00:00+00'::timestamptz"),
    _TIMESTAMP: ("'0001-01-01 00:00:00'::timestamp", "'10000-01-01 00:00:00'::timestamp"),
}


@dataclasses.dataclass
class EncodedPlan:
    """The statements of an encoded read (``window`` and ``from``) and what comes back."""

    encoding: str
    select: dict[str, str]
    fallback: bool  # json: rows flagged by the server send the record of their typed columns instead of the line
    typed_columns: list[str] = dataclasses.field(default_factory=list)  # those columns, in order
    projection: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)  # (field, column)
    # With pushed filter/cast steps: the query's bound parameters, and the steps themselves as
    # ``(label, on_error, step)``, which decide the rows the server sends typed (``typed_columns`` is then
    # every column of the read, so those rows go through exactly what the typed path runs).
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    steps: list[tuple[str, str, Any]] | None = None

    def project(self, record: Record) -> Record:
        """A typed row of ``typed_columns`` as the record the steps would leave."""
        return {name: (record.get(column) if column is not None else None) for name, column in self.projection}


def project(columns: list[str], fields: Iterable[tuple[str, Any]]) -> list[tuple[str, str | None]]:
    """``(field, column)`` pairs the ``select``/``drop``/``rename`` steps leave of ``columns`` (column None: null).

    Follows the steps exactly: ``select`` keeps the listed fields in that order (a missing one is null),
    ``drop`` removes fields, ``rename`` maps names (two fields renamed to one name cannot be pushed down).
    """
    out: list[tuple[str, str | None]] = [(c, c) for c in columns]
    for name, config, *_ in fields:
        if name == "select" and isinstance(config, (list, tuple)) and all(isinstance(f, str) for f in config):
            by_name = dict(out)
            out = [(f, by_name.get(f)) for f in dict.fromkeys(config)]
        elif name == "drop" and isinstance(config, (list, tuple)) and all(isinstance(f, str) for f in config):
            out = [(f, c) for f, c in out if f not in set(config)]
        elif name == "rename" and isinstance(config, dict) and all(isinstance(v, str) for v in config.values()):
            renamed = [(config.get(f, f), c) for f, c in out]
            if len({f for f, _ in renamed}) != len(renamed):
                raise Unsupported(f"rename {config!r} gives two fields the same name")
            out = renamed
        else:
            raise Unsupported(f"step {name} cannot be done in the query")
    return out


def _ident(name: str) -> str:
    """A quoted identifier with ``%`` doubled (the statements run with parameters)."""
    return '"' + name.replace('"', '""').replace("%", "%%") + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def _type_info(conn, oids: Iterable[int]) -> dict[int, tuple[int, str, int]]:
    """``oid -> (base oid, category, element oid)`` for ``oids`` and their array elements (domains resolved)."""
    info: dict[int, tuple[int, str, int]] = {}
    wanted = set(oids)
    with conn.cursor() as cur:
        for _ in range(3):  # columns, their elements, the elements' base types
            missing = sorted(o for o in wanted if o not in info)
            if not missing:
                break
            cur.execute(
                "SELECT oid, CASE WHEN typbasetype <> 0 THEN typbasetype ELSE oid END, typcategory, typelem "
                "FROM pg_catalog.pg_type WHERE oid = ANY (%s)",
                (missing,),
            )
            for oid, base, category, elem in cur.fetchall():
                info[oid] = (base, category, elem)
                wanted.update({base, elem} - {0})
    return info


def _resolve(oid: int, info: Mapping[int, tuple[int, str, int]]) -> tuple[int, str, int]:
    base, category, elem = info.get(oid, (oid, "U", 0))
    if base != oid:
        return _resolve(base, info)
    return base, category, elem


def _timestamp_text(e: str, oid: int) -> str:
    """``isoformat()`` of a timestamp: microseconds only when non-zero, ``+00:00`` for timestamptz (UTC session)."""
    offset = '"+00:00"' if oid == _TIMESTAMPTZ else ""
    return (
        f"to_char({e}, CASE WHEN date_trunc('second', {e}) = {e} THEN 'YYYY-MM-DD\"T\"HH24:MI:SS{offset}' "
        f"ELSE 'YYYY-MM-DD\"T\"HH24:MI:SS.US{offset}' END)"
    )


def _time_text(e: str) -> str:
    day = f"(DATE '2000-01-01' + {e})"
    return f"to_char({day}, CASE WHEN date_trunc('second', {day}) = {day} THEN 'HH24:MI:SS' ELSE 'HH24:MI:SS.US' END)"


def _scalar(e: str, oid: int, category: str, what: str, scale: int | None = None) -> tuple[str, str | None]:
    """(expression, exotic condition or None) of one scalar of base type ``oid``.

    ``scale``: the scale a numeric column declares (``numeric(12,2)``: 2), when known.
    """
    if oid == _JSON:  # json keeps its text as written: a raw line break between tokens would end the JSONL line
        return f"translate(({e})::text, E'\\n\\r\\t', '   ')::json", None  # strings never hold them raw
    if oid in _AS_IS:
        return e, None
    if oid == _OID:  # row_to_json writes an oid as text; psycopg2 reads it as an int
        return f"({e})::bigint", None
    if oid in _FLOATS:
        return e, f"NOT ({e} > '-Infinity'::float8 AND {e} < 'Infinity'::float8)"
    if oid == _NUMERIC:
        # str(Decimal) writes exponent form below 1e-6 with more than 6 decimals (0E-7, 1.5E-7); a column
        # declared with a scale of at most 6 holds no such value (the server rounds every value to its scale).
        if scale is not None and 0 <= scale <= 6:
            return f"({e})::text", None
        return f"({e})::text", f"(abs({e}) < 0.000001 AND scale({e}) > 6)"
    if oid in _TIMESTAMPS:
        lo, hi = _TS_RANGE[oid]
        return _timestamp_text(e, oid), f"NOT ({e} >= {lo} AND {e} < {hi})"
    if oid == _DATE:
        return e, f"NOT ({e} >= DATE '0001-01-01' AND {e} < DATE '10000-01-01')"
    if oid == _TIME:
        return _time_text(e), f"{e} = TIME '24:00:00'"
    if oid == _BYTEA:
        return f"translate(encode({e}, 'base64'), chr(10), '')", None
    if oid >= _FIRST_USER_OID:
        if category in ("E", "S", "U"):  # enums, citext, hstore, ...: psycopg2 returns their text
            return f"({e})::text", None
        raise Unsupported(f"{what} has a user-defined type of category {category!r}")
    if oid not in psycopg2.extensions.string_types:  # inet, money, xml, bit, ...: psycopg2 returns their text
        return e, None
    raise Unsupported(f"{what} is decoded by psycopg2 into a Python object (type oid {oid})")


def _array(e: str, elem: int, category: str, what: str) -> tuple[str, str | None]:
    """(expression, exotic condition) of an array column whose elements have base type ``elem``."""
    shape = f"array_lower({e}, 1) <> 1"
    u = "_u.e"
    expr, exotic = _scalar(u, elem, category, f"{what} (elements)")
    if expr == u and exotic is None:
        return e, shape
    if expr == u:  # the array renders as it is; only some elements need the typed path
        return e, f"({shape} OR EXISTS (SELECT 1 FROM unnest({e}) AS _u(e) WHERE {exotic}))"
    if elem == _NUMERIC or (elem >= _FIRST_USER_OID and expr == f"({u})::text"):
        cast = f"({e})::text[]"  # keeps the dimensions
        if exotic is None:
            return cast, shape
        return cast, f"({shape} OR EXISTS (SELECT 1 FROM unnest({e}) AS _u(e) WHERE {exotic}))"
    agg = (
        f"CASE WHEN {e} IS NULL THEN NULL ELSE COALESCE((SELECT json_agg({expr} ORDER BY _u.o) "
        f"FROM unnest({e}) WITH ORDINALITY AS _u(e, o)), '[]'::json) END"
    )
    checks = [shape, f"array_ndims({e}) > 1"]
    if exotic is not None:
        checks.append(f"EXISTS (SELECT 1 FROM unnest({e}) AS _u(e) WHERE {exotic})")
    return agg, "(" + " OR ".join(checks) + ")"


def _position(e: str, kind: str) -> str:
    """The cursor position the typed path computes, in SQL, exactly."""
    if kind == "integer":
        return f"({e})::bigint"
    # psycopg2 reads -infinity and infinity as Python's smallest and largest date or datetime; the typed
    # path's position is theirs (a read without a lower bound meets -infinity).
    if kind == "date":
        return (
            f"CASE WHEN isfinite({e}) THEN (({e}) - DATE '1970-01-01')::bigint * 86400000000 "
            f"WHEN {e} < DATE '1970-01-01' THEN {_MIN_MICROS} ELSE {_MAX_DATE_MICROS} END"
        )
    # date_part is a float: exact to the microsecond within |epoch| < 2^51 us (1902..2038); numeric beyond.
    return (
        f"CASE WHEN {e} > '1902-01-01 00:00:00+00'::timestamptz AND {e} < '2038-01-01 00:00:00+00'::timestamptz "
        f"THEN (date_part('epoch', {e}) * 1000000)::bigint WHEN isfinite({e}) THEN (extract(epoch FROM {e}) * 1000000)::bigint "
        f"WHEN {e} < '1970-01-01 00:00:00+00'::timestamptz THEN {_MIN_MICROS} ELSE {_MAX_MICROS} END"
    )


def build_encoded_plan(
    conn,
    encoding: str,
    base_select: Mapping[str, str],
    columns: list[str],
    oids: list[int],
    cursor: str,
    kind: str,
    fields: Iterable[tuple] = (),
    not_null: frozenset[str] = frozenset(),
    utf8: bool = True,
    scales: Mapping[str, int | None] | None = None,
) -> EncodedPlan:
    """The encoded statements over the typed plan's ``base_select`` (raises :class:`Unsupported`).

    ``oids`` are the result types of ``columns`` as the typed read returns them (a timestamp read
    ``AT TIME ZONE`` is a timestamptz); ``fields`` the steps to do in the query, as ``(name, config[, label,
    on_error])``: ``select``/``drop``/``rename``, and ``filter``/``cast`` where :mod:`.pushdown` translates
    them exactly; ``not_null`` the columns that cannot be NULL; ``utf8`` whether the database is UTF8;
    ``scales`` the scale each numeric column declares, where it does.
    """
    if encoding not in ENCODINGS:
        raise Unsupported(f"the postgres source cannot produce {encoding!r}")
    fields = tuple(fields)
    if any(step[0] in ("filter", "cast") for step in fields):
        return _plan_with_steps(conn, encoding, base_select, columns, oids, cursor, kind, fields, not_null, utf8)
    projection = project(columns, fields)
    s = "_s."
    pos = _position(s + _ident(cursor), kind)
    order = f" ORDER BY {s}{_ident(cursor)}"
    if encoding == "pgcopy":
        for field, column in projection:
            if column is None:
                raise Unsupported(f"select names {field!r}, which the source does not have")
            if field != column:
                raise Unsupported("rename: the postgres sink takes its column types from the source's column names")
        items = ", ".join(s + _ident(c) for _, c in projection)
        select = {
            name: f"SELECT {pos}, {items} FROM ({text}) AS _s{order}" for name, text in base_select.items()
        }
        return EncodedPlan(encoding, select, False, [], projection)
    info = _type_info(conn, oids)
    oid_of = dict(zip(columns, oids))
    scales = scales or {}
    encoded: dict[str, tuple[str, str | None]] = {}
    for column in dict.fromkeys(c for _, c in projection if c is not None):
        base, category, elem = _resolve(oid_of[column], info)
        what = f"column {column!r}"
        e = s + _ident(column)
        if category == "A" and elem:
            ebase, ecategory, _ = _resolve(elem, info)
            encoded[column] = _array(e, ebase, ecategory, what)
        else:
            encoded[column] = _scalar(e, base, category, what, scales.get(column))
    exprs = [f"{encoded[c][0] if c is not None else 'NULL'} AS {_ident(f)}" for f, c in projection]
    typed_columns = list(encoded)
    line = f"row_to_json(_e)::text"
    lateral = f"CROSS JOIN LATERAL (SELECT {', '.join(exprs)}) AS _e"
    typed = ", ".join(s + _ident(c) for c in typed_columns)
    select = {}
    fallback = False
    for name, text in base_select.items():
        checks = dict(encoded)
        if cursor in checks and kind in ("timestamptz", "timestamp", "date"):
            checks[cursor] = (checks[cursor][0], _cursor_exotic(s + _ident(cursor), kind, name))
        exotics = [f"({exotic})" for _, exotic in checks.values() if exotic is not None]
        if exotics:
            # One expression, so the flag is evaluated once per row (a LATERAL column would be inlined into
            # every use): a flagged row sends its typed columns as one record, '\x01(v1,v2,...)', where a line
            # starts with '{'. COPY writes the byte 0x01 as it is, and no JSON line holds it (JSON escapes
            # control characters), so the reader finds flagged rows with one byte search over a batch.
            flag = " OR ".join(exotics)
            head = f"SELECT {pos}, CASE WHEN COALESCE({flag}, false) THEN chr(1) || ROW({typed})::text ELSE {line} END"
            fallback = True
        else:
            head = f"SELECT {pos}, {line}"
        select[name] = f"{head} FROM ({text}) AS _s {lateral}{order}"
    return EncodedPlan(encoding, select, fallback, typed_columns if fallback else [], projection)


def _cursor_exotic(e: str, kind: str, statement: str) -> str | None:
    """The exotic condition of the cursor column itself, given the bounds its statement reads within.

    The window's bounds are Python values (``window``: ``lo <= cursor < hi``), so a cursor inside them is
    one Python can represent; the ``from`` statement has no lower bound (-infinity, BC dates lie below).
    """
    if statement == "window":
        return None
    if kind == "date":
        return f"NOT ({e} >= DATE '0001-01-01')"
    lo, _ = _TS_RANGE[_TIMESTAMPTZ]  # a timestamp cursor is read AT TIME ZONE, as a timestamptz
    return f"NOT ({e} >= {lo})"


_STEP_CLASSES = {"select": SelectStep, "drop": DropStep, "rename": RenameStep, "filter": FilterStep, "cast": CastStep}


def _plan_with_steps(conn, encoding, base_select, columns, oids, cursor, kind, fields, not_null, utf8) -> EncodedPlan:
    """The encoded statements when ``filter``/``cast`` steps are done in the query (see :mod:`.pushdown`).

    Every row comes back as ``(position, line, typed columns...)``: ``line`` is the record's JSON line
    (``json``), ``''`` for a row a filter drops, or NULL for a row the server cannot decide exactly (a
    comparison with NULL, a value the typed path reads or encodes differently): that row carries every
    column typed and goes through the Python steps. ``pgcopy`` has no typed rows, so a step that would
    need them is not pushed; a dropped row there starts with ``d`` before its position.
    """
    s = "_s."
    info = _type_info(conn, oids)
    oid_of = dict(zip(columns, oids))
    types = {c: _resolve(oid_of[c], info) for c in columns}
    state: list[tuple[str, Ref]] = [(c, Ref(s + _ident(c), types[c][0], c not in not_null, c)) for c in columns]
    params: dict[str, Any] = {}
    keeps: list[str] = []
    unsure: list[str] = []
    chain: list[tuple[str, str, Any]] = []
    for index, step in enumerate(fields, 1):
        name, config = step[0], step[1]
        label = step[2] if len(step) > 2 else f"{index}: {name}"
        on_error = step[3] if len(step) > 3 else "dead_letter"
        cls = _STEP_CLASSES.get(name)
        if cls is None:
            raise Unsupported(f"step {label} cannot be done in the query")
        chain.append((label, on_error, cls.from_config(config)))
        by_name = dict(state)
        if name == "filter":
            try:
                keep, more = translate_filter(config, by_name, params, utf8=utf8)
            except Unsupported as exc:
                raise Unsupported(f"step {label} {config!r}: {exc}") from None
            keeps.append(keep)
            if more and encoding == "pgcopy":
                raise Unsupported(
                    f"step {label} {config!r}: on some rows Python decides differently or raises (a field that can "
                    "be NULL in an ordering comparison, a numeric NaN), and the COPY path cannot send those rows "
                    "through the Python step; guard it (x is not None and ...) or keep the typed path"
                )
            unsure += more
        elif name == "cast":
            if encoding == "pgcopy":
                raise Unsupported(f"step {label}: the postgres sink takes its column types from the source's columns")
            new = []
            for field, ref in state:
                if field in config:
                    try:
                        ref, more = translate_cast(field, config[field], ref)
                    except Unsupported as exc:
                        raise Unsupported(f"step {label} {field}: {exc}") from None
                    unsure += more
                new.append((field, ref))
            state = new
        else:
            try:
                mapping = project([f for f, _ in state], [step])
            except Unsupported as exc:
                raise Unsupported(f"step {label}: {exc}") from None
            state = [(f, by_name[c] if c is not None else Ref("NULL", 0, True)) for f, c in mapping]
    pos = _position(s + _ident(cursor), kind)
    order = f" ORDER BY {s}{_ident(cursor)}"
    keep = " AND ".join(keeps) if keeps else "true"
    if encoding == "pgcopy":
        items = []
        for field, ref in state:
            if ref.column is None:
                raise Unsupported(f"select names {field!r}, which the source does not have")
            if field != ref.column:
                raise Unsupported("rename: the postgres sink takes its column types from the source's columns")
            items.append(f"CASE WHEN _f.keep THEN {ref.sql} END")
        head = f"SELECT CASE WHEN _f.keep THEN ({pos})::text ELSE 'd' || ({pos})::text END, {', '.join(items)}"
        lateral = f"CROSS JOIN LATERAL (SELECT COALESCE({keep}, false) AS keep OFFSET 0) AS _f"
        select = {n: f"{head} FROM ({text}) AS _s {lateral}{order}" for n, text in base_select.items()}
        return EncodedPlan(encoding, select, False, [], [(f, r.column) for f, r in state], params, chain)
    exprs = []
    for field, ref in state:
        what = f"field {field!r}"
        if ref.oid == 0:
            expr = "NULL"
        elif ref.column is not None:
            base, category, elem = types[ref.column]
            if category == "A" and elem:
                ebase, ecategory, _ = _resolve(elem, info)
                expr, _exotic = _array(ref.sql, ebase, ecategory, what)
            else:
                expr, _exotic = _scalar(ref.sql, base, category, what)
        else:
            expr, exotic = _scalar(ref.sql, ref.oid, "N", what)
            if exotic is not None:
                unsure.append(exotic)
        exprs.append(f"{expr} AS {_ident(field)}")
    # A value in any column that the typed path reads or encodes differently sends the row typed, where
    # the typed path's own code reads it (a dead letter for a value Python cannot hold) and runs the steps.
    for column in columns:
        base, category, elem = types[column]
        e = s + _ident(column)
        try:
            if category == "A" and elem:
                ebase, ecategory, _ = _resolve(elem, info)
                exotic = _array(e, ebase, ecategory, column)[1]
            else:
                exotic = _scalar(e, base, category, column)[1]
        except Unsupported:
            if any(ref.column == column for _, ref in state):
                raise
            continue  # a column the steps leave out, of a type this path does not encode
        if exotic is not None:
            unsure.append(exotic)
    unsure = list(dict.fromkeys(unsure))
    flag = " OR ".join(f"({u})" for u in unsure) if unsure else "false"
    line = "row_to_json(_e)::text"
    typed = ", ".join(f"CASE WHEN _k.x THEN {s}{_ident(c)} END" for c in columns)
    head = f"SELECT {pos}, CASE WHEN _k.x THEN NULL WHEN NOT _k.keep THEN '' ELSE {line} END, {typed}"
    lateral = (
        f"CROSS JOIN LATERAL (SELECT COALESCE({flag}, false) AS x, COALESCE({keep}, false) AS keep OFFSET 0) AS _k "
        f"CROSS JOIN LATERAL (SELECT {', '.join(exprs)}) AS _e"
    )
    select = {n: f"{head} FROM ({text}) AS _s {lateral}{order}" for n, text in base_select.items()}
    return EncodedPlan(encoding, select, True, list(columns), [(f, r.column) for f, r in state], params, chain)


def run_steps(steps: list[tuple[str, str, Any]], record: Record) -> Record | DeadLetter | None:
    """A typed row through the pushed steps as the typed path runs them: the record, None (filtered), or its dead letter."""
    for label, on_error, step in steps:
        try:
            out = step.process([record])
        except Exception as exc:  # noqa: BLE001 - as the typed path's step runner: the record is a dead letter
            if on_error == "fail":
                raise StepFailed(f"step {label} failed: {error_text(exc)}") from exc
            return DeadLetter(label, error_text(exc), record)
        if not out:
            return None
        record = out[0]
    return record


# Shared with the Arrow read of the Parquet sink (io/postgres/arrow.py), which builds its own SELECT list.
quote_ident = _ident
type_info = _type_info
resolve_type = _resolve

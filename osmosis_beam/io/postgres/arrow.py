"""The Arrow read of the PostgreSQL connector: the zero-decode path for the Parquet sink.

``COPY (windowed SELECT) TO STDOUT (FORMAT csv)`` streams each window in PostgreSQL's own text form and
pyarrow's CSV reader (C++) turns each batch of rows into an Arrow table with exactly the column types
the typed path derives (``numeric(12,2)`` stays ``decimal(12,2)``, timestamptz is ``timestamp[us, UTC]``,
integers are int64, jsonb is JSON text, bytea is binary): no value is decoded into Python. It runs on
the connector's own psycopg2 connection, so its deadlines (statement_timeout, the client deadline,
keepalives) and its redacted errors are those of every other read.

The SELECT is the typed read's own (no expression per column: PostgreSQL's text output is all the
server does), and the cursor positions come from the cursor column as Arrow parsed it. pyarrow's parser
refuses every text whose typed value would differ (``infinity``, ``24:00:00``, years beyond 9999 or BC,
a numeric NaN); a batch it refuses is decoded row by row by psycopg2's casters, as on the typed path,
so those rows become the same dead letters, or the same values (psycopg2 reads ``infinity`` as
``date.max``). Column types the Arrow path cannot carry exactly (an unconstrained numeric, whose typed
decimal scale depends on the data; intervals, arrays, ranges, composites) keep the whole run on the
typed path, and ``osmosis run -v`` names the column.

Chosen by measurement (1M rows of the benchmark's table, 2 shared cores at load 10-14): server-side
flags and positions in the SELECT (the JSON path's way) cost the server 9-13 s against 5-6 s for the
plain SELECT; ``adbc-driver-postgresql`` (Arrow over COPY binary) read the table in 6.3 s against 7.2 s
here, but needs a libpq connection of its own (a URI, its own timeouts, no client deadline, its own
error texts) and returns numeric as text too, so it did not pay for a second connection stack.

Example::

    from osmosis_beam.io.postgres.arrow import build_arrow_plan
    plan = build_arrow_plan(conn, base_select, columns, oids, "updated_at", "timestamptz", declared={})
    plan.select["window"]   # SELECT _s."id", _s."updated_at", ... FROM (...) AS _s ORDER BY _s."updated_at"
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator, Mapping

import psycopg2.extensions

from osmosis_beam.core.errors import FatalConnectorError
from osmosis_beam.core.records import DeadLetter, EncodedBatch
from osmosis_beam.io.files.arrow import Col, build_table, value_col
from osmosis_beam.io.postgres.encoded import Unsupported, project, quote_ident, resolve_type, type_info

__all__ = ["ARROW", "ArrowPlan", "ArrowDecoder", "Positions", "build_arrow_plan"]

#: The encoding name shared by the PostgreSQL source and the Parquet sink.
ARROW = "arrow"

_BOOL, _BYTEA, _CHAR, _NAME, _INT8, _INT2, _INT4, _TEXT, _OID = 16, 17, 18, 19, 20, 21, 23, 25, 26
_JSON, _JSONB, _FLOAT4, _FLOAT8, _BPCHAR, _VARCHAR = 114, 3802, 700, 701, 1042, 1043
_DATE, _TIME, _TIMESTAMP, _TIMESTAMPTZ, _NUMERIC, _UUID = 1082, 1083, 1114, 1184, 1700, 2950
_FIRST_USER_OID = 16384
# Types psycopg2 returns as text (so the typed path writes a string column), beyond the text types.
_TEXT_LIKE = {_TEXT, _CHAR, _NAME, _BPCHAR, _VARCHAR, _UUID, 650, 869, 829, 774, 790, 142, 1560, 1562}
_INTEGERS = {_INT2, _INT4, _INT8}


@dataclasses.dataclass
class ArrowPlan:
    """The statements of an Arrow read and how to turn their CSV rows into Arrow tables."""

    encoding: str
    select: dict[str, str]  # "window", "from": SELECT the CSV columns FROM (...) AS _s ORDER BY cursor
    fields: list[tuple[str, Col, str | None]]  # output (field, column type, CSV column or None: all null)
    csv_columns: list[tuple[str, str, int]]  # (CSV column, kind as read: a Col kind, "hex" or "decimal_text", oid)
    cursor: str  # the CSV column holding the cursor
    kind: str  # the cursor's kind: timestamptz | timestamp | date | integer
    projection: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)  # (field, column)
    # As on EncodedPlan: no filter/cast is pushed into an Arrow read, so no bound values and no steps.
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    steps: None = None

    def describe(self) -> str:
        return ", ".join(f"{name} {col.describe()}" for name, col, _ in self.fields)


def _column(oid: int, category: str, what: str, declared: tuple[int, int] | None) -> tuple[Col, str]:
    """(output column type, CSV kind) of a column of base type ``oid``."""
    if oid == _BOOL:
        return Col("bool"), "bool"
    if oid in _INTEGERS or oid == _OID:
        return Col("int"), "int"
    if oid in (_FLOAT4, _FLOAT8):  # the shortest exact text, parsed as a double: what psycopg2's float() gives
        return Col("float"), "float"
    if oid == _NUMERIC:
        if declared is None:
            raise Unsupported(
                f"{what} is an unconstrained numeric (the typed path sizes its decimal scale by the data); "
                "declare it numeric(p,s) to keep the Arrow path"
            )
        precision, scale = declared
        # pyarrow's CSV reader parses decimal128; a wider decimal is read as text and cast (exactly) after.
        return Col("decimal", precision - scale, scale, precision=precision), "decimal" if precision <= 38 else "decimal_text"
    if oid in (_JSON, _JSONB):
        return Col("json"), "string"
    if oid == _BYTEA:
        return Col("binary"), "hex"
    if oid == _DATE:
        return Col("date"), "date"
    if oid == _TIME:
        return Col("time"), "time"
    if oid == _TIMESTAMPTZ:
        return Col("timestamp"), "timestamp"
    if oid == _TIMESTAMP:
        return Col("timestamp_naive"), "timestamp_naive"
    if oid in _TEXT_LIKE or (oid >= _FIRST_USER_OID and category in ("E", "S", "U")):
        return Col("string"), "string"  # enums, citext, inet, money, xml, ...: psycopg2 returns their text
    if oid < _FIRST_USER_OID and oid not in psycopg2.extensions.string_types:
        return Col("string"), "string"  # point, tsvector, ...: no psycopg2 caster, so the typed value is this text
    raise Unsupported(f"{what} has a type the Arrow path does not carry exactly (type oid {oid}, category {category!r})")


def build_arrow_plan(
    conn,
    base_select: Mapping[str, str],
    columns: list[str],
    oids: list[int],
    cursor: str,
    kind: str,
    fields: Iterable[tuple[str, Any]] = (),
    *,
    declared: Mapping[str, tuple[int, int]],
) -> ArrowPlan:
    """The Arrow statements over the typed plan's ``base_select`` (raises :class:`Unsupported`).

    ``declared`` maps the sink's field names to the ``numeric(p,s)`` the source declares, as the Parquet sink
    takes them from the source's schema (the typed path gives a decimal column that type by field name).
    """
    if conn.encoding not in ("UTF8", "UNICODE"):
        raise Unsupported(f"the connection's client encoding is {conn.encoding}, not UTF8")
    projection = project(columns, fields)
    info = type_info(conn, oids)
    oid_of = dict(zip(columns, oids))
    out_fields: list[tuple[str, Col, str | None]] = []
    csv_columns: list[tuple[str, str, int]] = []
    items: list[str] = []
    csv_of: dict[str, str] = {}  # source column -> its CSV column (a column selected twice is read once)
    for field, column in projection:
        if column is None:
            out_fields.append((field, Col("null"), None))
            continue
        base, category, elem = resolve_type(oid_of[column], info)
        if category == "A" and elem:
            raise Unsupported(f"column {column!r} is an array (the typed path writes it as JSON text)")
        if base == _NUMERIC and field != column:
            raise Unsupported(f"rename of numeric column {column!r}: the typed path's decimal type then depends on the data")
        col, read_as = _column(base, category, f"column {column!r}", declared.get(field) if base == _NUMERIC else None)
        if column not in csv_of:
            csv_of[column] = f"c{len(csv_columns)}"
            csv_columns.append((csv_of[column], read_as, base))
            items.append("_s." + quote_ident(column))
        out_fields.append((field, col, csv_of[column]))
    if cursor not in csv_of:  # positions come from the cursor, which the steps may drop
        base, category, _ = resolve_type(oid_of[cursor], info)
        csv_of[cursor] = f"c{len(csv_columns)}"
        csv_columns.append((csv_of[cursor], _column(base, category, f"cursor {cursor!r}", None)[1], base))
        items.append("_s." + quote_ident(cursor))
    order = f" ORDER BY _s.{quote_ident(cursor)}"
    select = {name: f"SELECT {', '.join(items)} FROM ({text}) AS _s{order}" for name, text in base_select.items()}
    return ArrowPlan(ARROW, select, out_fields, csv_columns, csv_of[cursor], kind, projection)


# -- the worker side: CSV rows -> Arrow tables ---------------------------------------------------------


def _csv_options(plan: ArrowPlan, *, as_text: bool = False):
    """pyarrow's CSV options for the plan's columns (``as_text``: every column as its text, for the typed decode)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    read_types = {
        "int": pa.int64(), "bool": pa.bool_(), "float": pa.float64(), "string": pa.string(), "hex": pa.string(),
        "decimal_text": pa.string(), "date": pa.date32(), "time": pa.time64("us"),
        "timestamp": pa.timestamp("us", tz="UTC"), "timestamp_naive": pa.timestamp("us"),
    }
    by_name = {name: col for _, col, name in plan.fields if name is not None}
    types = {}
    for name, read_as, _ in plan.csv_columns:
        if as_text:
            types[name] = pa.string()
        else:
            types[name] = by_name[name].arrow_type() if read_as == "decimal" else read_types[read_as]
    return (
        pcsv.ReadOptions(column_names=[name for name, _, _ in plan.csv_columns], use_threads=False, block_size=1 << 26),
        pcsv.ParseOptions(newlines_in_values=True),
        pcsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                            quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"]),
    )


class Positions:
    """A batch's cursor positions as a numpy int64 array, read as a sequence of Python ints.

    The read looks at the first and the last, and bisects when a claim cuts a batch: converting a million
    positions into Python ints up front cost 0.6 s per million rows.
    """

    __slots__ = ("_values",)

    def __init__(self, values) -> None:
        self._values = values

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Positions(self._values[index])
        return int(self._values[index])

    def __getstate__(self):
        return self._values

    def __setstate__(self, values) -> None:
        self._values = values


class ArrowDecoder:
    """Turns batches of CSV rows (bytes, one row each) of an :class:`ArrowPlan` into EncodedBatch / DeadLetter items.

    pyarrow's parser refuses every text whose typed value differs from what it would parse (``infinity``,
    ``24:00:00``, years beyond 9999 or BC, a numeric NaN); a batch it refuses is decoded row by row by the
    typed path's casters: ``cast(oid, text)`` (a psycopg2 cursor's ``cast`` with the robust casters),
    ``unreadable(record)`` names the fields it could not convert, ``dead_letter(record, fields)`` makes the
    read's dead letter for them, and ``position(value)`` is the cursor position of a cursor value.
    """

    def __init__(self, plan: ArrowPlan, *, cast, unreadable, dead_letter, position) -> None:
        import pyarrow as pa

        self._plan = plan
        self._options = _csv_options(plan)
        self._text_options = _csv_options(plan, as_text=True)
        self._schema = pa.schema([col.arrow_field(field) for field, col, _ in plan.fields])
        self._cols = {field: col for field, col, _ in plan.fields}
        self._cast, self._unreadable, self._dead_letter, self._position = cast, unreadable, dead_letter, position

    def decode(self, rows: list[bytes]) -> Iterator[EncodedBatch | DeadLetter]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        data = pa.BufferReader(b"".join(rows))
        read, parse, convert = self._options
        try:
            table = pcsv.read_csv(data, read_options=read, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid:  # a value the typed path reads its own way: decode this batch as it does
            data.seek(0)
            read, parse, convert = self._text_options
            try:
                text = pcsv.read_csv(data, read_options=read, parse_options=parse, convert_options=convert)
            except pa.ArrowInvalid as exc:
                raise FatalConnectorError(
                    f"postgres source: cannot split the COPY output into its {len(self._plan.csv_columns)} columns "
                    f"({exc}); set read.path: typed in the pipeline to read without the Arrow path"
                ) from None
            yield from self._typed(text)
            return
        yield EncodedBatch(ARROW, self._table(table), self._positions(table))

    def _positions(self, table) -> "Positions":
        import pyarrow as pa

        cursor = table.column(self._plan.cursor)  # never NULL: the window's WHERE compares it
        if self._plan.kind == "date":
            return Positions(cursor.cast(pa.int32()).to_numpy().astype("int64") * 86_400_000_000)
        return Positions(cursor.cast(pa.int64()).to_numpy())  # integers; timestamp[us, UTC] is epoch microseconds

    def _table(self, table):
        import pyarrow as pa
        import pyarrow.compute as pc

        arrays = []
        for (field, col, name), target in zip(self._plan.fields, self._schema):
            if name is None:
                arrays.append(pa.nulls(table.num_rows, type=target.type))
                continue
            column = table.column(name)
            if col.kind == "binary":  # bytea arrives as \x hex text
                column = pa.array([None if v is None else bytes.fromhex(v[2:]) for v in column.to_pylist()], pa.binary())
            elif col.kind == "json":  # the JSON null is None on the typed path
                column = pc.if_else(pc.equal(pc.utf8_trim_whitespace(column), "null"), pa.scalar(None, pa.string()), column)
            elif not column.type.equals(target.type):  # a decimal wider than 38 digits, read as its exact text
                column = column.cast(target.type)
            arrays.append(column)
        return pa.Table.from_arrays(arrays, schema=self._schema)

    def _typed(self, table) -> Iterator[EncodedBatch | DeadLetter]:
        """Each row decoded as the typed path decodes it; rows the sink takes as they are are kept in Arrow."""
        import pyarrow as pa

        plan = self._plan
        names = [(name, oid) for name, _, oid in plan.csv_columns]
        texts = [table.column(name).to_pylist() for name, _ in names]
        column_of = {}  # source column -> CSV column
        for (field, column), (_, _, name) in zip(plan.projection, plan.fields):
            if column is not None:
                column_of[column] = name
        good: list[dict] = []
        positions: list[int] = []

        def flush():
            if good:
                yield EncodedBatch(ARROW, build_table(good, self._cols, self._schema), list(positions))
                good.clear()
                positions.clear()

        for i in range(table.num_rows):
            values = {name: (None if t[i] is None else self._cast(oid, t[i])) for (name, oid), t in zip(names, texts)}
            record_values = {column: values[name] for column, name in column_of.items()}
            bad = self._unreadable(record_values)
            if bad:
                yield from flush()
                yield self._dead_letter(record_values, bad)
                continue
            record = {field: (record_values[column] if column is not None else None) for field, column in plan.projection}
            position = self._position(values[plan.cursor])
            try:  # a value the Parquet sink takes (date.max for 'infinity', as the typed path reads it)
                for value in record.values():
                    value_col(value)
                build_table([record], self._cols, self._schema)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                yield from flush()
                yield EncodedBatch(ARROW, [record], [position])  # the sink's typed checks dead-letter it, as on the typed path
                continue
            good.append(record)
            positions.append(position)
        yield from flush()


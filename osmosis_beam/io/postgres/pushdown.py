"""``filter`` and ``cast`` steps as SQL of the zero-decode read, only where the SQL means exactly what Python does.

A ``filter`` expression is translated into two SQL conditions over the window's rows: ``keep`` (the
expression is truthy) and ``unsure`` (a row on which SQL and Python might disagree, or on which Python
raises: a NULL where Python compares ``None < 1``, a numeric NaN, a value Python cannot read). Rows
``unsure`` flags come back typed and go through the real Python steps, so they are kept, dropped or
dead-lettered exactly as on the typed path. Anything outside the supported subset raises
:class:`~osmosis_beam.io.postgres.encoded.Unsupported` with the reason, and the run reads typed.

Supported in a filter: field names, literals (int, float, str, bool, None, and constant calls of the
expression helpers ``timestamp``, ``datetime``, ``date``, ``Decimal``), comparisons (``== != < <= > >=``,
chained), ``is None`` / ``is not None``, ``in`` / ``not in`` a list of literals, ``and``, ``or``, ``not``,
the truthiness of a field, ``len(text)``, ``text.startswith(...)``/``endswith(...)``. Not pushed:
arithmetic (SQL integers overflow where Python's do not; Decimal arithmetic rounds to 28 digits in Python),
``lower``/``upper`` (Unicode case mapping differs), regular expressions, subscripts, ``record``, and
comparisons across types (Python raises or answers False where SQL converts).

A ``cast`` is pushed where the value SQL computes is encoded as the typed path encodes Python's result:
``int`` of integer, numeric and boolean fields; ``decimal[(p,s)]`` of integer and numeric ones; ``str`` of
text, integer, numeric, boolean, date and timestamptz ones; ``bool`` of boolean and integer ones; ``date``
and ``datetime`` between date and timestamptz (in UTC); ``json`` of json/jsonb. Values the cast rejects on
the typed path (a fraction to int, too many digits for decimal(p,s), NaN, 2 to bool) are ``unsure``.

Parameters are bound (``%(pd0)s``), never spliced into the text.

Example::

    from osmosis_beam.io.postgres.pushdown import Ref, translate_filter
    params = {}
    keep, unsure = translate_filter("amount > 100", {"amount": Ref('_s."amount"', 1700, True)}, params)
    # keep: '(_s."amount" > %(pd0)s::numeric)', unsure: ['_s."amount" IS NULL', ...]
"""
from __future__ import annotations

import ast
import dataclasses
import datetime as _dt
import decimal
from typing import Any, Mapping

from osmosis_beam.steps.cast import CastStep
from osmosis_beam.steps.expressions import EXPRESSION_HELPERS

__all__ = ["Ref", "translate_filter", "translate_cast", "Unsupported"]

_BOOL, _INT8, _INT2, _INT4, _TEXT, _VARCHAR, _NAME = 16, 20, 21, 23, 25, 1043, 19
_FLOAT8, _NUMERIC, _DATE, _TIMESTAMPTZ, _JSON, _JSONB = 701, 1700, 1082, 1184, 114, 3802

_KIND = {
    _BOOL: "bool", _INT8: "int", _INT2: "int", _INT4: "int", _TEXT: "str", _VARCHAR: "str", _NAME: "str",
    _FLOAT8: "float", _NUMERIC: "num", _DATE: "date", _TIMESTAMPTZ: "ts",
}
_NUMBERS = ("int", "num", "float")
_SQL_TYPE = {"int": "numeric", "num": "numeric", "float": "float8", "str": "text", "bool": "boolean",
             "date": "date", "ts": "timestamptz"}
_OPS = {ast.Eq: "=", ast.NotEq: "<>", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_CONSTANT_CALLS = ("timestamp", "datetime", "date", "Decimal")
_FLOAT_EXACT = 2 ** 53


class Unsupported(Exception):
    """Why a step cannot be done in the query (the run then reads typed)."""


@dataclasses.dataclass(frozen=True)
class Ref:
    """A field's value in SQL: its expression, base type oid (0 for a constant NULL) and whether it can be NULL."""

    sql: str
    oid: int
    nullable: bool = True
    column: str | None = None  # the source column it is (None: derived by a cast, or a NULL constant)
    comparable: bool = True  # False: the SQL value is encoded as the cast's result, but is not of its type

    @property
    def kind(self) -> str | None:
        return "none" if self.oid == 0 else _KIND.get(self.oid)


@dataclasses.dataclass
class _Value:
    """One translated sub-expression: SQL text, its kind, whether it can be NULL, and rows to send typed."""

    sql: str
    kind: str
    nullable: bool
    unsure: list[str]
    const: Any = dataclasses.field(default=None)
    is_const: bool = False


class _Translator:
    def __init__(self, expression: str, fields: Mapping[str, Ref], params: dict[str, Any], utf8: bool) -> None:
        self.expression = expression
        self.fields = fields
        self.params = params
        self.utf8 = utf8
        self.not_null: set[str] = set()  # SQL of fields an earlier part of an and/or proved not None

    def no(self, node: ast.AST | None, why: str) -> Unsupported:
        where = f" ({ast.unparse(node)})" if node is not None else ""
        return Unsupported(f"{why}{where}")

    def bind(self, value: Any, kind: str) -> str:
        name = f"pd{len(self.params)}"
        self.params[name] = value
        return f"%({name})s::{_SQL_TYPE[kind]}"

    # -- truthiness ---------------------------------------------------------------------------------
    def truth(self, node: ast.AST) -> tuple[str, list[str]]:
        """(SQL that is TRUE exactly when Python's ``bool(node)`` is True, rows on which it may not be)."""
        if isinstance(node, ast.BoolOp):
            # Python stops at the first falsy (and) / truthy (or) part, so a later part runs only when the
            # earlier ones allow it: ``x is not None and x > 1`` never compares None.
            conjunction = isinstance(node.op, ast.And)
            saved = set(self.not_null)
            parts = []
            try:
                for part in node.values:
                    parts.append(self.truth(part))
                    guarded = self.guard(part, conjunction)
                    if guarded is not None:
                        self.not_null.add(guarded)
            finally:
                self.not_null = saved
            joiner = " AND " if conjunction else " OR "
            return "(" + joiner.join(p for p, _ in parts) + ")", [u for _, us in parts for u in us]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            sql, unsure = self.truth(node.operand)
            return f"(NOT {sql})", unsure
        if isinstance(node, ast.Compare):
            return self.compare(node)
        value = self.value(node)
        if value.is_const:
            return ("true" if value.const else "false"), []
        if value.kind == "bool":
            test = value.sql
        elif value.kind in ("int", "num", "float"):
            test = f"{value.sql} <> 0"  # NaN is truthy in Python and <> 0 in SQL
        elif value.kind == "str":
            test = f"char_length({value.sql}) > 0"
        elif value.kind in ("date", "ts"):
            test = "true"
        else:
            raise self.no(node, "the truthiness of this value has no exact SQL twin")
        if value.nullable:
            test = f"({value.sql} IS NOT NULL AND {test})"
        return f"COALESCE({test}, false)", value.unsure

    def guard(self, node: ast.AST, conjunction: bool) -> str | None:
        """The SQL of the field ``node`` proves not None for the parts after it (``x is not None and ...``)."""
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.left, ast.Name)):
            return None
        right = node.comparators[0]
        if not (isinstance(right, ast.Constant) and right.value is None) or node.left.id not in self.fields:
            return None
        if isinstance(node.ops[0], ast.IsNot if conjunction else ast.Is):
            return self.fields[node.left.id].sql
        return None

    # -- comparisons -----------------------------------------------------------------------------------
    def compare(self, node: ast.Compare) -> tuple[str, list[str]]:
        parts, unsure = [], []
        left = self.value(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = self.value(right_node)
            sql, more = self.compare_one(op, left, right, node)
            parts.append(sql)
            unsure += left.unsure + right.unsure + more
            left = right
        return "(" + " AND ".join(parts) + ")", unsure

    def compare_one(self, op: ast.cmpop, left: _Value, right: _Value, node: ast.AST) -> tuple[str, list[str]]:
        if isinstance(op, (ast.Is, ast.IsNot)):
            if left.is_const and left.kind == "none" and right.is_const and right.const is None:
                return ("true" if isinstance(op, ast.Is) else "false"), []  # a field a select made null
            if right.is_const and right.const is None and not left.is_const:
                test = f"{left.sql} IS NULL" if isinstance(op, ast.Is) else f"{left.sql} IS NOT NULL"
                return f"({test})", []
            raise self.no(node, "'is' is pushed only as 'field is None' / 'field is not None'")
        if isinstance(op, (ast.In, ast.NotIn)):
            return self.member(op, left, right, node)
        if type(op) not in _OPS:
            raise self.no(node, f"operator {type(op).__name__} has no exact SQL twin")
        if left.is_const and right.is_const:
            raise self.no(node, "a comparison of two constants")
        if left.is_const and left.const is None or right.is_const and right.const is None:
            raise self.no(node, "compare with None using 'is None' / 'is not None'")
        kind = self.common_kind(left, right, node)
        sql_op = _OPS[type(op)]
        lsql, rsql = self.operand(left, kind), self.operand(right, kind)
        unsure: list[str] = []
        equality = sql_op in ("=", "<>")
        if kind == "str":
            # Byte order under "C" is code point order in UTF8 (Python's); equality is exact under "C".
            if not equality and not self.utf8:
                raise self.no(node, "text ordering matches Python's only in a UTF8 database")
            lsql, rsql = f'({lsql} COLLATE "C")', f'({rsql} COLLATE "C")'
        if equality:
            # Python: None == x is False, None == None is True: IS [NOT] DISTINCT FROM, exactly.
            test = f"{lsql} IS NOT DISTINCT FROM {rsql}" if sql_op == "=" else f"{lsql} IS DISTINCT FROM {rsql}"
        else:
            test = f"COALESCE({lsql} {sql_op} {rsql}, false)"
            for side in (left, right):  # Python raises TypeError on None < x: that row goes typed
                if side.nullable:
                    unsure.append(f"{side.sql} IS NULL")
        if kind == "float":
            # SQL: NaN = NaN and NaN > everything; Python: every comparison with NaN is False, but != is True.
            nans = [f"COALESCE({s.sql} = 'NaN'::float8, false)" for s in (left, right) if not s.is_const]
            nan = "(" + " OR ".join(nans) + ")"
            test = f"({nan} OR {test})" if sql_op == "<>" else f"(NOT {nan} AND {test})"
        for side in (left, right):
            if side.kind == "num" and not side.is_const:
                # Decimal('NaN') < x raises InvalidOperation in Python: that row goes typed.
                unsure.append(f"{side.sql} = 'NaN'::numeric")
        return f"({test})", unsure

    def member(self, op: ast.cmpop, left: _Value, right: _Value, node: ast.AST) -> tuple[str, list[str]]:
        if left.is_const or not right.is_const or not isinstance(right.const, (list, tuple, set, frozenset)):
            raise self.no(node, "'in' is pushed only as 'field in [literal, ...]'")
        items = list(right.const)
        if not items or any(i is None or isinstance(i, bool) != (left.kind == "bool") for i in items):
            raise self.no(node, "'in' needs a non-empty list of literals of the field's type (no None)")
        if left.kind == "str" and all(isinstance(i, str) for i in items):
            kind = "str"
        elif left.kind in ("int", "num") and all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            kind = "num"
            items = [decimal.Decimal(i) for i in items]
        elif left.kind == "bool":
            kind = "bool"
        else:
            raise self.no(node, f"'in' between a {left.kind} field and these literals has no exact SQL twin")
        name = f"pd{len(self.params)}"
        self.params[name] = items
        array = f"%({name})s::{_SQL_TYPE[kind]}[]"
        column = left.sql if kind != "num" or left.kind == "num" else f"({left.sql})::numeric"
        if kind == "str":
            column = f'({column} COLLATE "C")'  # equality exactly as Python's, whatever the column's collation
        test = f"COALESCE({column} = ANY ({array}), false)"  # None in [...] is False: no None among the items
        unsure = list(left.unsure)
        if left.kind == "num":
            unsure.append(f"{left.sql} = 'NaN'::numeric")  # Python: NaN == x is False; SQL: NaN = NaN
        if isinstance(op, ast.NotIn):
            test = f"(NOT {test})"
        return test, unsure

    def common_kind(self, left: _Value, right: _Value, node: ast.AST) -> str:
        kinds = {left.kind, right.kind}
        if len(kinds) == 1:
            return left.kind
        if kinds <= set(_NUMBERS):
            if "float" not in kinds:
                return "num"  # int and Decimal compare exactly in both
            floating, other = (left, right) if left.kind == "float" else (right, left)
            if floating.is_const and not other.is_const:
                return "num"  # a float literal against an int/numeric field: its exact value, as a numeric
            if other.is_const and other.kind == "int" and abs(other.const) <= _FLOAT_EXACT:
                return "float"
            if other.is_const:
                raise self.no(node, "a float field compared with a number a float cannot hold exactly")
            raise self.no(node, "a float field compared with an integer or numeric one (SQL rounds that side to float)")
        raise self.no(node, f"a comparison between {left.kind} and {right.kind} (Python raises or answers False, SQL converts)")

    def operand(self, value: _Value, kind: str) -> str:
        if not value.is_const:
            return value.sql
        const = value.const
        if kind == "float":
            return self.bind(float(const), "float")
        if kind in ("num", "int"):
            # A float literal keeps its exact binary value: Python compares Decimal/int and float exactly.
            return self.bind(decimal.Decimal(const), "num")
        return self.bind(const, kind)

    # -- values --------------------------------------------------------------------------------------
    def value(self, node: ast.AST) -> _Value:
        if isinstance(node, ast.Constant):
            return self.constant(node.value, node)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.value(e) for e in node.elts]
            if not all(i.is_const for i in items):
                raise self.no(node, "a list of fields")
            return _Value("", "list", False, [], [i.const for i in items], True)
        if isinstance(node, ast.Name):
            if node.id in self.fields:
                ref = self.fields[node.id]
                if ref.oid == 0:
                    return _Value("NULL", "none", True, [], None, True)
                if ref.kind is None:
                    raise self.no(node, "a field whose PostgreSQL type has no pushed comparison")
                if not ref.comparable:
                    raise self.no(node, "a field cast to str from another type (filter before the cast)")
                return _Value(ref.sql, ref.kind, ref.nullable and ref.sql not in self.not_null, [])
            if node.id == "record":
                raise self.no(node, "'record' (the whole record) has no SQL twin")
            raise self.no(node, f"{node.id!r} is not a field of the record at this step")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            inner = self.constant(node.operand.value, node)
            if inner.kind in _NUMBERS:
                return self.constant(-inner.const, node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.BinOp):
            raise self.no(node, "arithmetic is not pushed (SQL integers overflow, Python's do not; Decimal rounds to 28 digits)")
        raise self.no(node, f"{type(node).__name__} has no exact SQL twin")

    def constant(self, value: Any, node: ast.AST) -> _Value:
        if value is None:
            return _Value("NULL", "none", True, [], None, True)
        if isinstance(value, bool):
            return _Value("", "bool", False, [], value, True)
        if isinstance(value, int):
            return _Value("", "int", False, [], value, True)
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise self.no(node, "a NaN or infinite literal")
            return _Value("", "float", False, [], value, True)
        if isinstance(value, decimal.Decimal):
            if not value.is_finite():
                raise self.no(node, "a NaN or infinite Decimal literal")
            return _Value("", "num", False, [], value, True)
        if isinstance(value, str):
            if "\x00" in value:
                raise self.no(node, "a text literal with a NUL character")
            return _Value("", "str", False, [], value, True)
        if isinstance(value, _dt.datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise self.no(node, "a naive datetime (Python cannot order it against aware timestamps)")
            return _Value("", "ts", False, [], value, True)
        if isinstance(value, _dt.date):
            return _Value("", "date", False, [], value, True)
        raise self.no(node, f"a {type(value).__name__} literal")

    def call(self, node: ast.Call) -> _Value:
        func = node.func
        if isinstance(func, ast.Name) and func.id in _CONSTANT_CALLS and func.id not in self.fields:
            names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n is not func]
            if any(name in self.fields for name in names) or any(isinstance(n, ast.Call) and n is not node for n in ast.walk(node)):
                raise self.no(node, f"{func.id}() with arguments that are not literals")
            try:
                value = eval(compile(ast.Expression(node), "<filter>", "eval"), {"__builtins__": {}}, dict(EXPRESSION_HELPERS))  # noqa: S307
            except Exception as exc:  # noqa: BLE001 - a constant the typed path would fail on every row
                raise self.no(node, f"{func.id}() of these literals fails in Python ({type(exc).__name__})") from None
            return self.constant(value, node)
        if isinstance(func, ast.Name) and func.id == "len" and len(node.args) == 1 and not node.keywords:
            arg = self.value(node.args[0])
            if arg.kind != "str" or arg.is_const:
                raise self.no(node, "len() is pushed for text fields only")
            if not self.utf8:
                raise self.no(node, "len() counts what Python counts only in a UTF8 database")
            unsure = arg.unsure + ([f"{arg.sql} IS NULL"] if arg.nullable else [])  # len(None) raises
            return _Value(f"char_length({arg.sql})", "int", arg.nullable, unsure)
        if isinstance(func, ast.Attribute) and func.attr in ("startswith", "endswith") and len(node.args) == 1 and not node.keywords:
            target = self.value(func.value)
            prefix = node.args[0]
            if target.kind != "str" or target.is_const or not (isinstance(prefix, ast.Constant) and isinstance(prefix.value, str)):
                raise self.no(node, f".{func.attr}() is pushed for a text field and one text literal only")
            if not self.utf8:
                raise self.no(node, f".{func.attr}() matches Python's only in a UTF8 database")
            unsure = target.unsure + ([f"{target.sql} IS NULL"] if target.nullable else [])  # None.startswith raises
            param = self.bind(prefix.value, "str")
            side = "left" if func.attr == "startswith" else "right"
            sql = f'({side}({target.sql}, char_length({param})) COLLATE "C" = {param})'
            if not prefix.value:
                sql = "true"
            return _Value(f"COALESCE({sql}, false)", "bool", False, unsure)
        raise self.no(node, "this call has no exact SQL twin")


def translate_filter(expression: str, fields: Mapping[str, Ref], params: dict[str, Any], *,
                     utf8: bool = True) -> tuple[str, list[str]]:
    """``(keep, unsure)`` SQL of a filter expression over ``fields`` (raises :class:`Unsupported`).

    ``keep`` is TRUE exactly when Python's filter keeps the record, on every row that no condition of
    ``unsure`` flags; flagged rows must be decided by the Python step itself. Values go into ``params``.
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise Unsupported(f"invalid expression ({exc.msg})") from None
    keep, unsure = _Translator(expression, fields, params, utf8).truth(tree.body)
    return keep, list(dict.fromkeys(unsure))


def translate_cast(field: str, spec: str, ref: Ref) -> tuple[Ref, list[str]]:
    """``(ref of the cast value, unsure conditions)`` of one ``cast`` field (raises :class:`Unsupported`).

    The returned value, encoded by the zero-decode rules of its type, equals the typed path's encoding of
    Python's result on every row that no unsure condition flags; flagged rows (the values the cast rejects
    on the typed path) go typed.
    """
    kind, precision, scale, tz = CastStep({field: spec}).targets()[0][1:5]
    source, e = ref.kind, ref.sql
    if ref.oid == 0:
        return ref, []  # null stays null
    utc = tz is None or getattr(tz, "key", None) == "UTC"  # other zones: PostgreSQL's tzdata may not be Python's
    # NaN and the infinities: scale() is NULL for them only (Decimal of them fails the cast in Python).
    not_finite = f"({e} IS NOT NULL AND scale({e}) IS NULL)"
    same = {"str": "str", "int": "int", "bool": "bool", "date": "date", "datetime": "ts"}
    if same.get(kind) == source or (kind == "json" and ref.oid in (_JSON, _JSONB)):
        return ref, []  # already that type (an aware datetime stays the same instant): the value as it is
    if kind == "str":
        if source == "int":
            return Ref(f"({e})::text", _TEXT, ref.nullable), []
        if source == "bool":
            return Ref(f"(CASE {e} WHEN true THEN 'true' WHEN false THEN 'false' END)", _TEXT, ref.nullable), []
        if source in ("num", "date", "ts"):
            # str(Decimal), date.isoformat(), datetime.isoformat(): exactly how the zero-decode path writes
            # these types, so the value is encoded as it is (and a later filter may not compare it as text).
            return Ref(e, ref.oid, ref.nullable, None, comparable=False), []
    if kind == "int" and source == "num":
        # int(Decimal) of a whole number; a fraction, NaN or an infinity is a dead letter on the typed path.
        # trunc() has scale 0, so the server writes it as a JSON number, as the typed path writes an int.
        return Ref(f"trunc({e})", _INT8, ref.nullable), [f"({not_finite} OR {e} <> trunc({e}))"]
    if kind == "int" and source == "bool":
        return Ref(f"({e})::integer", _INT4, ref.nullable), []
    if kind == "bool" and source == "int":
        return Ref(f"({e} = 1)", _BOOL, ref.nullable), [f"({e} IS NOT NULL AND {e} NOT IN (0, 1))"]
    if kind == "date" and source == "ts" and utc:
        return Ref(f"(({e}) AT TIME ZONE 'UTC')::date", _DATE, ref.nullable), []
    if kind == "datetime" and source == "date" and utc:
        return Ref(f"((({e})::timestamp) AT TIME ZONE 'UTC')", _TIMESTAMPTZ, ref.nullable), []
    if kind == "decimal" and source in ("int", "num"):
        if scale is None:
            if source == "int":
                return Ref(f"({e})::numeric", _NUMERIC, ref.nullable), []
            return ref, [not_finite]
        rounded = f"round(({e})::numeric, {int(scale)})"  # half away from zero, as ROUND_HALF_UP does
        limit = f"1e{int(precision) - int(scale)}"
        # More digits before the point than the precision allows, NaN or an infinity: a dead letter there.
        return Ref(rounded, _NUMERIC, ref.nullable), [f"({e} IS NOT NULL AND NOT (abs({rounded}) < {limit}::numeric))"]
    raise Unsupported(f"cast of a {source or 'such a'} field to {spec} is not pushed (its encoding could differ)")

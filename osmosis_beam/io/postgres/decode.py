"""The typed decode of PostgreSQL rows: psycopg2's tuples into record dicts, json and jsonb parsed a batch at a time.

psycopg2 converts most values in C, but json and jsonb go through a Python caster, one call per value, and
the stdlib parser; that was the largest single cost of a typed read. On the read's cursor json and jsonb
arrive as text instead, and :class:`RowDecoder` parses each such column of a fetched batch in one pass with
orjson, keeping exactly the values the stdlib parser gives (:func:`loads_json`, also the connection's caster):

- orjson turns integers beyond 64 bits into floats. A batch whose text holds a run of 19 or more digits
  (found by one byte scan over the batch) is parsed value by value, and each value with such a run by the
  stdlib. Below 19 digits an integer fits in 64 bits, and orjson's floats are the stdlib's, bit for bit
  (checked once over 1.2 million random and halfway cases; ``tests/unit/test_pg_decode.py`` runs 70,000).
- What orjson refuses (NaN and Infinity, lone surrogates ``\\ud800``, numbers beyond the double range such as
  ``1e400``, nesting deeper than 1024) goes to the stdlib, which decides as before.
- Duplicate keys keep the last value at the first key's place in both parsers; ``-0.0`` stays ``-0.0``.

Records are built by a function made once per column list (``{"id": _0, "updated_at": _1, ...}``), about
twice as fast as ``dict(zip(names, row))``, and the cyclic garbage collector is held off while a batch is
built: a batch is thousands of new containers, none of them garbage, and collecting on the way re-scanned
the runner's whole heap several times a second.

Example::

    decoder = RowDecoder(["id", "doc"], [23, 3802])
    decoder.register(cursor)                      # json and jsonb reach this cursor as text
    cursor.execute("SELECT id, doc FROM t")
    decoder.records(cursor.fetchmany(10000))      # [{"id": 1, "doc": {"a": [1, 2]}}, ...]
"""
from __future__ import annotations

import gc
import json
import threading
from itertools import starmap
from typing import Any, Callable, Sequence

import psycopg2.extensions

from osmosis_beam.core.records import Record

__all__ = ["JSON_OIDS", "JSON_TEXT", "RowDecoder", "loads_json", "parse_json_texts", "gc_paused"]

JSON_OIDS = (114, 3802)  # json, jsonb
# json and jsonb as the server's text (psycopg2's own C text caster: no Python call per value).
JSON_TEXT = psycopg2.extensions.new_type(JSON_OIDS, "OSMOSIS_JSON_TEXT", psycopg2.extensions.UNICODE)

_scan_json = json.JSONDecoder().scan_once

try:
    import orjson as _orjson

    _orjson_loads: Callable[[str], Any] | None = _orjson.loads
    _ORJSON_REFUSES: type[BaseException] = _orjson.JSONDecodeError
except ImportError:  # pragma: no cover - orjson is a declared dependency
    _orjson_loads = None
    _ORJSON_REFUSES = ValueError

# Digit runs: every ASCII digit becomes "0"; a run of 19 "0"s marks an integer orjson might widen to a float
# (JSON numbers are ASCII only; bytes of multi-byte UTF-8 characters are all >= 0x80, never digits).
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def loads_json(text: str) -> Any:
    """The stdlib's value for one json/jsonb text: the reference both parsers are held to."""
    # The C scanner directly: json.loads adds two regex matches and two calls per value (3x slower),
    # and jsonb text from the server has no surrounding whitespace.
    try:
        obj, end = _scan_json(text, 0)
        if end == len(text):
            return obj
    except StopIteration:
        pass
    return json.loads(text)


def _has_long_run(text: str) -> bool:
    return _LONG_RUN in text.encode("utf-8", "surrogatepass").translate(_DIGITS)


def _loads_one(text: str | None) -> Any:
    """One value, by orjson where it gives the stdlib's value, else by the stdlib."""
    if text is None:
        return None
    if _orjson_loads is None or _has_long_run(text):
        return loads_json(text)
    try:
        return _orjson_loads(text)
    except _ORJSON_REFUSES:
        return loads_json(text)


def parse_json_texts(texts: Sequence[str | None]) -> list[Any]:
    """The values of a column of json/jsonb texts (None for NULL), as :func:`loads_json` gives them."""
    loads = _orjson_loads
    if loads is None:
        return [None if t is None else loads_json(t) for t in texts]
    present = [t for t in texts if t is not None]
    if _LONG_RUN in "\x00".join(present).encode("utf-8", "surrogatepass").translate(_DIGITS):
        return [_loads_one(t) for t in texts]
    try:
        if len(present) == len(texts):
            return list(map(loads, texts))
        return [None if t is None else loads(t) for t in texts]
    except _ORJSON_REFUSES:
        return [_loads_one(t) for t in texts]


class _GcPause:
    """Holds the cyclic garbage collector off while batches are built (in any number of threads at once).

    The first thread in disables it, if it was enabled; the last one out enables it again. A collector the
    process disabled itself stays disabled.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._resume = gc.isenabled()
                if self._resume:
                    gc.disable()
            self._depth += 1

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._resume:
                self._resume = False
                gc.enable()


gc_paused = _GcPause()


def _dict_maker(names: Sequence[str]) -> Callable[..., Record]:
    """A function of one argument per column that returns the record dict, keys in column order."""
    args = ", ".join(f"_{i}" for i in range(len(names)))
    items = ", ".join(f"{name!r}: _{i}" for i, name in enumerate(names))
    # The keys are repr() literals of the column names (any text is a valid literal that way): nothing of the
    # names is executed. Column names are unique (the plan refuses duplicates).
    return eval(f"lambda {args}: {{{items}}}", {"__builtins__": {}})  # noqa: S307


class RowDecoder:
    """Turns fetched rows (tuples, json/jsonb still text) into record dicts.

    ``names``: the column names in row order; ``oids``: their type OIDs (``cursor.description``'s
    ``type_code``). Pickles as those two lists.
    """

    def __init__(self, names: Sequence[str], oids: Sequence[int]) -> None:
        if len(names) != len(oids):
            raise ValueError(f"{len(names)} column names for {len(oids)} types")
        if len(set(names)) != len(names):
            raise ValueError(f"column names repeat: {list(names)}")
        self.names = list(names)
        self.oids = list(oids)
        self._json = [(i, name) for i, (name, oid) in enumerate(zip(names, oids)) if oid in JSON_OIDS]
        self._make = _dict_maker(self.names)

    def __reduce__(self):
        return (RowDecoder, (self.names, self.oids))

    @staticmethod
    def register(cursor: Any) -> None:
        """Make ``cursor`` return json and jsonb as text (call before ``execute``)."""
        psycopg2.extensions.register_type(JSON_TEXT, cursor)

    def records(self, rows: Sequence[tuple]) -> list[Record]:
        """The record dicts of ``rows``, json and jsonb values parsed."""
        with gc_paused:
            records = list(starmap(self._make, rows))
            for i, name in self._json:
                values = parse_json_texts([row[i] for row in rows])
                for record, value in zip(records, values):
                    record[name] = value
        return records

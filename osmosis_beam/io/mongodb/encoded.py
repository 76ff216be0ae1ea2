"""The zero-decode read of the MongoDB connector: raw BSON batches straight to JSON lines.

When no step needs Python values (no steps, or only ``select``/``drop``/``rename``), the source writes
each document as the JSONL sink's line itself: a raw server batch is decoded by the driver's C decoder
without the type registry of the typed path (dates naive, in UTC), and orjson encodes the whole batch in
one call, split into lines at a random separator, with a small ``default`` for the common BSON types
(ObjectId as its hex string, Decimal128 as its exact decimal text, binary as base64).
A document with any other BSON value (regex, code, timestamp, min/max key, DBRef, a date outside years
1-9999) or a NaN/infinite double is encoded by the typed path instead, so the output is the typed
path's, value for value (``tests/integration/test_mongodb_encoded.py`` compares them over every BSON
type).

Example::

    from osmosis_beam.io.mongodb.encoded import FieldPlan, fast_lines
    plan = FieldPlan.of((("select", ["_id", "total"]),), cursor_field="updated_at")
    plan.projection()                            # {'_id': 1, 'total': 1, 'updated_at': 1} (sent to the server)
    lines, failed = fast_lines(docs)             # JSON bytes per document; indexes the typed path must encode
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import uuid
from typing import Any, Iterable

from osmosis_beam.core.encoding import has_non_finite
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.steps.fields import DropStep, RenameStep, SelectStep

__all__ = ["FieldPlan", "Unsupported", "fast_codec_options", "fast_lines", "naive_micros", "decimal128_text"]

_STEPS = {"select": SelectStep, "drop": DropStep, "rename": RenameStep}
_MAX_COEFFICIENT = 10**34 - 1


class Unsupported(Exception):
    """Why the zero-decode path cannot read this source (the run then reads typed)."""


@dataclasses.dataclass(frozen=True)
class FieldPlan:
    """The ``select``/``drop``/``rename`` steps the source does while it encodes, and the projection they allow.

    The steps themselves run on each decoded document (their semantics are the steps' own: ``select`` keeps
    the listed fields in order, a missing one as null). The first step also narrows what the server sends:
    ``select`` becomes an inclusion projection (plus ``_id`` and the cursor, which the read sorts and resumes
    on), ``drop`` an exclusion projection (never of ``_id`` or the cursor). Names with a dot or a ``$`` are not
    pushed to the server: MongoDB reads them as paths, the steps as plain keys.
    """

    steps: tuple = ()
    cursor_field: str = ""

    @classmethod
    def of(cls, fields: Iterable[tuple[str, Any]], cursor_field: str) -> "FieldPlan":
        steps = []
        for name, config, *_ in fields:
            kind = _STEPS.get(name)
            if kind is None:
                raise Unsupported(f"step {name} cannot be done by the mongodb source")
            try:
                steps.append(kind(config))
            except ConfigError as exc:
                raise Unsupported(f"step {name}: {exc}") from None
        return cls(tuple(steps), cursor_field)

    def projection(self) -> dict[str, Any] | None:
        """The server projection the first step allows (None: every field)."""
        if not self.steps:
            return None
        first, cursor = self.steps[0], self.cursor_field
        if isinstance(first, SelectStep):
            if not all(_plain(f) for f in first.fields):
                return None
            proj = {f: 1 for f in first.fields if f != "_id"}
            proj["_id"] = 1
            if cursor != "_id" and not any(cursor == f or cursor.startswith(f + ".") for f in proj):
                proj[cursor] = 1
            return proj
        if isinstance(first, DropStep):
            dropped = {f: 0 for f in sorted(first.fields)
                       if _plain(f) and f != "_id" and f != cursor and not cursor.startswith(f + ".")}
            return dropped or None
        return None

    def apply(self, records: list[dict]) -> list[dict]:
        for step in self.steps:
            records = step.process(records)
        return records


def _plain(name: str) -> bool:
    return bool(name) and "." not in name and not name.startswith("$")


def fast_codec_options():
    """The typed path's codec options without its type registry: the C decoder alone, BSON types left as they are.

    Dates come naive (``tz_aware=False``), in UTC: an aware datetime costs the decoder about 2 us more per date
    (a quarter of a plain document's decoding), and orjson writes a naive one with ``OPT_NAIVE_UTC`` exactly
    as the typed path's aware UTC one, ``+00:00`` (:func:`fast_lines`; :func:`naive_micros` for positions).
    Dates outside years 1-9999 still come as ``DatetimeMS`` (left to the typed path).
    """
    from bson.binary import UuidRepresentation
    from bson.codec_options import CodecOptions, DatetimeConversion

    return CodecOptions(
        tz_aware=False,
        uuid_representation=UuidRepresentation.STANDARD,
        datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    )


_NAIVE_EPOCH = dt.datetime(1970, 1, 1)


def naive_micros(value: dt.datetime) -> int:
    """Epoch microseconds of a datetime :func:`fast_codec_options` decoded (naive, UTC)."""
    delta = value - _NAIVE_EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def decimal128_text(value: Any) -> str:
    """``str(value.to_decimal())`` for a ``bson.Decimal128``, computed from its BID bits (several times faster).

    Python's ``Decimal.__str__`` is the General Decimal Arithmetic "to-scientific-string"; so is this.
    """
    high, low = value.__getstate__()  # the two 64-bit halves, as the driver pickles them
    # NaN, infinities and the second (large-coefficient) form: rare, left to the driver.
    if (high & 0x7800000000000000) == 0x7800000000000000 or (high & 0x6000000000000000) == 0x6000000000000000:
        return str(value.to_decimal())
    coefficient = ((high & 0x1FFFFFFFFFFFF) << 64) | low
    if coefficient > _MAX_COEFFICIENT:  # non-canonical: the driver reads it as 0
        return str(value.to_decimal())
    exponent = ((high >> 49) & 0x3FFF) - 6176
    digits = str(coefficient)
    sign = "-" if high >> 63 else ""
    if exponent == 0:
        return sign + digits
    n = len(digits)
    adjusted = exponent + n - 1
    if exponent < 0 and adjusted >= -6:
        point = n + exponent
        if point > 0:
            return f"{sign}{digits[:point]}.{digits[point:]}"
        return f"{sign}0.{'0' * -point}{digits}"
    mantissa = f"{digits[0]}.{digits[1:]}" if n > 1 else digits
    return f"{sign}{mantissa}E{'+' if adjusted >= 0 else ''}{adjusted}"


class _Exotic(TypeError):
    """A value the fast encoder leaves to the typed path."""


def _fast_default():
    from bson import Binary, Decimal128, Int64, ObjectId

    def default(value: Any) -> Any:
        kind = value.__class__
        if kind is ObjectId:
            return str(value)
        if kind is Decimal128:
            return decimal128_text(value)
        if kind is bytes or kind is Binary:  # subtype 4 arrives as uuid.UUID, which orjson writes itself
            return base64.b64encode(value).decode("ascii")
        if kind is Int64:
            return int(value)
        raise _Exotic(kind.__name__)

    return default


_DEFAULT = None
#: Between two documents of a batch encoded in one orjson call: ``,"<random hex>",``. Inside a JSON string a
#: quote is always escaped, so these bytes can only be an array element; a batch whose output holds them more
#: often than it put them there (a document with that very string in an array) is encoded document by document.
_TOKEN = uuid.uuid4().hex
_SEPARATOR = f',"{_TOKEN}",'.encode("ascii")


def _encode(docs: list[dict], default, option) -> list[bytes | None]:
    """Each document as JSON bytes: one orjson call for the whole batch, split at the separators.

    One call per document costs about 3 us more per document than one per batch (each call sets up a fresh
    output buffer). A batch with a document orjson refuses is encoded document by document (that one: None).
    """
    import orjson

    dumps = orjson.dumps
    if len(docs) > 1:
        items: list = [_TOKEN] * (2 * len(docs) - 1)
        items[::2] = docs
        try:
            lines = dumps(items, default=default, option=option)[1:-1].split(_SEPARATOR)
        except orjson.JSONEncodeError:
            lines = None
        if lines is not None and len(lines) == len(docs):
            return lines
    out: list[bytes | None] = []
    for d in docs:
        try:
            out.append(dumps(d, default=default, option=option))
        except orjson.JSONEncodeError:
            out.append(None)
    return out


def fast_lines(docs: list[dict]) -> tuple[list[bytes | None], list[int]]:
    """Each document as JSON bytes in osmosis's encoding, and the indexes of those the typed path must encode.

    A failed document's line is None: it holds a BSON value the fast encoder leaves alone, or a NaN or an
    infinity (orjson writes those as null; the typed path dead-letters the record). Dates decoded naive (by
    :func:`fast_codec_options`) are UTC and written as the typed path writes aware ones, ``+00:00``.
    """
    import orjson

    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = _fast_default()
    lines = _encode(docs, _DEFAULT, orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_NAIVE_UTC)
    failed = []
    for i, line in enumerate(lines):
        if line is None:
            failed.append(i)
        elif b"null" in line and has_non_finite(docs[i]):
            lines[i] = None
            failed.append(i)
    return lines, failed

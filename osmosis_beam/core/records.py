"""Records and dead letters: what travels between sources, steps and sinks (Beam-free).

A record is a plain ``dict`` of field name to native Python value (Decimal, aware datetime, dict, list,
bytes). A record that cannot be read, processed or written becomes a :class:`DeadLetter` with the reason.

Example::

    from osmosis_beam.core.records import DeadLetter
    DeadLetter("2: cast", "amount: 'x' is not a decimal", {"amount": "x"}).to_dict()
    # {'step': '2: cast', 'error': "amount: 'x' is not a decimal", 'record': {'amount': 'x'}}
"""
from __future__ import annotations

import bisect
import dataclasses
from typing import Any

__all__ = ["Record", "DeadLetter", "EncodedBatch", "DEAD_LETTER_TAG", "METRICS_NAMESPACE"]

Record = dict  # one record: field name -> native Python value (Decimal, aware datetime, dict, list, ...)

#: The Beam output tag that carries dead letters, and the Beam metrics namespace of every osmosis counter.
DEAD_LETTER_TAG = "dead_letter"
METRICS_NAMESPACE = "osmosis"


@dataclasses.dataclass
class DeadLetter:
    """A record that could not be read, processed or written, with the reason and where it happened."""

    step: str
    error: str
    record: Any = None
    #: The cursor position of the row the letter stands for, when the source knows it (internal: not in
    #: ``to_dict()``). The splittable read emits a positioned letter only with the claim covering it, so a
    #: dynamic split never emits it twice nor loses it; a letter without one is emitted when it is read.
    position: int | None = dataclasses.field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "error": self.error, "record": self.record}


class EncodedBatch:
    """Records already in a sink's encoding (the zero-decode path): one encoded line per record.

    ``encoding`` names the form: ``"json"``, JSON text in osmosis's encoding (UTF-8 bytes, or str), one
    object per line, with each record's cursor position in ``positions``; ``"pgcopy"``, rows of PostgreSQL's COPY text format (bytes,
    each ending in a newline) whose first column is the cursor position, then ``columns``. Positions are
    in cursor order, so the splittable read claims and cuts these batches by exactly the rules it applies
    to lists of dicts. ``dropped`` holds the positions of rows a filter done in the source's query left
    out: they were read (the read counts and claims them as the typed path does) but have no line.
    ``origin`` is the start of the restriction (sub-window) the batch was read in, set by the splittable
    read: the batches of one origin come in cursor order, so a sink can keep them together (the postgres
    sink stages each origin in a table of its own, and publishes them in cursor order).
    """

    __slots__ = ("encoding", "lines", "positions", "columns", "dropped", "origin")

    def __init__(self, encoding: str, lines: list, positions: list[int] | None = None,
                 columns: tuple[str, ...] | None = None, dropped: list[int] | None = None,
                 origin: int | None = None) -> None:
        self.encoding, self.lines, self.positions, self.columns = encoding, lines, positions, columns
        self.dropped = dropped or None
        self.origin = origin

    def __len__(self) -> int:
        return len(self.lines)

    def __bool__(self) -> bool:
        return bool(self.lines) or bool(self.dropped)

    @property
    def read_count(self) -> int:
        """The rows read into this batch: its lines and the rows a pushed filter dropped."""
        return len(self.lines) + (len(self.dropped) if self.dropped else 0)

    def bounds(self) -> tuple[int, int]:
        """The first and last cursor position of the rows read into this batch (dropped ones included)."""
        ends = [self.position(0), self.position(-1)] if self.lines else []
        if self.dropped:
            ends += [self.dropped[0], self.dropped[-1]]
        return min(ends), max(ends)

    def written(self) -> "EncodedBatch":
        """The batch without the dropped rows' positions (what a sink takes)."""
        if not self.dropped:
            return self
        return EncodedBatch(self.encoding, self.lines, self.positions, self.columns, origin=self.origin)

    def position(self, index: int) -> int:
        """The cursor position of the record at ``index``."""
        if self.positions is not None:
            return self.positions[index]
        line = self.lines[index]
        return int(line[: line.index(b"\t")])

    def head(self, stop: int) -> "EncodedBatch":
        """The records whose position lies before ``stop``."""
        positions = self.positions
        if positions is None:
            positions = [self.position(i) for i in range(len(self.lines))]
        n = bisect.bisect_left(positions, stop)
        kept = None if self.positions is None else positions[:n]
        dropped = self.dropped[: bisect.bisect_left(self.dropped, stop)] if self.dropped else None
        return EncodedBatch(self.encoding, self.lines[:n], kept, self.columns, dropped, self.origin)

    def __getstate__(self):
        return (self.encoding, self.lines, self.positions, self.columns, self.dropped, self.origin)

    def __setstate__(self, state) -> None:
        self.encoding, self.lines, self.positions, self.columns = state[:4]
        self.dropped = state[4] if len(state) > 4 else None
        self.origin = state[5] if len(state) > 5 else None

    def __repr__(self) -> str:
        return f"EncodedBatch({self.encoding!r}, {len(self.lines)} records)"

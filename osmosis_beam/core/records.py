"""Records and dead letters: what travels between sources, steps and sinks (Beam-free).

A record is a plain ``dict`` of field name to native Python value (Decimal, aware datetime, dict, list,
bytes). A record that cannot be read, processed or written becomes a :class:`DeadLetter` with the reason.

Example::

    from osmosis_beam.core.records import DeadLetter
    DeadLetter("2: cast", "amount: 'x' is not a decimal", {"amount": "x"}).to_dict()
    # {'step': '2: cast', 'error': "amount: 'x' is not a decimal", 'record': {'amount': 'x'}}
"""
from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Record", "DeadLetter", "DEAD_LETTER_TAG", "METRICS_NAMESPACE"]

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

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "error": self.error, "record": self.record}

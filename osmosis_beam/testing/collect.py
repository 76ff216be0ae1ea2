"""Collect a PCollection's elements in this process (the in-process runner runs DoFns here).

Example::

    found = Collected()
    with beam.Pipeline(runner=FnApiRunner()) as p:
        p | beam.Create([1, 2]) | found.sink()
    found.items()        # [1, 2]
"""
from __future__ import annotations

import uuid
from typing import Any

import apache_beam as beam

__all__ = ["Collected"]

_STORE: dict[str, list[Any]] = {}


def _add(element: Any, key: str) -> None:
    _STORE[key].append(element)


class Collected:
    """Named lists of elements, filled while an in-process pipeline runs."""

    def __init__(self) -> None:
        self._id = uuid.uuid4().hex

    def sink(self, name: str = "items") -> beam.PTransform:
        key = f"{self._id}:{name}"
        _STORE.setdefault(key, [])
        return f"Collect {name}" >> beam.Map(_add, key)

    def items(self, name: str = "items") -> list[Any]:
        return list(_STORE.get(f"{self._id}:{name}", []))

    def __del__(self) -> None:
        store = globals().get("_STORE")
        if store:  # None or gone while the interpreter shuts down
            for key in [k for k in store if k.startswith(self._id)]:
                store.pop(key, None)

"""Helpers for the tests of the public Beam transforms: plain ``beam.Pipeline()`` runs and what they produced.

A Beam user writes ``with beam.Pipeline() as p: ...``; these helpers do the same (the DirectRunner, Beam's
default) and collect elements through a module-level store, which works because the DirectRunner runs
batch pipelines in this process.

Example::

    out = Collect()
    with beam.Pipeline() as p:
        p | ReadFromPostgres(...) | out.sink("rows")
    out["rows"]      # the elements, in arrival order
"""
from __future__ import annotations

import uuid
from typing import Any

import apache_beam as beam

_STORE: dict[str, list[Any]] = {}


def _add(element: Any, key: str) -> None:
    _STORE[key].append(element)


class Collect:
    """Named lists of the elements that reached ``sink(name)``, filled while the pipeline runs."""

    def __init__(self) -> None:
        self._id = uuid.uuid4().hex
        self._names: set[str] = set()

    def sink(self, name: str) -> beam.PTransform:
        key = f"{self._id}:{name}"
        _STORE.setdefault(key, [])
        self._names.add(name)
        return f"Collect {name}" >> beam.Map(_add, key)

    def __getitem__(self, name: str) -> list[Any]:
        return _STORE[f"{self._id}:{name}"]

    def __del__(self) -> None:
        for name in self._names:
            _STORE.pop(f"{self._id}:{name}", None)


def shout(record: dict) -> dict:
    """A record function for ``CallPython("tests.integration.transforms_support:shout")``."""
    return {**record, "title": record["title"].upper()}

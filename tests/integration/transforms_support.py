"""Helpers for the tests of the public Beam transforms: plain ``beam.Pipeline()`` runs and what they produced.

A Beam user writes ``with beam.Pipeline() as p: ...``; the tests do the same (the DirectRunner, Beam's
default, which runs batch pipelines in this process) and collect elements with
:class:`osmosis_beam.testing.collect.Collected`.

Example::

    out = Collect()
    with beam.Pipeline() as p:
        p | ReadFromPostgres(...) | out.sink("rows")
    out["rows"]      # the elements, in arrival order
"""
from __future__ import annotations

from typing import Any

from osmosis_beam.testing.collect import Collected


class Collect(Collected):
    """``Collected`` with ``out[name]`` for its named lists."""

    def __getitem__(self, name: str) -> list[Any]:
        return self.items(name)


def shout(record: dict) -> dict:
    """A record function for ``CallPython("tests.integration.transforms_support:shout")``."""
    return {**record, "title": record["title"].upper()}

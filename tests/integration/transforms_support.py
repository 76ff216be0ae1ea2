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

import json
from typing import Any

import apache_beam as beam

from osmosis_beam.core.records import EncodedBatch
from osmosis_beam.io.read import _WindowRestrictionProvider
from osmosis_beam.testing.collect import Collected


class Collect(Collected):
    """``Collected`` with ``out[name]`` for its named lists."""

    def __getitem__(self, name: str) -> list[Any]:
        return self.items(name)


def shout(record: dict) -> dict:
    """A record function for ``CallPython("tests.integration.transforms_support:shout")``."""
    return {**record, "title": record["title"].upper()}


def drive_letters(fn, task, restriction, split_after=None, fraction=0.0, id_field="id"):
    """Run the read DoFn ``fn`` on one restriction as a runner would, splitting after ``split_after`` records:
    ``(ids, dead letters, residual)``, the ids taken from ``id_field`` of records and of encoded JSON lines."""
    tracker = _WindowRestrictionProvider().create_tracker(restriction)
    ids, letters, residual = [], [], None
    for item in fn.process(task, tracker=tracker):
        if isinstance(item, beam.pvalue.TaggedOutput):
            letters.append(repr(sorted(item.value.items())))
            continue
        if isinstance(item, EncodedBatch):
            ids += [json.loads(line)[id_field] for line in item.lines]
        else:
            ids += [r[id_field] for r in item]
        if split_after is not None and residual is None and len(ids) >= split_after:
            split = tracker.try_split(fraction)
            if split:
                residual = split[1]
    tracker.check_done()
    return ids, letters, residual

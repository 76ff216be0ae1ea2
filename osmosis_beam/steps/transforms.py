"""The built-in steps as Beam transforms over records: ``records | Filter("amount > 100")``.

Each takes the step's YAML config (positionally, or as keyword arguments for the mapping ones) and
works on a PCollection of records, one dict per element, like any Beam transform. Records a step
cannot process fail the pipeline with the reason; ``.with_exception_handling()`` returns
``(records, dead_letters)`` instead, each dead letter a dict ``{step, error, record}``. ``batched=True``
takes and gives lists of records (the fast path ``osmosis run`` uses).

Example::

    import apache_beam as beam
    from osmosis_beam.steps.transforms import Cast, Filter, MapFields, Select

    with beam.Pipeline() as p:
        rows = p | beam.Create([{"id": 1, "amount": "150.00"}, {"id": 2, "amount": "5"}])
        big = (rows
               | Cast({"amount": "decimal(12,2)"})
               | Filter("amount > 100")
               | MapFields(doubled="amount * 2")
               | Select(["id", "doubled"]))
        good, bad = rows | Cast({"amount": "int"}).with_exception_handling()

The same steps run in ``osmosis run`` from ``steps:`` in the pipeline YAML.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, ClassVar

import apache_beam as beam

from osmosis_beam.core.records import DEAD_LETTER_TAG
from osmosis_beam.io.batches import RecordBatch
from osmosis_beam.io.read import fail_on_dead_letters
from osmosis_beam.steps.base import StepContext
from osmosis_beam.steps.cast import CastStep
from osmosis_beam.steps.dedupe import DedupeStep
from osmosis_beam.steps.expressions import FilterStep, MapStep
from osmosis_beam.steps.fields import DropStep, RenameStep, SelectStep
from osmosis_beam.steps.pipeline import StepChain
from osmosis_beam.steps.python import PythonStep
from osmosis_beam.steps.reshape import ExplodeStep, FlattenStep
from osmosis_beam.steps.text import HtmlToTextStep

__all__ = [
    "StepTransform", "Filter", "MapFields", "Select", "Drop", "Rename", "Cast", "FlattenFields", "Explode",
    "Dedupe", "HtmlToText", "CallPython",
]


class StepTransform(beam.PTransform):
    """A step as a PTransform over records; subclasses set ``step_class`` (a built-in step)."""

    step_class: ClassVar[type] = FilterStep

    def __init__(self, config: Any = None, *more: Any, batched: bool = False, batch_size: int = 2000, **options: Any) -> None:
        super().__init__()
        if more:  # Select("a", "b")
            config = [config, *more]
        if config is None and options:  # MapFields(total="amount * 2")
            config = options
        elif options:
            raise TypeError(f"{type(self).__name__}: give the config positionally or as keywords, not both")
        self.step = _build(self.step_class, config, batch_size)
        self._batched, self._batch_size, self._handle_errors = batched, batch_size, False

    @classmethod
    def of(cls, step: Any, *, batched: bool = False, batch_size: int = 2000) -> "StepTransform":
        """Any step object (a ``TransformationStep``, a function record -> record) as a transform over records."""
        out = cls.__new__(cls)
        beam.PTransform.__init__(out)
        out.step, out._batched, out._batch_size, out._handle_errors = step, batched, batch_size, False
        return out

    def with_exception_handling(self) -> "StepTransform":
        """A copy whose output is ``(records, dead_letters)`` instead of failing on a record it cannot process."""
        other = copy.copy(self)
        other._handle_errors = True
        return other

    def expand(self, pcoll):
        batches = pcoll
        if not self._batched:
            batches = pcoll | "Batch" >> beam.BatchElements(
                min_batch_size=1, max_batch_size=self._batch_size
            ).with_output_types(RecordBatch)
        on_error = "dead_letter" if self._handle_errors else "fail"
        out = batches | "Apply" >> StepChain().add_step(self.step, label=self.label, on_error=on_error)
        records, dead = out["records"], out[DEAD_LETTER_TAG]
        if not self._batched:
            records = records | "Unbatch" >> beam.FlatMap(iter).with_output_types(dict)
        if self._handle_errors:
            return records, dead
        fail_on_dead_letters(dead, self.label)  # steps that dead-letter by design (cast) fail here
        return records


def _build(cls: type, config: Any, batch_size: int) -> Any:
    from_config = getattr(cls, "from_config", None)
    if from_config is None:
        return cls(config)
    try:
        takes_context = "context" in inspect.signature(from_config).parameters
    except (TypeError, ValueError):
        takes_context = False
    if takes_context:
        return from_config(config, context=StepContext(batch_size=batch_size))
    return from_config(config)


class Filter(StepTransform):
    """Keeps the records for which a Python expression is true: ``Filter("amount > 100")``."""

    step_class = FilterStep


class MapFields(StepTransform):
    """Sets or computes fields in order, keeping the others: ``MapFields(total="price * qty")``."""

    step_class = MapStep


class Select(StepTransform):
    """Keeps only the named fields: ``Select(["id", "title"])``."""

    step_class = SelectStep


class Drop(StepTransform):
    """Removes the named fields: ``Drop(["payload"])``."""

    step_class = DropStep


class Rename(StepTransform):
    """Renames fields: ``Rename({"title": "headline"})``."""

    step_class = RenameStep


class Cast(StepTransform):
    """Converts fields exactly: ``Cast({"amount": "decimal(12,2)", "created": "datetime"})``."""

    step_class = CastStep


class FlattenFields(StepTransform):
    """Nested objects to dotted keys: ``FlattenFields({"separator": "."})`` (not ``beam.Flatten``)."""

    step_class = FlattenStep


class Explode(StepTransform):
    """One record per element of a list field: ``Explode("tags")``."""

    step_class = ExplodeStep


class Dedupe(StepTransform):
    """One record per key, the latest by ``cursor``: ``Dedupe(key=["id"], cursor="updated_at")``. It groups."""

    step_class = DedupeStep


class HtmlToText(StepTransform):
    """Strips markup from fields, one line per block: ``HtmlToText(["summary"])``."""

    step_class = HtmlToTextStep


class CallPython(StepTransform):
    """A function (record -> record, None, or a list) or step class by import path: ``CallPython("pkg.mod:fn")``."""

    step_class = PythonStep

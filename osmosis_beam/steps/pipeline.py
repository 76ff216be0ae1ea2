"""Steps as labelled Beam PTransforms over record batches, and the seed's ``Pipeline``.

Each :class:`TransformationStep` runs batch by batch; when a batch raises, the step reruns that
batch record by record so that only the records that fail go to the dead-letter output, with the
step's label and the error (``on_error: fail`` stops the run instead). A step can also be a Beam
``PTransform`` over single records, a plain function (record -> record, None to drop, or a list),
or a :class:`BatchTransform`: a PTransform over record batches that may group (``dedupe``) and
returns ``{"records": ..., "dead_letter": ...}``.

Example::

    import apache_beam as beam
    from osmosis_beam.steps.pipeline import StepChain
    steps = StepChain().add_step(MyStep()).add_step(beam.Map(lambda r: {**r, "seen": True}))
    out = batches | "Steps" >> steps          # {"records": ..., "dead_letter": ...}
    steps.execute([{"a": 1}])                 # runs in-process on the DirectRunner
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, Callable, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

from osmosis_beam.core.errors import RunError
from osmosis_beam.core.models import TransformationStep
from osmosis_beam.core.records import (
    DEAD_LETTER_TAG,
    METRICS_NAMESPACE,
    DeadLetter,
    Record,
)
from osmosis_beam.io.batches import RecordBatch
from osmosis_beam.steps.base import StepContext, StepFailed, apply_record_function, error_text

__all__ = ["StepChain", "Pipeline", "ApplyStep", "BatchTransform", "StepContext", "build_step", "StepFailed", "CancelCheck"]


_error_text = error_text  # one wording for a step's dead letters, here and on the zero-decode path


class BatchTransform(beam.PTransform):
    """A step written as a Beam PTransform over record *batches* (lists of dicts).

    Subclasses set ``name`` and implement ``expand(batches)``, returning either a PCollection of
    batches or ``{"records": batches, "dead_letter": dead_letters}``. Inside a :class:`Pipeline`
    ``step_label`` is the step's label (``"3: dedupe"``) and ``on_error`` is ``dead_letter`` or ``fail``;
    dead letters should carry ``step_label``.
    """

    name = "step"

    def __init__(self, label: str | None = None) -> None:
        super().__init__(label)
        self.step_label = self.name
        self.on_error = "dead_letter"

    def bound(self, label: str, on_error: str) -> "BatchTransform":
        """A copy that carries its label and error policy inside one pipeline."""
        step = copy.copy(self)
        step.step_label = label
        step.on_error = on_error
        return step


class _FunctionStep(TransformationStep):
    """A plain function as a step: record -> record, None to drop it, or a list of records."""

    def __init__(self, fn: Callable[[Record], Any]) -> None:
        super().__init__(getattr(fn, "__name__", None) or "function")
        if self.name == "<lambda>":
            self.name = "lambda"
        self._fn = fn

    def process(self, records):
        return apply_record_function(self._fn, records)


class _StepFn(beam.DoFn):
    def __init__(self, step: TransformationStep, label: str, on_error: str) -> None:
        self._step = step
        self._label = label
        self._on_error = on_error
        self._dead = Metrics.counter(METRICS_NAMESPACE, "dead_letter")

    def setup(self) -> None:
        setup = getattr(self._step, "setup", None)
        if callable(setup):
            setup()

    def teardown(self) -> None:
        teardown = getattr(self._step, "teardown", None)
        if callable(teardown):
            teardown()

    def process(self, batch: list[Record]):
        try:
            out = self._step.process(batch)
        except Exception as batch_exc:  # noqa: BLE001 - isolate the failing records below
            if self._on_error == "fail":
                raise StepFailed(f"step {self._label} failed: {_error_text(batch_exc)}") from batch_exc
            out = []
            for record in batch:
                try:
                    out.extend(self._step.process([record]) or ())
                except Exception as exc:  # noqa: BLE001
                    self._dead.inc()
                    yield beam.pvalue.TaggedOutput(
                        DEAD_LETTER_TAG, DeadLetter(self._label, _error_text(exc), record).to_dict()
                    )
        if out:
            yield list(out)


class ApplyStep(beam.PTransform):
    """One step over a PCollection of record batches; outputs ``records`` and ``dead_letter``."""

    def __init__(self, step: TransformationStep, label: str | None = None, on_error: str = "dead_letter") -> None:
        super().__init__()
        self._step = step
        self._label = label or step.name
        self._on_error = on_error

    def expand(self, batches):
        return batches | beam.ParDo(_StepFn(self._step, self._label, self._on_error)).with_output_types(
            RecordBatch
        ).with_outputs(
            DEAD_LETTER_TAG, main="records"
        )


class _RecordTransform(beam.PTransform):
    """A user PTransform over single records, wrapped to take and give batches."""

    def __init__(self, transform: beam.PTransform, batch_size: int = 2000) -> None:
        super().__init__()
        self._transform = transform
        self._batch_size = batch_size

    def expand(self, batches):
        return (
            batches
            | "Unbatch" >> beam.FlatMap(lambda batch: batch)
            | "Apply" >> self._transform
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._batch_size).with_output_types(RecordBatch)
        )


def build_step(spec, registry=None, context: StepContext | None = None) -> Any:
    """The step object for a :class:`~osmosis_beam.config.StepSpec`.

    A step class whose ``from_config`` takes a ``context`` argument gets ``context`` (the pipeline's
    cursor field, batch size, ...); other classes get the config only.
    """
    from osmosis_beam.registry import default_registry

    cls = (registry or default_registry()).step(spec.name)
    from_config = getattr(cls, "from_config", None)
    if from_config is None:
        return cls(spec.config)
    try:
        takes_context = "context" in inspect.signature(from_config).parameters
    except (TypeError, ValueError):
        takes_context = False
    if takes_context:
        return from_config(spec.config, context=context or StepContext())
    return from_config(spec.config)


class StepChain(beam.PTransform):
    """An ordered chain of steps over record batches: the seed's ``Pipeline`` (``add_step``, ``execute``).

    It is a Beam composite transform, not a ``beam.Pipeline``: ``batches | "Steps" >> StepChain(...)``
    inside a Beam pipeline, or ``execute(records)`` to run it in this process. ``Pipeline`` is the
    same class under the seed's name.

    ``add_step`` returns the pipeline; ``execute(records)`` runs the steps on in-memory records on
    the in-process runner and returns the records that come out (``last_dead_letters`` keeps the rest).
    """

    def __init__(self, steps: Iterable[Any] = (), *, label: str | None = None) -> None:
        super().__init__(label)
        self._steps: list[tuple[Any, str, str]] = []
        self.last_dead_letters: list[dict[str, Any]] = []
        for step in steps:
            self.add_step(step)

    @property
    def steps(self) -> list[Any]:
        return [s for s, _, _ in self._steps]

    def add_step(self, step: Any, *, label: str | None = None, on_error: str = "dead_letter") -> "StepChain":
        """Append ``step``; returns the pipeline, so calls chain.

        ``step`` is a :class:`TransformationStep` (or any object with ``process(records)``), a
        :class:`BatchTransform`, a Beam PTransform over single records, or a function
        (record -> record, None to drop it, or a list). ``on_error`` is ``dead_letter`` or ``fail``;
        it does not apply to a PTransform over single records, which handles its own errors.
        """
        if not isinstance(step, (TransformationStep, beam.PTransform)) and not hasattr(step, "process"):
            if isinstance(step, type) or not callable(step):
                raise TypeError(
                    f"a step must be a TransformationStep, a Beam PTransform or a function, got {type(step).__name__}"
                )
            step = _FunctionStep(step)
        if on_error not in ("dead_letter", "fail"):
            raise ValueError("on_error must be 'dead_letter' or 'fail'")
        index = len(self._steps) + 1
        name = getattr(step, "name", None) or getattr(step, "label", None) or type(step).__name__
        self._steps.append((step, label or f"{index}: {name}", on_error))
        return self

    def expand(self, batches):
        dead = []
        for step, label, on_error in self._steps:
            if callable(getattr(step, "batch_transform", None)):  # a Beam-free step with a Beam side (dedupe)
                step = step.batch_transform(label, on_error)
            if isinstance(step, BatchTransform):
                out = batches | label >> step.bound(label, on_error)
                if isinstance(out, dict):
                    batches = out["records"]
                    if out.get(DEAD_LETTER_TAG) is not None:
                        dead.append(out[DEAD_LETTER_TAG])
                else:
                    batches = out
            elif isinstance(step, beam.PTransform):
                batches = batches | label >> _RecordTransform(step)
            else:
                out = batches | label >> ApplyStep(step, label, on_error)
                batches = out.records
                dead.append(out[DEAD_LETTER_TAG])
        if dead:
            dead_letters = tuple(dead) | "Dead letters" >> beam.Flatten()
        else:
            dead_letters = batches.pipeline | "No dead letters" >> beam.Create([])
        return {"records": batches, DEAD_LETTER_TAG: dead_letters}

    def execute(self, records: Iterable[Record], *, batch_size: int = 2000) -> list[Record]:
        """Run the steps on ``records`` with the in-process runner; return the output records."""
        from osmosis_beam.runners.options import in_process_pipeline

        records = [dict(r) for r in records]
        batches = [records[i : i + batch_size] for i in range(0, len(records), batch_size)]
        results = _Collector()
        dead = _Collector()
        try:
            with in_process_pipeline() as p:
                out = p | "Records" >> beam.Create(batches, reshuffle=False) | "Steps" >> self
                out["records"] | "Collect" >> beam.Map(results.add_batch)
                out[DEAD_LETTER_TAG] | "Collect dead letters" >> beam.Map(dead.add)
            self.last_dead_letters = dead.items
            return results.items
        finally:
            results.close()
            dead.close()


#: The seed's name for :class:`StepChain` (not to be confused with ``apache_beam.Pipeline``).
Pipeline = StepChain


# Cancel events of the runs in progress in this process, by token. The in-process runner calls
# ``p.run()`` synchronously, so a cancelled run is stopped from inside the pipeline: a pass-through
# step after the read looks its token up here and raises. (Workers in other processes find nothing
# and never cancel; for those runners the SyncRunner cancels the job through its PipelineResult.)
CANCEL_EVENTS: dict[str, Any] = {}


class _CancelCheckFn(beam.DoFn):
    def __init__(self, token: str, message: str) -> None:
        self._token = token
        self._message = message

    def process(self, batch):
        event = CANCEL_EVENTS.get(self._token)
        if event is not None and event.is_set():
            exc = RunError(self._message)
            exc._tagged_with_step = True  # Beam re-raises it as is instead of logging a traceback
            raise exc
        yield batch


class CancelCheck(beam.PTransform):
    """Passes batches through; fails the job once the run's cancel event (in ``CANCEL_EVENTS``) is set."""

    def __init__(self, token: str, message: str) -> None:
        super().__init__()
        self._token = token
        self._message = message

    def expand(self, batches):
        return batches | beam.ParDo(_CancelCheckFn(self._token, self._message)).with_output_types(RecordBatch)


class _Collector:
    """Collects elements in the launcher process (in-process runner only); ``close`` frees the store."""

    _stores: dict[str, list] = {}

    def __init__(self) -> None:
        import uuid

        self._key = uuid.uuid4().hex
        _Collector._stores[self._key] = []

    @property
    def items(self) -> list:
        return _Collector._stores.get(self._key, [])

    def add(self, element) -> None:
        _Collector._stores[self._key].append(element)

    def add_batch(self, batch) -> None:
        _Collector._stores[self._key].extend(batch)

    def close(self) -> None:
        _Collector._stores.pop(self._key, None)

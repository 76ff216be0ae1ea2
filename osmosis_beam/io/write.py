"""The public write of a sink: records into a sink as a Beam transform, complete once the pipeline is DONE.

Standalone, in a Beam user's pipeline, :class:`WriteToSink` prepares the sink when the pipeline is built
(a staging folder, a staging table), writes on the workers, and publishes in a finalize stage at the end
of the graph, which runs only after every write finished and no record was dead-lettered (unless the
transform was asked for its dead letters), as Beam's own file sinks do. Under ``osmosis run`` the same
write runs without its finalize stage (:meth:`WriteToSink.for_run`): publication belongs to the run's
commit protocol (publish, then commit, repaired after a crash).

Example::

    result = records | WriteToJsonl(path="/data/orders")
    result.written          # a PCollection with one int: the records written
    result.dead_letter      # records the sink refused, as {step, error, record} (with_exception_handling())
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

import apache_beam as beam

from osmosis_beam.core.errors import ConfigError, RecordError
from osmosis_beam.core.models import new_run_id
from osmosis_beam.core.records import DEAD_LETTER_TAG
from osmosis_beam.core.timefmt import utcnow
from osmosis_beam.io.base import BaseSink
from osmosis_beam.io.batches import RecordBatch

__all__ = ["WriteToSink", "WriteResult", "new_run_id"]


@dataclasses.dataclass
class WriteResult:
    """What a write returns: the records it refused, the number written, and what the finalize published.

    ``published`` is None under ``osmosis run`` (the run publishes at commit), else a PCollection with
    one dict of details (``{"files": 2, "path": ...}`` for file sinks).
    """

    dead_letter: Any
    written: Any
    published: Any = None

    def __getitem__(self, tag: str):  # ``result["dead_letter"]``, like Beam's tagged outputs
        if tag == DEAD_LETTER_TAG:
            return self.dead_letter
        raise KeyError(tag)


class _FinalizeFn(beam.DoFn):
    """Publishes the run's staged output once every write is done (its side inputs make it wait)."""

    def __init__(self, sink: BaseSink, run_id: str, label: str, fail_on_dead: bool, full_refresh: bool) -> None:
        self._sink, self._run_id, self._label = sink, run_id, label
        self._fail_on_dead, self._full_refresh = fail_on_dead, full_refresh

    def process(self, _, written: int, dead: int):
        if dead and self._fail_on_dead:
            self._sink.abort(self._run_id)
            exc = RecordError(
                f"{self._label}: {dead} record(s) could not be written, so nothing was published; "
                "use .with_exception_handling() to publish the rest and get those records as dead letters"
            )
            exc._tagged_with_step = True  # Beam re-raises it as it is instead of logging a traceback
            raise exc
        details = self._sink.publish(self._run_id, window_hi=utcnow(), full_refresh=self._full_refresh)
        yield {"run_id": self._run_id, "records_written": written, **(details or {})}


def _tagged(output: Any, tag: str):
    try:
        return output[tag]
    except (KeyError, TypeError, AttributeError, ValueError):
        return None


class WriteToSink(beam.PTransform):
    """Writes a PCollection of records (dicts) into a sink; subclasses set ``sink_class``.

    Keyword arguments are the sink's options, as in the pipeline YAML; they are checked here, all
    problems at once. ``batched=True`` takes lists of records instead of one record per element;
    ``batch_size`` is how many records a write takes at once; ``full_refresh=True`` replaces what the
    sink published before (the sink's own output only). Returns a :class:`WriteResult`.
    """

    sink_class: ClassVar[type[BaseSink]] = BaseSink

    def __init__(self, *, batched: bool = False, batch_size: int = 2000, full_refresh: bool = False, **options: Any) -> None:
        super().__init__()
        name = type(self).__name__
        problems: list[str] = []
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            problems.append(f"{name}.batch_size: must be a whole number of at least 1, got {batch_size!r}")
        sink = None
        try:
            sink = self.sink_class(options)
        except ConfigError as exc:
            problems.extend(exc.problems or [exc.message])
        if problems:
            raise ConfigError(problems=problems, source=name)
        self.sink: BaseSink = sink
        self._batched, self._batch_size, self._full_refresh = batched, batch_size, full_refresh
        self._run_id: str | None = None
        self._finalize = True
        self._handle_errors = False

    @classmethod
    def for_run(cls, sink: BaseSink, run_id: str) -> "WriteToSink":
        """The write inside a sync run: batches in, no finalize; the run prepared the sink and publishes it."""
        write = cls.__new__(cls)
        beam.PTransform.__init__(write)
        write.sink = sink
        write._batched, write._batch_size, write._full_refresh = True, 2000, False
        write._run_id, write._finalize, write._handle_errors = run_id, False, True
        return write

    def with_exception_handling(self) -> "WriteToSink":
        """A copy that publishes what it could write and returns refused records in ``result.dead_letter``."""
        other = copy.copy(self)
        other._handle_errors = True
        return other

    def abort(self) -> None:
        """Remove what a pipeline that failed staged (files, a staging table); the published output stays.

        The finalize stage does this itself when it refuses to publish; a pipeline that failed before it
        (a worker error upstream) leaves its staged part hidden but on disk until ``abort()``::

            write = WriteToJsonl(path="/data/orders")
            try:
                with beam.Pipeline() as p:
                    p | ... | write
            except Exception:
                write.abort()
                raise
        """
        if self._run_id is not None and self._finalize:
            self.sink.abort(self._run_id)

    @property
    def run_id(self) -> str | None:
        """The id the output is staged and published under (set when the pipeline is built)."""
        return self._run_id

    def expand(self, pcoll) -> WriteResult:
        sink = self.sink
        if self._finalize:
            self._run_id = new_run_id()
            sink.prepare(self._run_id, full_refresh=self._full_refresh)  # on the machine that builds the pipeline
        batches = pcoll
        if not self._batched:
            batches = pcoll | "Batch records" >> beam.BatchElements(
                min_batch_size=1, max_batch_size=self._batch_size
            ).with_output_types(RecordBatch)
        out = batches | f"Write {sink.type_name}" >> sink.write(self._run_id)
        dead = _tagged(out, DEAD_LETTER_TAG)
        if dead is None:  # a plug-in sink whose write has no dead-letter output
            dead = pcoll.pipeline | "No dead letters" >> beam.Create([])
        if not self._finalize:  # inside a sync run: the run counts from Beam metrics and publishes at commit
            return WriteResult(dead_letter=dead, written=None)
        taken = batches | "Count records" >> beam.Map(len) | "Sum records" >> beam.CombineGlobally(sum)
        refused = dead | "Count dead letters" >> beam.combiners.Count.Globally()
        written = (
            taken
            | "Records written"
            >> beam.Map(lambda n, d: n - d, beam.pvalue.AsSingleton(refused)).with_output_types(int)
        )
        published = (
            pcoll.pipeline
            | "Finalize" >> beam.Impulse()
            | "Publish"
            >> beam.ParDo(
                _FinalizeFn(sink, self._run_id, self.label, not self._handle_errors, self._full_refresh),
                beam.pvalue.AsSingleton(written),
                beam.pvalue.AsSingleton(refused),
            )
        )
        return WriteResult(dead_letter=dead, written=written, published=published)

    def display_data(self) -> dict[str, Any]:
        return {**{k: str(v) for k, v in self.sink.display().items()}, "sink": self.sink.type_name}

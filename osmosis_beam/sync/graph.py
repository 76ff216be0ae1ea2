"""Phase "graph" of a run: the Beam pipeline of one window, built from the public transforms.

``read -> [cancel check] -> steps -> write``, with the dead letters of every stage flattened into the
run's dead-letter output. The read is :class:`~osmosis_beam.io.read.ReadFromSource` over the window the
run fixed, batched; the write is the sink's :class:`~osmosis_beam.io.write.WriteToSink` without its
finalize stage, because the run publishes at commit. This is the same code a Beam user composes.
"""
from __future__ import annotations

import logging

import apache_beam as beam

from osmosis_beam.config import PipelineSpec
from osmosis_beam.core.progress import live_add
from osmosis_beam.core.window import SyncWindow
from osmosis_beam.io.base import BaseConnector, BaseSink
from osmosis_beam.io.files.jsonl_write import WriteJSONL
from osmosis_beam.io.read import ReadFromSource
from osmosis_beam.io.write import WriteToSink
from osmosis_beam.steps.base import StepContext
from osmosis_beam.steps.pipeline import CancelCheck, StepChain, build_step
from osmosis_beam.sync.path import choose_path

__all__ = ["build_graph"]

log = logging.getLogger(__name__)


def build_graph(
    p: beam.Pipeline,
    spec: PipelineSpec,
    connector: BaseConnector,
    sink: BaseSink,
    dead_sink: BaseSink,
    window: SyncWindow,
    run_id: str,
    *,
    registry=None,
    cancel_token: str | None = None,
    cancel_message: str = "",
    progress_key: str | None = None,
) -> tuple[int, int] | None:
    """Add the run's transforms to ``p``; returns the cursor range the read's progress counts over.

    With ``progress_key`` (the run id), workers in this process count what they read and hand to the
    sink into ``core.progress.LIVE[progress_key]`` as they go, for the run's live progress.
    """
    encoding, why = choose_path(spec, connector, sink)
    log.info("pipeline %s: %s path (%s)", spec.id, f"zero-decode {encoding}" if encoding else "typed", why)
    split_from = connector.lower_bound(window) if window.lo is None and connector.splittable else None
    progress_to = connector.upper_bound(window) if split_from is not None else None
    read = ReadFromSource.of_window(
        connector, window, splits=spec.read.splits, batch_size=spec.read.batch_size, split_from=split_from,
        progress_key=progress_key, progress_to=progress_to,
    ).with_exception_handling()
    batches, read_dead = p | f"Read {spec.source.type}" >> read
    if cancel_token is not None:
        batches = batches | "Check cancel" >> CancelCheck(cancel_token, cancel_message)
    dead = [read_dead]
    if spec.steps and encoding is None:  # on the zero-decode path the source did the (field) steps
        chain = StepChain()
        context = StepContext(pipeline_id=spec.id, cursor_field=connector.cursor_field, batch_size=spec.read.batch_size)
        for step_spec in spec.steps:
            chain.add_step(build_step(step_spec, registry, context), label=step_spec.label, on_error=step_spec.on_error)
        out = batches | "Steps" >> chain
        batches = out["records"]
        dead.append(out["dead_letter"])
    if progress_key is not None:
        batches = batches | "Count to sink" >> beam.ParDo(_CountLive(progress_key, "records_written"))
    written = batches | f"Write {spec.sink.type}" >> WriteToSink.for_run(sink, run_id)
    dead.append(written.dead_letter)
    (
        tuple(dead)
        | "Dead letters" >> beam.Flatten()
        | "Batch dead letters" >> beam.BatchElements(min_batch_size=1, max_batch_size=500)
        | "Write dead letters"
        >> WriteJSONL(str(dead_sink.staging_dir(run_id)), counter="dead_letter_written", lenient=True)
    )
    return read.progress_range()


class _CountLive(beam.DoFn):
    """Passes batches through, counting their records into the run's live progress (in this process).

    The sink's own Beam counter stays the run's count of records written; this one only shows, while the
    run goes, how many records reached the sink.
    """

    def __init__(self, key: str, name: str) -> None:
        self._key, self._name = key, name

    def process(self, batch):
        live_add(self._key, self._name, len(batch))
        yield batch

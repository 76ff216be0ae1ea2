"""Runner choice and pipeline options: direct (in-process), portable, flink, dataflow.

``direct`` runs batch pipelines on Beam's in-process FnApiRunner, which never tries to
download the Prism runner binary (the default DirectRunner does, and fails offline).

Example::

    from osmosis_beam.runners import make_pipeline
    p = make_pipeline("direct")                    # a beam.Pipeline on the in-process runner
    p = make_pipeline("portable", {"job_endpoint": "localhost:8099"})
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Mapping, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from osmosis_beam.exceptions import ConfigError

__all__ = ["RUNNERS", "make_pipeline", "pipeline_options", "in_process_pipeline"]

log = logging.getLogger(__name__)
RUNNERS = ("direct", "portable", "flink", "dataflow")


def _flag(key: str, value: Any) -> list[str]:
    name = "--" + key.replace("-", "_")
    if value is True:
        return [name]
    if value is False or value is None:
        return []
    return [f"{name}={value}"]


def pipeline_options(runner: str, options: Mapping[str, Any] | None = None, beam_args: Sequence[str] = ()) -> PipelineOptions:
    """PipelineOptions for ``runner``: YAML ``runner.options`` first, then ``beam_args`` (which win)."""
    if runner not in RUNNERS:
        raise ConfigError(f"unknown runner {runner!r}; known: {', '.join(RUNNERS)}")
    args: list[str] = []
    for key, value in (options or {}).items():
        args += _flag(key, value)
    args += list(beam_args)
    if runner == "portable":
        args = ["--runner=PortableRunner", *args]
    elif runner == "flink":
        args = ["--runner=FlinkRunner", *args]
    elif runner == "dataflow":
        args = ["--runner=DataflowRunner", *args]
    return PipelineOptions(args)


def make_pipeline(runner: str = "direct", options: Mapping[str, Any] | None = None, beam_args: Sequence[str] = ()) -> beam.Pipeline:
    """A ``beam.Pipeline`` for ``runner``; ``direct`` uses the in-process FnApiRunner."""
    opts = pipeline_options(runner, options, beam_args)
    if runner == "direct":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=opts)
    return beam.Pipeline(options=opts)


@contextlib.contextmanager
def in_process_pipeline(beam_args: Sequence[str] = ()) -> Iterator[beam.Pipeline]:
    """``with in_process_pipeline() as p:`` builds and runs a pipeline on the in-process runner."""
    with make_pipeline("direct", beam_args=beam_args) as p:
        yield p

"""The JSONL sink: one JSON object per line, published atomically when the run commits.

Workers write ``part-*.jsonl`` files into ``PATH/_staging/RUN_ID/``; when the runner reports
DONE the launcher publishes the run by renaming that folder to ``PATH/<window hi>-<run id>/`` (one
atomic rename), so readers never see a partial run. Names starting with ``_`` or ``.`` are not
output, and :func:`read_jsonl_dir` skips them.

Example (pipeline YAML)::

    sink:
      type: jsonl
      path: ./data/tech_news
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from osmosis_beam.config import Option
from osmosis_beam.connectors.base import DEAD_LETTER_TAG, METRICS_NAMESPACE, DeadLetter
from osmosis_beam.sinks.encoding import dumps
from osmosis_beam.sinks.staged import StagedFileSink, fsync_dir
from osmosis_beam.sinks.staged import iter_output_files as _iter_output_files

__all__ = ["JSONLSink", "WriteJSONL", "read_jsonl_dir", "iter_output_files"]

def iter_output_files(path: str | os.PathLike, suffix: str = ".jsonl") -> Iterator[Path]:
    """The published JSONL files under ``path``, in publish order, skipping ``_``/``.`` names."""
    return _iter_output_files(path, suffix)


def read_jsonl_dir(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Every record published under ``path`` (skips staging, manifests and hidden files)."""
    for file in iter_output_files(path):
        with open(file, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


class _WriteJSONLFn(beam.DoFn):
    """Writes each bundle's batches into one staged part file (tmp name until the bundle finishes)."""

    def __init__(self, staging_dir: str, counter: str = "records_written", lenient: bool = False) -> None:
        self._staging = staging_dir
        self._lenient = lenient
        self._written = Metrics.counter(METRICS_NAMESPACE, counter)
        self._dead = Metrics.counter(METRICS_NAMESPACE, "dead_letter")

    def start_bundle(self) -> None:
        self._fh = None
        self._tmp = None

    def _open(self) -> None:
        os.makedirs(self._staging, exist_ok=True)
        part = uuid.uuid4().hex
        self._tmp = os.path.join(self._staging, f".part-{part}.tmp")
        self._final = os.path.join(self._staging, f"part-{part}.jsonl")
        self._fh = open(self._tmp, "w", encoding="utf-8", newline="\n")

    def process(self, batch):
        lines = []
        for record in batch:
            try:
                lines.append(dumps(record))
            except (TypeError, ValueError) as exc:
                if self._lenient:  # dead letters themselves: keep them, as text where needed
                    lines.append(dumps(_lenient(record)))
                    continue
                self._dead.inc()
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTER_TAG, DeadLetter("sink: jsonl", f"cannot encode as JSON: {exc}", repr(record)).to_dict()
                )
        if not lines:
            return
        if self._fh is None:
            self._open()
        self._fh.write("\n".join(lines))
        self._fh.write("\n")
        self._written.inc(len(lines))

    def finish_bundle(self) -> None:
        if self._fh is None:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self._final)
        fsync_dir(Path(self._staging))
        self._fh = None


def _lenient(value: Any) -> Any:
    """A JSON-safe copy: what the encoder cannot write becomes its repr (for dead letters)."""
    if isinstance(value, dict):
        return {str(k): _lenient(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lenient(v) for v in value]
    try:
        dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


class WriteJSONL(beam.PTransform):
    """Writes record batches as JSON lines into ``staging_dir`` (dead letters on the ``dead_letter`` tag).

    ``counter`` names the Beam metric counting written lines; ``lenient`` writes what cannot be
    encoded as its repr instead of dead-lettering it (used for the dead-letter output itself).
    """

    def __init__(self, staging_dir: str, counter: str = "records_written", lenient: bool = False) -> None:
        super().__init__()
        self._staging = staging_dir
        self._counter = counter
        self._lenient = lenient

    def expand(self, batches):
        return batches | "Write JSON lines" >> beam.ParDo(
            _WriteJSONLFn(self._staging, self._counter, self._lenient)
        ).with_outputs(DEAD_LETTER_TAG, main="written")


class JSONLSink(StagedFileSink):
    """JSON lines files, staged per run and published atomically at commit."""

    type_name = "jsonl"
    suffix = ".jsonl"
    options = (Option("path", "path", required=True, help="the output folder"),)

    def write(self, run_id: str) -> beam.PTransform:
        return WriteJSONL(str(self.staging_dir(run_id)))

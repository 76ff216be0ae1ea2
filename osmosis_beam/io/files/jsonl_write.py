"""The Beam side of the jsonl sink: each bundle's batches into one staged part file (imported when a job is built).

Example::

    from osmosis_beam.io.files.jsonl_write import WriteJSONL
    batches | WriteJSONL("/data/out/_staging/RUN_ID")     # what JSONLSink.write(run_id) builds
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from osmosis_beam.core.encoding import dumps, dumps_bytes, dumps_lines
from osmosis_beam.core.errors import SinkError
from osmosis_beam.core.records import DEAD_LETTER_TAG, METRICS_NAMESPACE, DeadLetter, EncodedBatch
from osmosis_beam.io.files.staged import fsync_dir, os_error_text

__all__ = ["WriteJSONL"]


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
        self._fh = open(self._tmp, "wb")

    def process(self, batch):
        if isinstance(batch, EncodedBatch):  # JSON lines the source built (the zero-decode path)
            if batch.encoding != "json":
                raise TypeError(f"the jsonl sink cannot write {batch.encoding!r} batches")
            if not batch.lines:
                return
            lines = batch.lines  # UTF-8 bytes (text from a source that builds str lines is encoded here)
            blob = b"\n".join(lines) if isinstance(lines[0], bytes) else "\n".join(lines).encode("utf-8")
            try:
                if self._fh is None:
                    self._open()
                self._fh.write(blob)
                self._fh.write(b"\n")
            except OSError as exc:
                raise self._error(exc) from None
            self._written.inc(len(lines))
            return
        data, count = dumps_lines(batch), len(batch)
        if data is None:
            lines: list[bytes] = []
            yield from self._careful(batch, lines)
            data, count = b"".join(line + b"\n" for line in lines), len(lines)
        if not count:
            return
        try:
            if self._fh is None:
                self._open()
            self._fh.write(data)
        except OSError as exc:
            raise self._error(exc) from None
        self._written.inc(count)

    def _error(self, exc: OSError) -> SinkError:
        """A write error naming the file (ENOSPC and EIO carry no file name of their own)."""
        if not exc.filename:
            exc.filename = self._tmp or self._staging
        self._discard()
        what = "dead letters" if self._lenient else "sink jsonl"
        error = SinkError(f"{what}: cannot write {self._staging}: {os_error_text(exc)}")
        error._tagged_with_step = True  # Beam re-raises it as it is instead of logging a traceback
        return error

    def _discard(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except OSError:
                pass
        if self._tmp:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass

    def _careful(self, batch, lines):
        """Record by record: what cannot be encoded goes to the dead letters (or as text, when lenient)."""
        for record in batch:
            try:
                lines.append(dumps_bytes(record))
            except (TypeError, ValueError) as exc:
                if self._lenient:  # dead letters themselves: keep them, as text where needed
                    lines.append(dumps_bytes(_lenient(record)))
                    continue
                self._dead.inc()
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTER_TAG, DeadLetter("sink: jsonl", f"cannot encode as JSON: {exc}", repr(record)).to_dict()
                )

    def finish_bundle(self) -> None:
        if self._fh is None:
            return
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.replace(self._tmp, self._final)
        except OSError as exc:
            raise self._error(exc) from None
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

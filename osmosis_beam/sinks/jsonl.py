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

import datetime as dt
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from osmosis_beam.config import Option
from osmosis_beam.connectors.base import DEAD_LETTER_TAG, METRICS_NAMESPACE, DeadLetter
from osmosis_beam.exceptions import SinkError
from osmosis_beam.sinks.base import BaseSink
from osmosis_beam.sinks.encoding import dumps

__all__ = ["JSONLSink", "WriteJSONL", "read_jsonl_dir", "iter_output_files"]

STAGING = "_staging"
MANIFEST = "_manifest.json"


def _hidden(name: str) -> bool:
    return name.startswith(("_", "."))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def iter_output_files(path: str | os.PathLike, suffix: str = ".jsonl") -> Iterator[Path]:
    """The published output files under ``path``, in publish order, skipping ``_``/``.`` names."""
    root = Path(path)
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        for name in sorted(filenames):
            if not _hidden(name) and name.endswith(suffix):
                yield Path(dirpath) / name


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
        _fsync_dir(Path(self._staging))
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


class JSONLSink(BaseSink):
    """JSON lines files, staged per run and published atomically at commit."""

    type_name = "jsonl"
    options = (Option("path", "path", required=True, help="the output folder"),)

    @property
    def root(self) -> Path:
        return Path(self.config["path"])

    def staging_dir(self, run_id: str) -> Path:
        return self.root / STAGING / run_id

    def _published_name(self, run_id: str, window_hi: dt.datetime) -> str:
        stamp = window_hi.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        return f"{stamp}-{run_id}"

    def prepare(self, run_id: str) -> None:
        try:
            self.staging_dir(run_id).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"sink.path {self.root}: cannot create the output folder ({exc.strerror}); check permissions") from None

    def write(self, run_id: str) -> beam.PTransform:
        return WriteJSONL(str(self.staging_dir(run_id)))

    def publish(self, run_id: str, *, window_hi: dt.datetime, full_refresh: bool = False) -> dict[str, Any]:
        staging = self.staging_dir(run_id)
        parts = sorted(p for p in staging.glob("part-*.jsonl")) if staging.is_dir() else []
        result: dict[str, Any] = {"files": 0, "path": None}
        if parts:
            for leftover in staging.glob(".part-*.tmp"):  # from failed bundle attempts
                leftover.unlink(missing_ok=True)
            manifest = {
                "run_id": run_id,
                "pipeline": self.pipeline_id,
                "window_hi": window_hi.isoformat(),
                "files": [p.name for p in parts],
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
            target = self.root / self._published_name(run_id, window_hi)
            try:
                os.rename(staging, target)
            except OSError as exc:
                raise SinkError(f"sink.path {self.root}: cannot publish run {run_id} ({exc.strerror})") from None
            _fsync_dir(self.root)
            result = {"files": len(parts), "path": str(target)}
        else:
            shutil.rmtree(staging, ignore_errors=True)
        if full_refresh:
            self._remove_older(run_id)
        self._clean_staging_root()
        return result

    def _remove_older(self, run_id: str) -> None:
        trash = self.root / f"_replaced-{run_id}"
        trash.mkdir(parents=True, exist_ok=True)
        for entry in self.root.iterdir():
            if _hidden(entry.name) or entry.name.endswith(f"-{run_id}"):
                continue
            os.rename(entry, trash / entry.name)
        _fsync_dir(self.root)
        shutil.rmtree(trash, ignore_errors=True)

    def _clean_staging_root(self) -> None:
        try:
            (self.root / STAGING).rmdir()
        except OSError:
            pass

    def abort(self, run_id: str) -> None:
        shutil.rmtree(self.staging_dir(run_id), ignore_errors=True)
        self._clean_staging_root()

    def is_published(self, run_id: str) -> bool:
        if not self.root.is_dir():
            return False
        return any(e.name.endswith(f"-{run_id}") and not _hidden(e.name) for e in self.root.iterdir())

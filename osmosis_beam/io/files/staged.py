"""Staged file output: write a run into ``PATH/_staging/RUN_ID/``, publish it with one atomic rename.

The base of the file sinks (JSONL, Parquet). Workers write part files into the run's staging folder
(under a temporary ``.part-*.tmp`` name until their bundle finishes); after the runner reports DONE the
launcher writes a ``_manifest.json`` and renames the folder to ``PATH/<window hi>-<run id>/``. Names
starting with ``_`` or ``.`` are never output, and :func:`iter_output_files` skips them.

Example::

    class CSVSink(StagedFileSink):
        type_name = "csv"
        suffix = ".csv"
        def write(self, run_id):
            return WriteCSV(str(self.staging_dir(run_id)))
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any, ClassVar, Iterator

from osmosis_beam.core.errors import SinkError
from osmosis_beam.io.base import BaseSink

__all__ = ["StagedFileSink", "iter_output_files", "is_hidden", "fsync_dir", "STAGING", "MANIFEST"]

STAGING = "_staging"
MANIFEST = "_manifest.json"


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is not output (starts with ``_`` or ``.``)."""
    return name.startswith(("_", "."))


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (renames, new files) durable; best effort where unsupported."""
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


def iter_output_files(path: str | os.PathLike, suffix: str) -> Iterator[Path]:
    """The published output files under ``path``, in publish order, skipping ``_``/``.`` names."""
    root = Path(path)
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for name in sorted(filenames):
            if not is_hidden(name) and name.endswith(suffix):
                yield Path(dirpath) / name


class StagedFileSink(BaseSink):
    """A sink writing part files under ``config['path']``, staged per run and published at commit."""

    suffix: ClassVar[str] = ""
    writes_files: ClassVar[bool] = True

    @property
    def root(self) -> Path:
        return Path(self.config["path"])

    def staging_dir(self, run_id: str) -> Path:
        return self.root / STAGING / run_id

    def _published_name(self, run_id: str, window_hi: dt.datetime) -> str:
        stamp = window_hi.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        return f"{stamp}-{run_id}"

    def prepare(self, run_id: str, *, full_refresh: bool = False) -> None:
        try:
            self.staging_dir(run_id).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(
                f"sink.path {self.root}: cannot create the output folder ({exc.strerror}); check permissions"
            ) from None

    def publish(self, run_id: str, *, window_hi: dt.datetime, full_refresh: bool = False) -> dict[str, Any]:
        staging = self.staging_dir(run_id)
        parts = sorted(staging.glob(f"part-*{self.suffix}")) if staging.is_dir() else []
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
            fsync_dir(self.root)
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
            if is_hidden(entry.name) or entry.name.endswith(f"-{run_id}"):
                continue
            if not (entry / MANIFEST).is_file():
                continue  # not a run this sink published (a user's file beside the output): never removed
            os.rename(entry, trash / entry.name)
        fsync_dir(self.root)
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
        return any(e.name.endswith(f"-{run_id}") and not is_hidden(e.name) for e in self.root.iterdir())

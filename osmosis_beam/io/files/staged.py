"""Staged file output: write a run into ``PATH/_staging/RUN_ID/``, publish it with one atomic rename.

The base of the file sinks (JSONL, Parquet). Workers write part files into the run's staging folder
(under a temporary ``.part-*.tmp`` name until their bundle finishes); after the runner reports DONE the
launcher writes a ``_manifest.json`` and renames the folder to ``PATH/<window hi>-<run id>/``. Names
starting with ``_`` or ``.`` are never output, and :func:`iter_output_files` skips them.

A full refresh removes only what the sink published itself: folders whose ``_manifest.json`` names this
pipeline and the run in the folder's name. Anything else under ``PATH`` (the user's files, another
pipeline's output sharing the folder) stays. ``PATH`` may not be a URL (object stores are not supported
yet), and may not be, or contain, the osmosis home or the pipeline file (:meth:`StagedFileSink.placement_problems`).

Example::

    class CSVSink(StagedFileSink):
        type_name = "csv"
        suffix = ".csv"
        def write(self, run_id):
            return WriteCSV(str(self.staging_dir(run_id)))
"""
from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

from osmosis_beam.core.errors import SinkError
from osmosis_beam.io.base import BaseSink

__all__ = [
    "StagedFileSink", "iter_output_files", "is_hidden", "fsync_dir", "os_error_text", "read_manifest",
    "STAGING", "MANIFEST",
]

STAGING = "_staging"
MANIFEST = "_manifest.json"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def os_error_text(exc: OSError) -> str:
    """An OSError as text that always names the full path (ENOSPC says which disk is full)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += " (the disk is full; free space there, then run again)"
    where = exc.filename
    return f"{reason}: {os.path.abspath(where)}" if where else reason


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The ``_manifest.json`` of a published folder, or None when it has none (not a sink's output)."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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

    @classmethod
    def check_options(cls, values: Mapping[str, Any]) -> list[str]:
        path = values.get("path")
        if isinstance(path, str) and _URL.match(path):
            scheme = path.split("://", 1)[0]
            return [
                f"path: {path!r} is a {scheme}:// URL; the {cls.type_name} sink writes a local folder and object "
                "stores are not supported yet: give a local path (or a bucket mounted as a folder)"
            ]
        return []

    @classmethod
    def placement_problems(
        cls, values: Mapping[str, Any], *, home: str | os.PathLike | None = None,
        pipeline_file: str | os.PathLike | None = None,
    ) -> list[str]:
        """Why ``values['path']`` may not hold this sink's output: it is, or contains, the home or the pipeline file."""
        path = values.get("path")
        if not isinstance(path, str) or not path or _URL.match(str(path)):
            return []
        root = Path(path).resolve()
        problems = []
        if home is not None:
            home_path = Path(home).resolve()
            if home_path == root or root in home_path.parents:
                problems.append(
                    f"path: {root} {'is' if home_path == root else 'contains'} the osmosis home {home_path} "
                    "(state.db, dead letters); write the output to a folder of its own, e.g. "
                    f"{root / 'data'}"
                )
        if pipeline_file is not None:
            file = Path(pipeline_file).resolve()
            if root in file.parents:
                problems.append(
                    f"path: {root} contains the pipeline file {file}; write the output to a folder of its own, "
                    f"e.g. {file.parent / 'data' / file.stem}"
                )
        return problems

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
                f"sink.path {self.root}: cannot create the output folder ({os_error_text(exc)}); check permissions"
            ) from None

    def publish(self, run_id: str, *, window_hi: dt.datetime, full_refresh: bool = False) -> dict[str, Any]:
        staging = self.staging_dir(run_id)
        parts = sorted(staging.glob(f"part-*{self.suffix}")) if staging.is_dir() else []
        result: dict[str, Any] = {"files": 0, "path": None}
        if parts:
            target = self.root / self._published_name(run_id, window_hi)
            try:
                self.seal(run_id, window_hi)
                os.rename(staging, target)
            except OSError as exc:
                raise SinkError(f"sink.path {self.root}: cannot publish run {run_id} ({os_error_text(exc)})") from None
            fsync_dir(self.root)
            result = {"files": len(parts), "path": str(target)}
        else:
            shutil.rmtree(staging, ignore_errors=True)
        if full_refresh:
            self._remove_older(run_id)
        self._clean_staging_root()
        return result

    def seal(self, run_id: str, window_hi: dt.datetime) -> bool:
        """Write the staged run's manifest (every write that can fail for lack of space), durably.

        After this, publishing is one rename. Returns False when the run staged nothing. Idempotent.
        """
        staging = self.staging_dir(run_id)
        parts = sorted(staging.glob(f"part-*{self.suffix}")) if staging.is_dir() else []
        if not parts:
            return False
        sealed = read_manifest(staging)
        if sealed is not None and sealed.get("run_id") == run_id and sealed.get("files") == [p.name for p in parts]:
            return True
        try:
            self._write_manifest(staging, run_id, window_hi, parts)
        except OSError as exc:
            if not exc.filename:  # a failed write() names no file
                exc.filename = str(staging / MANIFEST)
            raise SinkError(f"sink.path {self.root}: cannot seal run {run_id} ({os_error_text(exc)})") from None
        return True

    def _write_manifest(self, staging: Path, run_id: str, window_hi: dt.datetime, parts: list[Path]) -> None:
        for leftover in staging.glob(".part-*.tmp"):  # from failed bundle attempts
            leftover.unlink(missing_ok=True)
        manifest = {
            "run_id": run_id,
            "pipeline": self.pipeline_id,
            "window_hi": window_hi.isoformat(),
            "files": [p.name for p in parts],
        }
        tmp = staging / f".{MANIFEST}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(manifest, indent=1) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, staging / MANIFEST)
        fsync_dir(staging)

    def own_outputs(self) -> list[Path]:
        """The folders this sink published for this pipeline: their manifest names it and the folder's run."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in sorted(self.root.iterdir()):
            if is_hidden(entry.name) or not entry.is_dir() or entry.is_symlink():
                continue
            manifest = read_manifest(entry)
            if (
                manifest is not None
                and manifest.get("pipeline") == self.pipeline_id
                and isinstance(manifest.get("run_id"), str)
                and entry.name.endswith(f"-{manifest['run_id']}")
            ):
                found.append(entry)
        return found

    def _remove_older(self, run_id: str) -> None:
        """Full refresh: remove this pipeline's earlier published runs, and nothing else."""
        older = [e for e in self.own_outputs() if not e.name.endswith(f"-{run_id}")]
        if not older:
            return
        trash = self.root / f"_replaced-{run_id}"
        trash.mkdir(parents=True, exist_ok=True)
        for entry in older:
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

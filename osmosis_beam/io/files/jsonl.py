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
from pathlib import Path
from typing import Any, Iterator

from osmosis_beam.core.encoding import dumps_bytes
from osmosis_beam.core.options import Option
from osmosis_beam.core.records import DeadLetter, Record
from osmosis_beam.io.files.staged import StagedFileSink
from osmosis_beam.io.files.staged import iter_output_files as _iter_output_files

__all__ = ["JSONLSink", "read_jsonl_dir", "iter_output_files", "typed_line"]

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


class JSONLSink(StagedFileSink):
    """JSON lines files, staged per run and published atomically at commit."""

    type_name = "jsonl"
    suffix = ".jsonl"
    encodings = ("json",)  # JSON lines built by the source (the zero-decode path) are written as they are
    options = (Option("path", "path", required=True, help="the output folder"),)

    def write(self, run_id: str):
        from osmosis_beam.io.files.jsonl_write import WriteJSONL

        return WriteJSONL(str(self.staging_dir(run_id)))


def typed_line(record: Record) -> str | DeadLetter:
    """A record as the jsonl sink encodes it on the typed path, or the dead letter the sink would write.

    For sources that write JSON lines themselves (the zero-decode path) and must encode a rare record as
    the typed path does.
    """
    try:
        return dumps_bytes(record).decode("utf-8")
    except (TypeError, ValueError) as exc:
        return DeadLetter("sink: jsonl", f"cannot encode as JSON: {exc}", repr(record))

"""Secrets on remote workers: replace secret values by ``${VAR}`` references, and prove none is in a job.

Example::

    from osmosis_beam.runners.secrets import prepare_for_workers, find_secrets
    prepare_for_workers("flink", source=connector, sink=sink)   # secrets travel as ${VAR} text
    find_secrets(pipeline, spec.secret_values())                 # [] when the job carries none
"""
from __future__ import annotations

import base64
import binascii
import bz2
import json
import logging
import re
import zlib
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.secrets import (
    Secret,
    redact_url,
    reveal,
)
from osmosis_beam.runners.options import is_remote

__all__ = ['prepare_for_workers', 'find_secrets', 'check_no_secrets']

log = logging.getLogger(__name__)


def prepare_for_workers(runner: str, *, store: str | None = None, **sections: Any) -> None:
    """Make the secrets in each object's ``config`` travel to ``runner``'s workers as ``${VAR}`` text only.

    ``prepare_for_workers("flink", source=connector, sink=sink)`` replaces, in place, every secret
    written with ``${VAR}`` s with a copy that pickles as that text (the launcher keeps the value);
    workers fill the variables in from their own environment. A secret written literally in the
    pipeline file (or a URL whose password is written out) would travel in the job: that is a
    :class:`ConfigError` naming each such option. Nothing changes for the direct runner. With
    ``store`` (``gcp:PROJECT``) a worker reads a variable its environment lacks from that store.
    """
    if not is_remote(runner):
        return
    problems: list[str] = []
    for section, obj in sections.items():
        config = getattr(obj, "config", None)
        if not isinstance(config, dict):
            continue
        pipeline_id = str(getattr(obj, "pipeline_id", "") or "")
        for key in list(config):
            config[key] = _by_reference(config[key], f"{section}.{key}", runner, pipeline_id, store, problems)
    if problems:
        raise ConfigError(problems=problems)


def _by_reference(value: Any, where: str, runner: str, pipeline_id: str, store: str | None, problems: list[str]) -> Any:
    if isinstance(value, Secret):
        if value.env_names and redact_url(value.env) == value.env:
            return value.for_workers(where, store)
        var = re.sub(r"[^A-Z0-9]+", "_", f"{pipeline_id}_{where.rsplit('.', 1)[-1]}".upper()).strip("_")
        what = "holds a password written out" if value.env_names else "is written in the pipeline file"
        problems.append(
            f"{where}: this secret {what}, so it would travel inside the {runner} job; write the secret part as "
            f"${{{var}}}, export {var} where osmosis runs and on the workers, or use the direct runner"
        )
        return value
    if isinstance(value, list):
        return [_by_reference(v, f"{where}[{i}]", runner, pipeline_id, store, problems) for i, v in enumerate(value, 1)]
    if isinstance(value, dict):
        return {k: _by_reference(v, f"{where}.{k}", runner, pipeline_id, store, problems) for k, v in value.items()}
    return value


_B64_RUN = re.compile(rb"[A-Za-z0-9+/]{24,}={0,2}")
_MIN_SECRET = 6  # shorter values would match names and numbers in any job


def _unpacked(blob: bytes, depth: int = 0) -> Iterator[bytes]:
    """``blob`` and everything base64 / zlib / bz2 inside it (how Beam stores pickled functions)."""
    yield blob
    if depth >= 4:
        return
    for match in _B64_RUN.finditer(blob):
        chunk = match.group(0)
        try:
            raw = base64.b64decode(chunk + b"=" * (-len(chunk) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        for unpack in (zlib.decompress, bz2.decompress):
            try:
                inner = unpack(raw)
            except (zlib.error, OSError, ValueError, EOFError):
                continue
            yield from _unpacked(inner, depth + 1)
            break
        else:
            yield from _unpacked(raw, depth + 1)


def find_secrets(job: Any, secrets: Iterable[Any]) -> list[int]:
    """Indexes of the ``secrets`` whose value appears anywhere in ``job``.

    ``job`` is a ``beam.Pipeline`` (its runner API graph with display data and environments, and every
    pipeline option, job name and labels included), a protobuf message, bytes, text, or anything
    JSON can hold (a job description). Base64, zlib and bz2 blobs inside are unpacked, which is how
    Beam stores pickled functions. Values shorter than 6 characters are skipped.
    """
    values = [(i, str(reveal(s)).encode("utf-8")) for i, s in enumerate(secrets) if reveal(s) is not None]
    values = [(i, v) for i, v in values if len(v) >= _MIN_SECRET]
    if not values:
        return []
    if isinstance(job, beam.Pipeline):
        options = job.options.get_all_options(retain_unknown_options=True)
        blobs = [
            job.to_runner_api().SerializeToString(),
            json.dumps(options, default=str).encode("utf-8"),
            " ".join(map(str, getattr(job.options, "_flags", ()))).encode("utf-8"),
        ]
    elif isinstance(job, bytes):
        blobs = [job]
    elif isinstance(job, str):
        blobs = [job.encode("utf-8")]
    elif hasattr(job, "SerializeToString"):
        blobs = [job.SerializeToString()]
    else:
        blobs = [json.dumps(job, default=str).encode("utf-8")]
    found: set[int] = set()
    for blob in blobs:
        for part in _unpacked(blob):
            for i, value in values:
                if i not in found and value in part:
                    found.add(i)
    return sorted(found)


def check_no_secrets(pipeline: beam.Pipeline, secrets: Sequence[Any], runner: str) -> None:
    """Raise :class:`ConfigError` when a secret value is inside the job (see :func:`find_secrets`)."""
    if find_secrets(pipeline, secrets):
        raise ConfigError(
            f"a secret value is inside the {runner} job (a connector, step or sink keeps it, or a runner option "
            "holds it); the job was not submitted. Connectors must keep secrets as Secret objects and reveal "
            "them on the worker (in setup/connect), not copy them into plain attributes"
        )

"""BaseSink: the contract between a sync run and the place records are stored.

A run calls, on the launcher: ``prepare(run_id)``, then builds ``write(run_id)`` into the Beam
pipeline (a PTransform over record batches), and after the runner reports DONE ``publish(run_id, ...)``.
On failure it calls ``abort(run_id)``. ``is_published(run_id)`` lets the next run repair a crash
between publish and the state commit. Sinks must be idempotent or staged: a failed run's window is
read again.

Example::

    class PrintSink(BaseSink):
        type_name = "print"
        def write(self, run_id):
            return beam.ParDo(_PrintFn())
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from osmosis_beam.config import Option
from osmosis_beam.secrets import Secret

if TYPE_CHECKING:  # Beam is imported only where a job is built
    import apache_beam as beam

__all__ = ["BaseSink"]


class BaseSink:
    """The base of every sink. Set ``type_name`` and ``options``; implement ``write``."""

    type_name: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, options: Mapping[str, Any] | None = None, *, pipeline_id: str = "", **kwargs: Any) -> None:
        from osmosis_beam.config import add_check_problems, validate_options
        from osmosis_beam.exceptions import ConfigError

        merged = dict(options or {})
        merged.update(kwargs)
        problems: list[str] = []
        self.config = validate_options(merged, self.options, "sink", problems)
        add_check_problems(type(self), self.config, "sink", problems)
        if problems:
            raise ConfigError(problems=problems)
        self.pipeline_id = pipeline_id

    def use_schema(self, schema: dict[str, Any] | None) -> None:
        """Launcher side, before ``prepare``: the source's schema (``get_schema()``), when it has one."""

    def prepare(self, run_id: str, *, full_refresh: bool = False) -> None:
        """Launcher side, before the job: create staging areas, tables, ...

        ``full_refresh`` says the run rereads the source from the start and should replace the output.
        """

    def write(self, run_id: str) -> beam.PTransform:
        """The PTransform that stores a PCollection of record batches."""
        raise NotImplementedError

    def publish(self, run_id: str, *, window_hi: dt.datetime, full_refresh: bool = False) -> dict[str, Any]:
        """Launcher side, after DONE: make the run's output visible, atomically. Returns details for the log."""
        return {}

    def abort(self, run_id: str) -> None:
        """Launcher side, on failure: remove whatever the run staged."""

    def is_published(self, run_id: str) -> bool:
        """Whether ``publish`` completed for ``run_id`` (for repairing a crash before the commit)."""
        return False

    def display(self) -> dict[str, Any]:
        """The sink's options with secrets shown as ``***`` (for logs and display data)."""
        from osmosis_beam.connectors.base import _plain

        return {k: (repr(v) if isinstance(v, Secret) else _plain(v)) for k, v in self.config.items()}

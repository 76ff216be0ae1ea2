"""The exceptions of osmosis-beam: one root, split by what the caller can do.

Every message names the object at fault and says the fix. Exceptions pickle
(they cross Beam worker boundaries), so each keeps its constructor arguments.

Example::

    from osmosis_beam.core.errors import ConfigError
    try:
        load_pipeline("pipelines/tech_news.yaml")
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)          # "source.url: required"
"""
from __future__ import annotations

__all__ = [
    "OsmosisError",
    "ConfigError",
    "ConnectorError",
    "RetriableConnectorError",
    "FatalConnectorError",
    "SinkError",
    "StateError",
    "LeaseHeldError",
    "ScheduleError",
    "RunError",
    "RecordError",
]


class OsmosisError(Exception):
    """The root of every error osmosis-beam raises on purpose."""

    exit_code = 1

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(message, *args)
        self.message = message

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class ConfigError(OsmosisError):
    """A pipeline, connector or command-line setting is wrong; fix the config.

    ``problems`` lists every problem found, each as ``"path: what is wrong"``.
    """

    exit_code = 2

    def __init__(self, message: str = "", problems: list[str] | None = None, source: str | None = None) -> None:
        self.problems = list(problems or ([message] if message else []))
        self.source = source
        if not message:
            where = f"{source}: " if source else ""
            if len(self.problems) == 1:
                message = f"{where}{self.problems[0]}"
            else:
                message = f"{where}{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message, self.problems, source)
        self.message = message

    def __reduce__(self):
        return (type(self), (self.message, self.problems, self.source))


class ConnectorError(OsmosisError):
    """The source could not be read. ``retriable`` says whether a later run may succeed as is."""

    retriable = False


class RetriableConnectorError(ConnectorError):
    """A passing fault (timeout, 5xx, connection reset): the next run retries the same window."""

    retriable = True


class FatalConnectorError(ConnectorError):
    """A fault that retrying will not fix (bad credentials, missing table, unparseable feed)."""


class SinkError(OsmosisError):
    """The sink could not store or publish the records."""


class StateError(OsmosisError):
    """The state store is unreachable, corrupt, or newer than this version of osmosis-beam."""


class LeaseHeldError(StateError):
    """Another process holds the pipeline's lease; this run was skipped."""

    exit_code = 3


class AlreadyRanError(LeaseHeldError):
    """Another launcher ran the pipeline between this one deciding to run it and taking its lease; skipped."""


class ScheduleError(OsmosisError):
    """A schedule (interval or cron) is invalid."""

    exit_code = 2


class RunError(OsmosisError):
    """A sync run failed; the watermark did not move and the run is marked failed in the history."""


class RecordError(OsmosisError):
    """A record could not be read, processed or written, and the transform has no dead-letter output.

    Raised by the public Beam transforms when their dead letters are not asked for
    (``with_exception_handling()``); inside ``osmosis run`` such records go to the dead letters instead.
    """

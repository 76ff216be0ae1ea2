"""The registry of connector, step and sink types; plug-ins come in through entry points.

Example::

    from osmosis_beam.registry import default_registry
    registry = default_registry()
    registry.connector("rss")             # the RSS connector class
    registry.connector("postgress")       # ConfigError: unknown connector 'postgress' (did you mean 'postgres'?); known: ...

A third-party package registers a type with an entry point in one of the groups
``osmosis_beam.connectors``, ``osmosis_beam.steps`` or ``osmosis_beam.sinks``::

    entry_points={"osmosis_beam.connectors": ["mysource = mypkg.connector:MySource"]}

A type may also be named by import path in a pipeline (``type: mypkg.connector:MySource``).
"""
from __future__ import annotations

import importlib
import logging
import threading
import re
from importlib import metadata
from typing import Any

from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.options import suggest

__all__ = ["ConnectorRegistry", "default_registry", "ENTRY_POINT_GROUPS", "KINDS"]

log = logging.getLogger(__name__)
KINDS = ("connector", "step", "sink")
ENTRY_POINT_GROUPS = {
    "connector": "osmosis_beam.connectors",
    "step": "osmosis_beam.steps",
    "sink": "osmosis_beam.sinks",
}

# Built-in types, by import path so that a connector's driver is imported only when it is used.
_BUILTINS: dict[str, dict[str, str]] = {
    "connector": {
        "rss": "osmosis_beam.io.rss.source:RSSConnector",
        "postgres": "osmosis_beam.io.postgres.source:PostgresConnector",
        "mongodb": "osmosis_beam.io.mongodb.source:MongoDBConnector",
        "web": "osmosis_beam.io.web.source:WebConnector",
    },
    "sink": {
        "jsonl": "osmosis_beam.io.files.jsonl:JSONLSink",
        "postgres": "osmosis_beam.io.postgres.sink:PostgresSink",
        "mongodb": "osmosis_beam.io.mongodb.sink:MongoDBSink",
        "parquet": "osmosis_beam.io.files.parquet:ParquetSink",
    },
    "step": {
        "filter": "osmosis_beam.steps.expressions:FilterStep",
        "map": "osmosis_beam.steps.expressions:MapStep",
        "select": "osmosis_beam.steps.fields:SelectStep",
        "drop": "osmosis_beam.steps.fields:DropStep",
        "rename": "osmosis_beam.steps.fields:RenameStep",
        "python": "osmosis_beam.steps.python:PythonStep",
        "cast": "osmosis_beam.steps.cast:CastStep",
        "dedupe": "osmosis_beam.steps.dedupe:DedupeStep",
        "flatten": "osmosis_beam.steps.reshape:FlattenStep",
        "explode": "osmosis_beam.steps.reshape:ExplodeStep",
        "html_to_text": "osmosis_beam.steps.text:HtmlToTextStep",
    },
}


def _load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class ConnectorRegistry:
    """Connector, step and sink types by name.

    ``register(kind, name, cls_or_import_path)`` adds a type; ``lookup(kind, name)`` finds one, or
    raises :class:`ConfigError` listing the known names.
    """

    def __init__(self, *, builtins: bool = True, entry_points: bool = True) -> None:
        self._types: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self._lock = threading.Lock()
        if builtins:
            for kind, entries in _BUILTINS.items():
                self._types[kind].update(entries)
        if entry_points:
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        for kind, group in ENTRY_POINT_GROUPS.items():
            try:
                found = metadata.entry_points(group=group)
            except Exception as exc:  # pragma: no cover - broken metadata in the environment
                log.warning("could not read entry points %s: %s", group, exc)
                continue
            for ep in found:
                self._types[kind].setdefault(ep.name, ep.value)

    def register(self, kind: str, name: str, target: Any) -> None:
        """Register ``target`` (a class, or ``"module:Class"``) as the ``kind`` type called ``name``."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
        with self._lock:
            self._types[kind][name] = target

    def names(self, kind: str) -> list[str]:
        return sorted(self._types[kind])

    def lookup(self, kind: str, name: str) -> Any:
        """The class registered as ``name``, or one named by import path ``module:Class``."""
        table = self._types[kind]
        target = table.get(name)
        if target is None and ":" in name:
            target = name
        if target is None:
            known = ", ".join(sorted(table)) or "none"
            raise ConfigError(f"unknown {kind} {name!r}{suggest(name, list(table))}; known: {known}")
        if isinstance(target, str):
            try:
                loaded = _load(target)
            except ImportError as exc:
                raise ConfigError(
                    f"{kind} {name!r} cannot be loaded: {exc}; install the package that provides it"
                ) from None
            except AttributeError:
                raise ConfigError(f"{kind} {name!r}: {target!r} does not exist") from None
            with self._lock:
                if name in table:
                    table[name] = loaded
            target = loaded
        return target

    def connector(self, name: str) -> Any:
        return self.lookup("connector", name)

    def step(self, name: str) -> Any:
        return self.lookup("step", name)

    def sink(self, name: str) -> Any:
        return self.lookup("sink", name)

    def describe(self) -> dict[str, list[dict[str, str]]]:
        """Every registered type with its one-line description (``osmosis connectors``)."""
        out: dict[str, list[dict[str, str]]] = {}
        for kind in KINDS:
            rows = []
            for name in self.names(kind):
                try:
                    cls = self.lookup(kind, name)
                    doc = (cls.__doc__ or "").strip().splitlines()
                    rows.append({"name": name, "description": plain_text(doc[0]) if doc else ""})
                except ConfigError as exc:
                    rows.append({"name": name, "description": f"unavailable: {exc.message}"})
            out[kind + "s"] = rows
        return out


_RST_LITERAL = re.compile(r"``(.+?)``")
_RST_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def plain_text(text: str) -> str:
    """A docstring line for a terminal: RST literals (````x````) and roles (``:class:`x```) as plain text."""
    text = _RST_ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return _RST_LITERAL.sub(r"\1", text)


_default: ConnectorRegistry | None = None


def default_registry() -> ConnectorRegistry:
    """The process-wide registry: built-ins plus installed plug-ins."""
    global _default
    if _default is None:
        _default = ConnectorRegistry()
    return _default

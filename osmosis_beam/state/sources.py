"""DataSourceManager: the sources a home knows, persisted in the state store with secrets redacted.

A source is saved as written in the pipeline YAML: ``${ENV}`` references stay references, and any
literal secret (a secret option, a password in a URL) is replaced by ``***`` before it is stored.

Example::

    from osmosis_beam.state.sources import DataSourceManager
    manager = DataSourceManager(store)
    manager.save(spec)                 # from a PipelineSpec
    manager.list()                     # [SourceRecord(id='tech_news', type='rss', config={...})]
"""
from __future__ import annotations

from typing import Any, Mapping

from osmosis_beam.config import PipelineSpec
from osmosis_beam.core.errors import ConfigError
from osmosis_beam.core.secrets import REDACTED, is_secret_header, is_secret_name, redact_url
from osmosis_beam.state.store import SourceRecord, StateStore

__all__ = ["DataSourceManager", "redact_config"]


def redact_config(config: Mapping[str, Any], secret_names: set[str] = frozenset()) -> dict[str, Any]:
    """A copy of ``config`` safe to store or show: secret values as ``***``, URL passwords redacted.

    A value that is a pure ``${ENV}`` reference is kept: it names a secret without holding it.
    """

    def clean(key: str, value: Any) -> Any:
        if isinstance(value, Mapping):
            if key == "headers":  # HTTP headers: secret by the header rule (Authorization, X-Auth*, *-Api-Key)
                return {k: REDACTED if is_secret_header(str(k)) and not _is_env_ref(str(v)) else clean(str(k), v)
                        for k, v in value.items()}
            return {k: clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(key, v) for v in value]
        if isinstance(value, str):
            if (key in secret_names or is_secret_name(key)) and not _is_env_ref(value):
                return REDACTED
            return redact_url(value)
        if key in secret_names or is_secret_name(key):
            return REDACTED
        return value

    return {k: clean(str(k), v) for k, v in config.items()}


def _is_env_ref(value: str) -> bool:
    import re

    return bool(re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", value.strip()))


class DataSourceManager:
    """Sources over a :class:`StateStore` (the seed's DataSourceManager)."""

    def __init__(self, store: StateStore, registry=None) -> None:
        self.store = store
        self._registry = registry

    def save(self, spec: PipelineSpec) -> SourceRecord:
        """Persist ``spec``'s source under the pipeline's id (secrets redacted)."""
        from osmosis_beam.registry import default_registry

        raw = dict(spec.raw.get("source") or {})
        try:
            cls = (self._registry or default_registry()).connector(spec.source.type)
            secret_names = {o.name for o in getattr(cls, "options", ()) if o.secret}
        except ConfigError:
            secret_names = set()
        config = redact_config(raw, secret_names)
        self.store.put_source(spec.id, spec.source.type, config, spec.path)
        return self.store.get_source(spec.id)

    def get(self, source_id: str) -> SourceRecord:
        found = self.store.get_source(source_id)
        if found is None:
            known = ", ".join(s.id for s in self.store.list_sources()) or "none"
            raise ConfigError(f"unknown source {source_id!r}; known: {known}")
        return found

    def list(self) -> list[SourceRecord]:
        return self.store.list_sources()

    def remove(self, source_id: str) -> None:
        if not self.store.remove_source(source_id):
            known = ", ".join(s.id for s in self.store.list_sources()) or "none"
            raise ConfigError(f"unknown source {source_id!r}; known: {known}")

"""osmosis-beam: incremental data ingestion on Apache Beam.

Example::

    from osmosis_beam import load_pipeline, open_store, SyncRunner
    run = SyncRunner(load_pipeline("pipelines/tech_news.yaml"), open_store(home=".osmosis")).run()
    print(run.summary())
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "DataConnector": "osmosis_beam.types",
    "TransformationStep": "osmosis_beam.types",
    "SyncWindow": "osmosis_beam.types",
    "SyncJob": "osmosis_beam.types",
    "SyncRun": "osmosis_beam.types",
    "BaseConnector": "osmosis_beam.connectors.base",
    "ReadWindow": "osmosis_beam.connectors.base",
    "DeadLetter": "osmosis_beam.connectors.base",
    "BaseSink": "osmosis_beam.sinks.base",
    "Pipeline": "osmosis_beam.pipeline.pipeline",
    "ConnectorRegistry": "osmosis_beam.registry",
    "default_registry": "osmosis_beam.registry",
    "DataSourceManager": "osmosis_beam.sources",
    "PipelineSpec": "osmosis_beam.config",
    "load_pipeline": "osmosis_beam.config",
    "open_store": "osmosis_beam.state.store",
    "StateStore": "osmosis_beam.state.store",
    "SyncRunner": "osmosis_beam.sync",
    "OsmosisError": "osmosis_beam.exceptions",
    "ConfigError": "osmosis_beam.exceptions",
    "ConnectorError": "osmosis_beam.exceptions",
    "StateError": "osmosis_beam.exceptions",
    "ScheduleError": "osmosis_beam.exceptions",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    # Lazy so that `osmosis --version` and light imports do not pay for importing Beam.
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'osmosis_beam' has no attribute {name!r}")

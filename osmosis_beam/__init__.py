"""osmosis-beam: incremental data ingestion as Apache Beam transforms, with a scheduler and a state store.

In a Beam pipeline of your own::

    import apache_beam as beam
    from osmosis_beam import ReadFromPostgres, Filter, WriteToPostgres

    with beam.Pipeline() as p:
        (p | ReadFromPostgres(dsn=SRC, table="orders", cursor_field="updated_at", since="2024-06-01T00:00:00Z")
           | Filter("total > 100")
           | WriteToPostgres(dsn=DST, table="big_orders", key=["id"]))

Or as a scheduled sync with state, leases and exactly-once windows::

    from osmosis_beam import load_pipeline, open_store, SyncRunner
    run = SyncRunner(load_pipeline("pipelines/tech_news.yaml"), open_store(home=".osmosis")).run()
    print(run.summary())

Importing this package does not import Beam: every name loads on first use.
"""
from __future__ import annotations

from osmosis_beam.core.lazy import lazy_exports

__version__ = "0.2.0"

_NAMES = {
    # Beam IO
    **{name: "osmosis_beam.io" for name in (
        "ReadFromPostgres", "ReadFromMongoDB", "ReadFromWeb", "ReadFromRSS", "ReadFromSource",
        "WriteToJsonl", "WriteToParquet", "WriteToPostgres", "WriteToMongoDB", "WriteToSink", "WriteResult",
        "ReadWindow", "BaseConnector", "BaseSink",
    )},
    # steps
    **{name: "osmosis_beam.steps" for name in (
        "Filter", "MapFields", "Select", "Drop", "Rename", "Cast", "FlattenFields", "Explode", "Dedupe",
        "HtmlToText", "CallPython", "StepTransform", "StepChain", "Pipeline",
    )},
    # the seed's models and the sync machinery
    "DataConnector": "osmosis_beam.core.models",
    "TransformationStep": "osmosis_beam.core.models",
    "SyncJob": "osmosis_beam.core.models",
    "SyncRun": "osmosis_beam.core.models",
    "SyncWindow": "osmosis_beam.core.window",
    "DeadLetter": "osmosis_beam.core.records",
    "ConnectorRegistry": "osmosis_beam.registry",
    "default_registry": "osmosis_beam.registry",
    "DataSourceManager": "osmosis_beam.state.sources",
    "PipelineSpec": "osmosis_beam.config",
    "load_pipeline": "osmosis_beam.config",
    "open_store": "osmosis_beam.state.factory",
    "StateStore": "osmosis_beam.state.store",
    "SyncRunner": "osmosis_beam.sync.runner",
    # errors
    **{name: "osmosis_beam.core.errors" for name in (
        "OsmosisError", "ConfigError", "ConnectorError", "SinkError", "StateError", "ScheduleError", "RunError",
        "RecordError",
    )},
}
__all__ = ["__version__", *_NAMES]
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)

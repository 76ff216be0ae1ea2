"""Import Apache Beam without the parts the chosen runner never uses (the fixed cost of a job).

``import apache_beam`` pulls in every optional IO it finds installed: the GCP clients (BigQuery, Pub/Sub,
GCS: ~300 modules), the Hadoop, S3 and Azure file systems, and pandas for Beam's DataFrame type hints.
On this machine that is about half of Beam's import time, and a sync run on the DirectRunner, Flink
or Spark needs none of it. :func:`import_beam` imports Beam with those modules held back (Beam
imports each of them under ``try/except ImportError``), then lets them be imported normally again, so
a step that imports pandas still gets it, and a later Dataflow job in the same process (a launcher running
pipelines on several runners) reloads the few Beam modules that looked for them (:data:`RELOAD_FOR_DATAFLOW`).

Example::

    from osmosis_beam.runners.lean import import_beam
    import_beam("direct")      # then build the pipeline as usual
"""
from __future__ import annotations

import importlib
import sys

__all__ = ["import_beam", "HELD_BACK", "RELOAD_FOR_DATAFLOW"]

#: Modules that ``import apache_beam`` imports only if it can, held back for every runner but Dataflow.
HELD_BACK = (
    "pandas",  # apache_beam.typehints: DataFrame batch types, unused by osmosis jobs
    "apache_beam.io.gcp.bigquery",  # apache_beam.io: BigQuery, Pub/Sub, GCS IO and cross-language IO
    "apache_beam.io.gcp.gcsfilesystem",
    "apache_beam.io.hadoopfilesystem",
    "apache_beam.io.aws.s3filesystem",
    "apache_beam.io.azure.blobstoragefilesystem",
    "apitools",  # apache_beam.utils.retry and the Dataflow API client: only Dataflow's HTTP errors need them
    "google.api_core",
)


#: The Beam modules that import the held-back ones under ``try``: reloaded (in place) before a Dataflow job.
RELOAD_FOR_DATAFLOW = (
    "apache_beam.utils.retry",
    "apache_beam.runners.dataflow.internal.clients.dataflow",
    "apache_beam.io",
)

_lean = False  # Beam was imported with parts held back


def import_beam(runner: str) -> None:
    """Import ``apache_beam`` for a job on ``runner`` (once; for Dataflow, complete what was held back)."""
    global _lean
    if "apache_beam" in sys.modules:
        if runner == "dataflow" and _lean:
            _lean = False
            for name in RELOAD_FOR_DATAFLOW:
                module = sys.modules.get(name)
                if module is not None:
                    importlib.reload(module)  # in place: modules holding a reference see the new names
        return
    held = [] if runner == "dataflow" else [name for name in HELD_BACK if name not in sys.modules]
    _lean = bool(held)
    for name in held:
        sys.modules[name] = None  # makes `import name` raise ImportError, which Beam skips
    try:
        import apache_beam  # noqa: F401
    finally:
        for name in held:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]

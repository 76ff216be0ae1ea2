"""Runners: where a pipeline runs (direct, portable, flink, spark, prism, dataflow), and what remote workers need.

- :mod:`~osmosis_beam.runners.options`: runner choice and Beam pipeline options, checked all at once;
- :mod:`~osmosis_beam.runners.packaging`: the osmosis-beam package staged for workers;
- :mod:`~osmosis_beam.runners.secrets`: secrets as ``${VAR}`` references, and the scan that proves a job has none;
- :mod:`~osmosis_beam.runners.dataflow`: Dataflow's checks and dry-run job description;
- :mod:`~osmosis_beam.runners.flink`: cancelling a job through Flink's REST API.

Example::

    from osmosis_beam.runners.options import make_pipeline
    p = make_pipeline("portable", {"job_endpoint": "localhost:8099"})
"""
from __future__ import annotations

from osmosis_beam.core.lazy import lazy_exports

_OPTIONS = (
    "RUNNERS", "REMOTE_RUNNERS", "FLINK_VERSIONS", "make_pipeline", "pipeline_options", "in_process_pipeline",
    "is_remote", "is_dry_run", "job_timeout", "secret_store", "job_name", "job_labels", "direct_read_threads",
    "thread_direct_reads",
)
_NAMES = {
    **{name: "osmosis_beam.runners.options" for name in _OPTIONS},
    "package_setup_file": "osmosis_beam.runners.packaging",
    "prepare_for_workers": "osmosis_beam.runners.secrets",
    "find_secrets": "osmosis_beam.runners.secrets",
    "check_no_secrets": "osmosis_beam.runners.secrets",
    "describe_dataflow_job": "osmosis_beam.runners.dataflow",
    "cancel_flink_job": "osmosis_beam.runners.flink",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)

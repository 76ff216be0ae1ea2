"""Dataflow specifics: the option checks, and the description of a job a dry run built.

Example::

    from osmosis_beam.runners.dataflow import describe_dataflow_job
    describe_dataflow_job(result)      # {"job": {...}, "staged": [...]} for a --dry_run=True result
"""
from __future__ import annotations

import logging
import os
from typing import Any

from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
)

__all__ = ['check_dataflow_options', 'describe_dataflow_job']

log = logging.getLogger(__name__)


def check_dataflow_options(parsed: PipelineOptions, problems: list[str]) -> None:
    gcp = parsed.view_as(GoogleCloudOptions)
    hints = {
        "project": "your Google Cloud project id (--project=my-project)",
        "region": "the region to run in (--region=europe-west1)",
        "temp_location": "a gs:// folder for temporary and staged files (--temp_location=gs://my-bucket/tmp)",
    }
    for option, hint in hints.items():
        if not getattr(gcp, option):
            problems.append(f"{option}: required, {hint}")
    if gcp.temp_location and not gcp.temp_location.startswith("gs://"):
        problems.append(f"temp_location: must be a gs:// path, got {gcp.temp_location!r}")
    if gcp.template_location:
        problems.append("template_location: osmosis submits each run and waits for it; templates are not supported")
    try:
        import apache_beam.runners.dataflow.internal.apiclient  # noqa: F401
    except ImportError:
        problems.append('the Google Cloud libraries are missing: pip install "osmosis-beam[gcp]"')


def describe_dataflow_job(result: Any) -> dict[str, Any] | None:
    """The Dataflow job a ``--dry_run=True`` built, as the request would send it, or None.

    ``{"job": <the Job message with its environment, options and staged packages>, "pipeline": <the
    runner API graph>, "staged": [{"name": "workflow.tar.gz", "path": <local file>}, ...]}``.
    """
    job = getattr(result, "job", None)
    if job is None or not hasattr(job, "proto_pipeline"):
        return None
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.runners.dataflow.internal import apiclient
    from google.protobuf import json_format

    staged = []
    for env in job.proto_pipeline.components.environments.values():
        for dep in env.dependencies:
            if dep.type_urn != common_urns.artifact_types.FILE.urn:
                continue
            path = beam_runner_api_pb2.ArtifactFilePayload.FromString(dep.type_payload).path
            name = os.path.basename(path)
            if dep.role_urn == common_urns.artifact_roles.STAGING_TO.urn:
                name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload).staged_name
            staged.append({"name": name, "path": path})
    staging = job.google_cloud_options.staging_location
    environment = apiclient.Environment(
        packages=[s["name"] for s in staged],
        options=job.options,
        environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline_staged_url=FileSystems.join(staging, "pipeline.pb"),
        proto_pipeline=job.proto_pipeline,
    )
    job.proto.environment = environment.proto
    return {
        "job": _message_dict(job.proto),
        "pipeline": json_format.MessageToDict(job.proto_pipeline),
        "staged": staged,
    }


def _message_dict(message) -> dict:
    """The Dataflow job message as a dict: apitools messages (Beam 2.62) or proto-plus ones (later Beams)."""
    pb = getattr(message, "_pb", None)
    if pb is not None:
        from google.protobuf import json_format

        return json_format.MessageToDict(pb)
    from apitools.base.py import encoding

    return encoding.MessageToDict(message)

"""Flink specifics: cancelling a job through Flink's own REST API.

Beam's Flink job server only stops its own client thread when asked to cancel a job; the job keeps
running on the cluster (it fails later once LOOPBACK workers are gone, or runs on with EXTERNAL ones).
So a cancelled osmosis run also asks the JobManager itself to cancel the job (``PATCH /jobs/<id>``).

Example::

    from osmosis_beam.runners.flink import cancel_flink_job
    cancel_flink_job({"flink_master": "localhost:8081"}, [], "osmosis-orders-r1_2f1c...")  # ["a1b2..."]
"""
from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from typing import Any, Mapping, Sequence

from apache_beam.options.pipeline_options import FlinkRunnerOptions

from osmosis_beam.runners.options import pipeline_options

__all__ = ["cancel_flink_job", "flink_rest_url", "FLINK_LIVE_STATES"]

# Flink job states in which a job still holds slots (a cancel request can stop it).
FLINK_LIVE_STATES = ("INITIALIZING", "CREATED", "RUNNING", "RESTARTING", "FAILING", "RECONCILING")
_BEAM_JOB_SUFFIX = re.compile(r"_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def flink_rest_url(options: Mapping[str, Any] | None, beam_args: Sequence[str] = ()) -> str | None:
    """``http://host:port`` of the JobManager's REST API from ``flink_master``; None for ``[local]``/``[auto]``."""
    master = (pipeline_options("flink", options, beam_args).view_as(FlinkRunnerOptions).flink_master or "").strip()
    if not master or master.startswith("["):
        return None
    url = master if "://" in master else f"http://{master}"
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def cancel_flink_job(options: Mapping[str, Any] | None, beam_args: Sequence[str], beam_job_id: str,
                     timeout: float = 10) -> list[str]:
    """Cancel, through Flink's REST API, the Flink job Beam's job server runs for ``beam_job_id``.

    The Flink job carries the Beam job's name (``beam_job_id`` without its ``_<uuid>`` suffix). Returns
    the ids of the Flink jobs asked to cancel (none when ``flink_master`` names no cluster); raises
    OSError when the REST API cannot be reached within ``timeout`` seconds.
    """
    base = flink_rest_url(options, beam_args)
    if base is None:
        return []
    name = _BEAM_JOB_SUFFIX.sub("", beam_job_id)
    with urllib.request.urlopen(f"{base}/jobs/overview", timeout=timeout) as resp:
        jobs = json.loads(resp.read())["jobs"]
    cancelled = []
    for job in jobs:
        if job.get("name") == name and job.get("state") in FLINK_LIVE_STATES:
            request = urllib.request.Request(f"{base}/jobs/{job['jid']}?mode=cancel", method="PATCH")
            urllib.request.urlopen(request, timeout=timeout).close()
            cancelled.append(job["jid"])
    return cancelled

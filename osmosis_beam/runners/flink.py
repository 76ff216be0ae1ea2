"""Flink specifics: cancelling a job, and reading a running job's counters, through Flink's own REST API.

Beam's Flink job server only stops its own client thread when asked to cancel a job; the job keeps
running on the cluster (it fails later once LOOPBACK workers are gone, or runs on with EXTERNAL ones).
So a cancelled osmosis run also asks the JobManager itself to cancel the job (``PATCH /jobs/<id>``).

Nor does the job server report a job's metrics before the job ends. Beam's Flink runner keeps them in a
Flink accumulator (``__metricscontainers``, the SDK's monitoring infos as JSON), which each TaskManager
reports to the JobManager while the job runs; ``GET /jobs/<id>/accumulators`` returns it. A bundle's
counters arrive when the bundle finishes (in batch mode one bundle per task: each read subtask's counts
arrive when that subtask is done), so a running job's counts grow in steps.

Example::

    from osmosis_beam.runners.flink import cancel_flink_job, flink_job_counters
    cancel_flink_job({"flink_master": "localhost:8081"}, [], "osmosis-orders-r1_2f1c...")  # ["a1b2..."]
    flink_job_counters("http://localhost:8081", "a1b2...", "osmosis")  # {"records_read": 30, ...}
"""
from __future__ import annotations

import base64
import json
import re
import urllib.parse
import urllib.request
from typing import Any, Mapping, Sequence

from apache_beam.options.pipeline_options import FlinkRunnerOptions

from osmosis_beam.runners.options import pipeline_options

__all__ = ["cancel_flink_job", "flink_jobs_named", "flink_job_counters", "flink_rest_url", "FLINK_LIVE_STATES"]

# Flink job states in which a job still holds slots (a cancel request can stop it).
FLINK_LIVE_STATES = ("INITIALIZING", "CREATED", "RUNNING", "RESTARTING", "FAILING", "RECONCILING")
_BEAM_JOB_SUFFIX = re.compile(r"_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_METRICS_ACCUMULATOR = "__metricscontainers"  # Beam's FlinkMetricContainer.ACCUMULATOR_NAME
_USER_COUNTER = "beam:metric:user:sum_int64:v1"


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
    cancelled = []
    for job in flink_jobs_named(base, beam_job_id, timeout):
        if job.get("state") in FLINK_LIVE_STATES:
            request = urllib.request.Request(f"{base}/jobs/{job['jid']}?mode=cancel", method="PATCH")
            urllib.request.urlopen(request, timeout=timeout).close()
            cancelled.append(job["jid"])
    return cancelled


def _get(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def flink_jobs_named(base: str, beam_job_id: str, timeout: float = 10) -> list[dict[str, Any]]:
    """The Flink jobs (``/jobs/overview`` entries: jid, name, state, ...) Beam's job server runs for ``beam_job_id``.

    The Flink job carries the Beam job's name: ``beam_job_id`` without its ``_<uuid>`` suffix.
    """
    name = _BEAM_JOB_SUFFIX.sub("", beam_job_id)
    return [job for job in _get(f"{base}/jobs/overview", timeout)["jobs"] if job.get("name") == name]


def flink_job_counters(base: str, flink_job_id: str, namespace: str, timeout: float = 5) -> dict[str, int]:
    """The Beam user counters of ``namespace`` that Flink job ``flink_job_id`` has reported so far, by name.

    Summed over steps from the attempted values in Beam's metrics accumulator; empty while no bundle
    has finished. Raises OSError (or ValueError for an answer it cannot read) within ``timeout`` seconds.
    """
    answer = _get(f"{base}/jobs/{flink_job_id}/accumulators?includeSerializedValue=false", timeout)
    counts: dict[str, int] = {}
    for accumulator in answer.get("user-task-accumulators", ()):
        if accumulator.get("name") != _METRICS_ACCUMULATOR:
            continue
        infos = json.loads(accumulator.get("value") or "{}").get("metrics", {}).get("attempted", ())
        for info in infos:
            labels = info.get("labels", {})
            if info.get("urn") != _USER_COUNTER or labels.get("NAMESPACE") != namespace:
                continue
            name = labels.get("NAME", "")
            counts[name] = counts.get(name, 0) + _varint(base64.b64decode(info.get("payload", "")))
    return counts


def _varint(data: bytes) -> int:
    """A ``beam:metrics:sum_int64:v1`` payload: one varint (a two's complement int64)."""
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return value - (1 << 64) if value >= 1 << 63 else value

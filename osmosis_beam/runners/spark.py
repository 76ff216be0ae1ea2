"""Spark specifics: reading a running job's counters from the Spark driver's REST API.

Beam's Spark job server is the Spark driver of the jobs it runs, and does not report a job's metrics before
the job ends. Beam's Spark runner keeps them in a named accumulator (``Beam.Metrics``) that executors
update as each task (one bundle) finishes; the driver's web UI shows it per stage in its REST API
(``GET /api/v1/applications/<app>/stages``, ``accumulatorUpdates``), as the text of Beam's metric results.
The UI listens on port 4040 of the job server's host unless ``spark.ui.port`` says otherwise (and is off
under ``spark.ui.enabled=false``); the runner option ``spark_ui`` names it.

Example::

    from osmosis_beam.runners.spark import spark_job_counters, spark_ui_url
    base = spark_ui_url({"job_endpoint": "spark-driver:8099"})   # "http://spark-driver:4040"
    spark_job_counters(base, "osmosis-orders-r1_2f1c...", "osmosis")  # {"records_read": 30, ...}
"""
from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from typing import Any, Mapping, Sequence

from apache_beam.options.pipeline_options import PortableOptions

from osmosis_beam.runners.options import pipeline_options, spark_ui_option

__all__ = ["spark_job_counters", "spark_ui_url", "SPARK_UI_PORT"]

SPARK_UI_PORT = 4040  # Spark's default spark.ui.port
_ACCUMULATOR = "Beam.Metrics"  # Beam's MetricsAccumulator.ACCUMULATOR_NAME
# One user counter in the accumulator's text: "...:beam:metric:user:sum_int64:v1 {NAMESPACE=n, NAME=m, PTRANSFORM=t}: 30"
_USER_COUNTER = re.compile(r"beam:metric:user:sum_int64:v1 \{([^{}]*)\}: (-?\d+)")


def spark_ui_url(options: Mapping[str, Any] | None, beam_args: Sequence[str] = ()) -> str | None:
    """``http://host:port`` of the Spark driver's web UI: the ``spark_ui`` runner option, else port 4040 of
    the ``job_endpoint`` host (Beam's Spark job server is the driver); None when neither is known."""
    given = spark_ui_option(options, beam_args)
    if given:
        return given.rstrip("/") if "://" in given else f"http://{given}"
    endpoint = (pipeline_options("spark", options, beam_args).view_as(PortableOptions).job_endpoint or "").strip()
    if not endpoint or endpoint == "embed":
        return None
    host = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").hostname
    return f"http://{host}:{SPARK_UI_PORT}" if host else None


def _get(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def spark_job_counters(base: str, beam_job_id: str, namespace: str, timeout: float = 5) -> dict[str, int]:
    """The Beam user counters of ``namespace`` that the Spark application of Beam job ``beam_job_id`` (the
    application's name) has reported to the driver at ``base`` so far.

    Each stage shows the accumulator's value when one of its tasks last finished, so a counter's value is
    its largest over the stages. Empty while no task has finished. Raises OSError (or ValueError for an
    answer it cannot read) within ``timeout`` seconds per request.
    """
    counts: dict[str, int] = {}
    for app in _get(f"{base}/api/v1/applications?status=running", timeout):
        if app.get("name") != beam_job_id:
            continue  # another job's driver on that port
        stages = _get(f"{base}/api/v1/applications/{urllib.parse.quote(app['id'])}/stages", timeout)
        for stage in stages:
            for accumulator in stage.get("accumulatorUpdates", ()):
                if accumulator.get("name") != _ACCUMULATOR:
                    continue
                for name, value in parse_counters(str(accumulator.get("value", "")), namespace).items():
                    counts[name] = max(counts.get(name, 0), value)
    return counts


def parse_counters(text: str, namespace: str) -> dict[str, int]:
    """The user counters of ``namespace`` in the text of Beam's metric results, summed over steps."""
    counts: dict[str, int] = {}
    for labels_text, value in _USER_COUNTER.findall(text):
        labels = dict(part.split("=", 1) for part in labels_text.split(", ") if "=" in part)
        if labels.get("NAMESPACE") == namespace and labels.get("NAME"):
            counts[labels["NAME"]] = counts.get(labels["NAME"], 0) + int(value)
    return counts

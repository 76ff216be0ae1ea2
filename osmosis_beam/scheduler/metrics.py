"""Prometheus metrics of the launcher (``osmosis launch --metrics-port P``), with prometheus-client.

Counters and the duration histogram are fed by the launcher as runs finish; freshness (now minus the
committed watermark), lease holders and paused jobs are read from the state store at scrape time, so
they are right even for runs made by another launcher or by ``osmosis run``.

Example::

    from osmosis_beam.scheduler.metrics import LauncherMetrics
    metrics = LauncherMetrics(store, ["tech_news"])
    server = metrics.serve(9464)              # http://127.0.0.1:9464/metrics
    SyncScheduler(specs, store, metrics=metrics).run()
    server.shutdown()
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Iterable, Sequence

from osmosis_beam.core.errors import ConfigError, OsmosisError
from osmosis_beam.core.timefmt import utcnow
from osmosis_beam.state.store import StateStore, holder_is_dead

__all__ = ["LauncherMetrics", "DURATION_BUCKETS"]

log = logging.getLogger(__name__)
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


def _prometheus():
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError(
            "--metrics-port needs the prometheus-client package: pip install 'osmosis-beam[metrics]'"
        ) from None
    return prometheus_client


class _StoreCollector:
    """Gauges computed from the state store at each scrape."""

    def __init__(self, store: StateStore, pipeline_ids: Sequence[str]) -> None:
        self.store = store
        self.pipeline_ids = list(pipeline_ids)

    def describe(self) -> Iterable[Any]:
        return []  # computed at scrape time: nothing to check at registration

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        freshness = GaugeMetricFamily(
            "osmosis_freshness_seconds", "Now minus the committed watermark of the pipeline", labels=["pipeline"])
        watermark = GaugeMetricFamily(
            "osmosis_watermark_timestamp_seconds", "The committed watermark (Unix time)", labels=["pipeline"])
        leases = GaugeMetricFamily(
            "osmosis_lease_held", "1 while the holder holds the pipeline's lease", labels=["pipeline", "holder"])
        paused = GaugeMetricFamily("osmosis_job_paused", "1 when the sync job is paused", labels=["pipeline"])
        up = GaugeMetricFamily("osmosis_state_store_up", "1 when the state store answered this scrape")
        now = utcnow()
        try:
            paused_ids = self.store.paused_pipelines()
            for pid in self.pipeline_ids:
                value = self.store.get_watermark(pid).value
                if hasattr(value, "timestamp"):
                    freshness.add_metric([pid], (now - value).total_seconds())
                    watermark.add_metric([pid], value.timestamp())
                lease = self.store.get_lease(pid)
                if lease is not None and lease.expires_at > now and not holder_is_dead(lease.holder):
                    leases.add_metric([pid, lease.holder], 1)
                paused.add_metric([pid], 1 if pid in paused_ids else 0)
            up.add_metric([], 1)
        except OsmosisError as exc:
            log.warning("metrics: could not read the state store: %s", exc)
            up.add_metric([], 0)
        return [freshness, watermark, leases, paused, up]


class LauncherMetrics:
    """The launcher's metrics in their own registry (nothing global, so several launchers in tests are fine)."""

    def __init__(self, store: StateStore, pipeline_ids: Sequence[str]) -> None:
        prom = _prometheus()
        self.registry = prom.CollectorRegistry()
        self.runs = prom.Counter("osmosis_runs", "Finished runs by outcome", ["pipeline", "status"], registry=self.registry)
        self.read = prom.Counter("osmosis_records_read", "Records read", ["pipeline"], registry=self.registry)
        self.written = prom.Counter("osmosis_records_written", "Records written", ["pipeline"], registry=self.registry)
        self.dead = prom.Counter("osmosis_records_dead_letter", "Records sent to the dead letters", ["pipeline"],
                                 registry=self.registry)
        self.duration = prom.Histogram("osmosis_run_duration_seconds", "Run duration", ["pipeline"],
                                       buckets=DURATION_BUCKETS, registry=self.registry)
        for pid in pipeline_ids:  # every series exists from the start, at 0
            for status in ("succeeded", "failed", "cancelled", "skipped"):
                self.runs.labels(pid, status)
            self.read.labels(pid), self.written.labels(pid), self.dead.labels(pid), self.duration.labels(pid)
        self.registry.register(_StoreCollector(store, pipeline_ids))

    def observe(self, pipeline_id: str, outcome: str, run: Any = None) -> None:
        """One finished run (``outcome``: succeeded, failed, cancelled or skipped; ``run`` its SyncRun or None)."""
        self.runs.labels(pipeline_id, outcome).inc()
        if run is None:
            return
        self.read.labels(pipeline_id).inc(run.records_read or 0)
        self.written.labels(pipeline_id).inc(run.records_written or 0)
        self.dead.labels(pipeline_id).inc(run.dead_letter or 0)
        if run.started_at is not None and run.finished_at is not None:
            self.duration.labels(pipeline_id).observe(max((run.finished_at - run.started_at).total_seconds(), 0.0))

    def serve(self, port: int, host: str = "127.0.0.1") -> "_Server":
        """Serve ``/metrics`` on ``host:port`` from a daemon thread; ``.shutdown()`` stops it."""
        prom = _prometheus()
        try:
            server, thread = prom.start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror})") from None
        log.info("metrics on http://%s:%d/metrics", host, server.server_port)
        return _Server(server, thread)


class _Server:
    def __init__(self, server, thread: threading.Thread) -> None:
        self._server, self._thread = server, thread
        self.port = server.server_port

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

"""Prometheus metrics for ``/metrics`` (``prometheus-client``), one registry per app.

- ``tracker_http_requests_total{method, route, status}``: requests this process served,
  labelled by the route's *template* (``/alerts/{alert_id}``, never an id or a patient
  reference) — unmatched paths count as ``route="unmatched"``, methods other than the
  standard ones as ``method="OTHER"``.
- read from the database at each scrape (so every web process reports the same):
  ``tracker_alert_deliveries{channel, status}`` (deliveries by channel and outcome),
  ``tracker_alerts_open{severity}``, ``tracker_worker_heartbeat_age_seconds`` (the newest
  heartbeat of a worker that has not stopped; absent when none reported),
  ``tracker_workers_alive``, ``tracker_worker_channels_down``, ``tracker_log_lag_positions``.

Access: **a bearer token**, ``CNO_TRACKER_METRICS_TOKEN`` (a scraper cannot log in);
without it set, ``/metrics`` answers 404. No label carries a patient reference, a name,
a phone number or an address.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerts.health import worker_health
from alerts.tables import alerts as A
from alerts.tables import deliveries as D
from tracker.bootstrap import App

log = logging.getLogger("cno_tracker.web.metrics")
#: the methods counted under their own name; any other (the client chooses it) is
#: ``OTHER``, or every invented method would be a new series in the registry
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class DatabaseCollector(Collector):
    """Gauges read from the outbox and the heartbeats when Prometheus scrapes."""

    def __init__(self, core: App) -> None:
        self.core = core

    def collect(self) -> Iterator[GaugeMetricFamily]:
        deliveries = GaugeMetricFamily("tracker_alert_deliveries",
                                       "Alert deliveries by channel and status",
                                       labels=["channel", "status"])
        open_alerts = GaugeMetricFamily("tracker_alerts_open", "Open alerts by severity",
                                        labels=["severity"])
        try:
            with self.core.engine.connect() as conn:
                for channel, status, n in conn.execute(select(
                        D.c.channel, D.c.status, func.count()).group_by(D.c.channel, D.c.status)):
                    deliveries.add_metric([channel, status], float(n))
                for severity, n in conn.execute(select(A.c.severity, func.count()).where(
                        A.c.status == "open").group_by(A.c.severity)):
                    open_alerts.add_metric([severity], float(n))
            now = self.core.clock.now()
            health = worker_health(self.core.engine, now)
        except Exception as exc:  # a scrape must not fail the app: report what is known
            log.warning("event=metrics.database_unavailable error=%s", type(exc).__name__)
            return
        yield deliveries
        yield open_alerts
        beats = [w.beat_at for w in health.workers if w.stopped_at is None]
        if beats:
            yield GaugeMetricFamily("tracker_worker_heartbeat_age_seconds",
                                    "Seconds since the newest worker heartbeat",
                                    value=max(0.0, (now - max(beats)).total_seconds()))
        yield GaugeMetricFamily("tracker_workers_alive", "Workers with a fresh heartbeat",
                                value=float(len(health.alive)))
        yield GaugeMetricFamily("tracker_worker_channels_down",
                                "Channels a live worker found down",
                                value=float(len(health.channels_down)))
        if health.lag_positions is not None:
            yield GaugeMetricFamily("tracker_log_lag_positions",
                                    "Log positions the read model has not folded yet",
                                    value=float(health.lag_positions))


class Metrics:
    """The app's registry: the request counter and the database collector."""

    def __init__(self, core: App) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("tracker_http_requests", "HTTP requests served",
                                ["method", "route", "status"], registry=self.registry)
        self.registry.register(DatabaseCollector(core))


class CountRequests:
    """ASGI middleware: counts each response by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: dict[str, Any] = {}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or (
                "/static" if str(scope.get("path", "")).startswith("/static/") else "unmatched")
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method if method in METHODS else "OTHER", template,
                                         str(status.get("code", 500))).inc()

"""Prometheus metrics: request counts and latencies (pure ASGI middleware) and queue depths read
from Redis at scrape time."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.serving.stats import queue_depths

log = logging.getLogger(__name__)


class QueueDepthCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "persd_queue_depth", "messages waiting per Celery queue", labels=["queue"]
        )
        try:
            depths = queue_depths()
        except redis.RedisError as exc:  # a scrape must not fail because Redis blinked
            log.warning("queue depths unavailable: %s", exc)
            depths = {}
        for queue, depth in depths.items():
            gauge.add_metric([queue], depth)
        yield gauge


def build_registry() -> CollectorRegistry:
    """A registry per app, so several apps in one process (tests) do not collide."""
    registry = CollectorRegistry()
    registry.register(QueueDepthCollector())
    return registry


class Metrics:
    """Request counts and latencies per route template (not per URL: ids would explode the
    label set)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "persd_api_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "persd_api_request_duration_seconds",
            "HTTP request latency by method and route",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
            registry=registry,
        )

    @staticmethod
    def _route(scope: Scope) -> str:
        # The router stores the matched route in the (shared) scope while dispatching.
        route = scope.get("route")
        return getattr(route, "path", None) or "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = self._route(scope)
            method = scope["method"]
            self.requests.labels(method, route, str(status)).inc()
            self.latency.labels(method, route).observe(time.perf_counter() - start)

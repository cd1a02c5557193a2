"""Prometheus metrics of one API server: requests, latencies, embedding batch sizes (`GET /metrics`).

Each server owns its registry (no process-global state, so tests can run several). Routes are labelled by
their template (`/v1/search`, not the query string); unknown paths are labelled `other`.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # no `_created` series: they double the page and nobody scrapes them

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("nvembed_http_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram("nvembed_http_request_seconds", "HTTP request latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("nvembed_http_requests_in_flight", "requests being handled", registry=r)
        self.batch_requests = Histogram("nvembed_embed_batch_requests", "requests merged into one model call",
                                        buckets=BATCH_BUCKETS, registry=r)
        self.batch_texts = Histogram("nvembed_embed_batch_texts", "texts in one model call", buckets=BATCH_BUCKETS,
                                     registry=r)
        self.model_seconds = Histogram("nvembed_embed_model_seconds", "time in the model per call",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.inputs = Counter("nvembed_embedding_inputs", "texts embedded for /v1/embeddings", ["input_type"], registry=r)
        self.tokens = Counter("nvembed_embedding_tokens", "tokens embedded for /v1/embeddings", registry=r)
        self.searches = Counter("nvembed_searches", "searches by mode", ["mode"], registry=r)

    def batch(self, requests: int, texts: int, seconds: float) -> None:
        self.batch_requests.observe(requests)
        self.batch_texts.observe(texts)
        self.model_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template and status."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def recording_send(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or ("/mcp" if scope.get("path", "").startswith("/mcp") else "other")
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)
            self.metrics.requests.labels(scope.get("method", ""), template, str(status["code"])).inc()

"""Prometheus metrics of one app, in their own registry (several apps can live in a process).

Labels stay few: ``route`` (the route template, never the raw path), ``status``, ``model``.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from service.api.scheduling import BatchReport

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Every metric the service exports."""

    def __init__(self) -> None:
        disable_created_metrics()  # no ``*_created`` series (process-wide setting)
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("translate_http_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.latency = Histogram("translate_http_request_duration_seconds",
                                 "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.in_flight = Gauge("translate_http_in_flight", "requests being served", registry=r)
        self.queue_depth = Gauge("translate_queue_depth", "requests waiting for a batch",
                                 ["model"], registry=r)
        self.queue_wait = Histogram("translate_queue_wait_seconds",
                                    "time a request waited before its batch started",
                                    ["model"], buckets=WAIT_BUCKETS, registry=r)
        self.batch_texts = Histogram("translate_batch_texts", "texts per engine call",
                                     ["model"], buckets=SIZE_BUCKETS, registry=r)
        self.batch_requests = Histogram("translate_batch_requests",
                                        "requests merged into one engine call", ["model"],
                                        buckets=SIZE_BUCKETS, registry=r)
        self.engine_seconds = Histogram("translate_engine_seconds", "engine call duration",
                                        ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.source_tokens = Counter("translate_source_tokens", "source tokens translated",
                                     ["model"], registry=r)
        self.target_tokens = Counter("translate_target_tokens", "target tokens generated",
                                     ["model"], registry=r)
        self.decode_steps = Counter("translate_decode_steps", "decoder calls", ["model"],
                                    registry=r)
        self.model_info = Gauge("translate_model_info",
                                "1 per loaded model, with its execution provider and dtype",
                                ["model", "provider", "dtype"], registry=r)
        self.ready = Gauge("translate_ready", "1 when /health/ready answers 200", registry=r)
        self.cache_hits = Counter("translate_cache_hits", "translations answered from the "
                                  "cache", ["model"], registry=r)
        self.cache_misses = Counter("translate_cache_misses", "cache look-ups that had to "
                                    "decode", ["model"], registry=r)
        self.cache_entries = Gauge("translate_cache_entries", "translations in the cache",
                                   registry=r)
        self.cache_bytes = Gauge("translate_cache_bytes", "bytes the cache holds", registry=r)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """One finished HTTP request."""
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, model: str, report: BatchReport) -> None:
        """One engine call of ``model``'s batcher."""
        for wait in report.queue_waits:
            self.queue_wait.labels(model).observe(wait)
        self.batch_texts.labels(model).observe(report.texts)
        self.batch_requests.labels(model).observe(report.requests)
        self.engine_seconds.labels(model).observe(report.seconds)
        self.source_tokens.labels(model).inc(report.source_tokens)
        self.target_tokens.labels(model).inc(report.target_tokens)
        self.decode_steps.labels(model).inc(report.decode_steps)

    def track_model(self, model: str, provider: str, dtype: str,
                    depth: Callable[[], float]) -> None:
        """A loaded model: its info gauge and a live queue-depth gauge."""
        self.model_info.labels(model, provider, dtype).set(1)
        self.queue_depth.labels(model).set_function(depth)

    def observe_cache(self, model: str, hit: bool) -> None:
        """One look-up in the translation cache."""
        (self.cache_hits if hit else self.cache_misses).labels(model).inc()

    def track_cache(self, entries: Callable[[], float], size: Callable[[], float]) -> None:
        """Live gauges of the cache's entries and bytes."""
        self.cache_entries.set_function(entries)
        self.cache_bytes.set_function(size)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)

"""Prometheus metrics of the service (``GET /metrics``, text format of prometheus_client).

==================================  ==========  ==========================================================
``biomatch_requests_total``         counter     requests by ``operation`` and ``status``
``biomatch_searches_total``         counter     gallery searches by ``operation`` (enrol, deduplicate, identify, verify)
``biomatch_request_seconds``        histogram   latency by ``operation``, audit write included
``biomatch_decisions_total``        counter     DUPLICATE / REVIEW / UNIQUE (and match / no_match) by ``operation``
``biomatch_requests_in_flight``     gauge       requests being handled
``biomatch_queue_depth``            gauge       gallery operations waiting for a slot (``max_concurrent_searches``)
==================================  ==========  ==========================================================

Each service instance has its own registry (so several apps in one process do not collide).
With several worker processes, ``biomatch serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` and every
scrape sums the workers (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os

__all__ = ["ServiceMetrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """The service's metrics.  Thread-safe (prometheus_client's own locks)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("biomatch_requests", "HTTP requests", ["operation", "status"], registry=r)
        self.searches = Counter("biomatch_searches", "gallery searches", ["operation"], registry=r)
        self.latency = Histogram("biomatch_request_seconds", "request latency (audit write included)",
                                 ["operation"], buckets=_LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("biomatch_decisions", "decisions", ["operation", "decision"], registry=r)
        self.in_flight = Gauge("biomatch_requests_in_flight", "requests being handled", registry=r,
                               multiprocess_mode="livesum")
        self.queue_depth = Gauge("biomatch_queue_depth", "gallery operations waiting for a slot", registry=r,
                                 multiprocess_mode="livesum")

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

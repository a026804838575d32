"""Prometheus metrics of one app, in a registry of its own (several apps in one process never clash).

>>> m = ServingMetrics(queue_depth=lambda: 3)
>>> m.requests.labels(route="/v1/predict", status="200").inc()
>>> m.batch_size.observe(12)
>>> text = m.render().decode()
>>> 'mlsd_requests_total{route="/v1/predict",status="200"} 1.0' in text, "mlsd_log_queue_depth 3.0" in text
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "ServingMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384)
_FAILURES_HELP = "Submissions the prediction log could not commit (answered 503, nothing recorded)"


class _CallbackCounter(Collector):
    """A counter whose value lives elsewhere (the log writer's), read when scraped."""

    def __init__(self, name: str, documentation: str, value: Callable[[], float]) -> None:
        self._name, self._doc, self._value = name, documentation, value

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._doc, value=self._value())

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._doc)


class ServingMetrics:
    """The server's metrics; ``queue_depth`` is read at every scrape (records not yet committed)."""

    def __init__(
        self,
        queue_depth: Callable[[], float] | None = None,
        *,
        log_write_failures: Callable[[], float] | None = None,
        log_healthy: Callable[[], float] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mlsd_requests", "HTTP requests by route and status code", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "mlsd_request_latency_seconds",
            "Server-side time per HTTP request",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "mlsd_predictions", "Rows scored and committed to the log", ["model_version"], registry=r
        )
        self.variant_predictions = Counter(
            "mlsd_variant_predictions",
            "Rows answered and committed, by the rollout variant (registry alias) that answered",
            ["variant"],
            registry=r,
        )
        self.fallbacks = Counter(
            "mlsd_fallbacks",
            "Rows a variant was assigned but another model answered: the champion for a variant that "
            "failed, timed out or whose circuit is open; the rule baseline for a failed champion",
            ["variant", "reason"],
            registry=r,
        )
        self.shadow_dropped = Counter(
            "mlsd_shadow_dropped",
            "Shadow rows dropped because the shadow queue was full (the answer never waits)",
            registry=r,
        )
        self.batch_size = Histogram(
            "mlsd_batch_size",
            "Rows per call of the model (micro-batches)",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.unseen_categories = Counter(
            "mlsd_unseen_categories",
            "Values of categorical inputs never seen at build time",
            ["column"],
            registry=r,
        )
        self.validation_errors = Counter(
            "mlsd_validation_errors", "Invalid fields in rejected requests by kind", ["kind"], registry=r
        )
        self.queue_depth = Gauge(
            "mlsd_log_queue_depth", "Prediction-log records waiting for commit", registry=r
        )
        if queue_depth is not None:
            self.queue_depth.set_function(queue_depth)
        self.log_healthy = Gauge(
            "mlsd_log_healthy", "1 while the prediction log commits, 0 after a failed commit", registry=r
        )
        if log_healthy is not None:
            self.log_healthy.set_function(log_healthy)
        if log_write_failures is not None:  # counted by the log's writer, read at every scrape
            r.register(_CallbackCounter("mlsd_log_write_failures", _FAILURES_HELP, log_write_failures))

    def render(self) -> bytes:
        """The text exposition format of this registry."""
        return generate_latest(self.registry)

"""Prometheus metrics of one app, in a registry of its own (several apps in one process never clash).

Under ``mlsd serve --workers N`` every worker calls :func:`use_multiprocess` before its app is
built: counters and histograms then live in prometheus_client's multiprocess files, and a scrape
of any worker sums them over every worker that ran, restarted ones included (totals never go
back). The three values the log writer of one process holds (``mlsd_log_queue_depth``,
``mlsd_log_healthy``, ``mlsd_log_write_failures_total``) are the scraped worker's own.

>>> m = ServingMetrics(queue_depth=lambda: 3)
>>> m.requests.labels(route="/v1/predict", status="200").inc()
>>> m.batch_size.observe(12)
>>> text = m.render().decode()
>>> 'mlsd_requests_total{route="/v1/predict",status="200"} 1.0' in text, "mlsd_log_queue_depth 3.0" in text
(True, True)
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "MULTIPROCESS_ENV", "ServingMetrics", "use_multiprocess"]

#: prometheus_client's variable naming the folder of the multiprocess files
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_multiprocess(directory: Path | str) -> None:
    """Metrics created from now on in this process write to ``directory`` (one folder for all
    the workers of a server, created and removed by the parent)."""
    os.environ[MULTIPROCESS_ENV] = os.fspath(directory)
    # prometheus_client picks its value class when imported: imported earlier (the parent
    # imports it before forking), it is switched here, before any metric of this process exists
    values.ValueClass = values.MultiProcessValue()


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


class _Callback(Collector):
    """A counter or gauge whose value lives elsewhere (the log writer's, the queue's), read when
    scraped: outside the multiprocess files, so one worker's own value."""

    def __init__(
        self,
        name: str,
        documentation: str,
        value: Callable[[], float],
        family: type[CounterMetricFamily] | type[GaugeMetricFamily] = GaugeMetricFamily,
    ) -> None:
        self._name, self._doc, self._value, self._family = name, documentation, value, family

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield self._family(self._name, self._doc, value=self._value())

    def describe(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield self._family(self._name, self._doc)


def _counts(values: Any) -> dict[Any, int]:
    listed = values.tolist() if isinstance(values, np.ndarray) else list(values)
    first = listed[0] if listed else None
    if listed.count(first) == len(listed):  # one model answered the request: no counting per value
        return {first: len(listed)} if listed else {}
    return dict(collections.Counter(listed))


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
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
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
        self._multiprocess = os.environ.get(MULTIPROCESS_ENV)
        depth_help = "Prediction-log records waiting for commit"
        healthy_help = "1 while the prediction log commits, 0 after a failed commit"
        # the process's own values: outside the multiprocess files, in a registry of their own
        self._local = CollectorRegistry(auto_describe=True) if self._multiprocess else r
        if self._multiprocess:
            for name, doc, value in (
                ("mlsd_log_queue_depth", depth_help, queue_depth),
                ("mlsd_log_healthy", healthy_help, log_healthy),
            ):
                if value is not None:
                    self._local.register(_Callback(name, doc, value))
        else:
            self.queue_depth = Gauge("mlsd_log_queue_depth", depth_help, registry=r)
            if queue_depth is not None:
                self.queue_depth.set_function(queue_depth)
            self.log_healthy = Gauge("mlsd_log_healthy", healthy_help, registry=r)
            if log_healthy is not None:
                self.log_healthy.set_function(log_healthy)
        if log_write_failures is not None:  # counted by the log's writer, read at every scrape
            self._local.register(
                _Callback("mlsd_log_write_failures", _FAILURES_HELP, log_write_failures, CounterMetricFamily)
            )

    def count_predictions(self, model_version: Any, variant: Any) -> None:
        """``mlsd_predictions`` and ``mlsd_variant_predictions`` for committed rows, given as
        columns (each row's model version and answering variant): one ``inc`` per label value
        (a 100-row request of one model is two calls, not two hundred).

        >>> m = ServingMetrics()
        >>> m.count_predictions([3, 3, 4], ["champion", "champion", "challenger"])
        >>> text = m.render().decode()
        >>> 'mlsd_predictions_total{model_version="3"} 2.0' in text
        True
        >>> 'mlsd_variant_predictions_total{variant="challenger"} 1.0' in text
        True
        """
        for version, n in _counts(model_version).items():
            self._child(self.predictions, str(version)).inc(n)
        for name, n in _counts(variant).items():
            self._child(self.variant_predictions, str(name)).inc(n)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """``mlsd_requests_total`` and ``mlsd_request_latency_seconds`` for one answered request."""
        self._child(self.requests, route, str(status)).inc()
        self._child(self.latency, route).observe(seconds)

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, kept: ``labels`` takes a lock and rebuilds the key on every
        call, a few µs of each request four times over; a child, once made, stays the metric's."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def render(self) -> bytes:
        """The text exposition format of this registry; under workers, the counters and
        histograms of every worker summed, then this worker's own log values."""
        if not self._multiprocess:
            return generate_latest(self.registry)
        summed = CollectorRegistry()
        MultiProcessCollector(summed, path=self._multiprocess)
        return generate_latest(summed) + generate_latest(self._local)

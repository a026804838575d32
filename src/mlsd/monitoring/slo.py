"""Service level objectives from the request log (one row per HTTP call to the predict route).

:func:`service_levels` reads a frame with the columns of
:meth:`mlsd.store.prediction_log.PredictionLog.read_requests` (``logged_at, route, status, n_rows,
latency_ms``) and measures:

- latency percentiles p50/p95/p99 of the **successful** (2xx) requests: a rejected request is
  answered fast and would flatter the percentiles;
- the share of 4xx (client errors) and 5xx (server errors) among all requests; the SLO
  **error rate** is the 5xx share (a 422 is the server doing its job);
- throughput: requests/s and rows/s over the active span, from the first request received to
  the last one answered (``logged_at + latency``).

The design's constraints become objectives when their key is known (only those present):
``p50_latency_ms``, ``p95_latency_ms``, ``p99_latency_ms`` (at most), ``max_error_rate`` (at most),
``min_throughput_rps`` (at least, requests/s). Other constraint keys are not SLOs and are ignored.

A design's ``goals.constraints`` reach this function through ``mlsd monitor``; they are also the
build's selection gates, so ``mlsd validate`` accepts there only the keys the build measures too
(``p50_latency_ms``, ``p99_latency_ms``). The others are for callers that measure a live service
directly; a design sets its service error rate with the alert ``monitoring.alerts.max_error_rate``.

>>> import pandas as pd
>>> t0 = pd.Timestamp("2024-01-01", tz="UTC")
>>> req = pd.DataFrame({
...     "logged_at": t0 + pd.to_timedelta(range(10), unit="s"),
...     "route": "/v1/predict", "status": [200] * 8 + [422, 500], "n_rows": 2,
...     "latency_ms": [5.0] * 8 + [1.0, 50.0], "error": None})
>>> slo = service_levels(req, {"p99_latency_ms": 20, "max_error_rate": 0.05, "max_ece": 0.1})
>>> slo.p99_ms, slo.error_rate, slo.client_error_rate
(5.0, 0.1, 0.1)
>>> [(o.name, o.passed) for o in slo.objectives]
[('p99_latency_ms', True), ('max_error_rate', False)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlsd.errors import DataError
from mlsd.monitoring._json import finite_or_none

__all__ = ["SLO_KEYS", "Objective", "SloResult", "service_levels"]

#: constraint key -> (measured field, direction): "max" means the value must stay at or below the limit
SLO_KEYS: dict[str, tuple[str, Literal["max", "min"]]] = {
    "p50_latency_ms": ("p50_ms", "max"),
    "p95_latency_ms": ("p95_ms", "max"),
    "p99_latency_ms": ("p99_ms", "max"),
    "max_error_rate": ("error_rate", "max"),
    "min_throughput_rps": ("requests_per_second", "min"),
}
_COLUMNS = ("logged_at", "status", "n_rows", "latency_ms")


@dataclasses.dataclass
class Objective:
    """One SLO: the measured value against the design's limit; ``passed`` is None when unmeasured."""

    name: str
    value: float | None
    limit: float
    direction: Literal["max", "min"]
    passed: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "value": finite_or_none(self.value),
            "limit": finite_or_none(self.limit),
        }


@dataclasses.dataclass
class SloResult:
    """Latency, errors and throughput of a set of requests, and the objectives they meet."""

    n_requests: int
    n_rows: int
    n_server_errors: int
    n_client_errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    error_rate: float | None
    client_error_rate: float | None
    span_seconds: float | None
    requests_per_second: float | None
    rows_per_second: float | None
    objectives: list[Objective] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No measured objective failed."""
        return all(o.passed is not False for o in self.objectives)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: (v if isinstance(v, int) else finite_or_none(v))
            for k, v in dataclasses.asdict(self).items()
            if k != "objectives"
        }
        out["objectives"] = [o.to_dict() for o in self.objectives]
        out["passed"] = self.passed
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SloResult:
        data = {k: v for k, v in data.items() if k != "passed"}
        data["objectives"] = [Objective(**o) for o in data.get("objectives", [])]
        return cls(**data)


def service_levels(requests: pd.DataFrame, constraints: Mapping[str, float] | None = None) -> SloResult:
    """Measure the requests of ``requests`` and judge the SLO keys present in ``constraints``."""
    missing = [c for c in _COLUMNS if c not in requests.columns]
    if missing:
        raise DataError(
            "the request frame lacks a column",
            field=missing[0],
            received=list(requests.columns),
            expected="the columns of PredictionLog.read_requests: " + ", ".join(_COLUMNS),
        )
    if "route" in requests.columns:  # the readiness probe's own commits are not traffic
        requests = requests[requests["route"] != "/readyz"]
    status = pd.to_numeric(requests["status"], errors="coerce").to_numpy(dtype=float)
    latency = pd.to_numeric(requests["latency_ms"], errors="coerce").to_numpy(dtype=float)
    n = len(requests)
    ok = (status >= 200) & (status < 300)
    n_5xx = int(np.sum(status >= 500))
    n_4xx = int(np.sum((status >= 400) & (status < 500)))
    good = latency[ok & np.isfinite(latency)]
    p50, p95, p99 = (float(x) for x in np.percentile(good, [50, 95, 99])) if good.size else (None,) * 3
    span = None
    if n:
        start = pd.to_datetime(requests["logged_at"], utc=True)
        end = start + pd.to_timedelta(np.nan_to_num(latency), unit="ms")
        span = (end.max() - start.min()).total_seconds()
    n_rows = int(pd.to_numeric(requests["n_rows"], errors="coerce").fillna(0).sum())
    rate_ok = span is not None and span > 0
    result = SloResult(
        n_requests=n,
        n_rows=n_rows,
        n_server_errors=n_5xx,
        n_client_errors=n_4xx,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        error_rate=n_5xx / n if n else None,
        client_error_rate=n_4xx / n if n else None,
        span_seconds=span,
        requests_per_second=n / span if rate_ok and span else None,
        rows_per_second=n_rows / span if rate_ok and span else None,
    )
    for key, limit in (constraints or {}).items():
        if key not in SLO_KEYS:
            continue
        field, direction = SLO_KEYS[key]
        value = getattr(result, field)
        passed = None if value is None else (value <= limit if direction == "max" else value >= limit)
        result.objectives.append(Objective(key, value, float(limit), direction, passed))
    return result

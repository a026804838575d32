"""SLOs from the request log: latency percentiles, 4xx vs 5xx, throughput, objectives."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlsd.errors import DataError
from mlsd.monitoring.slo import SloResult, service_levels


def requests_frame(n: int = 1_000, seed: int = 0) -> pd.DataFrame:
    """The columns and dtypes of PredictionLog.read_requests: 100 s of traffic, 2 % 5xx, 3 % 422."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")
    status = np.full(n, 200)
    status[:20] = 500
    status[20:50] = 422
    rng.shuffle(status)
    latency = rng.gamma(2.0, 3.0, n)
    return pd.DataFrame(
        {
            "logged_at": t0 + pd.to_timedelta(np.linspace(0, 100, n), unit="s"),
            "route": pd.Series(["/v1/predict"] * n, dtype="str"),
            "status": pd.Series(status, dtype="int64"),
            "n_rows": pd.Series(rng.integers(1, 5, n), dtype="int64"),
            "latency_ms": latency,
            "error": pd.Series([None] * n, dtype="str"),
        }
    )


def test_measures() -> None:
    req = requests_frame()
    slo = service_levels(req)
    ok = req["status"].between(200, 299)
    assert math.isclose(slo.p99_ms, float(np.percentile(req.loc[ok, "latency_ms"], 99)))
    assert slo.p50_ms < slo.p95_ms < slo.p99_ms
    assert slo.error_rate == 0.02 and slo.client_error_rate == 0.03
    assert slo.n_server_errors == 20 and slo.n_client_errors == 30
    span = 100 + req["latency_ms"].iloc[-1] / 1000
    assert math.isclose(slo.span_seconds, span)
    assert math.isclose(slo.requests_per_second, 1_000 / span)
    assert math.isclose(slo.rows_per_second, req["n_rows"].sum() / span)
    assert slo.objectives == [] and slo.passed


def test_objectives_only_for_known_keys() -> None:
    slo = service_levels(
        requests_frame(),
        {"p99_latency_ms": 1.0, "max_error_rate": 0.05, "min_throughput_rps": 5, "max_model_mb": 3},
    )
    verdicts = {o.name: o.passed for o in slo.objectives}
    assert verdicts == {"p99_latency_ms": False, "max_error_rate": True, "min_throughput_rps": True}
    assert not slo.passed
    assert SloResult.from_dict(slo.to_dict()) == slo


def test_empty_and_malformed() -> None:
    slo = service_levels(requests_frame().head(0), {"p99_latency_ms": 20})
    assert slo.n_requests == 0 and slo.p99_ms is None and slo.error_rate is None
    assert slo.objectives[0].passed is None and slo.passed  # unmeasured is not a failure
    with pytest.raises(DataError, match="status"):
        service_levels(requests_frame().drop(columns=["status"]))


def test_readiness_probe_records_are_not_traffic() -> None:
    # while the log fails, /readyz commits its own request record (status 200, 0 ms)
    traffic = requests_frame()
    probes = traffic.head(300).assign(route="/readyz", status=200, latency_ms=0.0, n_rows=0)
    with_probes = service_levels(pd.concat([traffic, probes], ignore_index=True))
    alone = service_levels(traffic)
    assert (with_probes.n_requests, with_probes.p50_ms, with_probes.error_rate) == (
        alone.n_requests,
        alone.p50_ms,
        alone.error_rate,
    )

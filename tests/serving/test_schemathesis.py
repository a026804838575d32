"""Schemathesis against the app's own OpenAPI: no 5xx and no disagreement between schema and server.

A real uvicorn server on 127.0.0.1 serves the flights model; schemathesis generates requests
from ``/openapi.json`` (schema-valid ones, which must be accepted, and schema-violating ones,
which must be refused with a 4xx) and checks every response against the documented statuses,
content types and response schemas. The run is bounded (a fixed number of examples per
operation and mode) and seeded (hypothesis ``derandomize``), so it is the same run every time.
Two servers are fuzzed: one that rejects unseen categories (their schema lists the categories)
and one that scores them (their schema does not).
Failures are collected rather than raised, so the test reports all of them at once.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from mlsd.serving import ServeSettings, create_app  # noqa: E402
from mlsd.store.prediction_log import PredictionLog  # noqa: E402

# examples per (operation, mode): the two POST routes carry the bodies worth fuzzing
BUDGET = {
    ("POST", "/v1/predict"): 500,
    ("POST", "/v1/feedback"): 150,
    ("POST", "/v1/explain"): 50,  # the body predict validates, checked the same way
}
GET_BUDGET = 25


def _run_operation(operation: Any, mode: GenerationMode, n: int, base_url: str, out: dict) -> None:
    checks = [
        schemathesis.checks.not_a_server_error,
        schemathesis.specs.openapi.checks.status_code_conformance,
        schemathesis.specs.openapi.checks.content_type_conformance,
        schemathesis.specs.openapi.checks.response_schema_conformance,
        schemathesis.specs.openapi.checks.positive_data_acceptance,
        schemathesis.specs.openapi.checks.negative_data_rejection,
    ]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # failures are collected, so nothing to shrink
    )
    def run(case: Any) -> None:
        out["requests"] += 1
        try:
            case.call_and_validate(base_url=base_url, checks=checks, timeout=30)
        except (Exception, BaseExceptionGroup) as exc:  # collected: every failure is reported
            found = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
            for failure in found:
                title = getattr(failure, "title", None) or str(failure).splitlines()[0][:200]
                kind = f"{operation.label} [{mode.value}] {type(failure).__name__}: {title}"
                out["failures"][kind] += 1
                if len(out["examples"]) < 30:
                    out["examples"].append(f"{kind}\n  body={str(getattr(case, 'body', None))[:300]}")

    run()


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_disagreement(
    flights, tmp_path, live_server
) -> None:
    out: dict[str, Any] = {"requests": 0, "failures": Counter(), "examples": []}
    for reject in (True, False):
        log = PredictionLog(f"sqlite:///{tmp_path / f'log-{reject}.db'}")
        app = create_app(
            ServeSettings(
                model=flights.model,
                model_name="flight-delay",
                model_version=1,
                log=log,
                time_column="time_hour",
                reject_unseen_categories=reject,
                max_rows_per_request=20,
            )
        )
        with live_server(app) as base_url:
            schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
            for result in schema.get_all_operations():
                operation = result.ok()
                if operation.path.startswith("/v1/admin/"):
                    # refused without the admin token (403): tests/serving/test_rollout_serving.py
                    continue
                n = BUDGET.get((operation.method.upper(), operation.path), GET_BUDGET)
                # a GET without parameters has no schema-violating request to generate
                post = operation.method.upper() == "POST"
                for mode in [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * post:
                    _run_operation(operation, mode, n, base_url, out)
    print(f"schemathesis: {out['requests']} requests, {sum(out['failures'].values())} failures")
    for kind, count in out["failures"].most_common():
        print(f"  {count:5d}  {kind}")
    assert out["requests"] >= 2_500
    assert not out["failures"], "\n".join(out["examples"])

"""Health, readiness, metrics, micro-batching under concurrency and model failures."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import httpx
import pandas as pd
from fastapi.testclient import TestClient

from mlsd.serving import ServeSettings, create_app
from mlsd.store import PackagedModel
from mlsd.store.prediction_log import PredictionLog


@dataclass
class FlakyModel(PackagedModel):
    """A real model that raises while ``failing`` is set."""

    failing: bool = False

    def predict_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        if self.failing:
            raise RuntimeError("secret internal detail")
        return super().predict_frame(df)


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    assert match, name
    return float(match.group(1))


def test_health_and_readiness(flights, tmp_path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}")
    app = create_app(ServeSettings(model=flights.model, model_name="m", model_version=1, log=log))
    plain = TestClient(app, raise_server_exceptions=False)  # no lifespan: nothing started
    assert plain.get("/healthz").json() == {"status": "ok"}
    r = plain.get("/readyz")
    assert r.status_code == 503 and r.json()["error"]["type"] == "not_ready"
    with TestClient(app) as started:
        assert started.get("/readyz").json() == {"status": "ready", "model": {"name": "m", "version": 1}}


def test_metrics_count_requests_predictions_and_batches(client, flights) -> None:
    http, _ = client
    http.post("/v1/predict", json={"inputs": flights.rows[:3]})
    http.post("/v1/predict", json={"inputs": flights.row(0, distance="x")})
    http.get("/nope")
    text = http.get("/metrics").text
    assert _metric(text, 'mlsd_requests_total{route="/v1/predict",status="200"}') == 1
    assert _metric(text, 'mlsd_requests_total{route="/v1/predict",status="422"}') == 1
    assert _metric(text, 'mlsd_requests_total{route="unmatched",status="404"}') == 1
    assert _metric(text, 'mlsd_predictions_total{model_version="3"}') == 3
    assert _metric(text, 'mlsd_request_latency_seconds_count{route="/v1/predict"}') == 2
    assert _metric(text, "mlsd_batch_size_count") == 2
    assert _metric(text, "mlsd_log_queue_depth") >= 0
    assert _metric(text, 'mlsd_validation_errors_total{kind="type"}') == 1


def test_two_apps_have_separate_metrics(make_client, flights) -> None:
    with make_client() as (a, _), make_client() as (b, _):
        a.post("/v1/predict", json={"inputs": flights.row(0)})
        assert 'status="200"' in a.get("/metrics").text
        assert 'route="/v1/predict",status="200"' not in b.get("/metrics").text


def test_unknown_route_and_method_use_the_error_schema(client) -> None:
    http, _ = client
    r = http.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    r = http.get("/v1/predict")
    assert r.status_code == 405 and r.json()["error"]["type"] == "method_not_allowed"


def test_a_failing_model_gives_500_and_the_next_request_works(flights, tmp_path) -> None:
    m = flights.model
    flaky = FlakyModel(
        pipeline=m.pipeline,
        task=m.task,
        threshold=m.threshold,
        input_columns=m.input_columns,
        schema=m.schema,
    )
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}")
    settings = ServeSettings(model=flaky, model_name="m", model_version=1, log=log)
    with TestClient(create_app(settings), raise_server_exceptions=False) as http:
        flaky.failing = True
        r = http.post("/v1/predict", json={"inputs": flights.row(0)})
        assert r.status_code == 500
        assert r.json()["error"]["type"] == "model_error"
        assert "secret" not in r.text and "Traceback" not in r.text
        flaky.failing = False
        assert http.post("/v1/predict", json={"inputs": flights.row(0)}).status_code == 200
    assert log.count_predictions() == 1
    assert sorted(log.read_requests()["status"]) == [200, 500]


def test_concurrent_requests_are_batched(flights, tmp_path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}")
    settings = ServeSettings(
        model=flights.model, model_name="m", model_version=1, log=log, max_batch_delay_ms=20.0
    )
    app = create_app(settings)

    async def run() -> tuple[list[httpx.Response], str]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                bodies = [{"inputs": flights.row(i % len(flights.rows))} for i in range(64)]
                responses = await asyncio.gather(*(client.post("/v1/predict", json=b) for b in bodies))
                return responses, (await client.get("/metrics")).text

    responses, text = asyncio.run(run())
    assert all(r.status_code == 200 for r in responses)
    ids = {r.json()["predictions"][0]["request_id"] for r in responses}
    assert len(ids) == 64
    n_batches = _metric(text, "mlsd_batch_size_count")
    assert _metric(text, "mlsd_batch_size_sum") == 64
    assert n_batches < 64  # several requests shared a call of the model
    assert log.count_predictions() == 64

"""POST /v1/predict skips FastAPI's outer layers: what they did for it is still done."""

from __future__ import annotations

from typing import Any


def test_an_unexpected_error_in_predict_is_a_500_in_the_error_schema(client, monkeypatch) -> None:
    http, _ = client
    service = http.app.state.service

    async def broken(request: Any) -> Any:
        raise RuntimeError("the handler broke")

    monkeypatch.setattr(service, "predict", broken)
    r = http.post("/v1/predict", json={"inputs": {}})
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "internal_error"
    assert "the handler broke" not in r.text  # no traceback or message reaches the client
    text = http.get("/metrics").text
    assert 'mlsd_requests_total{route="/v1/predict",status="500"} 1.0' in text


def test_other_methods_and_routes_still_go_through_fastapi(client) -> None:
    http, _ = client
    assert http.get("/v1/predict").status_code == 405
    assert http.get("/healthz").status_code == 200
    spec = http.get("/openapi.json").json()
    assert "/v1/predict" in spec["paths"] and "PredictRequest" in spec["components"]["schemas"]

"""Bad and good requests in the same micro-batches: each good one gets its 200, each bad one its own errors.

The hand-made bad requests below each break one rule of the validator (or of the body parser);
every one must get a 4xx whose entries name only its own fields, with its own received values,
whether it is sent alone or among other requests in one micro-batch.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import numpy as np
import pytest

from mlsd.serving import ServeSettings, create_app
from mlsd.store.prediction_log import PredictionLog


def _without(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != key}


def _raw(text: str) -> bytes:
    return text.encode()


# (case id, body from a valid row, status, {field: received value} of the expected errors, in order)
BAD: list[tuple[str, Any, int, dict[str, Any]]] = [
    ("text for a number", lambda r: {"inputs": {**r, "distance": "abc"}}, 422, {"inputs.distance": "abc"}),
    ("bool for a number", lambda r: {"inputs": {**r, "temp": True}}, 422, {"inputs.temp": True}),
    ("text in a nullable number", lambda r: {"inputs": {**r, "temp": "warm"}}, 422, {"inputs.temp": "warm"}),
    (
        "fraction for an integer",
        lambda r: {"inputs": {**r, "sched_dep_time": 930.5}},
        422,
        {"inputs.sched_dep_time": 930.5},
    ),
    ("null, not nullable", lambda r: {"inputs": {**r, "distance": None}}, 422, {"inputs.distance": None}),
    ("missing field", lambda r: {"inputs": _without(r, "origin")}, 422, {"inputs.origin": None}),
    ("out of range", lambda r: {"inputs": {**r, "distance": 99_999}}, 422, {"inputs.distance": 99_999}),
    ("int beyond int64", lambda r: {"inputs": {**r, "distance": 10**19}}, 422, {"inputs.distance": 10**19}),
    ("int beyond float64", lambda r: {"inputs": {**r, "humid": 10**400}}, 422, {"inputs.humid": 10**400}),
    (
        "object in a category",
        lambda r: {"inputs": {**r, "carrier": {"a": 1}}},
        422,
        {"inputs.carrier": "<dict of 1>"},
    ),
    (
        "list in a category",
        lambda r: {"inputs": {**r, "origin": ["JFK"]}},
        422,
        {"inputs.origin": "<list of 1>"},
    ),
    ("number for a string", lambda r: {"inputs": {**r, "carrier": 9}}, 422, {"inputs.carrier": 9}),
    ("unseen category", lambda r: {"inputs": {**r, "dest": "XXX"}}, 422, {"inputs.dest": "XXX"}),
    ("lone surrogate", lambda r: {"inputs": {**r, "dest": "\ud800"}}, 422, {"inputs.dest": "\ufffd"}),
    (
        "string too long",
        lambda r: {"inputs": {**r, "carrier": "U" * 300}},
        422,
        {"inputs.carrier": "U" * 100 + "..."},
    ),
    (
        "event time that does not parse",
        lambda r: {"inputs": {**r, "time_hour": "yesterday"}},
        422,
        {"inputs.time_hour": "yesterday"},
    ),
    (
        "hour 25",
        lambda r: {"inputs": {**r, "time_hour": "2013-05-01T25:00:00Z"}},
        422,
        {"inputs.time_hour": "2013-05-01T25:00:00Z"},
    ),
    (
        "year pandas cannot hold",
        lambda r: {"inputs": {**r, "time_hour": "0001-01-01T00:00:00Z"}},
        422,
        {"inputs.time_hour": "0001-01-01T00:00:00Z"},
    ),
    ("number for a date-time", lambda r: {"inputs": {**r, "time_hour": 5}}, 422, {"inputs.time_hour": 5}),
    (
        "two bad fields in one row",
        lambda r: {"inputs": {**r, "distance": "x", "origin": None}},
        422,
        {"inputs.distance": "x", "inputs.origin": None},
    ),
    (
        "bad rows among good ones",
        lambda r: {"inputs": [r, {**r, "distance": "far"}, r, {**r, "carrier": "ZZ"}]},
        422,
        {"inputs[1].distance": "far", "inputs[3].carrier": "ZZ"},
    ),
    ("empty list", lambda r: {"inputs": []}, 422, {"inputs": []}),
    ("non-object rows", lambda r: {"inputs": [r, 3, "x"]}, 422, {"inputs[1]": 3, "inputs[2]": "x"}),
    ("too many rows", lambda r: {"inputs": [r] * 11}, 422, {"inputs": 11}),
    ("unknown body field", lambda r: {"inputs": r, "extra": 1}, 422, {"extra": "extra"}),
    ("body not an object", lambda r: [r], 422, {"body": "<list of 1>"}),
    ("inputs a string", lambda r: {"inputs": "row"}, 422, {"inputs": "row"}),
    ("malformed JSON", lambda r: _raw('{"inputs": {'), 400, {"body": None}),
    ("NaN", lambda r: _raw('{"inputs": {"distance": NaN}}'), 400, {"body": None}),
    ("-Infinity", lambda r: _raw('{"inputs": {"distance": -Infinity}}'), 400, {"body": None}),
    ("1e309", lambda r: _raw(json.dumps({"inputs": r})[:-2] + ', "humid": 1e309}}'), 400, {"body": None}),
    ("not UTF-8", lambda r: b"\xff\xfe", 400, {"body": None}),
    ("oversized body", lambda r: {"inputs": [r] * 5, "pad": "x" * 20_000}, 413, {"body": None}),
]


def _settings(flights: Any, tmp_path: Any, **overrides: Any) -> ServeSettings:
    return ServeSettings(
        **{
            "model": flights.model,
            "model_name": "flight-delay",
            "model_version": 1,
            "log": PredictionLog(f"sqlite:///{tmp_path / 'log.db'}"),
            "time_column": "time_hour",
            "reject_unseen_categories": True,
            "max_rows_per_request": 10,
            "max_body_bytes": 16_000,
            **overrides,
        }
    )


def _content(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def _assert_own_errors(response: httpx.Response, status: int, expected: dict[str, Any]) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert [e["field"] for e in error["errors"]] == list(expected)
    assert error["n_errors"] == len(expected)
    if status == 422:
        assert [e["received"] for e in error["errors"]] == list(expected.values())
    assert all("expected" in e for e in error["errors"])


@pytest.fixture(scope="module")
def strict_client(flights, tmp_path_factory):
    from fastapi.testclient import TestClient

    app = create_app(_settings(flights, tmp_path_factory.mktemp("strict")))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(("case", "build", "status", "expected"), BAD, ids=[c[0] for c in BAD])
def test_each_bad_request_gets_a_4xx_naming_only_its_own_fields(
    strict_client, flights, case, build, status, expected
) -> None:
    r = strict_client.post(
        "/v1/predict", content=_content(build(flights.row(0))), headers={"content-type": "application/json"}
    )
    _assert_own_errors(r, status, expected)
    assert strict_client.post("/v1/predict", json={"inputs": flights.row(1)}).status_code == 200


async def _send_all(app: Any, bodies: list[bytes]) -> list[httpx.Response]:
    service = app.state.service
    await service.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(
                *(
                    http.post("/v1/predict", content=b, headers={"content-type": "application/json"})
                    for b in bodies
                )
            )
    finally:
        await service.stop()


def test_bad_and_good_requests_sharing_micro_batches_each_get_their_own_answer(flights, tmp_path) -> None:
    # a long delay and large batches: concurrent requests really are scored together
    app = create_app(_settings(flights, tmp_path, max_batch_size=10_000, max_batch_delay_ms=1_000))
    sizes: list[int] = []
    batcher = app.state.service.batcher
    batcher.on_batch = sizes.append
    good_rows = [flights.row(i) for i in range(len(BAD))]
    bodies, kinds = [], []
    for i, (_, build, status, expected) in enumerate(BAD):
        bodies += [_content(build(flights.row(0))), _content({"inputs": good_rows[i]})]
        kinds += [(status, expected), None]
    responses = asyncio.run(_send_all(app, bodies))
    assert max(sizes) >= 20  # the rows of many requests, bad and good, were in one batch
    for i, (r, kind) in enumerate(zip(responses, kinds, strict=True)):
        if kind is None:
            assert r.status_code == 200, r.text
            [pred] = r.json()["predictions"]
            expected = flights.model.predict_frame(_frame([good_rows[i // 2]]))["score"].iloc[0]
            assert np.isclose(pred["score"], expected)
        else:
            _assert_own_errors(r, *kind)


def _frame(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows).assign(time_hour=lambda d: pd.to_datetime(d["time_hour"]))


def test_a_request_that_breaks_the_model_fails_alone(flights, tmp_path, monkeypatch) -> None:
    """A value that passes validation but makes the model raise: only its request gets the 500."""
    model = flights.model
    predict_frame = type(model).predict_frame

    def fragile(self: Any, frame: Any) -> Any:
        if (frame["distance"] == 1234).any():
            raise ValueError("the model cannot score 1234")
        return predict_frame(self, frame)

    monkeypatch.setattr(type(model), "predict_frame", fragile)
    settings = _settings(
        flights, tmp_path, max_batch_size=10_000, max_batch_delay_ms=1_000, reject_unseen_categories=False
    )
    app = create_app(settings)
    sizes: list[int] = []
    app.state.service.batcher.on_batch = sizes.append
    changes = {3: {"distance": 1234}, 5: {"dest": "never-seen"}}  # one breaks, one has a new category
    bodies = [_content({"inputs": flights.row(i, **changes.get(i, {}))}) for i in range(8)]
    responses = asyncio.run(_send_all(app, bodies))
    assert sizes[0] == 8  # one shared batch failed, then each request was scored alone
    assert [r.status_code for r in responses] == [200, 200, 200, 500, 200, 200, 200, 200]
    assert responses[3].json()["error"]["type"] == "model_error"
    # the unseen category is counted once, by the scoring that answered, not by the failed batch too
    unseen = app.state.service.metrics.unseen_categories.labels(column="dest")._value.get()
    assert unseen == 1

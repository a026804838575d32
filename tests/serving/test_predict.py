"""POST /v1/predict: one row, batches, the durable log and the OpenAPI document."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.serving.ids import request_id_time_ms


def test_one_row_is_scored_and_logged(client, flights) -> None:
    http, log = client
    row = flights.row(0)
    r = http.post("/v1/predict", json={"inputs": row})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "flight-delay", "version": 3}
    assert "threshold" not in body  # admin-only (/v1/model with the token)
    [pred] = body["predictions"]
    assert len(pred["request_id"]) == 32
    expected = flights.model.predict_frame(
        pd.DataFrame([row]).assign(time_hour=lambda d: pd.to_datetime(d["time_hour"]))
    )
    assert np.isclose(pred["score"], expected["score"].iloc[0])
    assert pred["decision"] is (pred["score"] >= 0.3)
    # a 200 means committed: the record is readable right away
    logged = log.read_predictions()
    assert logged["request_id"].tolist() == [pred["request_id"]]
    assert logged["event_time"].iloc[0] == pd.Timestamp(row["time_hour"])
    assert logged["model_version"].iloc[0] == 3 and logged["variant"].iloc[0] == "champion"
    assert logged["distance"].iloc[0] == row["distance"]
    assert "arr_delay" not in logged.columns  # only the model's inputs (and the time column) are kept
    assert logged["latency_ms"].iloc[0] > 0


def test_batch_gets_one_id_per_row_in_order(client, flights) -> None:
    http, log = client
    rows = flights.rows[:50]
    r = http.post("/v1/predict", json={"inputs": rows})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    ids = [p["request_id"] for p in preds]
    assert len(set(ids)) == 50 and ids == sorted(ids)
    assert abs(request_id_time_ms(ids[0]) - pd.Timestamp.now().value // 1_000_000) < 60_000
    frame = pd.DataFrame(rows).assign(time_hour=lambda d: pd.to_datetime(d["time_hour"]))
    assert np.allclose([p["score"] for p in preds], flights.model.predict_frame(frame)["score"])
    requests = log.read_requests()
    assert requests[["route", "status", "n_rows"]].values.tolist() == [["/v1/predict", 200, 50]]


def test_batch_larger_than_the_micro_batch_goes_straight_through(make_client, flights) -> None:
    with make_client(max_batch_size=4) as (http, log):
        r = http.post("/v1/predict", json={"inputs": flights.rows[:30]})
        assert r.status_code == 200, r.text
        assert len(r.json()["predictions"]) == 30
        assert log.count_predictions() == 30


def test_the_log_holds_exactly_the_answered_predictions(client, flights) -> None:
    http, log = client
    answered = []
    for i, body in enumerate(
        [
            {"inputs": flights.row(1)},
            {"inputs": flights.row(2, distance="far")},
            {"inputs": [flights.row(3), flights.row(4)]},
            {"inputs": []},
            {"inputs": flights.row(5)},
        ]
    ):
        r = http.post("/v1/predict", json=body)
        if r.status_code == 200:
            answered += [p["request_id"] for p in r.json()["predictions"]]
        else:
            assert i in (1, 3) and r.status_code == 422
    assert sorted(log.read_predictions()["request_id"]) == sorted(answered)
    assert len(answered) == 4


def test_rejected_requests_are_logged_as_requests(make_client, flights) -> None:
    with make_client() as (http, log):
        assert http.post("/v1/predict", json={"inputs": flights.row(0, carrier=7)}).status_code == 422
        assert (
            http.post("/v1/predict", content=b"{", headers={"content-type": "application/json"}).status_code
            == 400
        )
    requests = log.read_requests()  # after close: drained
    assert sorted(requests["status"].tolist()) == [400, 422]
    assert requests["error"].notna().all()


def test_openapi_documents_the_row_fields(client) -> None:
    http, _ = client
    spec = http.get("/openapi.json").json()
    row = spec["components"]["schemas"]["InputRow"]
    assert set(row["required"]) >= {"distance", "carrier", "time_hour"}
    # unseen categories are scored by this server: the known ones are examples, not an enum
    assert "EWR" in row["properties"]["origin"]["examples"] and "enum" not in row["properties"]["origin"]
    assert row["properties"]["time_hour"]["pattern"].startswith("^")  # the validator's own date-time rule
    assert {"type": "null"} in row["properties"]["temp"]["anyOf"]  # nullable at build time
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/PredictRequest"}
    example = body["examples"]["one row"]["value"]
    # the documented example is itself a valid request
    r = http.post("/v1/predict", json=example)
    assert r.status_code == 200, r.text
    assert "422" in spec["paths"]["/v1/predict"]["post"]["responses"]
    assert http.get("/docs").status_code == 200


def test_model_info(make_client, flights) -> None:
    with make_client(admin_token="a" * 16) as (http, _):
        info = http.get("/v1/model").json()
        admin = http.get("/v1/model", headers={"authorization": "Bearer " + "a" * 16}).json()
    assert info["model"] == {"name": "flight-delay", "version": 3}
    assert info["input_columns"] == flights.model.input_columns
    assert admin["schema"]["columns"]["carrier"]["dtype"] == "string"  # the schema: admin only


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the crash we cause
def test_readyz_sees_a_dead_log_writer(client, flights, monkeypatch) -> None:
    http, log = client
    assert http.get("/readyz").status_code == 200 and log.is_healthy()

    def crash(batch: object) -> None:
        raise RuntimeError("the writer thread dies")

    monkeypatch.setattr(log._writer, "_commit_batch", crash)
    log.submit([], None)  # nothing to write: the writer is not woken
    log._writer._queue.put(object())  # a submission the crashing commit will take
    log._writer._thread.join(timeout=10)
    assert not log.is_healthy()
    r = http.get("/readyz")
    assert r.status_code == 503 and r.json()["error"]["type"] == "not_ready"

"""POST /v1/feedback: idempotent outcomes joined to predictions by request id."""

from __future__ import annotations

import pytest


@pytest.fixture
def scored(client, flights):
    http, log = client
    r = http.post("/v1/predict", json={"inputs": flights.rows[:3]})
    assert r.status_code == 200
    return http, log, [p["request_id"] for p in r.json()["predictions"]]


def test_feedback_is_created_then_unchanged(scored) -> None:
    http, log, ids = scored
    r = http.post("/v1/feedback", json={"request_id": ids[0], "outcome": True})
    assert r.status_code == 200 and r.json() == {"request_id": ids[0], "status": "created"}
    r = http.post("/v1/feedback", json={"request_id": ids[0], "outcome": True})
    assert r.json() == {"request_id": ids[0], "status": "unchanged"}
    frame = log.read_predictions().set_index("request_id")
    assert frame.loc[ids[0], "outcome"] is True or frame.loc[ids[0], "outcome"] == True  # noqa: E712
    assert log.count_feedback() == 1


def test_integer_outcome_is_stored_as_the_class(scored) -> None:
    http, _, ids = scored
    assert http.post("/v1/feedback", json={"request_id": ids[1], "outcome": 0}).json()["status"] == "created"
    # 0 and false are the same class, so this is not a conflict
    assert (
        http.post("/v1/feedback", json={"request_id": ids[1], "outcome": False}).json()["status"]
        == "unchanged"
    )


def test_unknown_id_is_404_and_conflict_is_409(scored) -> None:
    http, _, ids = scored
    r = http.post("/v1/feedback", json={"request_id": "nope", "outcome": True})
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found"
    assert r.json()["error"]["errors"][0]["field"] == "request_id"
    http.post("/v1/feedback", json={"request_id": ids[0], "outcome": True})
    r = http.post("/v1/feedback", json={"request_id": ids[0], "outcome": False})
    assert r.status_code == 409 and r.json()["error"]["type"] == "conflict"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"request_id": "x", "outcome": "yes"}, "outcome"),
        ({"request_id": "x", "outcome": 2}, "outcome"),
        ({"request_id": "x", "outcome": None}, "outcome"),
        ({"request_id": "x"}, "outcome"),
        ({"request_id": 5, "outcome": True}, "request_id"),
        ([], "body"),
        ("text", "body"),
    ],
)
def test_outcome_must_be_one_of_the_classes(scored, body, field) -> None:
    http, _, _ = scored
    r = http.post("/v1/feedback", json=body)
    assert r.status_code == 422
    assert r.json()["error"]["errors"][0]["field"] == field


def test_a_list_of_feedback(scored) -> None:
    http, log, ids = scored
    r = http.post("/v1/feedback", json=[{"request_id": i, "outcome": True} for i in ids[:2]])
    assert r.status_code == 200
    assert [x["status"] for x in r.json()["results"]] == ["created", "created"]
    r = http.post(
        "/v1/feedback", json=[{"request_id": ids[2], "outcome": False}, {"request_id": "nope", "outcome": 1}]
    )
    assert r.status_code == 404
    assert [e["field"] for e in r.json()["error"]["errors"]] == ["[1].request_id"]
    assert log.count_feedback() == 3  # the valid item of the failed list was recorded
    assert (
        http.post("/v1/feedback", content=b"{", headers={"content-type": "application/json"}).status_code
        == 400
    )

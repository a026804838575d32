"""models.abstain served: low-confidence rows are answered ``abstain: true`` with a reason and no
decision, and the review queue of the prediction log holds exactly them (a real uvicorn server)."""

from __future__ import annotations

import dataclasses

import httpx
import numpy as np
import pandas as pd
import pytest

from mlsd.modeling.abstention import AbstentionPolicy
from mlsd.serving import ServeSettings, create_app
from mlsd.store.prediction_log import PredictionLog


def _abstaining(flights, min_confidence: float = 0.3):
    policy = AbstentionPolicy(task="binary", min_confidence=min_confidence, threshold=flights.model.threshold)
    model = dataclasses.replace(
        flights.model, metadata={**flights.model.metadata, "abstain": policy.to_dict()}
    )
    return model, policy


def _serve_and_ask(flights, live_server, log: PredictionLog, model, rows):
    settings = ServeSettings(
        model=model, model_name="flight-delay", model_version=3, log=log, time_column="time_hour"
    )
    with live_server(create_app(settings)) as url:
        answer = httpx.post(f"{url}/v1/predict", json={"inputs": rows}, timeout=30)
        single = httpx.post(f"{url}/v1/predict", json={"inputs": rows[0]}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert single.status_code == 200, single.text
    return answer.json()["predictions"], single.json()["predictions"][0]


def test_low_confidence_rows_abstain_and_are_queued_for_review(flights, live_server, tmp_path) -> None:
    model, policy = _abstaining(flights)
    rows = flights.rows[:120]
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}")
    answers, single = _serve_and_ask(flights, live_server, log, model, rows)

    expected_score = model.predict_frame(pd.DataFrame(rows))["score"].to_numpy()
    expected = policy.abstains(expected_score)
    assert 0 < expected.sum() < len(rows)  # the band holds some rows, not all: the test can fail
    got = np.array([a["abstain"] for a in answers])
    np.testing.assert_array_equal(got, expected)
    low, high = policy.band()
    for a in answers:
        if a["abstain"]:
            assert a["decision"] is None and low < a["score"] < high
            assert "uncertain band" in a["reason"]
        else:
            assert "reason" not in a and a["decision"] == (a["score"] >= model.threshold)
    assert single["abstain"] == bool(expected[0])

    reader = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}")  # the server closed its log
    queue, logged = reader.read_review_queue(), reader.read_predictions()
    abstained = {a["request_id"] for a in answers if a["abstain"]} | (
        {single["request_id"]} if single["abstain"] else set()
    )
    assert set(queue["request_id"]) == abstained
    # the queue carries the inputs and the model's own decision, for the reviewer
    by_id = {a["request_id"]: a for a in answers}
    for _, q in queue.iterrows():
        if q["request_id"] in by_id:
            assert q["score"] == pytest.approx(by_id[q["request_id"]]["score"])
        assert q["confidence"] < policy.min_confidence and q["reason"].startswith("confidence")
        assert q["decision"] == (q["score"] >= model.threshold) and "distance" in queue.columns
    assert len(logged) == len(rows) + 1  # every row is still a logged prediction


def test_a_model_without_a_policy_answers_as_before(flights, live_server, tmp_path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}")
    answers, _ = _serve_and_ask(flights, live_server, log, flights.model, flights.rows[:20])
    assert all("abstain" not in a and a["decision"] is not None for a in answers)
    assert PredictionLog(f"sqlite:///{tmp_path / 'log.db'}").read_review_queue().empty


@pytest.mark.xdist_group("postgres")
def test_the_review_queue_on_postgresql(flights, live_server, postgres_url) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:  # a fresh log: tables of other tests go first
        for table in (
            "review_queue",
            "feedback_corrections",
            "feedback",
            "shadow_predictions",
            "predictions",
        ):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    engine.dispose()
    model, _ = _abstaining(flights, 0.5)
    rows = flights.rows[:60]
    answers, single = _serve_and_ask(flights, live_server, PredictionLog(postgres_url), model, rows)
    queue = PredictionLog(postgres_url).read_review_queue()
    assert set(queue["request_id"]) == {a["request_id"] for a in [*answers, single] if a["abstain"]}
    assert len(queue) > 0

"""Real uvicorn servers on free local ports: concurrent requests answered and logged; replay with feedback."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from mlsd.serving import ServeSettings, create_app
from mlsd.store.prediction_log import PredictionLog


def test_real_server_answers_200_concurrent_requests(flights, tmp_path, live_server) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}")
    app = create_app(ServeSettings(model=flights.model, model_name="m", model_version=2, log=log))

    async def send(base: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=base, timeout=20, limits=limits) as client:
            bodies = [{"inputs": flights.row(i % len(flights.rows))} for i in range(195)]
            bodies += [{"inputs": flights.row(0, distance="x")}] * 5  # bad requests in the crowd
            return await asyncio.wait_for(
                asyncio.gather(*(client.post("/v1/predict", json=b) for b in bodies)), timeout=30
            )

    with live_server(app) as base:
        responses = asyncio.run(send(base))
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        ready = httpx.get(f"{base}/readyz", timeout=5).status_code
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 195 and statuses.count(422) == 5
    assert ready == 200
    ids = {r.json()["predictions"][0]["request_id"] for r in responses if r.status_code == 200}
    assert len(ids) == 195
    assert log.count_predictions() == 195  # every answered prediction was committed
    assert sorted(log.read_predictions()["request_id"]) == sorted(ids)
    assert len(log.read_requests()) == 200  # the lifespan's close() drained the rejected ones too
    assert float(re.search(r"^mlsd_batch_size_sum (\S+)$", metrics, re.M).group(1)) == 200


def test_replay_posts_every_outcome_in_lists_and_counts_failures(flights, tmp_path, live_server) -> None:
    import pandas as pd

    from mlsd.serving.replay import replay

    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}")
    app = create_app(ServeSettings(model=flights.model, model_name="m", model_version=2, log=log))
    rows = pd.DataFrame(flights.rows[:130])
    labels = (rows["arr_delay"] > 15).tolist()
    rows["distance"] = rows["distance"].astype(object)
    rows.loc[7, "distance"] = "far"  # one invalid row: a 422, no prediction, no feedback for it
    with live_server(app) as base:
        result = replay(base, rows, labels=labels, concurrency=4, feedback_batch=50, timeout=20)
    assert (result.sent, result.ok, result.statuses) == (130, 129, {"200": 129, "422": 1})
    assert result.feedback_sent == result.feedback_ok == 129  # in lists of 50, 50 and 29
    logged = log.read_predictions()
    assert len(logged) == 129 and logged["outcome"].notna().all()
    assert set(logged["request_id"]) == set(result.acknowledged)


@pytest.mark.parametrize(
    ("auth", "replay_token"),
    [
        (
            {"feedback_auth": "token", "feedback_token": "feedback-token-0123456789"},
            "feedback-token-0123456789",
        ),
        ({"feedback_auth": "signed_id", "feedback_secret": "signing-secret-0123456789"}, None),
    ],
    ids=["token", "signed_id"],
)
def test_replay_authenticates_its_feedback(flights, tmp_path, live_server, auth, replay_token) -> None:
    import pandas as pd

    from mlsd.serving.replay import replay

    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}")
    settings = ServeSettings(model=flights.model, model_name="m", model_version=2, log=log, **auth)
    rows = pd.DataFrame(flights.rows[:20])
    labels = (rows["arr_delay"] > 15).tolist()
    with live_server(create_app(settings)) as base:
        result = replay(base, rows, labels=labels, feedback_batch=8, feedback_token=replay_token, timeout=20)
        if replay_token:  # the same replay without the token is refused, and records nothing
            refused = replay(base, rows.head(3), labels=labels[:3], timeout=20)
            assert refused.feedback_ok == 0 and "401" in refused.errors[0]
    assert result.feedback_sent == result.feedback_ok == 20, result.errors
    assert log.count_feedback() == 20

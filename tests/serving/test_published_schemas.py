"""What the server publishes and answers at its edges: feedback bounds for regression, enums of
non-string categories, the feedback item's optional fields, and the 401's challenge."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlsd.data import infer_schema
from mlsd.serving import ServeSettings, create_app
from mlsd.store import PackagedModel
from mlsd.store.prediction_log import PredictionLog


def _app(tmp_path, task: str, frame: pd.DataFrame, y: Any, **settings: Any) -> TestClient:
    estimator = LinearRegression() if task == "regression" else LogisticRegression()
    estimator.fit(frame.astype(float), y)
    schema = infer_schema(frame, categorical=[c for c in frame if frame[c].dtype == bool])
    model = PackagedModel(
        pipeline=estimator,
        task=task,
        input_columns=list(frame),
        schema=schema.to_dict(),
        threshold=None if task == "regression" else 0.5,
    )
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}")
    app = create_app(ServeSettings(model=model, model_name="m", model_version=1, log=log, **settings))
    return TestClient(app, raise_server_exceptions=False)


def _frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(size=n), "flag": rng.random(n) > 0.5})


def test_a_regression_outcome_beyond_the_number_bound_is_422(tmp_path) -> None:
    frame = _frame()
    with _app(tmp_path, "regression", frame, frame["x"] * 2) as http:
        rid = http.post("/v1/predict", json={"inputs": {"x": 0.1, "flag": True}}).json()["predictions"][0]
        rid = rid["request_id"]
        huge = http.post("/v1/feedback", json={"request_id": rid, "outcome": 10**30})
        assert huge.status_code == 422, huge.text  # np.isfinite raised on it: a 500
        assert huge.json()["error"]["errors"][0]["field"] == "outcome"
        assert http.post("/v1/feedback", json={"request_id": rid, "outcome": 12}).status_code == 200
        outcome = http.get("/openapi.json").json()["components"]["schemas"]["FeedbackItem"]["properties"]
        assert outcome["outcome"]["maximum"] == 1e18


def test_boolean_categories_are_published_as_booleans(tmp_path) -> None:
    frame = _frame()
    with _app(tmp_path, "binary", frame, frame["x"] > 0, reject_unseen_categories=True) as http:
        spec = http.get("/openapi.json")
        assert spec.status_code == 200, spec.text  # float("False") crashed it
        row = spec.json()["components"]["schemas"]["InputRow"]["properties"]["flag"]
        flag = row.get("anyOf", [row])[0]
        assert flag["enum"] == [False, True]


def test_the_feedback_item_documents_correct_and_signature(tmp_path) -> None:
    frame = _frame()
    secret = {"feedback_auth": "signed_id", "feedback_secret": "signing-secret-0123456789"}
    for settings, required in [
        ({}, ["request_id", "outcome"]),
        (secret, ["request_id", "outcome", "signature"]),
    ]:
        with _app(tmp_path, "binary", frame, frame["x"] > 0, **settings) as http:
            item = http.get("/openapi.json").json()["components"]["schemas"]["FeedbackItem"]
            assert item["required"] == required
            assert item["properties"]["correct"] == {
                "type": "boolean",
                "description": "true: replace a stored outcome (audited)",
            }


def test_a_401_names_the_bearer_scheme(tmp_path) -> None:
    frame = _frame()
    token = {"host": "0.0.0.0", "feedback_auth": "token", "feedback_token": "feedback-token-0123456789"}
    with _app(tmp_path, "binary", frame, frame["x"] > 0, **token) as http:
        r = http.post(
            "/v1/feedback", json={"request_id": "x", "outcome": True}, headers={"host": "127.0.0.1"}
        )
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"

"""POST /v1/explain on a real server: contributions that add up to the model's raw score, the
predict route's validation, and 501 for a model that cannot be explained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from scipy.special import logit
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from mlsd.serving import ServeSettings, create_app
from mlsd.store import PackagedModel
from mlsd.store.prediction_log import PredictionLog


def _app(model: PackagedModel, tmp_path: Path, name: str = "log") -> Any:
    log = PredictionLog(f"sqlite:///{tmp_path / f'{name}.db'}")
    return create_app(
        ServeSettings(
            model=model, model_name="flight-delay", model_version=2, log=log, time_column="time_hour"
        )
    )


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    return frame


def _packaged(flights: Any, estimator: Any) -> PackagedModel:
    """``estimator`` behind the fixture's fitted features, fitted on its held-out rows (enough here)."""
    frame = _frame(flights.rows)
    features = flights.model.pipeline[0]
    pipeline = make_pipeline(features, estimator)
    pipeline.steps[-1][1].fit(features.transform(frame), frame["arr_delay"] > 15)
    return PackagedModel(
        pipeline=pipeline,
        task="binary",
        input_columns=flights.model.input_columns,
        schema=flights.model.schema,
    )


def test_lightgbm_contributions_sum_to_the_raw_margin(flights, tmp_path, live_server) -> None:
    lgbm = LGBMClassifier(n_estimators=30, num_leaves=7, min_child_samples=10, verbose=-1, n_jobs=1)
    model = _packaged(flights, lgbm)
    rows = flights.rows[:40]
    with live_server(_app(model, tmp_path)) as base, httpx.Client(base_url=base) as http:
        answer = http.post("/v1/explain", json={"inputs": rows})
        scores = [p["score"] for p in http.post("/v1/predict", json={"inputs": rows}).json()["predictions"]]
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == {"name": "flight-delay", "version": 2}
    assert body["raw_score"] == "the log-odds of the positive class"
    explained = body["explanations"]
    assert len(explained) == len(rows)
    # the margin straight from the booster, not from the explainer
    features, estimator = model.pipeline[0], model.pipeline[-1]
    margin = estimator.booster_.predict(features.transform(_frame(rows)), raw_score=True)
    for e, m, score in zip(explained, margin, scores, strict=True):
        assert list(e["contributions"]) == model.input_columns
        total = e["base_value"] + sum(e["contributions"].values())
        assert abs(total - m) < 1e-6 and abs(e["raw_score"] - m) < 1e-6
        assert abs(m - logit(score)) < 1e-6  # what /v1/predict served is the sigmoid of that margin
        assert e["output"] is True
    assert len({e["base_value"] for e in explained}) == 1
    assert any(abs(v) > 1e-3 for e in explained for v in e["contributions"].values())


def test_linear_contributions_use_the_means_the_build_stored(flights, tmp_path, live_server) -> None:
    model = flights.model  # logistic regression; metadata["explain"]["means"] as a build writes it
    with live_server(_app(model, tmp_path)) as base, httpx.Client(base_url=base) as http:
        one = http.post("/v1/explain", json={"inputs": flights.row(0)})
        score = http.post("/v1/predict", json={"inputs": flights.row(0)}).json()["predictions"][0]["score"]
    assert one.status_code == 200, one.text
    (e,) = one.json()["explanations"]
    assert abs(e["base_value"] + sum(e["contributions"].values()) - e["raw_score"]) < 1e-9
    assert abs(e["raw_score"] - logit(score)) < 1e-6
    means = np.asarray(model.metadata["explain"]["means"])
    coef, intercept = model.pipeline[-1].coef_[0], model.pipeline[-1].intercept_[0]
    assert abs(e["base_value"] - (means @ coef + intercept)) < 1e-9


def test_invalid_rows_get_the_predict_routes_422(client) -> None:
    http, _ = client
    bad = {"inputs": [{"distance": "far", "carrier": "UA"}]}
    explained, predicted = http.post("/v1/explain", json=bad), http.post("/v1/predict", json=bad)
    assert explained.status_code == predicted.status_code == 422
    assert explained.json()["error"]["errors"] == predicted.json()["error"]["errors"]
    assert http.post("/v1/explain", content=b"{}", headers={"content-type": "text/plain"}).status_code == 415
    assert http.post("/v1/explain", json={"inputs": []}).status_code == 422


def test_a_model_that_cannot_be_explained_answers_501(flights, tmp_path, live_server) -> None:
    knn = _packaged(flights, KNeighborsClassifier(n_neighbors=5))
    no_means = PackagedModel(
        pipeline=flights.model.pipeline,
        task="binary",
        input_columns=flights.model.input_columns,
        schema=flights.model.schema,
    )
    for name, model, why in [
        ("knn", knn, "no SHAP explainer for a KNeighborsClassifier"),
        ("no-means", no_means, "training means"),
    ]:
        with live_server(_app(model, tmp_path, name)) as base, httpx.Client(base_url=base) as http:
            answer = http.post("/v1/explain", json={"inputs": flights.row(0)})
            documented = http.get("/openapi.json").json()["paths"]["/v1/explain"]["post"]
            predicted = http.post("/v1/predict", json={"inputs": flights.row(0)})
        assert answer.status_code == 501, answer.text
        error = answer.json()["error"]
        assert error["type"] == "not_implemented" and why in error["message"]
        assert "501" in documented["responses"] and predicted.status_code == 200
        ref = documented["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/PredictRequest"


def test_a_multiclass_row_explains_the_class_with_the_largest_raw_score() -> None:
    from mlsd.modeling.explain import Contributions
    from mlsd.serving.explain import _rows

    values = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)  # rows, columns, classes
    base = np.array([0.5, -1.0, 2.0])
    raw = base[None, :] + values.sum(axis=1)
    raw[0, 0] += 100.0  # row 0's largest raw score is class "a"; row 1's is class "c"
    c = Contributions(["x", "y"], values, base, raw, ["a", "b", "c"])
    first, second = _rows(c, "multiclass")
    assert first["output"] == "a" and first["contributions"] == {"x": 0.0, "y": 3.0}
    assert first["base_value"] == 0.5 and first["raw_score"] == raw[0, 0]
    assert second["output"] == "c" and second["contributions"] == {"x": 8.0, "y": 11.0}
    assert second["base_value"] + sum(second["contributions"].values()) == second["raw_score"]

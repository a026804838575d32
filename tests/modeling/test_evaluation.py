"""evaluate_model on real flights rows, and the trade-off table's renderings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from mlsd.errors import DataError, DesignError, ModelError
from mlsd.modeling import TradeOffTable, evaluate_model, make_baseline, make_candidate


def _features(cols):
    return ColumnTransformer([("num", "passthrough", cols)])


@pytest.fixture(scope="module")
def binary_table(flights) -> TradeOffTable:
    cols = list(flights.numeric)
    train, valid, test = flights.train, flights.valid, flights.test
    y = flights.label
    common = dict(
        X_valid=valid,
        y_valid=y(valid),
        X_test=test,
        y_test=y(test),
        task="binary",
        metrics=["roc_auc", "pr_auc", "f1"],
        primary="roc_auc",
        n_bootstrap=100,
        n_latency_calls=20,
    )
    cand = Pipeline(
        [("features", _features(cols)), ("model", make_candidate("lightgbm", "binary", {"n_estimators": 50}))]
    ).fit(train, y(train))
    base = make_baseline("majority", "binary").fit(train, y(train))
    return TradeOffTable(
        [
            evaluate_model("majority", base, kind="baseline", train_seconds=0.01, **common),
            evaluate_model("gbdt", cand, kind="candidate", train_seconds=1.5, **common),
        ]
    )


def test_measurements(binary_table, flights) -> None:
    gbdt = binary_table["gbdt"]
    assert set(gbdt.metrics) == {"valid", "test"}
    assert set(gbdt.metrics["valid"]) == {"roc_auc", "pr_auc", "f1", "ece", "brier"}
    auc = gbdt.estimate("roc_auc")
    assert auc.low < auc.value < auc.high and auc.n == len(flights.valid)
    assert gbdt.estimate("pr_auc").low is None  # only the primary gets an interval
    expected = roc_auc_score(flights.label(flights.valid), gbdt.model.predict_proba(flights.valid)[:, 1])
    assert auc.value == pytest.approx(expected)
    assert 0 < gbdt.p50_latency_ms <= gbdt.p99_latency_ms
    assert gbdt.throughput_rows_per_s > 0 and gbdt.size_mb > binary_table["majority"].size_mb > 0
    assert gbdt.train_seconds == 1.5
    assert binary_table["majority"].value("roc_auc") == 0.5
    with pytest.raises(ModelError, match="no such measurement"):
        gbdt.estimate("rmse")


def test_renderings(binary_table) -> None:
    frame = binary_table.to_frame()
    assert frame["model"].tolist() == ["majority", "gbdt"]
    for col in [
        "roc_auc (valid)",
        "roc_auc (valid) low",
        "roc_auc (test) high",
        "ece (test)",
        "p99 latency (ms)",
        "size (MB)",
        "train (s)",
    ]:
        assert col in frame.columns
    records = json.loads(json.dumps(binary_table.to_records()))
    assert records[1]["metrics"]["valid"]["roc_auc"]["value"] == binary_table["gbdt"].value("roc_auc")
    assert [e.name for e in binary_table.candidates] == ["gbdt"]


def test_string_labels_score_the_positive_class(flights) -> None:
    cols = list(flights.numeric)
    labels = np.where(flights.label(flights.train) == 1, "late", "on_time")  # classes_[1] is "on_time"
    model = Pipeline(
        [("features", _features(cols)), ("model", make_candidate("logistic_regression", "binary"))]
    )
    model.fit(flights.train, labels)
    y_valid = np.where(flights.label(flights.valid) == 1, "late", "on_time")
    ev = evaluate_model(
        "logreg",
        model,
        kind="candidate",
        X_valid=flights.valid,
        y_valid=y_valid,
        task="binary",
        metrics=[],
        primary="roc_auc",
        n_bootstrap=0,
        train_seconds=0.0,
        n_latency_calls=5,
    )
    proba = model.predict_proba(flights.valid)[:, 1]
    assert ev.value("roc_auc") == pytest.approx(roc_auc_score(y_valid == "on_time", proba))
    assert "test" not in ev.metrics


@pytest.mark.parametrize(
    ("task", "target", "metrics", "primary", "spec"),
    [
        ("multiclass", "origin", ["log_loss", "f1_macro"], "accuracy", "majority"),
        ("regression", "arr_delay", ["rmse", "mape"], "mae", "median"),
    ],
)
def test_other_tasks(flights, task, target, metrics, primary, spec) -> None:
    base = make_baseline(spec, task).fit(flights.train, flights.train[target])
    ev = evaluate_model(
        spec,
        base,
        kind="baseline",
        X_valid=flights.valid,
        y_valid=flights.valid[target],
        X_test=flights.test,
        y_test=flights.test[target],
        task=task,
        metrics=metrics,
        primary=primary,
        n_bootstrap=30,
        train_seconds=0.0,
        n_latency_calls=5,
        latency_rows=flights.test.head(3),
    )
    assert set(ev.metrics["test"]) == {primary, *metrics}
    est = ev.estimate(primary, "test")
    assert est.low <= est.value <= est.high


def test_metric_must_fit_the_task(flights) -> None:
    base = make_baseline("mean", "regression").fit(flights.train, flights.train["arr_delay"])
    with pytest.raises(DesignError, match="does not apply") as info:
        evaluate_model(
            "mean",
            base,
            kind="baseline",
            X_valid=flights.valid,
            y_valid=flights.valid["arr_delay"],
            task="regression",
            metrics=["roc_auc"],
            primary="rmse",
            train_seconds=0.0,
        )
    assert info.value.field == "goals.metrics"
    with pytest.raises(DesignError, match="kind"):
        evaluate_model(
            "mean",
            base,
            kind="champion",
            X_valid=flights.valid,
            y_valid=flights.valid["arr_delay"],
            task="regression",
            metrics=[],
            primary="rmse",
            train_seconds=0.0,
        )


def test_duplicate_names_rejected(binary_table) -> None:
    with pytest.raises(ModelError, match="unique"):
        TradeOffTable([binary_table["gbdt"], binary_table["gbdt"]])


def test_binary_labels_the_model_never_saw_raise(flights) -> None:
    base = make_baseline("majority", "binary").fit(flights.train, flights.label(flights.train))
    y_valid = flights.label(flights.valid).to_numpy().copy()
    y_valid[:3] = 2  # would have been scored as negatives
    with pytest.raises(DataError, match="never seen") as info:
        evaluate_model(
            "majority",
            base,
            kind="baseline",
            X_valid=flights.valid,
            y_valid=y_valid,
            task="binary",
            metrics=[],
            primary="roc_auc",
            n_bootstrap=0,
            train_seconds=0.0,
            n_latency_calls=1,
        )
    assert info.value.field == "y_valid" and info.value.received == [2]

"""Every registered candidate type fits real flights data and beats the trivial baseline."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlsd.errors import DesignError
from mlsd.modeling import list_candidate_types, make_baseline, make_candidate
from mlsd.modeling.ensembles import is_ensemble

# Small forests/boosters keep the suite fast; the defaults are checked separately below.
_FAST = {"lightgbm": {"n_estimators": 50}, "random_forest": {"n_estimators": 30}}


def _pipeline(type_name: str, task: str) -> Pipeline:
    members = None
    if is_ensemble(type_name):  # stacking, voting: over a linear model and a small booster
        linear = "ridge" if task == "regression" else "logistic_regression"
        members = [
            ("linear", make_candidate(linear, task, seed=0)),
            ("gbdt", make_candidate("lightgbm", task, _FAST["lightgbm"], seed=0)),
        ]
    est = make_candidate(
        type_name, task, _FAST.get(type_name, {}), seed=0, field="models.candidates[0]", members=members
    )
    return Pipeline([("scale", StandardScaler()), ("model", est)])


@pytest.mark.parametrize("type_name", list_candidate_types("binary"))
def test_binary_candidates_beat_majority_auc(flights, type_name: str) -> None:
    train, valid = flights.train, flights.valid
    y_train, y_valid = flights.label(train), flights.label(valid)
    model = _pipeline(type_name, "binary").fit(train[list(flights.numeric)], y_train)
    majority = make_baseline("majority", "binary").fit(train, y_train)
    auc = roc_auc_score(y_valid, model.predict_proba(valid[list(flights.numeric)])[:, 1])
    base = roc_auc_score(y_valid, majority.predict_proba(valid)[:, 1])
    assert base == 0.5
    assert auc > base + 0.05


@pytest.mark.parametrize("type_name", list_candidate_types("multiclass"))
def test_multiclass_candidates_beat_majority_accuracy(flights, type_name: str) -> None:
    # which NYC airport a flight leaves from, from its schedule and distance
    train, valid = flights.train, flights.valid
    model = _pipeline(type_name, "multiclass").fit(train[list(flights.numeric)], train["origin"])
    majority = make_baseline("majority", "multiclass").fit(train, train["origin"])
    assert list(model.classes_) == ["EWR", "JFK", "LGA"]
    acc = accuracy_score(valid["origin"], model.predict(valid[list(flights.numeric)]))
    assert acc > accuracy_score(valid["origin"], majority.predict(valid)) + 0.02


@pytest.mark.parametrize("type_name", list_candidate_types("regression"))
def test_regression_candidates_beat_mean_r2(flights, type_name: str) -> None:
    train, valid = flights.train, flights.valid
    # log-scaled delay keeps the heavy tail from dominating a 3k-row sample
    y_train, y_valid = np.log1p(train["arr_delay"].clip(lower=0)), np.log1p(valid["arr_delay"].clip(lower=0))
    model = _pipeline(type_name, "regression").fit(train[list(flights.numeric)], y_train)
    mean = make_baseline("mean", "regression").fit(train, y_train)
    assert (
        r2_score(y_valid, model.predict(valid[list(flights.numeric)]))
        > r2_score(y_valid, mean.predict(valid)) + 0.01
    )


def test_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSD_N_JOBS", "3")
    lgbm = make_candidate("lightgbm", "binary", {"learning_rate": 0.1}, class_weight="balanced", seed=7)
    assert (lgbm.n_estimators, lgbm.num_leaves, lgbm.learning_rate) == (300, 63, 0.1)
    assert (lgbm.class_weight, lgbm.random_state, lgbm.n_jobs, lgbm.verbose) == ("balanced", 7, 3, -1)
    rf = make_candidate("random_forest", "binary")
    assert (rf.n_estimators, rf.min_samples_leaf, rf.max_samples, rf.n_jobs) == (100, 20, 0.3, 3)
    monkeypatch.delenv("MLSD_N_JOBS")
    assert make_candidate("random_forest", "binary").n_jobs == (os.cpu_count() or 1)
    assert make_candidate("lightgbm", "binary", {"n_jobs": 1}).n_jobs == 1  # the design's params win
    assert make_candidate("logistic_regression", "multiclass").max_iter == 1000


@pytest.mark.parametrize(
    ("kwargs", "field", "match"),
    [
        ({"type_name": "xgboostt", "task": "binary"}, "models.candidates[2].type", "unknown candidate type"),
        (
            {"type_name": "linear_regression", "task": "binary"},
            "models.candidates[2].type",
            "unknown candidate",
        ),
        (
            {"type_name": "ridge", "task": "regression", "params": {"alpha_": 1}},
            "models.candidates[2].params.alpha_",
            "did you mean alpha",
        ),
        (
            {"type_name": "logistic_regression", "task": "binary", "params": {"C": -1.0}},
            "models.candidates[2].params.C",
            "invalid parameter value",
        ),
        (
            {"type_name": "ridge", "task": "regression", "class_weight": "balanced"},
            "models.class_weight",
            "no class weights",
        ),
    ],
)
def test_errors_name_the_design_field(kwargs: dict, field: str, match: str) -> None:
    with pytest.raises(DesignError, match=match) as info:
        make_candidate(**kwargs, field="models.candidates[2]")
    assert info.value.field == field


def test_lists_are_per_task() -> None:
    assert "logistic_regression" in list_candidate_types("binary")
    assert "logistic_regression" not in list_candidate_types("regression")
    # the focal loss of mlsd.modeling.focal is binary; every other classifier serves both tasks
    binary, multiclass = list_candidate_types("binary"), list_candidate_types("multiclass")
    assert sorted(set(binary) - set(multiclass)) == ["lightgbm_focal"] and set(multiclass) <= set(binary)


@pytest.mark.parametrize(
    ("params", "bad"),
    [
        ({"n_estimators": "-5"}, "n_estimators"),
        ({"n_estimators": 0}, "n_estimators"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"num_leaves": 1}, "num_leaves"),
        ({"subsample": 1.5}, "subsample"),
        ({"colsample_bytree": 0}, "colsample_bytree"),
        ({"reg_lambda": -1.0}, "reg_lambda"),
        ({"boosting_type": "gbm"}, "boosting_type"),
    ],
)
@pytest.mark.parametrize("task", ["binary", "regression"])
def test_lightgbm_values_are_checked_before_training(params: dict, bad: str, task: str) -> None:
    # LightGBM's sklearn API declares no constraints of its own, so sklearn's check would pass these
    with pytest.raises(DesignError) as excinfo:
        make_candidate("lightgbm", task, params, field="models.candidates[0]")
    assert excinfo.value.field == f"models.candidates[0].params.{bad}"
    assert excinfo.value.received == params[bad]


def test_lightgbm_values_in_range_pass_and_fit() -> None:
    params = {"n_estimators": 5, "learning_rate": 1.0, "num_leaves": 2, "subsample": 1.0, "max_depth": -1}
    est = make_candidate("lightgbm", "binary", params, field="models.candidates[0]")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    est.fit(X, X[:, 0] > 0)
    assert est.booster_.num_trees() == 5

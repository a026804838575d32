"""lightgbm_focal: the focal loss's derivatives, its log-loss limit, sigmoid scores, pickling, serving."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier

from mlsd.errors import DesignError
from mlsd.modeling.candidates import list_candidate_types, make_candidate
from mlsd.modeling.focal import (
    FocalLGBMClassifier,
    FocalObjective,
    best_constant,
    focal_grad_hess,
    focal_loss,
)
from mlsd.store.packaged import PackagedModel


@pytest.fixture(scope="module")
def rare() -> tuple[pd.DataFrame, np.ndarray]:
    """4,000 rows, 3 informative columns and one noise column, ~7 % positives."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(4000, 4)), columns=["a", "b", "c", "noise"])
    margin = 1.5 * X["a"] - X["b"] + 0.5 * X["a"] * X["c"] - 3.2
    y = (rng.random(4000) < 1 / (1 + np.exp(-margin))).astype(int).to_numpy()
    return X, y


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.9])
def test_gradient_and_hessian_match_finite_differences(gamma: float, alpha: float | None) -> None:
    z = np.linspace(-6, 6, 49)
    y = np.tile([0.0, 1.0], 25)[:49]
    h = 1e-5
    grad, hess = focal_grad_hess(y, z, gamma, alpha)
    num_grad = (focal_loss(y, z + h, gamma, alpha) - focal_loss(y, z - h, gamma, alpha)) / (2 * h)
    g_plus, _ = focal_grad_hess(y, z + h, gamma, alpha)
    g_minus, _ = focal_grad_hess(y, z - h, gamma, alpha)
    np.testing.assert_allclose(grad, num_grad, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(hess, (g_plus - g_minus) / (2 * h), rtol=1e-5, atol=1e-8)


def test_gamma_zero_is_the_log_loss() -> None:
    z = np.array([-3.0, -0.5, 0.0, 2.0])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(focal_loss(y, z, 0.0), -(y * np.log(p) + (1 - y) * np.log(1 - p)))
    grad, hess = focal_grad_hess(y, z, 0.0)
    np.testing.assert_allclose(grad, p - y)
    np.testing.assert_allclose(hess, p * (1 - p))


def test_the_objective_floors_a_negative_curvature() -> None:
    y, z = np.array([1.0, 1.0]), np.array([-6.0, 1.0])  # a very wrong positive, a right one
    _, exact = focal_grad_hess(y, z, 2.0)
    assert exact[0] < 0 < exact[1]  # the exact hessian is negative for the wrong row
    _, used = FocalObjective(2.0, None, 0.0)(y, z)
    assert used[0] > 0 and used[1] == exact[1]


def test_best_constant_minimises_the_mean_loss() -> None:
    y = np.r_[np.ones(30), np.zeros(470)]
    assert best_constant(y, 0.0, None) == pytest.approx(np.log(30 / 470), abs=1e-6)
    c = best_constant(y, 2.0, 0.25)
    loss = [float(np.mean(focal_loss(y, np.full(500, c + d), 2.0, 0.25))) for d in (-0.01, 0.0, 0.01)]
    assert loss[1] < loss[0] and loss[1] < loss[2]


def test_gamma_zero_matches_lightgbm_binary_logloss(rare) -> None:
    X, y = rare
    params = {"n_estimators": 80, "learning_rate": 0.05, "num_leaves": 15, "verbose": -1, "random_state": 0}
    focal = FocalLGBMClassifier(gamma=0.0, alpha=None, **params).fit(X, y)
    builtin = LGBMClassifier(**params).fit(X, y)
    np.testing.assert_allclose(focal.predict_proba(X), builtin.predict_proba(X), atol=1e-6)
    np.testing.assert_array_equal(focal.predict(X), builtin.predict(X))


def test_scores_are_sigmoid_probabilities_of_the_margin(rare) -> None:
    X, y = rare
    model = make_candidate("lightgbm_focal", "binary", {"n_estimators": 60, "gamma": 2.0, "alpha": 0.25})
    model.fit(X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2) and ((proba > 0) & (proba < 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-model.decision_function(X))))
    raw = model.predict_proba(X, raw_score=True)  # LightGBM's own margin, without the offset
    np.testing.assert_allclose(model.decision_function(X), model.offset_ + raw)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, proba[:, 1]) > 0.8  # it learnt the signal, not only the base rate
    # gamma > 0 pulls the scores towards 0.5: the mean score is above the real rate
    assert proba[:, 1].mean() > y.mean()


def test_focal_model_pickles_and_serves(rare) -> None:
    from sklearn.pipeline import Pipeline

    from mlsd.features.pipeline import build_feature_pipeline

    X, y = rare
    pipe = Pipeline(
        [
            ("features", build_feature_pipeline(numeric=list(X.columns))),
            ("model", make_candidate("lightgbm_focal", "binary", {"n_estimators": 30})),
        ]
    ).fit(X, y)
    again = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(again.predict_proba(X), pipe.predict_proba(X))
    frame = PackagedModel(pipeline=again, task="binary", input_columns=list(X.columns)).predict_frame(X)
    np.testing.assert_allclose(frame["score"], pipe.predict_proba(X)[:, 1])


def test_registry_offers_it_for_binary_only() -> None:
    assert "lightgbm_focal" in list_candidate_types("binary")
    assert "lightgbm_focal" not in list_candidate_types("multiclass")
    assert "lightgbm_focal" not in list_candidate_types("regression")


@pytest.mark.parametrize(
    ("params", "bad"), [({"gamma": -1}, "gamma"), ({"alpha": 1.5}, "alpha"), ({"gama": 2}, "gama")]
)
def test_bad_focal_parameters_are_design_errors(params: dict, bad: str) -> None:
    with pytest.raises(DesignError) as err:
        make_candidate("lightgbm_focal", "binary", params, field="models.candidates[3]")
    assert err.value.field == f"models.candidates[3].params.{bad}"


def test_its_own_objective_cannot_be_replaced(rare) -> None:
    X, y = rare
    with pytest.raises(DesignError, match="sets its own objective"):
        FocalLGBMClassifier(objective="binary", n_estimators=5).fit(X, y)


def test_more_than_two_classes_are_refused(rare) -> None:
    X, _ = rare
    with pytest.raises(DesignError, match="binary"):
        FocalLGBMClassifier(n_estimators=5).fit(X, np.arange(len(X)) % 3)

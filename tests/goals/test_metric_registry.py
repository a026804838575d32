"""Every registered metric agrees with an independent sklearn computation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from mlsd.errors import DataError, DesignError
from mlsd.goals import compute_metric, get_metric, list_metrics

RNG = np.random.default_rng(7)
N = 500
Y_BIN = RNG.integers(0, 2, N)
P_BIN = np.clip(0.35 * Y_BIN + 0.65 * RNG.random(N), 0.0, 1.0)
Y_REG = np.where(RNG.random(N) < 0.1, 0.0, RNG.normal(10.0, 3.0, N))
V_REG = Y_REG + RNG.normal(0.0, 1.0, N)
CLASSES = np.array(["a", "b", "c"])
Y_MC = CLASSES[RNG.integers(0, 3, N)]
P_MC = RNG.dirichlet(np.ones(3), N)


def _ece_reference(y: np.ndarray, p: np.ndarray) -> float:
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    # calibration_curve drops empty bins and returns no counts: recount with its own bin rule
    ids = np.searchsorted(np.linspace(0, 1, 11)[1:-1], p)
    counts = np.bincount(ids, minlength=10)
    counts = counts[counts > 0]
    return float(np.sum(counts * np.abs(prob_true - prob_pred)) / len(y))


def _mape_reference(y: np.ndarray, v: np.ndarray) -> float:
    keep = y != 0
    return float(skm.mean_absolute_percentage_error(y[keep], v[keep]))


_LABEL = (P_BIN >= 0.5).astype(int)
BINARY_REFERENCE: dict[str, Callable[[], float]] = {
    "roc_auc": lambda: skm.roc_auc_score(Y_BIN, P_BIN),
    "pr_auc": lambda: skm.average_precision_score(Y_BIN, P_BIN),
    "log_loss": lambda: skm.log_loss(Y_BIN, P_BIN),
    "brier": lambda: skm.brier_score_loss(Y_BIN, P_BIN),
    "ece": lambda: _ece_reference(Y_BIN, P_BIN),
    "f1": lambda: skm.f1_score(Y_BIN, _LABEL),
    "f1_macro": lambda: skm.f1_score(Y_BIN, _LABEL, average="macro"),
    "precision": lambda: skm.precision_score(Y_BIN, _LABEL),
    "recall": lambda: skm.recall_score(Y_BIN, _LABEL),
    "accuracy": lambda: skm.accuracy_score(Y_BIN, _LABEL),
    "precision_at": lambda: skm.precision_score(Y_BIN, (P_BIN >= 0.3).astype(int)),
    "recall_at": lambda: skm.recall_score(Y_BIN, (P_BIN >= 0.3).astype(int)),
}
REGRESSION_REFERENCE: dict[str, Callable[[], float]] = {
    "rmse": lambda: skm.root_mean_squared_error(Y_REG, V_REG),
    "mae": lambda: skm.mean_absolute_error(Y_REG, V_REG),
    "mape": lambda: _mape_reference(Y_REG, V_REG),
    "r2": lambda: skm.r2_score(Y_REG, V_REG),
}
_MC_LABEL = CLASSES[P_MC.argmax(axis=1)]
MULTICLASS_REFERENCE: dict[str, Callable[[], float]] = {
    "accuracy": lambda: skm.accuracy_score(Y_MC, _MC_LABEL),
    "f1_macro": lambda: skm.f1_score(Y_MC, _MC_LABEL, average="macro"),
    "log_loss": lambda: skm.log_loss(Y_MC, P_MC, labels=CLASSES),
}
CASES = {"binary": BINARY_REFERENCE, "regression": REGRESSION_REFERENCE, "multiclass": MULTICLASS_REFERENCE}


@pytest.mark.parametrize(
    ("task", "name"),
    [(task, name) for task in CASES for name in list_metrics(task)],
    ids="{0[0]}-{0[1]}".format,
)
def test_every_registered_metric_matches_sklearn(task: str, name: str) -> None:
    reference = CASES[task].get(name)
    assert reference is not None, f"metric {name} ({task}) has no reference test: add one here"
    metric = get_metric(name, threshold=0.3) if name in {"precision_at", "recall_at"} else get_metric(name)
    if task == "binary":
        got = compute_metric(metric, Y_BIN, P_BIN, threshold=0.5)
    elif task == "regression":
        got = compute_metric(metric, Y_REG, V_REG)
    else:
        got = compute_metric(metric, Y_MC, P_MC, classes=CLASSES)
    assert got == pytest.approx(reference(), abs=1e-12)


def test_every_metric_has_a_task_and_valid_needs() -> None:
    for name in list_metrics():
        m = get_metric(name, threshold=0.5) if name.endswith("_at") else get_metric(name)
        assert m.tasks and m.needs in {"score", "label", "value"} and m.description


def test_threshold_is_settable_on_label_metrics() -> None:
    low = compute_metric(get_metric("recall", threshold=0.1), Y_BIN, P_BIN)
    high = compute_metric(get_metric("recall", threshold=0.9), Y_BIN, P_BIN)
    assert low > high
    assert compute_metric("recall", Y_BIN, P_BIN, threshold=0.1) == low


def test_at_shorthand_names_the_threshold() -> None:
    m = get_metric("precision_at_0.25")
    assert (m.name, m.threshold) == ("precision_at_0.25", 0.25)
    assert compute_metric(m, Y_BIN, P_BIN) == pytest.approx(skm.precision_score(Y_BIN, P_BIN >= 0.25))


def test_mape_ignores_zero_targets() -> None:
    assert compute_metric("mape", [0.0, 10.0], [100.0, 11.0]) == pytest.approx(0.1)
    assert np.isnan(compute_metric("mape", [0.0, 0.0], [1.0, 2.0]))


def test_bool_labels_are_accepted() -> None:
    assert compute_metric("roc_auc", Y_BIN.astype(bool), P_BIN) == pytest.approx(
        skm.roc_auc_score(Y_BIN, P_BIN)
    )


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("roc_acu", {}, "did you mean roc_auc"),
        ("precision_at", {}, "needs an explicit threshold"),
        ("roc_auc", {"threshold": 0.5}, "takes no such parameter"),
        ("f1", {"thresh": 0.5}, "takes no such parameter"),
        ("recall_at", {"threshold": 1.5}, "must be a probability"),
    ],
)
def test_bad_requests_raise_design_error(name: str, params: dict, match: str) -> None:
    with pytest.raises(DesignError, match=match) as info:
        get_metric(name, field="goals.metric", **params)
    assert info.value.field.startswith("goals.metric")


def test_unknown_metric_lists_the_known_names() -> None:
    with pytest.raises(DesignError) as info:
        get_metric("nope")
    assert "roc_auc" in info.value.expected and "rmse" in info.value.expected


def test_multiclass_unseen_label_and_length_mismatch() -> None:
    with pytest.raises(DataError, match="never seen"):
        compute_metric("accuracy", ["a", "z"], np.array([[0.9, 0.1], [0.2, 0.8]]), classes=["a", "b"])
    with pytest.raises(DataError, match="lengths"):
        compute_metric("roc_auc", [0, 1, 1], [0.1, 0.2])


def test_pr_auc_without_positives_is_undefined() -> None:
    assert np.isnan(compute_metric("pr_auc", [0, 0, 0], [0.1, 0.5, 0.9]))
    assert compute_metric("pr_auc", [1, 1], [0.1, 0.5]) == 1.0


@pytest.mark.parametrize("name", ["accuracy", "ece", "roc_auc", "rmse"])
def test_nan_scores_raise_instead_of_counting_as_negative(name: str) -> None:
    with pytest.raises(DataError, match="finite") as info:
        compute_metric(name, [0, 1, 1], [0.1, np.nan, 0.9])
    assert info.value.field == "y_score"

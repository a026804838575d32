"""Baselines: sklearn conformance of the rule estimators, the registry, raw-row inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from mlsd.errors import DesignError
from mlsd.modeling import RuleBaseline, RuleRegressor, baseline_name, list_baselines, make_baseline
from mlsd.modeling.baselines import ColumnRegressor


# Arrays get columns x0..x{n-1}, so "x0 > 0" applies to every data set sklearn's checks build.
# Tags (see __sklearn_tags__) declare: binary only, NaN allowed, and a poor score (a fixed rule
# cannot reach sklearn's accuracy bar on its synthetic problems); no check is skipped otherwise.
@parametrize_with_checks([RuleBaseline("x0 > 0"), RuleRegressor("x0 > 0"), ColumnRegressor("x0")])
def test_sklearn_compatible(estimator, check) -> None:
    check(estimator)


def test_rule_on_raw_flights_rows(flights) -> None:
    train, valid = flights.train, flights.valid
    rule = make_baseline({"rule": "hour >= 17 and carrier != 'HA'"}, "binary").fit(
        train, flights.label(train)
    )
    proba = rule.predict_proba(valid)[:, 1]
    expected = ((valid["hour"] >= 17) & (valid["carrier"] != "HA")).to_numpy()
    np.testing.assert_array_equal(proba, expected.astype(float))
    # evening departures are later: the rule carries signal
    assert roc_auc_score(flights.label(valid), proba) > 0.55
    assert list(rule.feature_names_in_) == list(train.columns)


def test_rule_scores_and_labels() -> None:
    X = pd.DataFrame({"a": [1.0, -1.0, np.nan]})
    rule = RuleBaseline("a > 0", score_if_true=0.8, score_if_false=0.1).fit(X, ["no", "yes", "no"])
    np.testing.assert_allclose(rule.predict_proba(X)[:, 1], [0.8, 0.1, 0.1])
    assert rule.predict(X).tolist() == ["yes", "no", "no"]


def test_array_after_named_fit_reads_columns_by_name() -> None:
    X = pd.DataFrame({"a": [1.0, -1.0], "b": [0.0, 5.0]})
    rule = RuleBaseline("b > 1").fit(X, [0, 1])
    with pytest.warns(UserWarning, match="feature names"):
        assert rule.predict(X.to_numpy()).tolist() == [0, 1]


def test_rule_regressor_learns_side_means_unless_given() -> None:
    X = pd.DataFrame({"a": [0, 1, 2, 3]})
    y = [1.0, 3.0, 10.0, 20.0]
    assert RuleRegressor("a >= 2").fit(X, y).predict(X).tolist() == [2.0, 2.0, 15.0, 15.0]
    fixed = RuleRegressor("a >= 2", score_if_true=100.0).fit(X, y)
    assert fixed.predict(X).tolist() == [2.0, 2.0, 100.0, 100.0]


@pytest.mark.parametrize(
    ("spec", "task", "cls"),
    [
        ("majority", "binary", DummyClassifier),
        ("prior", "multiclass", DummyClassifier),
        ("stratified", "binary", DummyClassifier),
        ("mean", "regression", DummyRegressor),
        ("median", "regression", DummyRegressor),
        ({"rule": "a > 0"}, "binary", RuleBaseline),
        ({"rule": "a > 0"}, "regression", RuleRegressor),
        ({"column": "a"}, "regression", ColumnRegressor),
    ],
)
def test_registry_builds_each_baseline_and_it_fits_raw_rows(spec, task, cls) -> None:
    est = make_baseline(spec, task, seed=3)
    assert isinstance(est, cls)
    raw = pd.DataFrame({"a": [1.0, -2.0, np.nan, 4.0], "carrier": ["UA", None, "AA", "B6"]})
    y = [0.5, 1.5, 2.5, 3.5] if task == "regression" else ["x", "y", "x", "y"]
    if cls is RuleBaseline:
        y = [1, 0, 0, 1]
    pred = est.fit(raw, y).predict(raw.iloc[[0]])
    assert len(pred) == 1


def test_stratified_is_seeded() -> None:
    X = pd.DataFrame({"a": range(50)})
    y = [0, 1] * 25
    a = make_baseline("stratified", "binary", seed=1).fit(X, y).predict(X)
    b = make_baseline("stratified", "binary", seed=1).fit(X, y).predict(X)
    assert (a == b).all()


@pytest.mark.parametrize(
    ("spec", "task", "match"),
    [
        ("majoritty", "binary", "unknown baseline"),
        ("mean", "binary", "unknown baseline"),
        ("majority", "regression", "unknown baseline"),
        ({"rul": "a > 0"}, "binary", "mapping with a `rule`"),
        ({"rule": "a > 0"}, "multiclass", "not available for multiclass"),
        ({"column": "a"}, "binary", "not available for binary"),
        ({"column": "a"}, "multiclass", "not available for multiclass"),
    ],
)
def test_bad_specs_list_the_options(spec, task, match) -> None:
    with pytest.raises(DesignError, match=match) as info:
        make_baseline(spec, task, field="models.baseline[1]")
    assert info.value.field == "models.baseline[1]"
    assert list_baselines(task)[0] in info.value.expected


def test_rule_errors_surface_at_fit() -> None:
    X = pd.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(DesignError, match="unknown column"):
        RuleBaseline("nope > 1").fit(X, [0, 1])
    with pytest.raises(DesignError, match="true/false"):
        RuleBaseline("a * 2").fit(X, [0, 1])
    with pytest.raises(DesignError, match="probability"):
        RuleBaseline("a > 1", score_if_true=2.0).fit(X, [0, 1])


def test_baseline_name() -> None:
    assert baseline_name("majority") == "majority"
    assert baseline_name({"rule": "hour >= 17"}) == "rule: hour >= 17"
    assert baseline_name({"column": "prev_rate"}) == "column: prev_rate"


def test_non_numeric_rule_score_names_the_field() -> None:
    with pytest.raises(DesignError, match="number") as info:
        make_baseline({"rule": "a > 0", "score_if_true": "high"}, "binary", field="models.baseline[1]")
    assert info.value.field == "models.baseline[1].score_if_true"


def test_column_baseline_predicts_the_column_against_a_hand_computation() -> None:
    train = pd.DataFrame({"prev_rate": [100.0, 80.0, np.nan, 120.0], "nights": [1, 2, 3, 4]})
    y = [110.0, 70.0, 90.0, 130.0]
    model = make_baseline({"column": "prev_rate"}, "regression").fit(train, y)
    # by hand: the column itself; its missing row gets the mean training label (110+70+90+130)/4 = 100
    assert model.predict(train).tolist() == [100.0, 80.0, 100.0, 120.0]
    test = pd.DataFrame({"prev_rate": [95.0, np.nan], "nights": [2, 2]})
    assert model.predict(test).tolist() == [95.0, 100.0]
    assert "{column: <column>}" in list_baselines("regression")
    assert "{column: <column>}" not in list_baselines("binary")


def test_column_baseline_errors_name_the_field() -> None:
    X = pd.DataFrame({"prev_rate": [1.0, 2.0], "carrier": ["UA", "AA"]})
    with pytest.raises(DesignError, match="not in the data"):
        ColumnRegressor("nope").fit(X, [1.0, 2.0])
    with pytest.raises(DesignError, match="numeric column"):
        ColumnRegressor("carrier").fit(X, [1.0, 2.0])
    with pytest.raises(DesignError, match="only the key `column`") as info:
        make_baseline({"column": "prev_rate", "shift": "1"}, "regression", field="models.baseline[1]")
    assert info.value.field == "models.baseline[1].shift"

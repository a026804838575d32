from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from mlsd.data import (
    DataSplit,
    LeakageReport,
    check_duplicates_across_splits,
    check_forbidden_features,
    check_time_order,
    find_target_leakage,
    run_leakage_checks,
    single_feature_scores,
    train_valid_test_split_by_time,
)
from mlsd.errors import DesignError, LeakageError

LEGIT = ["distance", "sched_dep_hour", "month", "carrier", "origin", "dest", "sched_arr_time"]
LEAKS = ["dep_delay", "dep_time", "arr_time", "air_time"]


@pytest.fixture(scope="module")
def split(flights: pd.DataFrame) -> DataSplit:
    return train_valid_test_split_by_time(flights, "time_hour", "2013-09-01", "2013-11-01")


@pytest.fixture(scope="module")
def leaky_findings(split: DataSplit) -> list:
    feats = LEGIT + LEAKS
    return find_target_leakage(
        split.train[feats], split.train["delayed"], split.valid[feats], split.valid["delayed"]
    )


def test_joint_check_names_the_leaks_and_not_the_legit_features(leaky_findings: list) -> None:
    named = {f.columns[0] for f in leaky_findings}
    assert {"arr_time", "dep_delay", "dep_time"} <= named
    assert not named & set(LEGIT)
    for f in leaky_findings:
        assert f.check == "target_leakage"
        ev = f.evidence
        assert ev["score_all"] > 0.95
        assert ev["uplift"] >= 0.1
        assert set(ev["clean_features"]) >= set(LEGIT) - {"month"}
    dep_delay = next(f for f in leaky_findings if f.columns == ["dep_delay"])
    assert 0.85 < dep_delay.evidence["single_score"] < 0.95


def test_clean_features_have_no_target_leakage(split: DataSplit) -> None:
    out = find_target_leakage(
        split.train[LEGIT], split.train["delayed"], split.valid[LEGIT], split.valid["delayed"]
    )
    assert out == []


def test_single_feature_auc_matches_sklearn(split: DataSplit) -> None:
    from sklearn.metrics import roc_auc_score

    cols = ["dep_delay", "distance", "carrier"]
    scores = single_feature_scores(
        split.train[cols], split.train["delayed"], split.valid[cols], split.valid["delayed"]
    )
    auc = roc_auc_score(split.valid["delayed"], split.valid["dep_delay"])
    assert scores["dep_delay"] == pytest.approx(max(auc, 1 - auc))
    assert 0.5 <= scores["carrier"] < 0.7


def test_single_feature_flag_binary_and_regression() -> None:
    rng = np.random.default_rng(0)
    n = 2_000
    x = pd.DataFrame(
        {"noise": rng.normal(size=n), "copy": rng.normal(size=n), "cat": rng.choice(list("abc"), n)}
    )
    y = pd.Series(x["copy"] > 0)
    half = n // 2
    out = find_target_leakage(x.iloc[:half], y.iloc[:half], x.iloc[half:], y.iloc[half:], joint=False)
    assert [f.columns for f in out] == [["copy"]]
    assert out[0].score == pytest.approx(1.0)
    yr = x["copy"] * 3 + 1
    out = find_target_leakage(x.iloc[:half], yr.iloc[:half], x.iloc[half:], yr.iloc[half:], task="regression")
    assert "copy" in {f.columns[0] for f in out}
    assert "noise" not in {f.columns[0] for f in out}
    ym = pd.Series(np.digitize(x["copy"], [-0.5, 0.5]))
    out = find_target_leakage(x.iloc[:half], ym.iloc[:half], x.iloc[half:], ym.iloc[half:], task="multiclass")
    assert {f.columns[0] for f in out} == {"copy"}


def test_target_leakage_errors() -> None:
    x = pd.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(DesignError) as info:
        find_target_leakage(x, pd.Series([0, 1]), x, pd.Series([0, 1]), task="ranking")  # type: ignore[arg-type]
    assert info.value.received == "ranking"
    with pytest.raises(DesignError):
        find_target_leakage(x, pd.Series([0, 1]), x.rename(columns={"a": "b"}), pd.Series([0, 1]))


def test_single_class_validation_is_not_judged() -> None:
    x = pd.DataFrame({"a": np.arange(40.0)})
    y = pd.Series(np.arange(40) % 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no undefined-AUC warnings from models fitted in vain
        assert find_target_leakage(x, y, x.iloc[:10], pd.Series(np.zeros(10)), threshold=0.0) == []


def test_forbidden_features() -> None:
    out = check_forbidden_features(["distance", "dep_delay", "arr_time"], ["dep_delay", "arr_time", "x"])
    assert [f.columns for f in out] == [["dep_delay"], ["arr_time"]]
    assert all(f.check == "forbidden_feature" for f in out)


def _split(**parts: pd.DataFrame) -> DataSplit:
    return DataSplit(**parts, by="manual")


def test_time_order() -> None:
    t = pd.to_datetime(["2020-01-01", "2020-01-05", "2020-01-03", "2020-01-06", "2020-01-04", "2020-01-07"])
    df = pd.DataFrame({"t": t.strftime("%Y-%m-%dT%H:%M:%SZ")})
    out = check_time_order(_split(train=df.iloc[:2], valid=df.iloc[2:4], test=df.iloc[4:]), "t")
    got = {tuple(f.evidence["pair"]): f.evidence["rows"] for f in out}
    assert got == {("train", "valid"): 1, ("train", "test"): 1, ("valid", "test"): 1}
    assert all(f.check == "time_order" for f in out)


def test_time_split_has_no_time_order_findings(split: DataSplit) -> None:
    assert check_time_order(split, "time_hour") == []


def test_duplicates_across_splits() -> None:
    df = pd.DataFrame({"a": [1, 2, 3, 1, 2, 9], "y": [0, 1, 0, 0, 1, 1]})
    s = _split(train=df.iloc[:3], valid=df.iloc[3:5], test=df.iloc[5:])
    out = check_duplicates_across_splits(s, ["a", "y"])
    assert [(f.evidence["pair"], f.evidence["rows"]) for f in out] == [(["train", "valid"], 2)]
    with pytest.raises(DesignError) as info:
        check_duplicates_across_splits(s, ["a", "nope"])
    assert info.value.received == "nope"


def test_run_all_checks_on_flights(split: DataSplit) -> None:
    feats = [*LEGIT, "dep_delay"]
    report = run_leakage_checks(
        split, features=feats, label="delayed", forbidden=LEAKS, time_column="time_hour", target_leakage=False
    )
    assert isinstance(report, LeakageReport)
    assert [f.columns for f in report.by_check()["forbidden_feature"]] == [["dep_delay"]]
    assert "time_order" not in report.by_check()
    assert report.failing({"time_order"}) == []
    assert report.to_dict()["findings"][0]["check"] == "forbidden_feature"
    with pytest.raises(LeakageError) as info:
        report.raise_for({"forbidden_feature"})
    assert info.value.received == ["dep_delay"]
    report.raise_for({"target_leakage"})

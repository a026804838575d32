"""Bootstrap intervals: fast AUC agrees with sklearn, intervals cover the value and narrow with n."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mlsd.errors import DesignError
from mlsd.goals import bootstrap_ci, weighted_roc_auc


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    # rounded scores so there are many ties, which the rank statistic must count half
    p = np.round(np.clip(0.25 * y + 0.75 * rng.random(n), 0, 1), 2)
    return y, p


def test_weighted_auc_matches_sklearn_on_full_data_and_resamples() -> None:
    y, p = _data(3_000)
    assert weighted_roc_auc(y, p, np.ones((1, y.size)))[0] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, y.size, size=(5, y.size))
    counts = np.stack([np.bincount(i, minlength=y.size) for i in idx])
    expected = [roc_auc_score(y[i], p[i]) for i in idx]
    np.testing.assert_allclose(weighted_roc_auc(y, p, counts), expected, atol=1e-9)


def test_weighted_auc_single_class_is_nan() -> None:
    assert np.isnan(weighted_roc_auc(np.ones(4), np.arange(4.0), np.ones((1, 4)))[0])


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss", "accuracy"])
def test_interval_covers_value_and_narrows_with_n(metric: str) -> None:
    y, p = _data(500)
    small = bootstrap_ci(metric, y, p, n_resamples=200, seed=3)
    y, p = _data(20_000)
    large = bootstrap_ci(metric, y, p, n_resamples=200, seed=3)
    for est in (small, large):
        assert est.low <= est.value <= est.high
    assert (large.high - large.low) < 0.5 * (small.high - small.low)
    assert large.n == 20_000


def test_value_is_on_full_data_and_seed_is_reproducible() -> None:
    y, p = _data(2_000)
    a = bootstrap_ci("roc_auc", y, p, n_resamples=50, seed=5)
    b = bootstrap_ci("roc_auc", y, p, n_resamples=50, seed=5)
    assert a == b
    assert a.value == pytest.approx(roc_auc_score(y, p))


def test_max_rows_keeps_interval_about_the_same_width() -> None:
    y, p = _data(20_000)
    full = bootstrap_ci("roc_auc", y, p, n_resamples=300, seed=0)
    capped = bootstrap_ci("roc_auc", y, p, n_resamples=300, seed=0, max_rows=5_000)
    ratio = (capped.high - capped.low) / (full.high - full.low)
    assert 0.7 < ratio < 1.4
    assert capped.value == full.value


def test_no_resamples_gives_point_value_only() -> None:
    y, p = _data(100)
    est = bootstrap_ci("brier", y, p, n_resamples=0)
    assert est.low is None and est.high is None and str(est) == f"{est.value:.3f}"
    assert est.to_dict()["low"] is None


def test_bad_confidence_raises() -> None:
    y, p = _data(100)
    with pytest.raises(DesignError, match="confidence"):
        bootstrap_ci("roc_auc", y, p, confidence=95)


def test_multiclass_resamples_missing_a_rare_class_keep_the_column_order() -> None:
    rng = np.random.default_rng(0)
    y = np.array(["a"] * 100 + ["b"] * 100 + ["c"])  # most resamples lack "c"
    proba = rng.dirichlet(np.ones(3), y.size)
    est = bootstrap_ci("accuracy", y, proba, n_resamples=50)
    assert est.low <= est.value <= est.high


def test_bad_max_rows_raises() -> None:
    y, p = _data(100)
    with pytest.raises(DesignError, match="max_rows") as info:
        bootstrap_ci("roc_auc", y, p, max_rows=0)
    assert info.value.field == "max_rows"

"""DeLong's ROC AUC interval: checked against its definition, sklearn and a large bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from mlsd.errors import DesignError
from mlsd.goals.bootstrap import bootstrap_ci, delong_roc_auc


def _data(n: int, seed: int = 0, rounding: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    # rounded scores: many ties, which the components must count half
    s = np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), rounding)
    return y, s


def _delong_by_definition(
    y: np.ndarray, s: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """DeLong et al. (1988) written out: the m x n comparison matrix psi(X_i, Y_j)."""
    pos, neg = s[y], s[~y]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    auc = psi.mean()
    var = v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size
    half = norm.ppf(0.5 + confidence / 2) * math.sqrt(var)
    return float(auc), max(0.0, auc - half), min(1.0, auc + half)


@pytest.mark.parametrize(("n", "seed", "rounding"), [(40, 0, 1), (300, 1, 2), (1_500, 2, 3)])
def test_matches_the_definition_and_sklearn(n: int, seed: int, rounding: int) -> None:
    y, s = _data(n, seed, rounding)
    est = delong_roc_auc(y, s)
    auc, low, high = _delong_by_definition(y, s)
    assert est.value == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert est.value == pytest.approx(auc, abs=1e-12)
    assert est.low == pytest.approx(low, abs=1e-12)
    assert est.high == pytest.approx(high, abs=1e-12)
    assert est.n == n


def test_agrees_with_a_large_bootstrap() -> None:
    # the bootstrap's percentile interval and DeLong's estimate the same sampling spread: on
    # 20,000 rows the endpoints agree to a small fraction of the interval's width
    y, s = _data(20_000, seed=4, rounding=3)
    delong = delong_roc_auc(y, s)
    boot = bootstrap_ci("roc_auc", y, s, n_resamples=2_000, seed=0)
    width = delong.high - delong.low
    assert 0.005 < width < 0.05
    assert delong.low == pytest.approx(boot.low, abs=0.08 * width)
    assert delong.high == pytest.approx(boot.high, abs=0.08 * width)


def test_interval_covers_the_true_auc_at_its_nominal_rate() -> None:
    # 400 samples from one population whose AUC is known (normal scores, shift 1: AUC = Phi(1/sqrt 2))
    truth = norm.cdf(1 / math.sqrt(2))
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(400):
        y = rng.random(400) < 0.4
        s = rng.normal(size=400) + y
        est = delong_roc_auc(y, s)
        hits += est.low <= truth <= est.high
    assert 0.92 <= hits / 400 <= 0.98


def test_degenerate_inputs() -> None:
    one_class = delong_roc_auc(np.ones(5), np.arange(5.0))
    assert math.isnan(one_class.value) and math.isnan(one_class.low)
    lone_positive = delong_roc_auc([0, 0, 1], [0.1, 0.2, 0.3])
    assert lone_positive.value == 1.0 and math.isnan(lone_positive.low)
    perfect = delong_roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])
    assert (perfect.low, perfect.value, perfect.high) == (1.0, 1.0, 1.0)
    with pytest.raises(DesignError, match="confidence"):
        delong_roc_auc([0, 1], [0.1, 0.2], confidence=95)
    with pytest.raises(DesignError, match="y_score"):
        delong_roc_auc([0, 1, 1], [0.1, 0.2])

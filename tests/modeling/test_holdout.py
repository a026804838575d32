"""The challenger-vs-champion comparison ``mlsd retrain`` gates on, against scikit-learn and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import log_loss, roc_auc_score

from mlsd.modeling.holdout import compare_on_holdout


@pytest.fixture(scope="module")
def scores() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 1500)
    challenger = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(0, 1.2, 1500))))
    champion = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(0, 1.6, 1500))))
    return y, challenger, champion


def test_the_metrics_are_scikit_learns_and_the_interval_is_the_paired_percentile_bootstrap(scores) -> None:
    y, a, b = scores
    c = compare_on_holdout(y, a, b, metric="roc_auc", task="binary", n_resamples=2000)
    assert c.challenger == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert c.champion == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert c.gain == pytest.approx(c.challenger - c.champion, abs=1e-12)
    reference = stats.bootstrap(
        (y, a, b),
        lambda y_, a_, b_: roc_auc_score(y_, a_) - roc_auc_score(y_, b_),
        paired=True,
        vectorized=False,
        n_resamples=2000,
        method="percentile",
        random_state=1,
    ).confidence_interval
    # two Monte-Carlo estimates of the same interval: they agree to their resampling noise
    assert c.low == pytest.approx(reference.low, abs=0.006)
    assert c.high == pytest.approx(reference.high, abs=0.006)


def test_a_lower_is_better_metric_is_signed_so_that_a_positive_gain_is_better(scores) -> None:
    y, a, b = scores
    c = compare_on_holdout(y, a, b, metric="log_loss", task="binary", n_resamples=50)
    assert c.gain == pytest.approx(log_loss(y, b) - log_loss(y, a), abs=1e-12)
    assert c.gain > 0 and c.passed
    assert not compare_on_holdout(y, b, a, metric="log_loss", task="binary", n_resamples=50).passed


def test_the_improvement_asked_for_decides(scores) -> None:
    y, a, b = scores
    gain = compare_on_holdout(y, a, b, metric="roc_auc", task="binary", n_resamples=20).gain
    assert compare_on_holdout(y, a, b, metric="roc_auc", task="binary", min_improvement=gain).passed
    assert not compare_on_holdout(
        y, a, b, metric="roc_auc", task="binary", min_improvement=gain + 1e-9, n_resamples=20
    ).passed


def test_the_cost_gate_is_the_canarys_rule_on_paired_costs(scores) -> None:
    """Mean decision cost of each model at its own threshold, as goals/costs.py prices a
    confusion; the bound is statsmodels' one-sided z interval of the paired differences."""
    from statsmodels.stats.weightstats import DescrStatsW

    from mlsd.goals.costs import CostMatrix, expected_cost_per_1000
    from mlsd.modeling.holdout import compare_decision_costs

    y, a, b = scores
    costs = {"false_positive": 1, "false_negative": 4}
    c = compare_decision_costs(y == 1, a, b, thresholds=(0.3, 0.6), costs=costs, margin=0.08)
    m = CostMatrix.from_spec(costs)
    assert c.challenger * 1000 == pytest.approx(expected_cost_per_1000(y, a >= 0.3, m), abs=1e-9)
    assert c.champion * 1000 == pytest.approx(expected_cost_per_1000(y, b >= 0.6, m), abs=1e-9)
    d = np.where(y == 1, np.where(a >= 0.3, 0, 4), np.where(a >= 0.3, 1, 0)) - np.where(
        y == 1, np.where(b >= 0.6, 0, 4), np.where(b >= 0.6, 1, 0)
    )
    _, upper = DescrStatsW(d.astype(float)).zconfint_mean(alpha=0.05, alternative="smaller")
    assert c.upper == pytest.approx(upper, abs=1e-12)
    assert c.passed == (upper <= 0.08)
    # the same models, the challenger now deciding at a threshold that misses most delays
    worse = compare_decision_costs(y == 1, a, b, thresholds=(0.95, 0.6), costs=costs, margin=0.08)
    assert worse.difference > 0.08 and not worse.passed

"""Bayesian read-out: how likely the challenger is better, and what choosing it risks.

- :func:`beta_binomial`: proportions with a Beta(1, 1) prior; the posteriors are Beta, and
  ``P(B better)`` and the expected losses are vectorised Monte Carlo over posterior draws with a
  fixed seed (the same data give the same numbers every run);
- :func:`normal_means`: means with a flat prior; the posterior of each mean is Normal
  (mean, var / n), so the difference is Normal and everything has a closed form:
  ``P(D > 0) = Phi(d / s)`` and ``E[max(-D, 0)] = s phi(d / s) - d Phi(-d / s)``.

The **expected loss** of choosing an arm is how much of the metric is lost, on average over
the posterior, if the other arm is in fact better: a challenger is worth shipping when its
expected loss is below what the business would not notice. ``higher_is_better=False`` (costs,
latency) flips the sign so "better" always means better.

>>> r = beta_binomial(480, 1000, 530, 1000)
>>> round(r.p_b_better, 2), r.expected_loss_b < r.expected_loss_a
(0.99, True)
>>> r = normal_means(10.0, 4.0, 100, 10.0, 4.0, 100)
>>> r.p_b_better, round(r.expected_loss_b, 4)
(0.5, 0.1128)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["BayesianResult", "beta_binomial", "normal_means"]

_DRAWS = 200_000  # Monte Carlo s.e. of a probability <= 0.5 / sqrt(200,000) ~ 0.001


@dataclasses.dataclass
class BayesianResult:
    """The posterior comparison of B with A (``difference = B - A`` on the metric's scale)."""

    method: str
    p_b_better: float
    expected_loss_a: float  # expected loss of keeping A
    expected_loss_b: float  # expected loss of choosing B
    difference_mean: float
    credible_interval: tuple[float, float]  # of B - A, equal-tailed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def beta_binomial(
    x_a: int,
    n_a: int,
    x_b: int,
    n_b: int,
    *,
    prior: tuple[float, float] = (1.0, 1.0),
    higher_is_better: bool = True,
    level: float = 0.95,
    draws: int = _DRAWS,
    seed: int = 0,
) -> BayesianResult:
    """Beta-Binomial posteriors of two proportions, compared by Monte Carlo (fixed ``seed``)."""
    rng = np.random.default_rng(seed)
    a0, b0 = prior
    theta_a = rng.beta(a0 + x_a, b0 + n_a - x_a, draws)
    theta_b = rng.beta(a0 + x_b, b0 + n_b - x_b, draws)
    d = theta_b - theta_a
    gain = d if higher_is_better else -d
    lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
    return BayesianResult(
        method="beta-binomial",
        p_b_better=float((gain > 0).mean()),
        expected_loss_a=float(np.maximum(gain, 0).mean()),
        expected_loss_b=float(np.maximum(-gain, 0).mean()),
        difference_mean=float(d.mean()),
        credible_interval=(float(lo), float(hi)),
    )


def normal_means(
    mean_a: float,
    var_a: float,
    n_a: float,
    mean_b: float,
    var_b: float,
    n_b: float,
    *,
    higher_is_better: bool = True,
    level: float = 0.95,
) -> BayesianResult:
    """Normal posteriors of two means (flat prior, variance plugged in); closed form."""
    d = float(mean_b - mean_a)
    s = float(np.sqrt(var_a / n_a + var_b / n_b))
    g = d if higher_is_better else -d
    z = stats.norm.ppf((1 + level) / 2)
    if s == 0:
        return BayesianResult("normal", float(g > 0) + 0.5 * (g == 0), max(g, 0.0), max(-g, 0.0), d, (d, d))

    def loss(m: float) -> float:  # E[max(-G, 0)] for G ~ N(m, s^2)
        return float(s * stats.norm.pdf(m / s) - m * stats.norm.cdf(-m / s))

    return BayesianResult(
        method="normal",
        p_b_better=float(stats.norm.cdf(g / s)),
        expected_loss_a=loss(-g),
        expected_loss_b=loss(g),
        difference_mean=d,
        credible_interval=(d - z * s, d + z * s),
    )

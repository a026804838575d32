"""Fixed-horizon tests of a challenger against the baseline: the lift, its interval, its p-value.

Every test compares arm B (the challenger) with arm A (the baseline) and returns a
:class:`Comparison`: the absolute difference ``B - A`` with its confidence interval and
p-value, and the relative difference ``B / A - 1`` with a delta-method interval.

- :func:`two_proportions`: the two-proportion z test (pooled variance under the null, as
  ``statsmodels.stats.proportion.proportions_ztest``) and the Wald interval of the difference
  (``confint_proportions_2indep(method="wald")``);
- :func:`welch` / :func:`welch_from_stats`: Welch's t test (``scipy.stats.ttest_ind(equal_var=False)``)
  and its t interval;
- :func:`ratio_metric`: a ratio of sums over units (clicks per request of a user, correct
  decisions per labelled request of a unit) when units, not requests, were randomised: the
  delta method's variance of the ratio, then a z test. Requests of one unit are correlated, so
  a test that treats them as independent is too confident;
- :func:`cuped`: CUPED (Deng et al., 2013): ``y - theta (x - mean x)`` with
  ``theta = cov(y, x) / var(x)`` from a covariate measured before the treatment could act; the
  mean is unchanged, the variance falls by about ``rho^2``;
- :func:`adjust`: Holm (or Benjamini-Hochberg) across metrics (``statsmodels multipletests``).

>>> c = two_proportions(480, 1000, 530, 1000)
>>> round(c.difference, 3), [round(v, 4) for v in c.ci], round(c.p_value, 4)
(0.05, [0.0062, 0.0938], 0.0253)
>>> round(c.relative, 4), [round(v, 4) for v in c.relative_ci]
(0.1042, [0.0081, 0.2002])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from mlsd.errors import DataError, DesignError

__all__ = [
    "CORRECTIONS",
    "Comparison",
    "adjust",
    "cuped",
    "ratio_metric",
    "two_proportions",
    "welch",
    "welch_from_stats",
]

#: multiple-testing corrections across metrics (statsmodels' method names)
CORRECTIONS = ("holm", "fdr_bh", "none")


@dataclasses.dataclass
class Comparison:
    """Arm B against arm A on one metric (``difference = B - A``)."""

    test: str
    n_a: float
    n_b: float
    estimate_a: float
    estimate_b: float
    difference: float
    ci: tuple[float, float]
    p_value: float
    statistic: float
    se: float  # standard error of the difference (the test's, under the alternative)
    relative: float | None = None  # B / A - 1 (None when A is 0)
    relative_ci: tuple[float, float] | None = None
    alpha: float = 0.05
    var_a: float = float("nan")  # variance of arm A's estimate (se_a^2)
    var_b: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise DesignError("alpha must be in (0, 1)", field="alpha", received=alpha, expected="e.g. 0.05")


def _relative(
    mean_a: float, var_mean_a: float, mean_b: float, var_mean_b: float, z: float
) -> tuple[float | None, tuple[float, float] | None]:
    """``B / A - 1`` and its delta-method interval (independent arms):
    ``Var(B/A) ~ var_b / A^2 + B^2 var_a / A^4``."""
    if mean_a == 0 or not np.isfinite(mean_a):
        return None, None
    r = mean_b / mean_a
    se = float(np.sqrt(var_mean_b / mean_a**2 + mean_b**2 * var_mean_a / mean_a**4))
    return float(r - 1), (float(r - 1 - z * se), float(r - 1 + z * se))


def two_proportions(x_a: int, n_a: int, x_b: int, n_b: int, *, alpha: float = 0.05) -> Comparison:
    """The two-proportion z test of ``x_b / n_b`` against ``x_a / n_a``.

    The p-value uses the pooled proportion (the null says both are equal); the interval uses
    each arm's own variance (the Wald interval), as statsmodels does.
    """
    _check_alpha(alpha)
    for name, x, n in (("a", x_a, n_a), ("b", x_b, n_b)):
        if n <= 0 or x < 0 or x > n:
            raise DataError(
                "a proportion needs 0 <= successes <= trials and trials > 0",
                field=f"arm {name}",
                received={"successes": x, "trials": n},
                expected="counts of a labelled arm",
            )
    p_a, p_b = x_a / n_a, x_b / n_b
    pooled = (x_a + x_b) / (n_a + n_b)
    se0 = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    diff = p_b - p_a
    z_stat = diff / se0 if se0 > 0 else (0.0 if diff == 0 else np.copysign(np.inf, diff))
    p = float(2 * stats.norm.sf(abs(z_stat)))
    var_a, var_b = p_a * (1 - p_a) / n_a, p_b * (1 - p_b) / n_b
    se = float(np.sqrt(var_a + var_b))
    z = stats.norm.ppf(1 - alpha / 2)
    rel, rel_ci = _relative(p_a, var_a, p_b, var_b, z)
    return Comparison(
        test="two-proportion z",
        n_a=n_a,
        n_b=n_b,
        estimate_a=p_a,
        estimate_b=p_b,
        difference=float(diff),
        ci=(float(diff - z * se), float(diff + z * se)),
        p_value=p,
        statistic=float(z_stat),
        se=se,
        relative=rel,
        relative_ci=rel_ci,
        var_a=float(var_a),
        var_b=float(var_b),
        alpha=alpha,
    )


def welch_from_stats(
    mean_a: float,
    var_a: float,
    n_a: float,
    mean_b: float,
    var_b: float,
    n_b: float,
    *,
    alpha: float = 0.05,
    test: str = "Welch t",
) -> Comparison:
    """Welch's t test from each arm's mean, variance (ddof=1) and count.

    >>> c = welch_from_stats(10.0, 4.0, 50, 11.0, 9.0, 60)
    >>> round(c.p_value, 4), round(c.ci[0], 3)
    (0.0395, 0.049)
    """
    _check_alpha(alpha)
    if n_a < 2 or n_b < 2:
        raise DataError(
            "Welch's t test needs at least 2 observations per arm",
            field="n",
            received={"a": n_a, "b": n_b},
            expected=">= 2 in each arm",
        )
    va, vb = var_a / n_a, var_b / n_b
    se = float(np.sqrt(va + vb))
    diff = mean_b - mean_a
    if se == 0:
        df, t_stat, p = (
            float(n_a + n_b - 2),
            (0.0 if diff == 0 else np.copysign(np.inf, diff)),
            float(diff == 0),
        )
    else:
        # Welch-Satterthwaite degrees of freedom
        df = float((va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1)))
        t_stat = diff / se
        p = float(2 * stats.t.sf(abs(t_stat), df))
    q = stats.t.ppf(1 - alpha / 2, df)
    rel, rel_ci = _relative(mean_a, va, mean_b, vb, stats.norm.ppf(1 - alpha / 2))
    return Comparison(
        test=test,
        n_a=n_a,
        n_b=n_b,
        estimate_a=float(mean_a),
        estimate_b=float(mean_b),
        difference=float(diff),
        ci=(float(diff - q * se), float(diff + q * se)),
        p_value=p,
        statistic=float(t_stat),
        se=se,
        relative=rel,
        relative_ci=rel_ci,
        var_a=float(va),
        var_b=float(vb),
        alpha=alpha,
    )


def _values(y: Any, field: str) -> np.ndarray:
    v = np.asarray(y, dtype=float)
    if v.ndim != 1 or not np.isfinite(v).all():
        raise DataError("values must be a 1-d array of finite numbers", field=field, received=v.shape)
    return v


def welch(y_a: Any, y_b: Any, *, alpha: float = 0.05) -> Comparison:
    """Welch's t test of the mean of ``y_b`` against that of ``y_a``.

    >>> welch([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]).difference
    1.0
    """
    a, b = _values(y_a, "y_a"), _values(y_b, "y_b")
    return welch_from_stats(a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size, alpha=alpha)


def _ratio_moments(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """The ratio ``sum(num) / sum(den)`` over units and its delta-method variance."""
    n = num.size
    mu_n, mu_d = num.mean(), den.mean()
    r = mu_n / mu_d
    cov = np.cov(num, den, ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r**2 * cov[1, 1]) / (n * mu_d**2)
    return float(r), float(var)


def ratio_metric(num_a: Any, den_a: Any, num_b: Any, den_b: Any, *, alpha: float = 0.05) -> Comparison:
    """A ratio of sums over the randomised units of each arm, by the delta method.

    ``num`` and ``den`` hold one value per unit (e.g. correct decisions and labelled requests
    of each user). ``Var(R) ~ (s_n^2 - 2 R s_nd + R^2 s_d^2) / (n mu_d^2)``; the difference of
    the arms' ratios is tested with a z statistic (units are many).

    >>> c = ratio_metric([3, 1, 2, 4], [4, 2, 2, 5], [4, 2, 2, 5], [4, 2, 3, 5])
    >>> round(c.estimate_a, 4), round(c.estimate_b, 4)
    (0.7692, 0.9286)
    """
    _check_alpha(alpha)
    arrays = [
        _values(v, f) for v, f in ((num_a, "num_a"), (den_a, "den_a"), (num_b, "num_b"), (den_b, "den_b"))
    ]
    na, da, nb, db = arrays
    if na.size != da.size or nb.size != db.size or na.size < 2 or nb.size < 2:
        raise DataError(
            "a ratio metric needs one numerator and one denominator per unit, at least 2 units per arm",
            field="units",
            received={"a": (na.size, da.size), "b": (nb.size, db.size)},
            expected="equal lengths >= 2",
        )
    if da.sum() <= 0 or db.sum() <= 0:
        raise DataError("a ratio's denominators must sum to > 0", field="den", received=(da.sum(), db.sum()))
    r_a, v_a = _ratio_moments(na, da)
    r_b, v_b = _ratio_moments(nb, db)
    se = float(np.sqrt(v_a + v_b))
    diff = r_b - r_a
    z_stat = diff / se if se > 0 else (0.0 if diff == 0 else float(np.copysign(np.inf, diff)))
    z = stats.norm.ppf(1 - alpha / 2)
    rel, rel_ci = _relative(r_a, v_a, r_b, v_b, z)
    return Comparison(
        test="delta-method ratio z",
        n_a=float(na.size),
        n_b=float(nb.size),
        estimate_a=r_a,
        estimate_b=r_b,
        difference=float(diff),
        ci=(float(diff - z * se), float(diff + z * se)),
        p_value=float(2 * stats.norm.sf(abs(z_stat))),
        statistic=float(z_stat),
        se=se,
        relative=rel,
        relative_ci=rel_ci,
        var_a=float(v_a),
        var_b=float(v_b),
        alpha=alpha,
    )


def cuped(y: Any, x: Any) -> tuple[np.ndarray, float]:
    """CUPED-adjusted outcomes ``y - theta (x - mean(x))`` and ``theta = cov(y, x) / var(x)``.

    ``theta`` is estimated on both arms pooled (the covariate is measured before assignment, so
    it has the same distribution in both and the adjustment stays unbiased).

    >>> adjusted, theta = cuped([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0])
    >>> round(theta, 4), round(float(adjusted.mean()), 4)
    (0.7429, 2.5)
    """
    yv, xv = _values(y, "y"), _values(x, "covariate")
    if yv.size != xv.size:
        raise DataError("y and the covariate differ in length", field="covariate", received=xv.size)
    var_x = xv.var(ddof=1) if xv.size > 1 else 0.0
    if var_x <= 0:
        return yv.copy(), 0.0  # a constant covariate explains nothing
    theta = float(np.cov(yv, xv, ddof=1)[0, 1] / var_x)
    return yv - theta * (xv - xv.mean()), theta


def adjust(
    p_values: Sequence[float], *, method: str = "holm", alpha: float = 0.05
) -> tuple[list[bool], list[float]]:
    """Reject flags and adjusted p-values across metrics (``statsmodels`` ``multipletests``).

    >>> adjust([0.01, 0.02, 0.2])
    ([True, True, False], [0.03, 0.04, 0.2])
    """
    if method not in CORRECTIONS:
        raise DesignError(
            "unknown multiple-testing correction",
            field="correction",
            received=method,
            expected=", ".join(CORRECTIONS),
        )
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return [], []
    if method == "none":
        return [bool(v < alpha) for v in p], [float(v) for v in p]
    from statsmodels.stats.multitest import multipletests

    reject, corrected, _, _ = multipletests(p, alpha=alpha, method=method)
    return [bool(v) for v in reject], [float(v) for v in corrected]

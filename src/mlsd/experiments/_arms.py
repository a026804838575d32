"""The estimator of one metric on one pair of arms, for :func:`mlsd.experiments.analysis.analyse_experiment`.

:class:`Arms` holds a metric's values for the baseline and a challenger (with unit codes for a
unit-level analysis and the CUPED covariate); :func:`compare_arms` is the fixed-horizon test,
:func:`sequential_read_out` the always-valid or group-sequential verdict over checkpoints, and
:func:`bayes_read_out` the Bayesian read-out of a comparison.

>>> import numpy as np
>>> arms = Arms(np.array([0., 1, 0, 1]), np.array([1., 1, 1, 0]), None, None, None, None)
>>> c, _ = compare_arms(arms, "proportion", alpha=0.05)
>>> c.test, round(c.difference, 2)
('two-proportion z', 0.25)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from mlsd.design import ExperimentSpec
from mlsd.experiments import bayesian
from mlsd.experiments.frequentist import Comparison, cuped, ratio_metric, two_proportions, welch
from mlsd.experiments.sequential import group_sequential_test, sequential_test

__all__ = [
    "Arms",
    "bayes_read_out",
    "compare_arms",
    "enough_per_arm",
    "implied_sd",
    "per_unit",
    "sequential_read_out",
]


@dataclasses.dataclass
class Arms:
    """The values of one metric for the baseline (a) and a challenger (b), per request, with
    the unit codes (unit-level analysis) and the covariate (CUPED) of each value."""

    a: np.ndarray
    b: np.ndarray
    unit_a: np.ndarray | None
    unit_b: np.ndarray | None
    x_a: np.ndarray | None
    x_b: np.ndarray | None


def per_unit(values: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the finite ``values`` per unit (``units``: integer codes), over the
    units with at least one value: two bincounts, O(rows)."""
    ok = np.isfinite(values)
    size = int(units.max()) + 1 if units.size else 0
    num = np.bincount(units[ok], weights=values[ok], minlength=size)
    den = np.bincount(units[ok], minlength=size).astype(float)
    seen = den > 0
    return num[seen], den[seen]


def compare_arms(
    arms: Arms, kind: str, alpha: float, upto: tuple[int, int] | None = None
) -> tuple[Comparison, dict[str, Any] | None]:
    """The fixed-horizon comparison (on the first ``upto`` values of each arm when given)."""
    ka, kb = (len(arms.a), len(arms.b)) if upto is None else upto
    a, b = arms.a[:ka], arms.b[:kb]
    if arms.unit_a is not None and arms.unit_b is not None:
        num_a, den_a = per_unit(a, arms.unit_a[:ka])
        num_b, den_b = per_unit(b, arms.unit_b[:kb])
        return ratio_metric(num_a, den_a, num_b, den_b, alpha=alpha), None
    fa, fb = np.isfinite(a), np.isfinite(b)
    if arms.x_a is not None and arms.x_b is not None:
        xa, xb = arms.x_a[:ka], arms.x_b[:kb]
        fa, fb = fa & np.isfinite(xa), fb & np.isfinite(xb)
        y = np.concatenate([a[fa], b[fb]])
        adjusted, theta = cuped(y, np.concatenate([xa[fa], xb[fb]]))
        na = int(fa.sum())
        c = welch(adjusted[:na], adjusted[na:], alpha=alpha)
        c.test = "Welch t (CUPED)"
        var_y = float(y.var(ddof=1)) if y.size > 1 else 0.0
        reduction = 1 - float(adjusted.var(ddof=1)) / var_y if var_y > 0 else 0.0
        return c, {"theta": theta, "variance_reduction": reduction}
    a, b = a[fa], b[fb]
    if kind == "proportion":
        return two_proportions(int(a.sum()), a.size, int(b.sum()), b.size, alpha=alpha), None
    return welch(a, b, alpha=alpha), None


def enough_per_arm(arms: Arms, upto: tuple[int, int]) -> bool:
    a, b = arms.a[: upto[0]], arms.b[: upto[1]]
    na, nb = int(np.isfinite(a).sum()), int(np.isfinite(b).sum())
    if arms.unit_a is not None and arms.unit_b is not None:
        na = int((per_unit(a, arms.unit_a[: upto[0]])[1] > 0).sum())
        nb = int((per_unit(b, arms.unit_b[: upto[1]])[1] > 0).sum())
    return na >= 2 and nb >= 2


def implied_sd(c: Comparison) -> float:
    """The per-unit standard deviation behind the difference's standard error."""
    return float(c.se / math.sqrt(1 / c.n_a + 1 / c.n_b))


def sequential_read_out(
    arms: Arms, kind: str, spec: ExperimentSpec, higher: bool, times_a: np.ndarray, times_b: np.ndarray
) -> dict[str, Any]:
    """The sequential path over ``spec.checkpoints`` batches of the period (equal numbers of
    requests): the mSPRT, or O'Brien-Fleming boundaries at the baseline's share of ``horizon``.

    One fixed-horizon estimate per checkpoint (a loop over checkpoints, never over rows), so
    the last checkpoint's difference and variance are exactly the fixed-horizon test's.
    """
    all_times = np.sort(np.concatenate([times_a, times_b]))
    cuts = all_times[np.linspace(0, all_times.size, spec.checkpoints + 1)[1:].astype(int) - 1]
    diffs: list[Any] = []
    variances: list[Any] = []
    sds: list[Any] = []
    ns: list[Any] = []
    at: list[Any] = []
    fractions: list[Any] = []
    for cut in cuts:
        upto = (int(np.searchsorted(times_a, cut, "right")), int(np.searchsorted(times_b, cut, "right")))
        if enough_per_arm(arms, upto):
            c, _ = compare_arms(arms, kind, spec.alpha, upto)
            look = (
                c.difference,
                c.se**2,
                implied_sd(c) or 1.0,
                c.n_a / spec.horizon if spec.horizon else 0.0,
            )
        else:
            look = (0.0, math.inf, 1.0, 0.0)  # fewer than 2 per arm yet: no evidence either way
        for series, value in zip((diffs, variances, sds, fractions), look, strict=True):
            series.append(value)
        ns.append(float(sum(upto)))
        at.append(pd.Timestamp(int(cut), tz="UTC").isoformat())
    if spec.sequential == "obrien_fleming":
        return group_sequential_test(
            diffs, variances, fractions, alpha=spec.alpha, n=ns, at=at, higher_is_better=higher
        ).to_dict()
    return sequential_test(
        diffs, variances, sds, alpha=spec.alpha, tau=spec.tau, n=ns, at=at, higher_is_better=higher
    ).to_dict()


def bayes_read_out(c: Comparison, kind: str, higher: bool, unit_level: bool) -> dict[str, Any]:
    if kind == "proportion" and not unit_level and c.test == "two-proportion z":
        return bayesian.beta_binomial(
            round(c.estimate_a * c.n_a),
            int(c.n_a),
            round(c.estimate_b * c.n_b),
            int(c.n_b),
            higher_is_better=higher,
        ).to_dict()
    # a Normal posterior of each arm's estimate, with the variance the test gave it
    return bayesian.normal_means(
        c.estimate_a, c.var_a, 1, c.estimate_b, c.var_b, 1, higher_is_better=higher
    ).to_dict()

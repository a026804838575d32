"""Planning: the sample an experiment needs, the smallest effect it can see, the days it takes.

Two-sided tests at level ``alpha`` with power ``power``, the challenger getting ``ratio`` times
the baseline's sample. Proportions use Cohen's ``h = 2 asin(sqrt(p1)) - 2 asin(sqrt(p0))`` and
means ``d = mde / sd``; both are solved by ``statsmodels``' ``NormalIndPower`` (the z test
the analysis runs, Welch's t being Normal at these sizes).

>>> n = sample_size_proportion(0.10, 0.01)
>>> n
14745
>>> round(mde_proportion(0.10, n), 4)
0.01
>>> sample_size_mean(sd=1.0, mde=0.1)
1570
>>> days_needed(14745, per_day={"champion": 1000, "challenger": 1000})
14.745
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from mlsd.errors import DataError, DesignError

__all__ = ["days_needed", "mde_mean", "mde_proportion", "sample_size_mean", "sample_size_proportion"]


def _check(alpha: float, power: float, ratio: float) -> None:
    if not 0 < alpha < 1:
        raise DesignError("alpha must be in (0, 1)", field="alpha", received=alpha, expected="e.g. 0.05")
    if not 0 < power < 1:
        raise DesignError("power must be in (0, 1)", field="power", received=power, expected="e.g. 0.8")
    if not ratio > 0:
        raise DesignError("ratio must be > 0", field="ratio", received=ratio, expected="e.g. 1")


def _solve(**kwargs: float) -> float:
    from statsmodels.stats.power import NormalIndPower

    return float(NormalIndPower().solve_power(alternative="two-sided", **kwargs))


def sample_size_proportion(
    baseline: float, mde: float, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> int:
    """Units in the baseline arm to detect ``baseline -> baseline + mde`` (absolute)."""
    _check(alpha, power, ratio)
    target = baseline + mde
    if not (0 < baseline < 1 and 0 < target < 1 and mde != 0):
        raise DataError(
            "a proportion's baseline and baseline + mde must lie in (0, 1), and mde != 0",
            field="--mde",
            received={"baseline": baseline, "mde": mde},
            expected="e.g. baseline 0.8 and mde 0.01",
        )
    from statsmodels.stats.proportion import proportion_effectsize

    h = abs(float(proportion_effectsize(target, baseline)))
    return math.ceil(_solve(effect_size=h, alpha=alpha, power=power, ratio=ratio))


def sample_size_mean(
    sd: float, mde: float, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> int:
    """Units in the baseline arm to detect a change of the mean by ``mde`` (absolute)."""
    _check(alpha, power, ratio)
    if not (sd > 0 and mde != 0 and np.isfinite(sd) and np.isfinite(mde)):
        raise DataError(
            "a mean's sample size needs sd > 0 and mde != 0",
            field="--mde",
            received={"sd": sd, "mde": mde},
            expected="finite numbers",
        )
    return math.ceil(_solve(effect_size=abs(mde) / sd, alpha=alpha, power=power, ratio=ratio))


def mde_proportion(
    baseline: float, n: float, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> float:
    """The smallest increase of ``baseline`` detectable with ``n`` units in the baseline arm."""
    _check(alpha, power, ratio)
    if not 0 < baseline < 1 or n < 2:
        raise DataError(
            "mde needs a baseline in (0, 1) and n >= 2", field="n", received={"baseline": baseline, "n": n}
        )
    h = _solve(nobs1=n, alpha=alpha, power=power, ratio=ratio)
    # invert h = 2 asin(sqrt(p1)) - 2 asin(sqrt(p0)), capped at p1 = 1
    p1 = math.sin(min(math.pi / 2, math.asin(math.sqrt(baseline)) + h / 2)) ** 2
    return p1 - baseline


def mde_mean(sd: float, n: float, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0) -> float:
    """The smallest change of a mean detectable with ``n`` units in the baseline arm."""
    _check(alpha, power, ratio)
    if n < 2 or not sd >= 0:
        raise DataError("mde needs n >= 2 and sd >= 0", field="n", received={"sd": sd, "n": n})
    return sd * _solve(nobs1=n, alpha=alpha, power=power, ratio=ratio)


def days_needed(n_per_arm: float | Mapping[str, float], *, per_day: Mapping[str, float]) -> float:
    """Days until every arm reaches its sample at the units per day observed in the log.

    ``n_per_arm``: one number for every arm, or a number per arm.
    """
    need = n_per_arm if isinstance(n_per_arm, Mapping) else {k: n_per_arm for k in per_day}
    days = []
    for arm, n in need.items():
        rate = float(per_day.get(arm, 0.0))
        days.append(math.inf if rate <= 0 else float(n) / rate)
    return max(days) if days else math.inf

"""Always-valid p-values: look at the experiment after every batch without inflating the error.

A fixed-horizon p-value is valid once, at the sample size planned in advance. Checked after
every batch and stopped at the first ``p < alpha``, it declares a winner in an A/A test far
more often than ``alpha`` (``tests/experiments/test_simulations.py`` measures it). The
**mixture sequential probability ratio test** (mSPRT; Johari, Pekelis & Walsh, "Always valid
inference", 2017) fixes this: with the estimated difference ``d_n`` of the arms and its
variance ``V_n`` after ``n`` observations, and a Normal mixing prior ``N(0, tau^2)`` over the
true difference,

    Lambda_n = sqrt(V_n / (V_n + tau^2)) * exp(tau^2 d_n^2 / (2 V_n (V_n + tau^2)))

is a martingale under the null, so by Ville's inequality ``P(sup_n Lambda_n >= 1/alpha) <=
alpha``: the always-valid p-value ``p_n = min(1, min_{k <= n} 1 / Lambda_k)`` can be read after
every batch, and the experiment stopped as soon as ``p_n < alpha``.

``tau`` sets which effects the test is quickest to detect (about ``tau``); here it is given in
units of the metric's standard deviation (``tau_abs = tau * sd``), so one setting suits every
metric: 0.1 (the default) suits lifts of about a tenth of a standard deviation.

The alternative when the sample is planned (a ``horizon``) is a **group-sequential** test with
Lan-DeMets **O'Brien-Fleming** alpha spending: each side spends ``2 - 2 Phi(z_{1-alpha/4} / sqrt(t))``
of its ``alpha / 2`` by the information fraction ``t``; :func:`obrien_fleming_bounds` finds the
z boundary of each look by numerical integration of the Brownian motion of the z statistic
(Jennison & Turnbull, *Group sequential methods*, ch. 19), so the looks need not be equally
spaced nor planned. It spends almost nothing early (a boundary near 4.9 at a fifth of the
sample) and keeps nearly all the power of a fixed test at the horizon.

>>> [round(float(c), 3) for c in obrien_fleming_bounds([0.2, 0.4, 0.6, 0.8, 1.0])]
[4.877, 3.357, 2.68, 2.29, 2.031]

>>> import numpy as np
>>> p = always_valid_p_values(np.array([0.0, 0.1, 0.3]), np.array([0.01, 0.005, 0.0025]), 0.01)
>>> [round(float(v), 4) for v in p]
[1.0, 0.8893, 0.0]
>>> bool(mixture_likelihood_ratio(0.0, 1.0, 1.0) < 1)  # no difference: evidence for the null
True
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy import stats

from mlsd.errors import DesignError

__all__ = [
    "SequentialResult",
    "always_valid_p_values",
    "group_sequential_test",
    "mixture_likelihood_ratio",
    "obrien_fleming_bounds",
    "sequential_test",
]

_GRID = 801  # points of the numerical integration per look (Simpson's rule)


def _log_lambda(difference: Any, variance: Any, tau2: Any) -> np.ndarray:
    d = np.asarray(difference, dtype=float)
    v = np.asarray(variance, dtype=float)
    t = np.asarray(tau2, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 0.5 * np.log(v / (v + t)) + t * d**2 / (2 * v * (v + t))
    # no variance yet (an empty or constant arm): no evidence either way
    return np.where(np.isfinite(out), out, 0.0)


def mixture_likelihood_ratio(difference: Any, variance: Any, tau2: Any) -> Any:
    """``Lambda``: the Normal-mixture likelihood ratio of the difference (vectorised)."""
    return np.exp(_log_lambda(difference, variance, tau2))


def always_valid_p_values(difference: Any, variance: Any, tau2: Any) -> np.ndarray:
    """The always-valid p-values along the last axis (checkpoints in time order).

    ``difference`` and ``variance`` are the cumulative estimates at each checkpoint; leading
    axes (e.g. simulated experiments) are kept.
    """
    p = np.minimum(1.0, np.exp(-_log_lambda(difference, variance, tau2)))
    return np.minimum.accumulate(p, axis=-1)


@dataclasses.dataclass
class SequentialResult:
    """The mSPRT path of one metric over the checkpoints of the period."""

    method: str
    alpha: float
    tau: float  # in standard deviations of the metric
    n: list[float]  # observations (both arms) at each checkpoint
    at: list[str]  # the checkpoint's time (ISO), when known
    difference: list[float]
    p_values: list[float]  # always valid
    rejected_at: int | None  # the first checkpoint with p < alpha (or |z| >= its boundary)
    verdict: str  # "B better", "B worse", "no difference detected yet"
    z: list[float] = dataclasses.field(default_factory=list)  # group sequential: z at each look
    bounds: list[float] = dataclasses.field(default_factory=list)  # and its O'Brien-Fleming boundary
    fractions: list[float] = dataclasses.field(default_factory=list)  # information fraction per look

    @property
    def p_value(self) -> float:
        return self.p_values[-1] if self.p_values else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "p_value": self.p_value}


def sequential_test(
    difference: Any,
    variance: Any,
    sd: Any,
    *,
    alpha: float = 0.05,
    tau: float = 0.1,
    n: Any = None,
    at: list[str] | None = None,
    higher_is_better: bool = True,
) -> SequentialResult:
    """The mSPRT over checkpoints: cumulative ``difference`` (B - A), its ``variance`` and the
    pooled ``sd`` of the metric at each checkpoint (``tau_abs = tau * sd``)."""
    if not 0 < alpha < 1:
        raise DesignError("alpha must be in (0, 1)", field="alpha", received=alpha, expected="e.g. 0.05")
    if not tau > 0:
        raise DesignError(
            "tau must be > 0", field="deployment.experiment.tau", received=tau, expected="e.g. 0.1"
        )
    d = np.asarray(difference, dtype=float)
    tau2 = (tau * np.asarray(sd, dtype=float)) ** 2
    p = always_valid_p_values(d, variance, tau2)
    hits = np.flatnonzero(p < alpha)
    first = int(hits[0]) if hits.size else None
    verdict = "no difference detected yet"
    if first is not None:
        better = (d[-1] > 0) == higher_is_better
        verdict = "B better" if better else "B worse"
    return SequentialResult(
        method="mSPRT",
        alpha=alpha,
        tau=tau,
        n=[float(v) for v in (np.arange(1, d.size + 1) if n is None else n)],
        at=list(at or []),
        difference=[float(v) for v in d],
        p_values=[float(v) for v in p],
        rejected_at=first,
        verdict=verdict,
    )


def _spent(t: np.ndarray, alpha: float) -> np.ndarray:
    """Lan-DeMets O'Brien-Fleming spending: the two-sided error spent by information ``t``.

    Each side spends ``2 - 2 Phi(z_{1 - a/2} / sqrt(t))`` of its one-sided ``a = alpha / 2``,
    as gsDesign's ``sfLDOF`` and ldbounds do, so the boundaries are theirs.
    """
    z = stats.norm.ppf(1 - alpha / 4)
    with np.errstate(divide="ignore"):
        return np.where(t > 0, 4 * stats.norm.sf(z / np.sqrt(np.maximum(t, 1e-300))), 0.0)


def _simpson(lo: float, hi: float, n: int = _GRID) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(lo, hi, n)
    w = np.full(n, 2.0)
    w[1::2] = 4.0
    w[0] = w[-1] = 1.0
    return x, w * (hi - lo) / (3 * (n - 1))


def obrien_fleming_bounds(fractions: Any, alpha: float = 0.05) -> np.ndarray:
    """Two-sided z boundaries at increasing information ``fractions`` in (0, 1].

    Look ``k`` rejects when ``|Z_k| >= c_k``; ``c_k`` spends ``alpha(t_k) - alpha(t_{k-1})``
    given no earlier rejection. The density of the B-value ``B = Z sqrt(t)`` on the
    continuation region is carried from look to look on a Simpson grid (one matrix product
    per look).
    """
    from scipy.optimize import brentq

    t = np.asarray(fractions, dtype=float)
    if t.ndim != 1 or not t.size or (np.diff(t) <= 0).any() or t[0] <= 0 or t[-1] > 1 + 1e-12:
        raise DesignError(
            "information fractions must increase within (0, 1]",
            field="fractions",
            received=t.tolist()[:10],
            expected="e.g. [0.25, 0.5, 0.75, 1.0]",
        )
    spend = np.diff(np.concatenate([[0.0], _spent(t, alpha)]))
    bounds = np.empty(t.size)
    bounds[0] = stats.norm.isf(spend[0] / 2)
    x, w = _simpson(-bounds[0] * np.sqrt(t[0]), bounds[0] * np.sqrt(t[0]))
    density = stats.norm.pdf(x, scale=np.sqrt(t[0]))  # of B(t_1), on the continuation region
    for k in range(1, t.size):  # one step per look, each vectorised over the grid
        step = np.sqrt(t[k] - t[k - 1])
        mass = density * w

        def crossed(
            c: float, k: int = k, step: float = step, mass: np.ndarray = mass, x: np.ndarray = x
        ) -> float:
            edge = c * np.sqrt(t[k])
            p = stats.norm.sf((edge - x) / step) + stats.norm.cdf((-edge - x) / step)
            return float(mass @ p) - spend[k]

        bounds[k] = brentq(crossed, 0.1, 40.0) if crossed(40.0) < 0 < crossed(0.1) else np.inf
        edge = bounds[k] * np.sqrt(t[k])
        if not np.isfinite(edge):
            edge = 40.0 * np.sqrt(t[k])
        new_x, new_w = _simpson(-edge, edge)
        kernel = stats.norm.pdf((new_x[:, None] - x[None, :]) / step) / step
        density, x, w = kernel @ mass, new_x, new_w
    return bounds


def group_sequential_test(
    difference: Any,
    variance: Any,
    fractions: Any,
    *,
    alpha: float = 0.05,
    n: Any = None,
    at: list[str] | None = None,
    higher_is_better: bool = True,
) -> SequentialResult:
    """O'Brien-Fleming group-sequential test at the looks' information ``fractions`` (looks past
    the horizon are dropped: the error is spent by then)."""
    d = np.asarray(difference, dtype=float)
    v = np.asarray(variance, dtype=float)
    f = np.asarray(fractions, dtype=float)
    keep = np.flatnonzero((f > 0) & np.isfinite(v) & (v > 0))
    keep = keep[np.concatenate([[True], np.diff(f[keep]) > 0])] if keep.size else keep
    past = np.flatnonzero(f[keep] >= 1)
    if past.size:  # the first look at or past the horizon is the last one
        keep = keep[: past[0] + 1]
    ff = np.minimum(f[keep], 1.0)
    z = d[keep] / np.sqrt(v[keep])
    bounds = obrien_fleming_bounds(ff, alpha) if keep.size else np.array([])
    hits = np.flatnonzero(np.abs(z) >= bounds)
    first = int(keep[hits[0]]) if hits.size else None
    verdict = "no difference detected yet"
    if first is not None:
        verdict = "B better" if (d[first] > 0) == higher_is_better else "B worse"
    elif keep.size and ff[-1] >= 1:
        verdict = "no difference at the horizon"
    ns = [float(x) for x in (np.arange(1, d.size + 1) if n is None else n)]
    return SequentialResult(
        method="O'Brien-Fleming",
        alpha=alpha,
        tau=float("nan"),
        n=[ns[i] for i in keep],
        at=[at[i] for i in keep] if at else [],
        difference=[float(d[i]) for i in keep],
        p_values=[float(2 * stats.norm.sf(abs(v))) for v in z],  # nominal, to compare with the bound
        rejected_at=None if first is None else int(np.searchsorted(keep, first)),
        verdict=verdict,
        z=[float(v) for v in z],
        bounds=[float(b) for b in bounds],
        fractions=[float(x) for x in ff],
    )

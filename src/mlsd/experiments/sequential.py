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

from mlsd.errors import DesignError

__all__ = ["SequentialResult", "always_valid_p_values", "mixture_likelihood_ratio", "sequential_test"]


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
    rejected_at: int | None  # the first checkpoint with p < alpha
    verdict: str  # "B better", "B worse", "no difference detected yet"

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

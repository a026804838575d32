"""Bandit logs: each arm's reward and regret, and off-policy value estimates of other policies.

A bandit's split follows its rewards, so comparing the arms' raw means is biased (an arm that
looked bad early was served less, later, in other conditions). The log holds each request's
**propensity** (the probability the policy gave the arm it chose), which makes the value of any
candidate policy ``pi`` estimable from the logged data alone:

- IPS (inverse propensity scoring): ``mean(w r)`` with ``w = pi(a | x) / p``: unbiased when
  every arm the candidate may choose had ``p > 0``;
- SNIPS (self-normalised IPS): ``sum(w r) / sum(w)``: a little biased, far less variable;
- DR (doubly robust; Dudik et al. 2011): ``mean(sum_k pi(k | x) q(k, x) + w (r - q(a, x)))``
  with a reward model ``q``: unbiased when the propensities are right *or* the model is.

Each estimate comes with its standard error (of the mean of its per-request terms). A UCB log
(propensities 0 or 1) does not support them: the candidate's arms were never explored.

>>> import numpy as np
>>> a = np.array([0, 1, 1, 0]); r = np.array([1.0, 0.0, 1.0, 1.0]); p = np.array([.5, .5, .5, .5])
>>> target = np.array([[1.0, 0.0]] * 4)  # always arm 0
>>> e = off_policy_estimates(r, p, a, target)
>>> e["ips"].value, e["snips"].value
(1.0, 1.0)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mlsd.errors import DataError

__all__ = ["Estimate", "arm_rewards", "off_policy_estimates"]


@dataclasses.dataclass
class Estimate:
    """A policy value and its standard error."""

    value: float
    se: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(reward: np.ndarray, propensity: np.ndarray, action: np.ndarray, target: np.ndarray) -> None:
    n = reward.size
    if propensity.size != n or action.size != n or target.shape[0] != n:
        raise DataError(
            "reward, propensity, action and target differ in length",
            field="propensity",
            received={
                "reward": n,
                "propensity": propensity.size,
                "action": action.size,
                "target": target.shape,
            },
            expected="one per logged request",
        )
    bad = ~(np.isfinite(propensity) & (propensity > 0) & (propensity <= 1))
    if bad.any():
        raise DataError(
            "logged propensities must lie in (0, 1]",
            field="propensity",
            received=np.unique(propensity[bad])[:5].tolist(),
            expected="the probability the logging policy gave the chosen arm",
        )


def off_policy_estimates(
    reward: Any, propensity: Any, action: Any, target: Any, q_hat: Any = None
) -> dict[str, Estimate]:
    """IPS, SNIPS and DR estimates of the value of the policy ``target``.

    ``action`` holds the logged arm's index per request, ``propensity`` its logged probability,
    ``target`` an ``(n, K)`` matrix of the candidate's arm probabilities per request, ``q_hat``
    an ``(n, K)`` reward model (default: each arm's mean logged reward, the SNIPS estimate of
    always choosing it: no context).
    """
    r = np.asarray(reward, dtype=float)
    p = np.asarray(propensity, dtype=float)
    a = np.asarray(action, dtype=np.int64)
    pi = np.atleast_2d(np.asarray(target, dtype=float))
    _check(r, p, a, pi)
    n, k = pi.shape
    rows = np.arange(n)
    w = pi[rows, a] / p
    if q_hat is None:
        onehot = np.zeros((n, k))
        onehot[rows, a] = 1.0 / p
        sums = onehot.sum(axis=0)
        arm_mean = np.divide((onehot * r[:, None]).sum(axis=0), sums, out=np.zeros(k), where=sums > 0)
        q = np.broadcast_to(arm_mean, (n, k))
    else:
        q = np.asarray(q_hat, dtype=float)
    ips_terms = w * r
    dr_terms = (pi * q).sum(axis=1) + w * (r - q[rows, a])
    w_mean = w.mean()
    snips = float(ips_terms.sum() / w.sum()) if w.sum() > 0 else float("nan")
    # the delta method's s.e. of a ratio of means
    snips_se = (
        float(np.sqrt(np.var(w * (r - snips), ddof=1) / n) / w_mean) if n > 1 and w_mean > 0 else float("nan")
    )

    def se(t: np.ndarray) -> float:
        return float(t.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")

    return {
        "ips": Estimate(float(ips_terms.mean()), se(ips_terms)),
        "snips": Estimate(snips, snips_se),
        "dr": Estimate(float(dr_terms.mean()), se(dr_terms)),
    }


def arm_rewards(reward: Any, action: Any, arms: list[str]) -> dict[str, dict[str, float]]:
    """Per arm: requests, cumulative reward, mean reward; and the regret of the log against the
    arm of highest mean (``n * best mean - total reward``, on the arms' observed means).

    >>> out = arm_rewards([1.0, 0.0, 1.0, 1.0], [0, 1, 1, 0], ["a", "b"])
    >>> out["a"]["cumulative_reward"], out["b"]["mean_reward"], out["_log"]["regret"]
    (2.0, 0.5, 1.0)
    """
    r = np.asarray(reward, dtype=float)
    a = np.asarray(action, dtype=np.int64)
    k = len(arms)
    n = np.bincount(a, minlength=k).astype(float)
    total = np.bincount(a, weights=r, minlength=k)
    mean = np.divide(total, n, out=np.full(k, np.nan), where=n > 0)
    out = {
        arm: {"requests": float(n[i]), "cumulative_reward": float(total[i]), "mean_reward": float(mean[i])}
        for i, arm in enumerate(arms)
    }
    best = float(np.nanmax(mean)) if np.isfinite(mean).any() else float("nan")
    out["_log"] = {
        "requests": float(r.size),
        "cumulative_reward": float(r.sum()),
        "regret": best * r.size - float(r.sum()),
    }
    return out

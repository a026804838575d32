"""Multi-armed bandits over registry aliases: the probability each arm answers the next request.

An arm's evidence is an :class:`ArmStats` (count, sum and sum of squares of rewards, and the
smallest and largest reward seen), built by :func:`arm_stats` from the log's
``reward_counts()`` frame. A policy turns the arms' stats into probabilities; the router draws
each request's arm from them and logs that probability as the propensity, so off-policy
estimates (inverse propensity weighting) stay unbiased. Every policy keeps each arm's
probability > 0 except epsilon-greedy with ``epsilon: 0`` (pure exploitation, by request).

>>> import numpy as np
>>> arms = {"champion": ArmStats(100, 60.0, 60.0), "challenger": ArmStats(100, 70.0, 70.0)}
>>> p = EpsilonGreedy(epsilon=0.1).probabilities(arms, np.random.default_rng(0))
>>> {k: round(v, 6) for k, v in p.items()}
{'champion': 0.05, 'challenger': 0.95}
>>> p = Thompson().probabilities(arms, np.random.default_rng(0))
>>> p["challenger"] > 0.9, round(sum(p.values()), 9)
(True, 1.0)
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mlsd.errors import DesignError

__all__ = [
    "POLICIES",
    "ArmStats",
    "EpsilonGreedy",
    "Policy",
    "Thompson",
    "Ucb",
    "arm_stats",
    "policy_for",
]


@dataclasses.dataclass(frozen=True)
class ArmStats:
    """Rewards observed for one arm. ``reward_min/max`` (None: unknown) scale UCB's bonus."""

    n: int = 0
    reward_sum: float = 0.0
    reward_sq_sum: float = 0.0
    reward_min: float | None = None
    reward_max: float | None = None

    @property
    def mean(self) -> float:
        """Mean reward (NaN when untried)."""
        return self.reward_sum / self.n if self.n else math.nan


class Policy(abc.ABC):
    """A bandit policy: probabilities of the arms given their stats."""

    name: ClassVar[str]

    def __init__(self, *, epsilon: float = 0.1, reward: str = "match") -> None:
        self.epsilon = float(epsilon)
        self.reward = reward

    @classmethod
    def from_spec(cls, spec: Any) -> Policy:
        """From a DeploymentSpec (its ``epsilon`` and ``reward``)."""
        return cls(epsilon=spec.epsilon, reward=spec.reward)

    @abc.abstractmethod
    def probabilities(self, arms: Mapping[str, ArmStats], rng: np.random.Generator) -> dict[str, float]:
        """Probability of each arm (summing to 1), in the mapping's order."""


def _columns(arms: Mapping[str, ArmStats]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    if not arms:
        raise DesignError(
            "a bandit needs at least one arm",
            field="deployment.arms",
            received=[],
            expected="aliases, e.g. [champion, challenger]",
        )
    names = list(arms)
    n = np.array([a.n for a in arms.values()], dtype=float)
    s = np.array([a.reward_sum for a in arms.values()], dtype=float)
    sq = np.array([a.reward_sq_sum for a in arms.values()], dtype=float)
    return names, n, s, sq


def _split_best(score: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Equal shares to the eligible arms of the highest score (ties split), summing to 1."""
    top = np.max(score[eligible])
    best = eligible & np.isclose(score, top, rtol=1e-12, atol=1e-12)
    return best / best.sum()


def _as_dict(names: list[str], p: np.ndarray) -> dict[str, float]:
    return dict(zip(names, (p / p.sum()).tolist(), strict=True))


class EpsilonGreedy(Policy):
    """``epsilon / K`` to every arm, ``1 - epsilon`` shared by the best mean among the tried arms.

    Untried arms are explored only through epsilon (a new arm does not take the traffic before
    its first feedback arrives); with no arm tried, the split is uniform.

    >>> EpsilonGreedy(epsilon=0.2).probabilities({"a": ArmStats(10, 5.0, 5.0), "b": ArmStats(10, 5.0, 5.0),
    ...                                          "c": ArmStats()}, np.random.default_rng(0))
    {'a': 0.4666666666666667, 'b': 0.4666666666666667, 'c': 0.06666666666666667}
    """

    name = "epsilon_greedy"

    def probabilities(self, arms: Mapping[str, ArmStats], rng: np.random.Generator) -> dict[str, float]:
        names, n, s, _ = _columns(arms)
        k = len(names)
        tried = n > 0
        if not tried.any():
            return _as_dict(names, np.full(k, 1.0 / k))
        means = np.divide(s, n, out=np.zeros(k), where=tried)
        return _as_dict(names, self.epsilon / k + (1 - self.epsilon) * _split_best(means, tried))


def _reward_range(arms: Mapping[str, ArmStats], n: np.ndarray, s: np.ndarray, sq: np.ndarray) -> float:
    """The observed spread of single rewards (max - min); estimated from the moments when unknown."""
    lows = [a.reward_min for a in arms.values() if a.reward_min is not None and a.n]
    highs = [a.reward_max for a in arms.values() if a.reward_max is not None and a.n]
    if lows and highs:
        spread = max(highs) - min(lows)
    else:
        # no min/max recorded: the pooled mean +- 2 standard deviations covers most rewards
        total = n.sum()
        var = max(sq.sum() / total - (s.sum() / total) ** 2, 0.0) if total else 0.0
        spread = 4 * math.sqrt(var)
    return spread if spread > 0 else 1.0  # all rewards equal: any scale ranks the arms the same


class Ucb(Policy):
    """UCB1: the arm maximising ``mean / range + sqrt(2 ln N / n)`` (untried arms first; ties split).

    Rewards are divided by their observed range (UCB1's bonus assumes rewards in [0, 1]), so a
    cost in euros explores as much as a 0/1 match.

    >>> Ucb().probabilities({"a": ArmStats(10, 9.0, 9.0), "b": ArmStats()}, np.random.default_rng(0))
    {'a': 0.0, 'b': 1.0}
    """

    name = "ucb"

    def probabilities(self, arms: Mapping[str, ArmStats], rng: np.random.Generator) -> dict[str, float]:
        names, n, s, sq = _columns(arms)
        untried = n == 0
        if untried.any():
            return _as_dict(names, untried / untried.sum())
        scale = _reward_range(arms, n, s, sq)
        score = s / n / scale + np.sqrt(2 * np.log(n.sum()) / n)
        return _as_dict(names, _split_best(score, np.ones(len(names), dtype=bool)))


class Thompson(Policy):
    """Thompson sampling: the chance each arm's posterior draw is the largest (Monte Carlo).

    ``reward: match`` (rewards 0/1): Beta(1 + successes, 1 + failures). Other rewards: a Normal
    posterior of the mean, centred on a weak prior (one pseudo-observation at the pooled mean,
    with the pooled variance), sd = sqrt(variance / (n + 1)). Each arm's probability is floored
    at :attr:`floor` (so a logged propensity is never 0 and IPS stays defined).

    >>> p = Thompson(reward="cost").probabilities({"a": ArmStats(50, -50.0, 50.0),
    ...     "b": ArmStats(50, -10.0, 10.0)}, np.random.default_rng(1))
    >>> p["b"] > 0.99, p["a"] >= 1e-3
    (True, True)
    """

    name = "thompson"
    draws: ClassVar[int] = 4000
    floor: ClassVar[float] = 1e-3

    def probabilities(self, arms: Mapping[str, ArmStats], rng: np.random.Generator) -> dict[str, float]:
        names, n, s, sq = _columns(arms)
        k = len(names)
        if self.reward == "match" and self._binary(n, s, sq):
            sample = rng.beta(1 + s, 1 + (n - s), size=(self.draws, k))
        else:
            total = n.sum()
            m0 = s.sum() / total if total else 0.0
            v0 = max(sq.sum() / total - m0**2, 0.0) if total else 0.0
            v0 = v0 if v0 > 0 else 1.0  # no spread seen yet: a unit prior variance
            ss = np.maximum(sq - np.divide(s**2, n, out=np.zeros(k), where=n > 0), 0.0)
            mean = (s + m0) / (n + 1)
            var = (ss + v0) / np.maximum(n, 1.0)  # pooled-variance pseudo-observation shrinks small n
            sample = rng.normal(mean, np.sqrt(var / (n + 1)), size=(self.draws, k))
        wins = np.bincount(np.argmax(sample, axis=1), minlength=k) / self.draws
        # a mixture with the uniform split: exactly >= floor for every arm, still summing to 1
        floor = min(self.floor, 1.0 / k)
        return _as_dict(names, floor + (1 - k * floor) * wins)

    @staticmethod
    def _binary(n: np.ndarray, s: np.ndarray, sq: np.ndarray) -> bool:
        # 0/1 rewards: each reward equals its square, so the two sums agree and lie in [0, n]
        return bool(np.allclose(s, sq) and (s >= 0).all() and (s <= n + 1e-9).all())


POLICIES: dict[str, type[Policy]] = {p.name: p for p in (EpsilonGreedy, Ucb, Thompson)}


def policy_for(spec: Any) -> Policy:
    """The policy of ``deployment.bandit`` (default: thompson).

    >>> from mlsd.design import DeploymentSpec
    >>> type(policy_for(DeploymentSpec(strategy="bandit", bandit="ucb"))).__name__
    'Ucb'
    """
    return POLICIES[spec.bandit or "thompson"].from_spec(spec)


def _equal(a: pd.Series, b: Any) -> np.ndarray:
    # pandas compares object columns elementwise with Python equality of the decoded JSON values
    # (1 == 1.0 == True, "yes" == "yes"); a missing value equals nothing
    return (a.astype(object) == (b.astype(object) if isinstance(b, pd.Series) else b)).to_numpy(dtype=bool)


def arm_stats(
    counts: pd.DataFrame,
    arms: list[str],
    reward: str,
    costs: Any = None,
    positive_class: Any = None,
) -> dict[str, ArmStats]:
    """Each arm's stats from ``reward_counts()`` rows ``[variant, decision, outcome, n]``.

    ``reward``: ``match`` = 1 when the decision equals the outcome, else 0; ``cost`` = minus the
    cost of the cell from ``goals.costs`` (binary decisions; ``positive_class`` names the positive
    label). Arms with no rows get ``ArmStats()``; rows of other variants are ignored.

    >>> frame = pd.DataFrame({"variant": ["a", "a", "b"], "decision": [1, 0, 1],
    ...                       "outcome": [1, 1, 0], "n": [30, 10, 5]})
    >>> arm_stats(frame, ["a", "b", "c"], "match")["a"]
    ArmStats(n=40, reward_sum=30.0, reward_sq_sum=30.0, reward_min=0.0, reward_max=1.0)
    >>> from mlsd.design import CostsSpec
    >>> arm_stats(frame, ["b"], "cost", CostsSpec(false_positive=2, false_negative=5), 1)["b"].reward_sum
    -10.0
    """
    missing = sorted({"variant", "decision", "outcome", "n"} - set(counts.columns))
    if missing:
        raise DesignError(
            "the reward counts lack columns",
            field="reward_counts",
            received=missing,
            expected="variant, decision, outcome, n",
        )
    frame = counts[counts["variant"].isin(arms)]
    n = frame["n"].to_numpy(dtype=float)
    if reward == "match":
        r = _equal(frame["decision"], frame["outcome"]).astype(float)
    elif reward == "cost":
        if costs is None or positive_class is None:
            raise DesignError(
                "reward: cost needs goals.costs and the positive class of a binary task",
                field="deployment.reward",
                received={"costs": costs, "positive_class": positive_class},
                expected="goals.costs with false_positive and false_negative, and a positive class",
            )
        get = costs.get if isinstance(costs, dict) else (lambda k, d: getattr(costs, k, d))
        pred = _equal(frame["decision"], positive_class)
        real = _equal(frame["outcome"], positive_class)
        cost = np.select(
            [pred & real, pred & ~real, ~pred & real],
            [get("true_positive", 0.0), get("false_positive", 1.0), get("false_negative", 1.0)],
            default=get("true_negative", 0.0),
        ).astype(float)
        r = -cost
    else:
        raise DesignError(
            "unknown reward", field="deployment.reward", received=reward, expected="match or cost"
        )
    parts = pd.DataFrame(
        {
            "variant": frame["variant"].to_numpy(),
            "n": n,
            "s": n * r,
            "sq": n * r * r,
            "r": np.where(n > 0, r, np.nan),
        }
    )
    g = parts.groupby("variant", sort=False).agg(
        n=("n", "sum"), s=("s", "sum"), sq=("sq", "sum"), lo=("r", "min"), hi=("r", "max")
    )
    out = {a: ArmStats() for a in arms}
    for variant, row in g.iterrows():  # one row per arm, not per request
        if row["n"] > 0:
            out[str(variant)] = ArmStats(
                int(row["n"]), float(row["s"]), float(row["sq"]), float(row["lo"]), float(row["hi"])
            )
    return out

"""Bandit policies: valid probabilities, learning the better arm, and arm_stats from reward counts."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from mlsd.design import CostsSpec, DeploymentSpec
from mlsd.errors import DesignError
from mlsd.goals.costs import CostMatrix
from mlsd.rollout.bandits import POLICIES, ArmStats, EpsilonGreedy, Thompson, Ucb, arm_stats, policy_for


def _update(stats_: dict[str, ArmStats], arm: str, rewards: np.ndarray) -> None:
    old = stats_[arm]
    lo = min(old.reward_min if old.reward_min is not None else np.inf, float(rewards.min()))
    hi = max(old.reward_max if old.reward_max is not None else -np.inf, float(rewards.max()))
    stats_[arm] = ArmStats(
        old.n + rewards.size,
        old.reward_sum + float(rewards.sum()),
        old.reward_sq_sum + float((rewards**2).sum()),
        lo,
        hi,
    )


def _simulate(
    name: str,
    draw: Mapping[str, Callable[[np.random.Generator, int], np.ndarray]],
    reward: str,
    rounds: int = 40,
    batch: int = 100,
) -> dict[str, float]:
    """Run the policy on simulated feedback; its final probabilities."""
    rng = np.random.default_rng(7)
    policy = POLICIES[name](epsilon=0.1, reward=reward)
    arms = {a: ArmStats() for a in draw}
    for _ in range(rounds):
        p = policy.probabilities(arms, rng)
        assert set(p) == set(draw) and sum(p.values()) == pytest.approx(1.0)
        assert all(v >= 0 for v in p.values())
        chosen = rng.choice(list(p), size=batch, p=list(p.values()))
        for arm in set(chosen):
            _update(arms, arm, draw[arm](rng, int((chosen == arm).sum())))
    return policy.probabilities(arms, rng)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_learns_the_better_arm_of_0_1_rewards(name: str) -> None:
    draw = {
        "champion": lambda r, k: r.binomial(1, 0.4, k).astype(float),
        "challenger": lambda r, k: r.binomial(1, 0.7, k).astype(float),
        "third": lambda r, k: r.binomial(1, 0.2, k).astype(float),
    }
    p = _simulate(name, draw, "match")
    assert p["challenger"] > p["champion"] and p["challenger"] > p["third"]
    assert p["challenger"] > 0.5


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_learns_the_better_arm_of_costs(name: str) -> None:
    # rewards are minus costs in euros: the challenger errs less often
    draw = {
        "champion": lambda r, k: -40.0 * r.binomial(1, 0.5, k),
        "challenger": lambda r, k: -40.0 * r.binomial(1, 0.2, k),
    }
    p = _simulate(name, draw, "cost")
    assert p["challenger"] > p["champion"]


def test_policies_are_built_from_the_spec() -> None:
    assert set(POLICIES) == {"epsilon_greedy", "ucb", "thompson"}
    p = policy_for(DeploymentSpec(strategy="bandit", bandit="epsilon_greedy", epsilon=0.3, reward="cost"))
    assert isinstance(p, EpsilonGreedy) and p.epsilon == 0.3 and p.reward == "cost"
    assert isinstance(policy_for(DeploymentSpec(strategy="bandit")), Thompson)
    with pytest.raises(DesignError, match="at least one arm"):
        Ucb().probabilities({}, np.random.default_rng(0))


def test_epsilon_greedy_shares() -> None:
    rng = np.random.default_rng(0)
    arms = {"a": ArmStats(10, 3.0, 3.0), "b": ArmStats(10, 8.0, 8.0), "c": ArmStats(10, 8.0, 8.0)}
    assert EpsilonGreedy(epsilon=0.3).probabilities(arms, rng) == pytest.approx(
        {"a": 0.1, "b": 0.45, "c": 0.45}
    )
    assert EpsilonGreedy(epsilon=0.3).probabilities({"a": ArmStats(), "b": ArmStats()}, rng) == {
        "a": 0.5,
        "b": 0.5,
    }
    assert EpsilonGreedy(epsilon=0).probabilities(arms | {"d": ArmStats()}, rng)["d"] == 0


def test_ucb_tries_untried_arms_first_and_ignores_the_reward_scale() -> None:
    rng = np.random.default_rng(0)
    assert Ucb().probabilities({"a": ArmStats(5, 5.0, 5.0), "b": ArmStats(), "c": ArmStats()}, rng) == {
        "a": 0.0,
        "b": 0.5,
        "c": 0.5,
    }
    # a close race: an arm seen less often has the larger bonus
    small = {"a": ArmStats(100, 60.0, 60.0, 0.0, 1.0), "b": ArmStats(10, 5.5, 5.5, 0.0, 1.0)}
    big = {k: ArmStats(v.n, 1000 * v.reward_sum - 7 * v.n, 0.0, -7.0, 993.0) for k, v in small.items()}
    assert Ucb().probabilities(small, rng) == Ucb().probabilities(big, rng) == {"a": 0.0, "b": 1.0}
    # UCB1's score, by hand: mean + sqrt(2 ln N / n)
    n, mean = np.array([100, 10]), np.array([0.6, 0.55])
    assert np.argmax(mean + np.sqrt(2 * np.log(110) / n)) == 1


def test_thompson_matches_the_exact_probability_of_beta_posteriors() -> None:
    a, b = ArmStats(40, 22.0, 22.0), ArmStats(40, 26.0, 26.0)
    xa, xb = stats.beta(1 + 22, 1 + 18), stats.beta(1 + 26, 1 + 14)
    exact, _ = integrate.quad(lambda x: xb.pdf(x) * xa.cdf(x), 0, 1)  # P(draw_b > draw_a)
    p = Thompson().probabilities({"a": a, "b": b}, np.random.default_rng(3))
    expected = 1e-3 + (1 - 2e-3) * exact
    assert abs(p["b"] - expected) < 4 * np.sqrt(exact * (1 - exact) / Thompson.draws)


def test_thompson_floors_every_arm_so_propensities_stay_positive() -> None:
    arms = {"good": ArmStats(10_000, 9000.0, 9000.0), "bad": ArmStats(10_000, 100.0, 100.0)}
    p = Thompson().probabilities(arms, np.random.default_rng(0))
    assert p["bad"] == pytest.approx(1e-3) and sum(p.values()) == pytest.approx(1.0)
    costs = {"good": ArmStats(1000, -10.0, 10.0), "bad": ArmStats(1000, -900.0, 900.0), "new": ArmStats()}
    q = Thompson(reward="cost").probabilities(costs, np.random.default_rng(0))
    assert min(q.values()) >= 1e-3 - 1e-12 and max(q, key=q.__getitem__) in {"good", "new"}


COUNTS = pd.DataFrame(
    {
        "variant": ["a", "a", "a", "a", "b", "b", "zzz"],
        "decision": [1, 1, 0, 0, 1, 0, 1],
        "outcome": [1, 0, 1, 0, 1, 0, 0],
        "n": [40, 7, 3, 50, 9, 1, 1000],
    }
)


def _expanded(frame: pd.DataFrame, variant: str) -> pd.DataFrame:
    rows = frame[frame["variant"] == variant]
    return rows.loc[rows.index.repeat(rows["n"])]


def test_arm_stats_match_rewards_equal_one_row_per_request() -> None:
    got = arm_stats(COUNTS, ["a", "b", "c"], "match")
    for arm in ("a", "b"):
        r = (_expanded(COUNTS, arm)["decision"] == _expanded(COUNTS, arm)["outcome"]).to_numpy(float)
        assert got[arm] == ArmStats(r.size, r.sum(), (r**2).sum(), r.min(), r.max())
    assert got["c"] == ArmStats() and "zzz" not in got


def test_arm_stats_cost_rewards_are_minus_the_goals_cost() -> None:
    costs = CostsSpec(false_positive=2, false_negative=10, true_positive=-1)
    got = arm_stats(COUNTS, ["a"], "cost", costs, positive_class=1)["a"]
    tn, fp, fn, tp = 50, 7, 3, 40
    assert got.n == 100
    assert got.reward_sum == pytest.approx(-CostMatrix.from_spec(costs).total(tn, fp, fn, tp))
    assert got.reward_sq_sum == pytest.approx(fp * 4 + fn * 100 + tp * 1)
    assert (got.reward_min, got.reward_max) == (-10.0, 1.0)
    # string labels, decoded from JSON, compare as values
    words = COUNTS.assign(
        decision=COUNTS["decision"].map({1: "yes", 0: "no"}),
        outcome=COUNTS["outcome"].map({1: "yes", 0: "no"}),
    )
    assert arm_stats(words, ["a"], "cost", costs, positive_class="yes")["a"] == got


def test_arm_stats_errors() -> None:
    with pytest.raises(DesignError) as err:
        arm_stats(COUNTS, ["a"], "cost", None, None)
    assert err.value.field == "deployment.reward"
    with pytest.raises(DesignError, match="lack columns"):
        arm_stats(COUNTS.drop(columns="n"), ["a"], "match")
    with pytest.raises(DesignError, match="unknown reward"):
        arm_stats(COUNTS, ["a"], "clicks")

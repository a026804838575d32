"""The Bayesian read-out against numerical integration, and off-policy estimates on a synthetic
bandit whose policy values are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from mlsd.errors import DataError
from mlsd.experiments.bayesian import beta_binomial, normal_means
from mlsd.experiments.off_policy import arm_rewards, off_policy_estimates


def test_beta_binomial_probability_matches_the_integral() -> None:
    x_a, n_a, x_b, n_b = 120, 1000, 145, 1000
    r = beta_binomial(x_a, n_a, x_b, n_b)
    post_a, post_b = stats.beta(1 + x_a, 1 + n_a - x_a), stats.beta(1 + x_b, 1 + n_b - x_b)
    exact = integrate.quad(lambda t: post_b.pdf(t) * post_a.cdf(t), 0, 1, points=[0.12, 0.145])[0]
    assert r.p_b_better == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / 200_000))
    # E[max(A - B, 0)] by integration over the difference's two-dimensional posterior
    loss_b = integrate.dblquad(
        lambda b, a: (a - b) * post_a.pdf(a) * post_b.pdf(b), 0.05, 0.25, lambda a: 0.0, lambda a: a
    )[0]
    assert r.expected_loss_b == pytest.approx(loss_b, rel=0.05)
    assert beta_binomial(x_a, n_a, x_b, n_b).p_b_better == r.p_b_better  # seeded


def test_lower_is_better_flips_the_probability() -> None:
    up = beta_binomial(50, 500, 70, 500)
    down = beta_binomial(50, 500, 70, 500, higher_is_better=False)
    assert up.p_b_better == pytest.approx(1 - down.p_b_better, abs=1e-9)
    assert up.expected_loss_a == pytest.approx(down.expected_loss_b, abs=1e-12)


def test_normal_closed_form_matches_monte_carlo() -> None:
    r = normal_means(10.0, 4.0, 100, 10.3, 5.0, 120)
    rng = np.random.default_rng(0)
    d = rng.normal(10.3, np.sqrt(5.0 / 120), 400_000) - rng.normal(10.0, np.sqrt(4.0 / 100), 400_000)
    assert r.p_b_better == pytest.approx((d > 0).mean(), abs=0.003)
    assert r.expected_loss_b == pytest.approx(np.maximum(-d, 0).mean(), abs=0.002)
    assert r.expected_loss_a == pytest.approx(np.maximum(d, 0).mean(), abs=0.002)


def _bandit_log(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Context x in {0, 1}; arm 1 is better when x = 1. The logging policy prefers arm 1 when
    x = 1 (p = 0.8) and arm 0 otherwise, so each arm's raw mean is confounded by x."""
    x = rng.random(n) < 0.4
    p1 = np.where(x, 0.8, 0.2)
    action = (rng.random(n) < p1).astype(int)
    mean = np.array([[0.5, 0.3], [0.4, 0.7]])  # mean[x, arm]
    reward = (rng.random(n) < mean[x.astype(int), action]).astype(float)
    propensity = np.where(action == 1, p1, 1 - p1)
    return {"x": x, "action": action, "reward": reward, "propensity": propensity, "mean": mean}


TRUE_ALWAYS_1 = 0.6 * 0.3 + 0.4 * 0.7  # value of always serving arm 1
TRUE_BEST = 0.6 * 0.5 + 0.4 * 0.7  # arm 0 when x = 0, arm 1 when x = 1


def test_ips_snips_dr_recover_known_policy_values() -> None:
    rng = np.random.default_rng(1)
    log = _bandit_log(rng, 20_000)
    n = log["reward"].size
    always_1 = np.tile([0.0, 1.0], (n, 1))
    best = np.column_stack([~log["x"], log["x"]]).astype(float)
    for target, truth in ((always_1, TRUE_ALWAYS_1), (best, TRUE_BEST)):
        est = off_policy_estimates(log["reward"], log["propensity"], log["action"], target)
        for name, e in est.items():
            assert abs(e.value - truth) < 4 * e.se, (name, e, truth)
    # the raw mean of arm 1 is biased by the logging policy (served mostly where x = 1)
    naive = log["reward"][log["action"] == 1].mean()
    assert abs(naive - TRUE_ALWAYS_1) > 0.1
    # DR with the true reward model is right too, and tighter than IPS
    q = np.broadcast_to(log["mean"][log["x"].astype(int)], (n, 2))
    dr = off_policy_estimates(log["reward"], log["propensity"], log["action"], always_1, q)["dr"]
    ips = off_policy_estimates(log["reward"], log["propensity"], log["action"], always_1)["ips"]
    assert abs(dr.value - TRUE_ALWAYS_1) < 4 * dr.se and dr.se < ips.se


def test_ips_is_unbiased_over_repeated_logs() -> None:
    rng = np.random.default_rng(2)
    values = []
    for _ in range(200):
        log = _bandit_log(rng, 500)
        target = np.tile([0.0, 1.0], (500, 1))
        values.append(
            off_policy_estimates(log["reward"], log["propensity"], log["action"], target)["ips"].value
        )
    values = np.array(values)
    assert abs(values.mean() - TRUE_ALWAYS_1) < 4 * values.std(ddof=1) / np.sqrt(values.size)


def test_arm_rewards_and_regret() -> None:
    out = arm_rewards([1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1], ["a", "b"])
    assert out["a"]["cumulative_reward"] == 2 and out["b"]["mean_reward"] == pytest.approx(1 / 3)
    assert out["_log"]["regret"] == pytest.approx(6 * 2 / 3 - 3)


def test_bad_propensities_are_refused() -> None:
    with pytest.raises(DataError, match="propensit"):
        off_policy_estimates([1.0], [0.0], [0], [[1.0, 0.0]])

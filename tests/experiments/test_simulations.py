"""Simulated experiments: the tests keep their promises.

- 1,000 A/A experiments: the fixed-horizon z and Welch tests, the delta-method ratio test on
  clustered units and the mSPRT checked after every one of 50 batches each declare a
  difference in alpha +- 3 Monte Carlo standard errors of them (the mSPRT at most that);
- the naive fixed-horizon z test checked after every batch does not: peeking inflates it;
- a request-level test of unit-randomised traffic is too confident, the delta method is not;
- CUPED removes about rho^2 of the variance; the planned sample gives the planned power.

Every simulation is vectorised over experiments (numpy) and seeded. The measured rates print
with ``PYTHONPATH=src python tests/experiments/test_simulations.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlsd.experiments.frequentist import cuped, ratio_metric, two_proportions, welch_from_stats
from mlsd.experiments.power import sample_size_mean, sample_size_proportion
from mlsd.experiments.sequential import always_valid_p_values, obrien_fleming_bounds

ALPHA = 0.05
SIMS = 1_000
MC_SE = np.sqrt(ALPHA * (1 - ALPHA) / SIMS)  # of a rejection rate near alpha
BATCHES, PER_BATCH = 50, 100  # per arm


def aa_proportions_rate(seed: int = 0, sims: int = SIMS) -> float:
    rng = np.random.default_rng(seed)
    n = 2_000
    x_a, x_b = rng.binomial(n, 0.3, sims), rng.binomial(n, 0.3, sims)
    return float(
        np.mean(
            [two_proportions(int(a), n, int(b), n).p_value < ALPHA for a, b in zip(x_a, x_b, strict=True)]
        )
    )


def aa_welch_rate(seed: int = 1, sims: int = SIMS) -> float:
    rng = np.random.default_rng(seed)
    a, b = rng.lognormal(0, 1, (sims, 300)), rng.lognormal(0, 1, (sims, 200))  # skewed, unequal n
    ma, va, mb, vb = a.mean(1), a.var(1, ddof=1), b.mean(1), b.var(1, ddof=1)
    return float(
        np.mean(
            [
                welch_from_stats(*s, alpha=ALPHA).p_value < ALPHA
                for s in zip(ma, va, [300] * sims, mb, vb, [200] * sims, strict=True)
            ]
        )
    )


def _cumulative_bernoulli(
    rng: np.random.Generator, p_a: float, p_b: float, sims: int
) -> tuple[np.ndarray, ...]:
    """Cumulative successes and counts per arm after each batch: (sims, BATCHES)."""
    s_a = np.cumsum(rng.binomial(PER_BATCH, p_a, (sims, BATCHES)), axis=1)
    s_b = np.cumsum(rng.binomial(PER_BATCH, p_b, (sims, BATCHES)), axis=1)
    n = PER_BATCH * np.arange(1, BATCHES + 1)
    return s_a, s_b, np.broadcast_to(n, s_a.shape)


def _paths(p_a: float, p_b: float, seed: int, sims: int, tau: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Always-valid p-values and naive z p-values at every batch, (sims, BATCHES)."""
    rng = np.random.default_rng(seed)
    s_a, s_b, n = _cumulative_bernoulli(rng, p_a, p_b, sims)
    pa, pb = s_a / n, s_b / n
    diff = pb - pa
    var = pa * (1 - pa) / n + pb * (1 - pb) / n
    sd = np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / 2)
    always = always_valid_p_values(diff, var, (tau * sd) ** 2)
    pooled = (s_a + s_b) / (2 * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = diff / np.sqrt(pooled * (1 - pooled) * 2 / n)
    naive = 2 * stats.norm.sf(np.abs(np.nan_to_num(z)))
    return always, naive


def aa_sequential_rates(seed: int = 2, sims: int = SIMS) -> dict[str, float]:
    always, naive = _paths(0.3, 0.3, seed, sims)
    return {
        "msprt_every_batch": float((always < ALPHA).any(axis=1).mean()),  # stopped at the first
        "naive_every_batch": float((naive < ALPHA).any(axis=1).mean()),
        "naive_last_batch_only": float((naive[:, -1] < ALPHA).mean()),
    }


def aa_group_sequential_rate(seed: int = 4, sims: int = SIMS, p_b: float = 0.3) -> float:
    """O'Brien-Fleming at 10 unequal looks up to the horizon (the last batch)."""
    rng = np.random.default_rng(seed)
    s_a, s_b, n = _cumulative_bernoulli(rng, 0.3, p_b, sims)
    looks = np.array([2, 5, 9, 14, 20, 27, 33, 40, 45, 49])  # batch indices, the last = horizon
    s_a, s_b, n = s_a[:, looks], s_b[:, looks], n[:, looks]
    pa, pb = s_a / n, s_b / n
    z = (pb - pa) / np.sqrt(pa * (1 - pa) / n + pb * (1 - pb) / n)
    bounds = obrien_fleming_bounds(n[0] / n[0, -1], ALPHA)
    return float((np.abs(z) >= bounds).any(axis=1).mean())


def aa_clustered_rates(seed: int = 3, sims: int = SIMS) -> dict[str, float]:
    """Units of 1..20 requests, each unit its own success probability: A/A."""
    rng = np.random.default_rng(seed)
    units = 200
    out = {"delta_method": [], "request_level": []}
    for _ in range(sims):  # one loop per experiment, each vectorised over its units
        den = rng.integers(1, 21, (2, units)).astype(float)
        p = rng.beta(2, 5, (2, units))
        num = rng.binomial(den.astype(int), p).astype(float)
        out["delta_method"].append(ratio_metric(num[0], den[0], num[1], den[1]).p_value < ALPHA)
        x, n = num.sum(1).astype(int), den.sum(1).astype(int)
        out["request_level"].append(two_proportions(x[0], n[0], x[1], n[1]).p_value < ALPHA)
    return {k: float(np.mean(v)) for k, v in out.items()}


def _band(rate: float) -> bool:
    return abs(rate - ALPHA) <= 3 * MC_SE


def test_fixed_horizon_tests_hold_alpha_in_aa() -> None:
    assert _band(aa_proportions_rate())
    assert _band(aa_welch_rate())


def test_sequential_checked_every_batch_holds_alpha_and_peeking_does_not() -> None:
    rates = aa_sequential_rates()
    assert rates["msprt_every_batch"] <= ALPHA + 3 * MC_SE
    assert rates["naive_every_batch"] > ALPHA + 3 * MC_SE  # what the sequential test is for
    assert _band(rates["naive_last_batch_only"])  # one look is fine


def test_group_sequential_spends_exactly_alpha() -> None:
    assert _band(aa_group_sequential_rate())  # not merely below: OBF spends all of alpha
    # and it keeps almost the power of one look at the horizon
    _, naive = _paths(0.30, 0.33, seed=6, sims=1000)
    fixed_power = (naive[:, -1] < ALPHA).mean()
    assert aa_group_sequential_rate(seed=6, p_b=0.33) > fixed_power - 0.05


def test_sequential_still_detects_a_real_lift() -> None:
    always, _ = _paths(0.30, 0.33, seed=5, sims=400)
    assert (always[:, -1] < ALPHA).mean() > 0.6


def test_delta_method_holds_alpha_on_units_a_request_level_test_does_not() -> None:
    rates = aa_clustered_rates(sims=600)
    se = np.sqrt(ALPHA * (1 - ALPHA) / 600)
    assert abs(rates["delta_method"] - ALPHA) <= 3 * se
    assert rates["request_level"] > ALPHA + 3 * se


@pytest.mark.parametrize("rho", [0.3, 0.7])
def test_cuped_removes_rho_squared_of_the_variance(rho: float) -> None:
    rng = np.random.default_rng(6)
    n = 40_000
    x = rng.normal(0, 1, n)
    y = rho * x + np.sqrt(1 - rho**2) * rng.normal(0, 1, n)
    adjusted, _ = cuped(y, x)
    reduction = 1 - adjusted.var() / y.var()
    assert reduction == pytest.approx(rho**2, abs=0.02)


def test_planned_sample_gives_the_planned_power() -> None:
    rng = np.random.default_rng(7)
    sims = 2_000
    n = sample_size_proportion(0.30, 0.03)
    x_a, x_b = rng.binomial(n, 0.30, sims), rng.binomial(n, 0.33, sims)
    power = np.mean(
        [two_proportions(int(a), n, int(b), n).p_value < ALPHA for a, b in zip(x_a, x_b, strict=True)]
    )
    se = np.sqrt(0.8 * 0.2 / sims)
    assert abs(power - 0.8) <= 3 * se
    m = sample_size_mean(sd=2.0, mde=0.25)
    a, b = rng.normal(0, 2.0, (sims, m)), rng.normal(0.25, 2.0, (sims, m))
    p = stats.ttest_ind(b, a, axis=1, equal_var=False).pvalue
    assert abs((p < ALPHA).mean() - 0.8) <= 3 * se


if __name__ == "__main__":
    print(f"A/A, {SIMS} experiments, alpha {ALPHA}, 3 MC s.e. = {3 * MC_SE:.4f}")
    print(f"  two-proportion z, fixed horizon: {aa_proportions_rate():.3f}")
    print(f"  Welch t, fixed horizon:          {aa_welch_rate():.3f}")
    for k, v in aa_sequential_rates().items():
        print(f"  {k} ({BATCHES} batches of {PER_BATCH} per arm): {v:.3f}")
    print(f"  O'Brien-Fleming, 10 looks up to the horizon: {aa_group_sequential_rate():.3f}")
    for k, v in aa_clustered_rates().items():
        print(f"  clustered units, {k}: {v:.3f}")

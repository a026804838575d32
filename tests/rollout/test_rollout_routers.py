"""Every built strategy has a router; every router gives valid propensities, the intended split
and sticky units."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.design import DeploymentSpec, list_strategies
from mlsd.errors import DesignError
from mlsd.rollout.bandits import POLICIES, ArmStats
from mlsd.rollout.routers import STRATEGIES, Assignment, Router, router_for
from mlsd.rollout.state import RolloutState, initial_state

N = 10_000
UNITS: list[str | None] = [f"user-{i}" if i % 2 == 0 else None for i in range(N)]

# a spec that exercises each strategy, and the state it is routed in
CASES: dict[str, tuple[DeploymentSpec, RolloutState | None]] = {
    "single": (DeploymentSpec(strategy="single"), None),
    "shadow": (DeploymentSpec(strategy="shadow", shadow_percent=30, seed=4), None),
    "canary": (
        DeploymentSpec(strategy="canary", steps=[5, 30, 100], seed=1),
        RolloutState({"champion": 70, "challenger": 30}, canary_step=1),
    ),
    "ab": (DeploymentSpec(strategy="ab", traffic={"champion": 60, "b": 30, "c": 10}, seed=9), None),
    "bandit": (
        DeploymentSpec(strategy="bandit", bandit="epsilon_greedy", epsilon=0.3, arms=["champion", "b", "c"]),
        None,
    ),
}
ARMS = {
    "champion": ArmStats(200, 120.0, 120.0),
    "b": ArmStats(200, 150.0, 150.0),
    "c": ArmStats(50, 10.0, 10.0),
}


def test_every_built_strategy_has_a_router() -> None:
    assert set(list_strategies()) <= set(STRATEGIES)
    assert set(CASES) == set(list_strategies())  # the generic test below covers each of them
    for name, cls in STRATEGIES.items():
        assert cls.strategy == name and issubclass(cls, Router)


def _route(strategy: str, seed: int) -> tuple[Router, RolloutState, Assignment]:
    spec, state = CASES[strategy]
    state = state or initial_state(spec)
    router = router_for(spec)
    return router, state, router.assign(UNITS, state, ARMS, np.random.default_rng(seed))


def _within_4_sigma(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 4 * np.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("strategy", sorted(CASES))
def test_router_propensities_split_and_stickiness(strategy: str) -> None:
    router, state, a = _route(strategy, seed=0)
    assert len(a) == N and len(a.propensity) == N and len(a.unit) == N and a.shadow.dtype == bool
    assert set(a.variant) <= set(router.variants)
    assert ((a.propensity > 0) & (a.propensity <= 1)).all()
    assert set(a.assignment) <= {"sticky", "random", "fixed"}
    assert a.unit == UNITS

    # the intended distribution: the router's weights, or (bandit) what the propensities say it was
    if strategy == "bandit":
        intended = {v: float(a.propensity[a.variant == v][0]) for v in set(a.variant)}
        assert (a.assignment == "random").all()
    else:
        share = router.weights(state)
        intended = {k: w / sum(share.values()) for k, w in share.items()}
        # the propensity is the weight of the variant chosen
        expected = np.array([intended[v] for v in a.variant])
        np.testing.assert_allclose(a.propensity, expected)
    assert sum(intended.values()) == pytest.approx(1.0)
    for variant, p in intended.items():
        assert _within_4_sigma(int((a.variant == variant).sum()), N, p), (variant, p)

    # sticky units repeat their variant under another random generator; random rows need not
    _, _, again = _route(strategy, seed=1)
    sticky = a.assignment == "sticky"
    assert (again.variant[sticky] == a.variant[sticky]).all()
    assert (again.shadow[sticky] == a.shadow[sticky]).all() if strategy == "shadow" else True
    if strategy in ("ab", "canary"):
        assert sticky.sum() == N // 2 and (a.assignment[~sticky] == "random").all()
        assert (again.variant[~sticky] != a.variant[~sticky]).any()


def test_single_and_shadow_are_fixed_on_the_champion() -> None:
    for strategy in ("single", "shadow"):
        _, _, a = _route(strategy, seed=0)
        assert (
            (a.variant == "champion").all() and (a.propensity == 1).all() and (a.assignment == "fixed").all()
        )
    assert not _route("single", 0)[2].shadow.any()
    shadow = _route("shadow", 0)[2].shadow
    assert _within_4_sigma(int(shadow.sum()), N, 0.3)
    # the shadow share uses its own salt: it is independent of an A/B split on the same seed
    ab = router_for(DeploymentSpec(strategy="ab", traffic={"champion": 70, "b": 30}, seed=4))
    on_b = ab.assign(UNITS, initial_state(ab.spec), None, np.random.default_rng(0)).variant == "b"
    units = np.array([u is not None for u in UNITS])
    assert abs(np.corrcoef(shadow[units], on_b[units])[0, 1]) < 0.05


def test_canary_moves_units_only_towards_the_challenger_and_stops_on_rollback() -> None:
    spec = DeploymentSpec(strategy="canary", steps=[5, 30, 100])
    router = router_for(spec)
    rng = np.random.default_rng(0)
    units = [f"u{i}" for i in range(5000)]
    before = router.assign(units, RolloutState({}, canary_step=0), None, rng).variant == "challenger"
    after = router.assign(units, RolloutState({}, canary_step=1), None, rng).variant == "challenger"
    assert before.sum() < after.sum() and not (before & ~after).any()
    everyone = router.assign(units, RolloutState({}, canary_step=2), None, rng)
    assert (everyone.variant == "challenger").all() and (everyone.propensity == 1).all()
    back = router.assign([*units, None], RolloutState({}, canary_step=2, rolled_back="errors"), None, rng)
    assert (back.variant == "champion").all() and (back.propensity == 1).all()
    assert router.weights(RolloutState({}, canary_step=1)) == {"champion": 70.0, "challenger": 30.0}


def test_ab_follows_the_state_weights_and_refuses_unknown_aliases() -> None:
    spec = DeploymentSpec(strategy="ab", traffic={"champion": 50, "b": 50})
    router = router_for(spec)
    a = router.assign([None] * 4000, RolloutState({"champion": 0, "b": 100}), None, np.random.default_rng(0))
    assert (a.variant == "b").all() and (a.propensity == 1).all()
    with pytest.raises(DesignError) as err:
        router.assign(["x"], RolloutState({"champion": 50, "zzz": 50}), None, np.random.default_rng(0))
    assert err.value.field == "rollout_state.weights"


def test_bandit_favours_the_better_arm_and_logs_its_probability() -> None:
    spec = DeploymentSpec(strategy="bandit", bandit="thompson", arms=["champion", "b"])
    router = router_for(spec)
    arms = {"champion": ArmStats(500, 250.0, 250.0), "b": ArmStats(500, 350.0, 350.0)}
    a = router.assign([None] * 2000, initial_state(spec), arms, np.random.default_rng(0))
    assert (a.variant == "b").mean() > 0.95
    assert a.propensity[a.variant == "b"][0] > 0.99
    # without stats every arm is untried: an even split
    w = router.weights(initial_state(spec))
    assert w == pytest.approx({"champion": 50.0, "b": 50.0}, abs=3)


def test_bandit_default_arms_are_champion_and_challenger() -> None:
    assert router_for(DeploymentSpec(strategy="bandit")).variants == ["champion", "challenger"]


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_bandit_router_with_every_policy(policy: str) -> None:
    spec = DeploymentSpec(strategy="bandit", bandit=policy, arms=["champion", "b", "c"])
    a = router_for(spec).assign(UNITS, initial_state(spec), ARMS, np.random.default_rng(0))
    assert ((a.propensity > 0) & (a.propensity <= 1)).all() and (a.assignment == "random").all()
    for variant in set(a.variant):
        p = a.propensity[a.variant == variant]
        assert (p == p[0]).all() and _within_4_sigma(int((a.variant == variant).sum()), N, float(p[0]))
    # "b" has the best mean reward (0.75): every policy favours it
    assert (a.variant == "b").mean() > 0.5


@pytest.mark.parametrize("strategy", sorted(CASES))
def test_an_empty_batch_gives_an_empty_assignment(strategy: str) -> None:
    spec, state = CASES[strategy]
    a = router_for(spec).assign([], state or initial_state(spec), ARMS, np.random.default_rng(0))
    assert len(a) == 0 and a.propensity.dtype == float and a.unit == [] and a.shadow.size == 0

"""The shared state round-trips through JSON; the SRM p-value is scipy's chi-square."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from mlsd.design import DeploymentSpec
from mlsd.errors import DesignError
from mlsd.rollout.srm import sample_ratio_mismatch
from mlsd.rollout.state import RolloutState, initial_state


def test_state_round_trips_through_json() -> None:
    s = RolloutState(
        {"champion": 75, "challenger": 25.5},
        canary_step=2,
        step_started_at="2026-12-02T14:00:00+00:00",
        rolled_back="p99 too high",
        complete=False,
    )
    back = RolloutState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    assert RolloutState.from_dict({"weights": {"champion": 100}}) == RolloutState({"champion": 100.0})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([1], "rollout_state"),
        ({"weights": {}, "extra": 1}, "rollout_state"),
        ({"weights": {"a": "x"}}, "rollout_state.weights"),
        ({"weights": {"a": 1}, "canary_step": -1}, "rollout_state.canary_step"),
        ({"weights": {"a": 1}, "canary_step": True}, "rollout_state.canary_step"),
        ({"weights": {"a": 1}, "rolled_back": 3}, "rollout_state.rolled_back"),
        ({"weights": {"a": 1}, "complete": "yes"}, "rollout_state.complete"),
    ],
)
def test_bad_state_names_the_field(data: object, field: str) -> None:
    with pytest.raises(DesignError) as err:
        RolloutState.from_dict(data)
    assert err.value.field == field


def test_initial_state_by_strategy() -> None:
    assert initial_state(DeploymentSpec(strategy="ab", traffic={"champion": 1, "b": 3})).weights == {
        "champion": 1.0,
        "b": 3.0,
    }
    canary = initial_state(DeploymentSpec(strategy="canary", challenger="next", steps=[10, 100]))
    assert canary.weights == {"champion": 90.0, "next": 10.0} and canary.canary_step == 0
    for strategy in ("single", "shadow", "bandit"):
        assert initial_state(DeploymentSpec(strategy=strategy)).weights == {"champion": 100.0}
    with pytest.raises(DesignError, match="needs steps"):
        initial_state(DeploymentSpec(strategy="canary"))


def test_srm_is_scipys_chisquare_over_weighted_variants() -> None:
    counts = {"a": 5100, "b": 2950, "c": 1950, "off": 7}
    weights = {"a": 50, "b": 30, "c": 20, "off": 0}
    expected = stats.chisquare([5100, 2950, 1950], np.array([0.5, 0.3, 0.2]) * 10_000).pvalue
    assert sample_ratio_mismatch(counts, weights) == pytest.approx(expected, rel=1e-12)


def test_srm_detects_a_broken_split_and_passes_a_fair_one() -> None:
    rng = np.random.default_rng(0)
    fair = rng.multinomial(10_000, [0.9, 0.1])
    assert sample_ratio_mismatch({"a": fair[0], "b": fair[1]}, {"a": 90, "b": 10}) > 1e-3
    assert sample_ratio_mismatch({"a": 9200, "b": 800}, {"a": 90, "b": 10}) < 1e-6
    # a variant never served counts as 0
    assert sample_ratio_mismatch({"a": 100}, {"a": 1, "b": 1}) < 1e-6


def test_srm_undefined_cases() -> None:
    assert sample_ratio_mismatch({"a": 10, "b": 10}, {"a": 1, "b": 0}) is None
    assert sample_ratio_mismatch({}, {"a": 1, "b": 1}) is None
    assert sample_ratio_mismatch({"a": 0, "b": 0}, {"a": 1, "b": 1}) is None

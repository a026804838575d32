"""The active-learning strategies against their definitions (scipy's entropy) and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy

from mlsd.data.active_learning import STRATEGIES, k_center_greedy, score, select_batch
from mlsd.errors import MlsdError


@pytest.fixture
def proba():
    return np.random.default_rng(0).dirichlet(np.ones(4), size=300)


def test_scores_match_their_definitions(proba):
    assert np.allclose(score("uncertainty", proba), 1 - proba.max(axis=1))
    top = np.sort(proba, axis=1)
    assert np.allclose(score("margin", proba), 1 - (top[:, -1] - top[:, -2]))
    assert np.allclose(score("entropy", proba), scipy_entropy(proba, axis=1))


def test_vote_entropy_is_the_entropy_of_the_members_votes(proba):
    rng = np.random.default_rng(1)
    committee = np.stack([rng.dirichlet(np.ones(4), size=300) for _ in range(7)])
    votes = committee.argmax(axis=2)
    counts = np.stack([(votes == c).sum(axis=0) for c in range(4)], axis=1)
    assert np.allclose(score("committee", committee), scipy_entropy(counts, axis=1))


def test_a_batch_is_the_top_scored_rows_and_deterministic(proba):
    picked = select_batch("entropy", proba, 25, seed=3)
    s = score("entropy", proba)
    assert set(picked.indices) == set(np.argsort(-s)[:25])
    again = select_batch("random", proba, 25, seed=3)
    assert np.array_equal(again.indices, select_batch("random", proba, 25, seed=3).indices)
    assert not np.array_equal(again.indices, select_batch("random", proba, 25, seed=4).indices)


def test_k_center_greedy_matches_brute_force():
    x = np.random.default_rng(2).normal(size=(60, 3))
    chosen = [0]
    for _ in range(9):
        d = np.min(((x[:, None, :] - x[chosen][None]) ** 2).sum(-1), axis=1)
        chosen.append(int(np.argmax(d)))
    assert k_center_greedy(x, 10).tolist() == chosen


def test_a_diverse_batch_is_spread_over_the_feature_space():
    # two tight clusters of equally uncertain rows: a plain batch may take one, diverse takes both
    noise = np.random.default_rng(0).normal(0, 0.01, (100, 2))
    x = np.concatenate([np.zeros((50, 2)), np.full((50, 2), 10.0)]) + noise
    p = np.column_stack([np.full(100, 0.5), np.full(100, 0.5)])
    p[:50] += [[0.001, -0.001]]  # the first cluster scores a hair lower on uncertainty
    plain = select_batch("uncertainty", p, 4, seed=0).indices
    diverse = select_batch("uncertainty", p, 4, features=x, diverse=True, shortlist=25, seed=0).indices
    assert (plain >= 50).all()
    assert (diverse < 50).any() and (diverse >= 50).any()


def test_bad_inputs_are_refused_by_name(proba):
    with pytest.raises(MlsdError, match="strategy"):
        select_batch("confusion", proba, 5)
    with pytest.raises(MlsdError, match="proba"):
        score("committee", proba)  # a committee needs members x rows x classes
    with pytest.raises(MlsdError, match="diverse"):
        select_batch("margin", proba, 5, diverse=True)
    assert set(STRATEGIES) == {"uncertainty", "margin", "entropy", "committee", "random"}

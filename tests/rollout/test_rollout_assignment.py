"""Sticky assignment: the hash is uniform, stable across processes and choose() follows the weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mlsd.errors import DesignError
from mlsd.rollout.assignment import choose, normalised, unit_hash

SRC = Path(__file__).parents[2] / "src"


def test_hash_is_uniform_and_seed_dependent() -> None:
    units = [f"user-{i}" for i in range(20_000)]
    u = unit_hash(1, units)
    assert u.shape == (20_000,) and (u >= 0).all() and (u < 1).all()
    assert stats.kstest(u, "uniform").pvalue > 1e-4
    other = unit_hash(2, units)
    # a new seed reshuffles: the two hashes are unrelated
    assert abs(np.corrcoef(u, other)[0, 1]) < 0.05
    assert unit_hash(1, []).shape == (0,)


def test_separator_keeps_seed_and_unit_apart() -> None:
    assert unit_hash(1, ["23"])[0] != unit_hash(12, ["3"])[0]


def test_known_value_never_changes() -> None:
    # a change of the hash would move every unit of a running experiment to another variant
    assert unit_hash(0, ["alice"])[0] == 7770443134070056 / 2**53


def test_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "from mlsd.rollout.assignment import unit_hash; print(repr(unit_hash(5, ['a', 'b', 'c']).tolist()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == repr(unit_hash(5, ["a", "b", "c"]).tolist())


def test_choose_follows_cumulative_weights_in_order() -> None:
    u = np.array([0.0, 0.099, 0.1, 0.5, 0.999999])
    assert choose({"a": 10, "b": 40, "c": 50}, u).tolist() == ["a", "a", "b", "c", "c"]
    assert choose({"c": 50, "b": 40, "a": 10}, u).tolist() == ["c", "c", "c", "b", "a"]
    # weight 0 is never chosen, even at its boundary
    assert set(choose({"a": 1, "z": 0, "b": 1}, np.linspace(0, 0.999, 1000))) == {"a", "b"}
    assert choose({"a": 1}, np.array([np.nextafter(1.0, 0)])).tolist() == ["a"]


def test_choose_frequencies_match_weights() -> None:
    v = choose({"a": 1, "b": 2, "c": 7}, unit_hash(3, [str(i) for i in range(30_000)]))
    counts = [int((v == k).sum()) for k in "abc"]
    assert stats.chisquare(counts, np.array([0.1, 0.2, 0.7]) * 30_000).pvalue > 1e-4


@pytest.mark.parametrize("weights", [{}, {"a": 0}, {"a": -1, "b": 2}, {"a": float("nan")}])
def test_bad_weights_are_refused(weights: dict[str, float]) -> None:
    with pytest.raises(DesignError, match="weights must be"):
        normalised(weights)

"""Cost-optimal thresholds agree with a brute-force loop over thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.errors import DataError, DesignError
from mlsd.goals import CostMatrix, confusion_at, expected_cost_per_1000, optimal_threshold


def _brute_force(y: np.ndarray, p: np.ndarray, costs: CostMatrix) -> tuple[float, float]:
    best = (np.inf, np.inf)
    for t in [*np.unique(p), np.inf]:
        c = expected_cost_per_1000(y, p >= t, costs)
        if c < best[1]:
            best = (t, c)
    return best


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "costs",
    [
        CostMatrix(false_positive=1, false_negative=4),
        CostMatrix(false_positive=5, false_negative=1),
        CostMatrix(false_positive=1, false_negative=1, true_positive=-0.5, true_negative=0.2),
    ],
)
def test_matches_brute_force(seed: int, costs: CostMatrix) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random(300), 0, 1), 2)  # ties on purpose
    choice = optimal_threshold(y, p, costs)
    _, best_cost = _brute_force(y, p, costs)
    assert choice.cost_per_1000 == pytest.approx(best_cost)
    assert expected_cost_per_1000(y, p >= choice.threshold, costs) == pytest.approx(best_cost)
    assert choice.confusion == confusion_at(y, p, choice.threshold)
    thresholds, curve = choice.curve
    assert np.all(np.diff(thresholds) > 0) and curve.min() == pytest.approx(best_cost)
    # every point of the curve is the cost at its threshold
    for t, c in zip(thresholds[::17], curve[::17], strict=True):
        assert c == pytest.approx(expected_cost_per_1000(y, p >= t, costs))


def test_costly_false_negatives_lower_the_threshold() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1_000)
    p = np.clip(0.3 * y + 0.7 * rng.random(1_000), 0, 1)
    cautious = optimal_threshold(y, p, CostMatrix(false_positive=1, false_negative=10))
    strict = optimal_threshold(y, p, CostMatrix(false_positive=10, false_negative=1))
    assert cautious.threshold < strict.threshold


def test_rejecting_everyone_is_a_candidate() -> None:
    choice = optimal_threshold([0, 0, 1], [0.2, 0.9, 0.5], CostMatrix(false_positive=100, false_negative=1))
    assert choice.threshold > 0.9 and choice.confusion == (2, 0, 1, 0)
    assert choice.to_dict()["confusion"]["fn"] == 1


def test_input_errors() -> None:
    with pytest.raises(DataError, match="0/1"):
        optimal_threshold([0, 2], [0.1, 0.2], CostMatrix(1, 1))
    with pytest.raises(DataError, match="lengths"):
        confusion_at([0, 1], [0.1], 0.5)
    with pytest.raises(DesignError, match="false_positive"):
        CostMatrix(false_positive="1", false_negative=1)  # type: ignore[arg-type]


def test_from_spec_accepts_mapping_and_object() -> None:
    class Spec:
        false_positive, false_negative, true_positive, true_negative = 2.0, 3.0, 0.0, 0.0

    assert CostMatrix.from_spec({"false_positive": 2, "false_negative": 3}) == CostMatrix.from_spec(Spec())

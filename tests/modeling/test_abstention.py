"""models.abstain's arithmetic: the coverage–risk curve against a brute force over every bound,
the bound for a target coverage, the binary confidence band and the policy's round trip."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.errors import DesignError
from mlsd.goals.costs import CostMatrix
from mlsd.modeling.abstention import (
    AbstentionPolicy,
    binary_confidence,
    binary_row_costs,
    coverage_risk_curve,
    threshold_for_coverage,
)


def _brute_force(conf, errors, row_costs, review_cost):
    """For each distinct confidence, answer the rows at or above it and measure them directly."""
    out = []
    for bound in sorted(set(conf.tolist()), reverse=True):
        answered = conf >= bound
        cost = row_costs[answered].sum()
        out.append(
            (
                bound,
                answered.mean(),
                errors[answered].mean(),
                cost / answered.sum() * 1000,
                (cost + review_cost * (~answered).sum()) / len(conf) * 1000,
            )
        )
    return np.array(out)


@pytest.mark.parametrize("ties", [False, True])
def test_coverage_risk_curve_matches_a_brute_force(ties: bool) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 600)
    score = np.clip(y * 0.3 + rng.uniform(0, 0.7, 600), 0, 1)
    if ties:  # a served bound cannot split rows of equal confidence: the curve must not either
        score = np.round(score, 1)
    threshold, costs = 0.4, CostMatrix(false_positive=1, false_negative=5, true_positive=-0.5)
    conf = binary_confidence(score, threshold)
    errors = ((score >= threshold) != (y == 1)).astype(float)
    row_costs = binary_row_costs(y, score, threshold, costs)
    curve = coverage_risk_curve(conf, errors, row_costs, review_cost=0.7)
    expected = _brute_force(conf, errors, row_costs, 0.7)
    got = np.column_stack(
        [curve.thresholds, curve.coverage, curve.risk, curve.cost_per_1000, curve.cost_with_review_per_1000]
    )
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)
    assert curve.coverage[-1] == 1.0 and curve.risk[-1] == pytest.approx(errors.mean())


@pytest.mark.parametrize("target", [0.05, 0.5, 0.8, 0.97, 1.0])
def test_the_bound_for_a_target_coverage_answers_that_share(target: float) -> None:
    conf = np.random.default_rng(0).uniform(size=2_000)
    bound = threshold_for_coverage(conf, target)
    reached = (conf >= bound).mean()
    # continuous confidences: exactly the target, to one row
    assert target <= reached < target + 1 / len(conf) + 1e-12


def test_ties_reach_at_least_the_target() -> None:
    conf = np.array([0.9, 0.7, 0.7, 0.7, 0.2])
    bound = threshold_for_coverage(conf, 0.4)
    assert bound == 0.7 and (conf >= bound).mean() == 0.8


@pytest.mark.parametrize("bad", [0, -0.1, 1.2, float("nan")])
def test_a_coverage_outside_zero_one_is_refused(bad: float) -> None:
    with pytest.raises(DesignError, match=r"models\.abstain\.coverage"):
        threshold_for_coverage(np.array([0.5, 0.6]), bad)


def test_binary_confidence_is_zero_at_the_threshold_and_one_at_certainty() -> None:
    t = 0.3
    conf = binary_confidence([0.0, 0.15, 0.3, 0.65, 1.0], t)
    np.testing.assert_allclose(conf, [1.0, 0.5, 0.0, 0.5, 1.0])
    # with t = 0.5 it is 2 * max class probability - 1
    p = np.linspace(0, 1, 11)
    np.testing.assert_allclose(binary_confidence(p, 0.5), 2 * np.maximum(p, 1 - p) - 1, atol=1e-12)


def test_the_policy_declines_exactly_its_band_and_survives_a_round_trip() -> None:
    policy = AbstentionPolicy(task="binary", min_confidence=0.4, threshold=0.3, review_cost=2.0)
    low, high = policy.band()
    assert (low, high) == pytest.approx((0.18, 0.58))
    scores = np.linspace(0, 1, 1001)
    off_edges = (np.abs(scores - low) > 1e-9) & (np.abs(scores - high) > 1e-9)  # float ties at the edges
    declined = policy.abstains(scores)[off_edges]
    np.testing.assert_array_equal(declined, ((scores > low) & (scores < high))[off_edges])
    again = AbstentionPolicy.from_dict(policy.to_dict())
    assert again == policy
    assert "uncertain band" in policy.reason(0.31)
    multi = AbstentionPolicy(task="multiclass", min_confidence=0.6)
    assert multi.abstains(np.array([0.4, 0.6, 0.9])).tolist() == [True, False, False]
    assert multi.band() is None and AbstentionPolicy.from_dict(None) is None


def test_a_multiclass_report_chooses_its_bound_on_validation_and_judges_test() -> None:
    from types import SimpleNamespace

    from mlsd.modeling.abstention import abstention_report

    rng = np.random.default_rng(5)
    classes = ["a", "b", "c"]

    def split(n: int):
        proba = rng.dirichlet([1, 1, 1], n)
        labels = np.array(classes, dtype=object)[[rng.choice(3, p=p) for p in proba]]
        return labels, proba

    valid, test = split(3_000), split(2_000)
    policy, report = abstention_report(
        SimpleNamespace(coverage=0.7, below_confidence=None, review_cost=None),
        "multiclass",
        valid=valid,
        test=test,
        classes=classes,
    )
    assert policy.threshold is None and policy.band() is None
    assert 0.7 <= report["valid"]["coverage"] < 0.7 + 1 / 3_000 + 1e-12
    top = test[1].max(axis=1)
    wrong = np.array(classes, dtype=object)[test[1].argmax(axis=1)] != test[0]
    answered = top >= policy.min_confidence
    assert report["test"]["answered"] == answered.sum()
    assert report["test"]["risk"] == pytest.approx(wrong[answered].mean())
    # the most confident rows are wrong less often: the curve's risk at low coverage is below overall
    assert report["test"]["risk"] < report["test"]["risk_without_abstention"]
    assert "cost_per_1000" not in report["curve"]

"""The fixed-horizon tests equal scipy's and statsmodels' on the same data (to 1e-9)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from mlsd.errors import DataError, DesignError
from mlsd.experiments.frequentist import adjust, cuped, ratio_metric, two_proportions, welch

TOL = 1e-9


@pytest.mark.parametrize(
    ("x_a", "n_a", "x_b", "n_b"), [(480, 1000, 530, 1000), (13, 250, 29, 310), (900, 905, 880, 890)]
)
def test_two_proportions_equals_statsmodels(x_a: int, n_a: int, x_b: int, n_b: int) -> None:
    c = two_proportions(x_a, n_a, x_b, n_b, alpha=0.05)
    z, p = proportions_ztest([x_b, x_a], [n_b, n_a])
    low, high = confint_proportions_2indep(x_b, n_b, x_a, n_a, method="wald", compare="diff", alpha=0.05)
    assert c.p_value == pytest.approx(p, abs=TOL) and c.statistic == pytest.approx(z, abs=TOL)
    assert c.ci == pytest.approx((low, high), abs=TOL)


def test_welch_equals_scipy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.gamma(2.0, 3.0, 400), rng.gamma(2.2, 3.0, 250)
    c = welch(a, b, alpha=0.1)
    ref = stats.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(confidence_level=0.9)
    assert c.p_value == pytest.approx(ref.pvalue, abs=TOL) and c.statistic == pytest.approx(
        ref.statistic, abs=TOL
    )
    assert c.ci == pytest.approx((ci.low, ci.high), abs=TOL)


def test_ratio_of_one_request_per_unit_is_the_unequal_variance_z_test() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 2.0, 300), rng.normal(1.3, 1.0, 500)
    c = ratio_metric(a, np.ones_like(a), b, np.ones_like(b))
    compare = CompareMeans(DescrStatsW(b), DescrStatsW(a))
    z, p = compare.ztest_ind(usevar="unequal")
    low, high = compare.zconfint_diff(usevar="unequal")
    assert c.p_value == pytest.approx(p, abs=TOL) and c.statistic == pytest.approx(z, abs=TOL)
    assert c.ci == pytest.approx((low, high), abs=TOL)


def test_relative_interval_covers_the_true_relative_lift() -> None:
    # the delta method's interval of B/A - 1 covers the truth about 95% of the time
    rng = np.random.default_rng(3)
    n, p_a, p_b = 2_000, 0.30, 0.33
    x_a, x_b = rng.binomial(n, p_a, 2_000), rng.binomial(n, p_b, 2_000)
    truth = p_b / p_a - 1
    covered = [
        lo <= truth <= hi
        for lo, hi in (
            two_proportions(int(a), n, int(b), n).relative_ci for a, b in zip(x_a, x_b, strict=True)
        )
    ]
    assert abs(np.mean(covered) - 0.95) < 3 * np.sqrt(0.95 * 0.05 / len(covered))


def test_cuped_theta_is_the_regression_slope() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, 1000)
    y = 2.0 + 0.7 * x + rng.normal(0, 1, 1000)
    adjusted, theta = cuped(y, x)
    assert theta == pytest.approx(np.polyfit(x, y, 1)[0], abs=TOL)
    assert adjusted.mean() == pytest.approx(y.mean(), abs=TOL)


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
def test_adjust_equals_multipletests(method: str) -> None:
    p = [0.001, 0.04, 0.03, 0.2, 0.0125]
    reject, corrected = adjust(p, method=method, alpha=0.05)
    ref_reject, ref_corrected, _, _ = multipletests(p, alpha=0.05, method=method)
    assert reject == list(ref_reject)
    np.testing.assert_allclose(corrected, ref_corrected, atol=TOL)


def test_bad_input_names_the_field() -> None:
    with pytest.raises(DataError, match="trials"):
        two_proportions(5, 0, 3, 10)
    with pytest.raises(DesignError, match="correction"):
        adjust([0.1], method="bonferonni")
    with pytest.raises(DataError, match="finite"):
        welch([1.0, np.nan], [1.0, 2.0])


def test_each_arm_variance_adds_up_to_the_difference_variance() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 200), rng.normal(0, 3, 100)
    for c in (welch(a, b), two_proportions(40, 200, 70, 100), ratio_metric(a, np.ones(200), b, np.ones(100))):
        assert c.var_a + c.var_b == pytest.approx(c.se**2, rel=1e-12)
    assert welch(a, b).var_b == pytest.approx(b.var(ddof=1) / b.size)

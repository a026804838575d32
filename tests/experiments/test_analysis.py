"""analyse_experiment on synthetic log frames: the unit of analysis, SRM, CUPED, the plan, the
sequential path and the off-policy section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportions_ztest

from mlsd.design import ExperimentSpec
from mlsd.errors import DataError, DesignError
from mlsd.experiments.analysis import analyse_experiment
from mlsd.goals import CostMatrix

HALF = {"champion": 0.5, "challenger": 0.5}


def _log(
    n: int = 3000, *, lift: float = 0.0, units: int | None = None, share: float = 0.5, seed: int = 0
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    if units is None:
        arm = np.where(rng.random(n) < share, "challenger", "champion")
        unit, assignment = [None] * n, "random"
    else:  # sticky: each unit always on one arm, several requests each
        unit_arm = np.where(rng.random(units) < share, "challenger", "champion")
        unit_idx = rng.integers(0, units, n)
        arm, unit, assignment = unit_arm[unit_idx], [f"user-{i}" for i in unit_idx], "sticky"
    x = rng.normal(0, 1, n)  # a pre-treatment covariate, correlated with latency
    outcome = rng.random(n) < 0.7
    right = rng.random(n) < np.where(arm == "challenger", 0.75 + lift, 0.75)
    decision = np.where(right, outcome, ~outcome)
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "logged_at": pd.date_range("2026-03-01", periods=n, freq="30s", tz="UTC"),
            "event_time": pd.NaT,
            "variant": arm,
            "assigned_variant": arm,
            "unit": unit,
            "assignment": assignment,
            "propensity": np.where(arm == "challenger", share, 1 - share) if units is not None else None,
            "score": rng.random(n),
            "decision": decision,
            "outcome": outcome,
            "latency_ms": 20 + 5 * x + rng.normal(0, 3, n),
            "distance": x,
        }
    )


def test_request_level_accuracy_equals_statsmodels() -> None:
    frame = _log(lift=0.05)
    a = analyse_experiment(frame, task="binary", weights=HALF, costs=CostMatrix(1, 4))
    c = a.comparison("challenger", "accuracy")
    right = frame["decision"] == frame["outcome"]
    x = right.groupby(frame["variant"]).sum()
    n = frame["variant"].value_counts()
    _, p = proportions_ztest([x["challenger"], x["champion"]], [n["challenger"], n["champion"]])
    assert c.test == "two-proportion z" and c.p_value == pytest.approx(p, abs=1e-9)
    assert c.verdict == "better" and c.p_adjusted >= c.p_value
    assert not a.unit_level and a.srm_counted == "requests" and a.srm_p_value > 0.001
    cost = a.comparison("challenger", "cost")
    assert cost.difference < 0 and not cost.higher_is_better  # fewer errors: cheaper
    v = {s.variant: s for s in a.variants}
    assert v["champion"].cost_per_1000 == pytest.approx(cost.estimate_a)
    assert v["challenger"].metric == "roc_auc" and v["challenger"].labelled == n["challenger"]
    assert a.off_policy is None  # no propensities logged


def test_sticky_units_are_analysed_as_ratios_and_counted_for_srm() -> None:
    a = analyse_experiment(_log(units=300), task="binary", weights=HALF)
    c = a.comparison("challenger", "accuracy")
    assert a.unit_level and c.test == "delta-method ratio z"
    assert a.srm_counted == "units" and sum(a.srm_counts.values()) == 300
    assert c.n_a + c.n_b == 300


def test_a_broken_split_is_detected() -> None:
    a = analyse_experiment(_log(share=0.56), task="binary", weights=HALF)
    assert a.srm_detected and any("sample-ratio mismatch" in w for w in a.warnings)


def test_cuped_narrows_the_latency_interval() -> None:
    frame = _log()
    plain = analyse_experiment(frame, task="binary", weights=HALF).comparison("challenger", "latency_ms")
    spec = ExperimentSpec(cuped_covariate="distance")
    adjusted = analyse_experiment(frame, task="binary", weights=HALF, spec=spec).comparison(
        "challenger", "latency_ms"
    )
    assert adjusted.test == "Welch t (CUPED)" and adjusted.cuped["variance_reduction"] > 0.6
    assert adjusted.se < 0.7 * plain.se
    assert adjusted.estimate_b - adjusted.estimate_a == pytest.approx(adjusted.difference)


def test_sequential_path_ends_at_the_fixed_horizon_estimate() -> None:
    a = analyse_experiment(_log(lift=0.06), task="binary", weights=HALF, spec=ExperimentSpec(checkpoints=10))
    c = a.comparison("challenger", "accuracy")
    seq = c.sequential
    assert len(seq["p_values"]) == 10 and seq["difference"][-1] == pytest.approx(c.difference)
    assert seq["n"][-1] == len(_log()) and np.all(np.diff(seq["p_values"]) <= 0)  # running minimum
    assert seq["verdict"] == "B better" and seq["p_value"] > c.p_value  # valid at any look: dearer


def test_plan_gives_units_and_days() -> None:
    from mlsd.experiments.power import sample_size_proportion

    frame = _log()  # 3,000 requests, one every 30 s: 2,880 a day
    a = analyse_experiment(frame, task="binary", weights=HALF, plan=True, mde=0.04)
    row = next(r for r in a.plan["metrics"] if r["metric"] == "accuracy")
    base = row["baseline_value"]
    assert row["mde"] == pytest.approx(0.04 * base)
    c = a.comparison("challenger", "accuracy")
    n = sample_size_proportion(base, 0.04 * base, ratio=c.n_b / c.n_a)
    assert row["n_per_arm"]["champion"] == n
    per_day = {v.variant: v.requests / a.plan["days_logged"] for v in a.variants}
    expected_days = max(n / per_day["champion"], row["n_per_arm"]["challenger"] / per_day["challenger"])
    assert row["days_needed"] == pytest.approx(expected_days)
    assert row["mde_now"] > 0.02  # 1,500 per arm cannot see 2 points
    latency = next(r for r in a.plan["metrics"] if r["metric"] == "latency_ms")
    assert latency["mde"] < 0  # lower is better: the improvement asked for is a decrease


def test_a_bandit_log_gets_off_policy_estimates() -> None:
    a = analyse_experiment(_log(units=200, share=0.3), task="binary", weights=None)
    assert a.srm_p_value is None
    policies = a.off_policy["policies"]
    assert set(policies) == {"always champion", "always challenger"}
    assert policies["always champion"]["ips"]["value"] == pytest.approx(
        a.off_policy["arms"]["champion"]["mean_reward"], abs=0.05
    )


def test_the_baseline_must_have_served() -> None:
    frame = _log()
    with pytest.raises(DataError, match="baseline"):
        analyse_experiment(frame[frame["variant"] == "challenger"], task="binary")


def test_json_is_plain() -> None:
    import json

    a = analyse_experiment(_log(), task="binary", weights=HALF, plan=True, mde=0.05)
    data = json.loads(a.to_json())
    assert (
        data["srm"]["counted"] == "requests"
        and data["comparisons"][0]["ci"][0] < data["comparisons"][0]["ci"][1]
    )


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_every_task_default_metric_is_compared(task: str) -> None:
    from mlsd.experiments.metrics import default_metrics

    rng = np.random.default_rng(8)
    n = 1200
    arm = np.where(rng.random(n) < 0.5, "challenger", "champion")
    if task == "regression":
        outcome = rng.normal(10, 2, n)
        score = outcome + rng.normal(0, np.where(arm == "challenger", 1.0, 1.5))
        decision = score
    elif task == "multiclass":
        outcome = rng.choice(["a", "b", "c"], n)
        decision = np.where(rng.random(n) < 0.6, outcome, "a")
        score = rng.random(n)
    else:
        outcome = rng.random(n) < 0.3
        decision = np.where(rng.random(n) < 0.8, outcome, ~outcome)
        score = rng.random(n)
    frame = pd.DataFrame(
        {
            "variant": arm,
            "score": score,
            "decision": pd.Series(decision, dtype=object),
            "outcome": pd.Series(outcome, dtype=object),
            "latency_ms": rng.gamma(2, 2, n),
            "logged_at": pd.date_range("2026-03-01", periods=n, freq="min", tz="UTC"),
        }
    )
    costs = CostMatrix(1, 4) if task == "binary" else None
    a = analyse_experiment(frame, task=task, weights=HALF, costs=costs)
    assert [c.metric for c in a.comparisons] == default_metrics(task, has_costs=costs is not None)
    for c in a.comparisons:
        assert c.ci[0] <= c.difference <= c.ci[1] and 0 <= c.p_value <= 1
        assert 0 <= c.bayesian["p_b_better"] <= 1 and len(c.sequential["p_values"]) == 20
    if task == "regression":
        err = a.comparison("challenger", "abs_error")
        assert err.difference < 0 and err.verdict == "better"


def test_obrien_fleming_path_up_to_the_horizon() -> None:
    from mlsd.experiments.sequential import obrien_fleming_bounds

    frame = _log(lift=0.06)
    spec = ExperimentSpec(sequential="obrien_fleming", horizon=3000, checkpoints=10)
    c = analyse_experiment(frame, task="binary", weights=HALF, spec=spec).comparison("challenger", "accuracy")
    seq = c.sequential
    assert seq["method"] == "O'Brien-Fleming" and len(seq["bounds"]) == 10
    assert seq["bounds"] == pytest.approx(obrien_fleming_bounds(seq["fractions"]).tolist())
    assert seq["fractions"][-1] == pytest.approx(c.n_a / 3000)  # half the horizon logged
    assert seq["z"][-1] == pytest.approx(c.difference / c.se)
    assert seq["verdict"] in ("B better", "no difference detected yet")
    with pytest.raises(DesignError, match="horizon"):
        analyse_experiment(frame, task="binary", spec=ExperimentSpec(sequential="obrien_fleming"))


def test_a_period_spanning_several_splits_is_named() -> None:
    frame = _log()
    since = frame["logged_at"].iloc[1000]
    a = analyse_experiment(frame, task="binary", weights=HALF, srm_since=since)
    assert sum(a.srm_counts.values()) == len(frame) - 1000  # the current step alone
    assert any("--since" in w for w in a.warnings)


def test_the_html_report_holds_every_section(tmp_path) -> None:
    from mlsd.report.experiment import render_experiment_report

    spec = ExperimentSpec(cuped_covariate="distance")
    a = analyse_experiment(
        _log(units=200, share=0.3), task="binary", weights=HALF, spec=spec, plan=True, mde=0.05
    )
    html = render_experiment_report(a, tmp_path / "e.html").read_text()
    assert "Sample-ratio mismatch" in html  # 30/70 against 50/50
    assert 'id="fig-lift-challenger"' in html and 'id="fig-seq-challenger-accuracy"' in html
    assert '<section id="plan">' in html and '<section id="off-policy">' in html

"""The canary gate: window statistics, Welch bounds checked against statsmodels, each decision."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from mlsd.design import DeploymentSpec
from mlsd.errors import DesignError
from mlsd.rollout.canary import (
    Action,
    CanaryDecision,
    VariantWindow,
    judge_canary,
    loss_difference_bounds,
    next_state,
    window_stats,
)
from mlsd.rollout.routers import router_for
from mlsd.rollout.state import RolloutState, initial_state

SPEC = DeploymentSpec(
    strategy="canary",
    steps=[5, 25, 100],
    step_min_requests=200,
    max_error_rate=0.02,
    max_degradation=0.02,
    confidence=0.95,
)
NOW = dt.datetime(2026, 12, 2, 14, 30, tzinfo=dt.UTC)


def _window(
    losses: np.ndarray, requests: int | None = None, failures: int = 0, p99: float | None = 10.0
) -> VariantWindow:
    return VariantWindow(
        requests if requests is not None else losses.size,
        failures,
        p99,
        losses.size,
        float(losses.sum()),
        float((losses**2).sum()),
    )


def _outcomes(
    n: int, variant: str, error: float, rng: np.random.Generator, labelled: float = 1.0, latency: float = 10.0
) -> pd.DataFrame:
    outcome = rng.integers(0, 2, n)
    decision = np.where(rng.random(n) < error, 1 - outcome, outcome)
    return pd.DataFrame(
        {
            "variant": variant,
            "assigned_variant": variant,
            "fallback": None,
            "latency_ms": rng.exponential(latency, n),
            "decision": decision.astype(object),
            "outcome": pd.Series(outcome, dtype=object).where(rng.random(n) < labelled, None),
            "score": rng.random(n),
        }
    )


def test_window_stats_counts_failures_latency_and_losses() -> None:
    rng = np.random.default_rng(0)
    champ, canary = _outcomes(400, "champion", 0.1, rng, 0.5), _outcomes(100, "challenger", 0.3, rng, 0.5)
    # 6 challenger requests answered by the champion after a timeout
    fallback = _outcomes(6, "champion", 0.0, rng).assign(
        assigned_variant="challenger", fallback="timeout", latency_ms=5000.0
    )
    frame = pd.concat([champ, canary, fallback], ignore_index=True).sample(frac=1, random_state=1)
    # an old row without assigned_variant counts for the variant that answered
    frame.loc[frame.index[frame["variant"] == "champion"][0], "assigned_variant"] = None

    w = window_stats(frame, "challenger", "binary")
    assert (w.requests, w.failures) == (106, 6)
    assert w.p99_latency_ms == pytest.approx(np.percentile(canary["latency_ms"], 99))
    labelled = canary[canary["outcome"].notna()]
    losses = (labelled["decision"] != labelled["outcome"]).to_numpy(float)
    assert (w.labelled, w.loss_sum, w.loss_sq_sum) == (losses.size, losses.sum(), losses.sum())

    c = window_stats(frame, "champion", "binary")
    assert (c.requests, c.failures) == (400, 0)
    # the champion's p99 excludes the fallback rows it answered for the challenger (5 s each)
    assert c.p99_latency_ms == pytest.approx(np.percentile(champ["latency_ms"], 99))


def test_window_stats_judge_the_models_own_time_where_the_log_has_it() -> None:
    rng = np.random.default_rng(2)
    champ, canary = _outcomes(300, "champion", 0.1, rng), _outcomes(300, "challenger", 0.1, rng)
    # both waited ~400 ms in the request (a slow challenger batch holds the champion's rows up
    # too), but only the challenger's own call took that long
    frame = pd.concat([champ, canary], ignore_index=True)
    frame["latency_ms"] = 400.0 + rng.random(len(frame))
    frame["scoring_ms"] = np.where(frame["variant"] == "challenger", 400.0, 2.0) + rng.random(len(frame))
    frame.loc[:1, "scoring_ms"] = np.nan  # rows logged before scoring_ms: the request's time (2 of 300)
    c, o = window_stats(frame, "challenger", "binary"), window_stats(frame, "champion", "binary")
    assert c.p99_latency_ms > 400 and o.p99_latency_ms < 400, (c.p99_latency_ms, o.p99_latency_ms)
    expected = frame["scoring_ms"].fillna(frame["latency_ms"])[frame["variant"] == "champion"]
    assert o.p99_latency_ms == pytest.approx(np.percentile(expected, 99))
    spec = DeploymentSpec(strategy="canary", steps=[10, 100], step_min_requests=100)
    decision = judge_canary(spec, 250.0, initial_state(spec), o, c, "binary")
    assert decision.action == "rollback" and "p99 latency" in decision.reason
    # judged on the request's time alone, both look alike and the gate cannot blame either
    same = window_stats(frame.drop(columns="scoring_ms"), "champion", "binary")
    assert judge_canary(spec, 250.0, initial_state(spec), same, c, "binary").action != "rollback"


def test_a_burst_of_slow_calls_at_the_last_step_does_not_decide_but_a_slow_model_does() -> None:
    """At 100 % no champion row is left to compare with, so the limit alone decides: a burst in
    one stretch of the window (the flights simulation's challenger had 1,562 calls of 2-10 ms
    CPU time and a p99 of 46.7 ms from a few dozen slow ones) must not roll it back."""
    rng = np.random.default_rng(5)
    canary = _outcomes(1500, "challenger", 0.1, rng)
    canary["logged_at"] = pd.Timestamp("2026-12-01", tz="UTC") + pd.to_timedelta(np.arange(1500), unit="s")
    canary["scoring_ms"] = 4.0 + rng.random(1500)
    canary.loc[200:240, "scoring_ms"] = 60.0  # 41 slow calls, 2.7 %, all within a minute
    spec = DeploymentSpec(strategy="canary", steps=[10, 100], step_min_requests=100)
    last = dataclasses.replace(
        initial_state(spec), canary_step=1, weights={"champion": 0.0, "challenger": 100.0}
    )
    nobody = window_stats(canary.iloc[:0], "champion", "binary")
    burst = window_stats(canary.sample(frac=1.0, random_state=0), "challenger", "binary")  # any row order
    assert np.percentile(canary["scoring_ms"], 99) == 60.0 and burst.p99_latency_ms < 6.0
    assert judge_canary(spec, 20.0, last, nobody, burst, "binary").action != "rollback"
    canary["scoring_ms"] += 30.0  # slow throughout
    slow = window_stats(canary, "challenger", "binary")
    decision = judge_canary(spec, 20.0, last, nobody, slow, "binary")
    assert decision.action == "rollback" and "p99 latency" in decision.reason


def test_window_stats_regression_loss_and_thin_windows() -> None:
    frame = pd.DataFrame(
        {
            "variant": ["a"] * 5,
            "assigned_variant": [None] * 5,
            "fallback": [None] * 5,
            "latency_ms": [1.0] * 5,
            "decision": [2.0, 3.0, 4.0, 5.0, 6.0],
            "score": [2.0, 3.0, 4.0, 5.0, 6.0],
            "outcome": [2.5, 1.0, None, 5.0, "x"],
        }
    )
    w = window_stats(frame, "a", "regression")
    assert (w.labelled, w.loss_sum, w.loss_sq_sum) == (3, 2.5, 4.25)
    assert w.p99_latency_ms is None  # under 20 rows
    assert window_stats(frame.iloc[:0], "a", "binary") == VariantWindow(0, 0, None, 0, 0.0, 0.0)
    with pytest.raises(DesignError, match="lacks columns"):
        window_stats(frame.drop(columns="fallback"), "a", "binary")
    with pytest.raises(DesignError) as err:
        window_stats(frame.iloc[:0], "a", "ranking")
    assert err.value.field == "goals.task"


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_loss_bounds_match_statsmodels_welch_z_interval(confidence: float) -> None:
    rng = np.random.default_rng(1)
    champ, canary = rng.binomial(1, 0.2, 300).astype(float), rng.exponential(0.3, 120)
    diff, lower, upper = loss_difference_bounds(_window(champ), _window(canary), confidence)
    cm = CompareMeans(DescrStatsW(canary), DescrStatsW(champ))
    alpha = 1 - confidence
    assert diff == pytest.approx(canary.mean() - champ.mean())
    assert lower == pytest.approx(cm.zconfint_diff(alpha=alpha, alternative="larger", usevar="unequal")[0])
    assert upper == pytest.approx(cm.zconfint_diff(alpha=alpha, alternative="smaller", usevar="unequal")[1])


def _judge(
    champion: VariantWindow,
    challenger: VariantWindow,
    *,
    state: RolloutState | None = None,
    p99: float | None = None,
    task: str = "binary",
    spec: DeploymentSpec = SPEC,
) -> CanaryDecision:
    return judge_canary(spec, p99, state or initial_state(spec), champion, challenger, task)


def test_rollback_on_errors_needs_enough_requests() -> None:
    champ = _window(np.zeros(0), requests=5000)
    assert _judge(champ, _window(np.zeros(0), requests=19, failures=19)).action == "hold"
    d = _judge(champ, _window(np.zeros(0), requests=300, failures=7))
    assert d.action == "rollback" and "error rate 2.3%" in d.reason and d.details["challenger_failures"] == 7
    assert _judge(champ, _window(np.zeros(0), requests=300, failures=6)).action == "advance"


def test_rollback_on_latency_only_when_slower_than_the_champion() -> None:
    canary = _window(np.zeros(0), requests=300, p99=80.0)
    assert _judge(_window(np.zeros(0), 5000, p99=20.0), canary, p99=50).action == "rollback"
    # both slow: the machine is busy, not the challenger's fault
    assert _judge(_window(np.zeros(0), 5000, p99=95.0), canary, p99=50).action == "advance"
    assert _judge(_window(np.zeros(0), 5000, p99=20.0), canary, p99=None).action == "advance"
    # no champion p99 to compare with: the limit alone decides
    assert _judge(_window(np.zeros(0), 10, p99=None), canary, p99=50).action == "rollback"


def test_loss_gate_rolls_back_holds_and_advances() -> None:
    rng = np.random.default_rng(2)
    champ = _window(rng.binomial(1, 0.10, 2000).astype(float))
    worse = _window(rng.binomial(1, 0.25, 400).astype(float))
    same = _window(rng.binomial(1, 0.10, 2000).astype(float))
    unsure = _window(rng.binomial(1, 0.11, 250).astype(float))
    d = _judge(champ, worse)
    assert d.action == "rollback" and d.details["lower_bound"] > d.details["margin"] == 0.02
    assert _judge(champ, same).action == "advance"
    held = _judge(champ, unsure)
    assert held.action == "hold" and "non-inferior" in held.reason and held.details["upper_bound"] > 0.02
    # too few labels: no comparison, advance on volume alone
    assert _judge(champ, _window(np.ones(29), requests=300)).action == "advance"
    # not enough requests yet, even when clearly fine
    few = _window(rng.binomial(1, 0.10, 150).astype(float))
    assert _judge(champ, few).action == "hold" and "150 of 200" in _judge(champ, few).reason


def test_a_step_that_needs_labels_holds_until_the_outcomes_arrive() -> None:
    spec = SPEC.model_copy(update={"step_min_labelled": 100})
    rng = np.random.default_rng(4)
    champ = _window(rng.binomial(1, 0.10, 2000).astype(float))
    unlabelled = _window(np.zeros(0), requests=300)
    assert _judge(champ, unlabelled).action == "advance"  # the default: volume alone
    held = _judge(champ, unlabelled, spec=spec)
    assert held.action == "hold" and "0 of 100 labelled challenger rows" in held.reason
    assert _judge(champ, _window(np.zeros(99), requests=300), spec=spec).action == "hold"
    assert _judge(champ, _window(np.zeros(100), requests=300), spec=spec).action == "advance"
    # labels decide once they are there: a bad challenger is rolled back, not held forever
    bad = _window(rng.binomial(1, 0.5, 100).astype(float), requests=300)
    assert _judge(champ, bad, spec=spec).action == "rollback"


def test_with_costs_a_binary_canary_is_judged_on_what_its_threshold_minimises() -> None:
    from mlsd.design import CostsSpec

    rng = np.random.default_rng(5)
    outcome = rng.random(4000) < 0.3
    # the champion never warns (70% accurate, each missed delay costs 4); the challenger always
    # warns (30% accurate, each false alarm costs 1): worse accuracy, cheaper decisions
    frame = pd.DataFrame(
        {
            "variant": np.repeat(["champion", "challenger"], 2000),
            "assigned_variant": None,
            "fallback": None,
            "latency_ms": 1.0,
            "decision": np.repeat([False, True], 2000),
            "outcome": outcome,
            "score": 0.5,
        }
    )
    costs = CostsSpec(false_positive=1, false_negative=4)
    by_error = [window_stats(frame, v, "binary") for v in ("champion", "challenger")]
    assert _judge(*by_error).action == "rollback"
    by_cost = [
        window_stats(frame, v, "binary", costs=costs, positive_class=True) for v in ("champion", "challenger")
    ]
    assert by_cost[0].mean_loss == pytest.approx(4 * outcome[:2000].mean())
    assert by_cost[1].mean_loss == pytest.approx(1 - outcome[2000:].mean())
    assert (
        judge_canary(SPEC, None, initial_state(SPEC), *by_cost, "binary", cost_scale=4.0).action == "advance"
    )
    # and the other way round it is rolled back; the margin is 2% more wrong decisions at the
    # costliest price (a missed delay, 4)
    swapped = judge_canary(SPEC, None, initial_state(SPEC), by_cost[1], by_cost[0], "binary", cost_scale=4.0)
    assert swapped.action == "rollback"
    assert swapped.details["margin"] == pytest.approx(0.02 * 4.0)


def test_regression_margin_is_relative_to_the_champion_loss() -> None:
    rng = np.random.default_rng(3)
    champ = _window(np.abs(rng.normal(0, 100.0, 3000)))
    worse = _window(np.abs(rng.normal(0, 110.0, 3000)))  # 10 % larger errors: beyond 2 % of the loss
    d = _judge(champ, worse, task="regression")
    assert d.action == "rollback" and d.details["margin"] == pytest.approx(0.02 * champ.mean_loss)
    assert _judge(champ, _window(np.abs(rng.normal(0, 100.0, 3000))), task="regression").action != "rollback"


def test_complete_at_the_last_step_and_hold_when_finished() -> None:
    champ, canary = _window(np.zeros(0), 10), _window(np.zeros(0), 300)
    last = RolloutState({"champion": 0, "challenger": 100}, canary_step=2)
    assert _judge(champ, canary, state=last).action == "complete"
    done = dataclasses.replace(last, complete=True)
    assert _judge(champ, canary, state=done).action == "hold"
    gone = dataclasses.replace(last, rolled_back="errors")
    assert (
        _judge(champ, canary, state=gone).action == "hold"
        and "errors" in _judge(champ, canary, state=gone).reason
    )


def test_a_last_step_that_needs_labels_completes_on_the_challengers_own_labels() -> None:
    """At 100 % the champion answers nothing: waiting for its labels too held the flights canary
    at its last step until the simulation ended, so no challenger was ever promoted."""
    spec = SPEC.model_copy(update={"step_min_labelled": 50})
    last = RolloutState({"champion": 0, "challenger": 100}, canary_step=2)
    nobody = _window(np.zeros(0), 0)
    few, enough = _window(np.zeros(20), 300), _window(np.zeros(60), 300)
    assert _judge(nobody, few, state=last, spec=spec).action == "hold"
    done = _judge(nobody, enough, state=last, spec=spec)
    assert done.action == "complete" and "60 labelled challenger rows" in done.reason, done.reason
    # below 100 % a step still needs both sides' labels
    middle = RolloutState({"champion": 75, "challenger": 25}, canary_step=1)
    assert _judge(nobody, enough, state=middle, spec=spec).action == "hold"


def test_next_state_applies_each_decision() -> None:
    s0 = initial_state(SPEC)
    s1 = next_state(SPEC, s0, CanaryDecision("advance", "ok", {}), NOW)
    assert (s1.canary_step, s1.weights, s1.step_started_at) == (
        1,
        {"champion": 75.0, "challenger": 25.0},
        "2026-12-02T14:30:00+00:00",
    )
    naive = next_state(SPEC, s0, CanaryDecision("advance", "ok", {}), NOW.replace(tzinfo=None))
    assert naive.step_started_at == s1.step_started_at
    rb = next_state(SPEC, s1, CanaryDecision("rollback", "p99 too high", {}), NOW)
    assert rb.rolled_back == "p99 too high" and rb.canary_step == 1 and rb.weights["challenger"] == 0
    assert next_state(SPEC, s1, CanaryDecision("complete", "done", {}), NOW).complete
    assert next_state(SPEC, s1, CanaryDecision("hold", "wait", {}), NOW) == s1
    assert RolloutState.from_dict(json.loads(json.dumps(rb.to_dict()))) == rb
    with pytest.raises(DesignError):
        next_state(SPEC, s1, CanaryDecision("jump", "?", {}), NOW)  # type: ignore[arg-type]


def _run_canary(challenger_error: float, seed: int) -> tuple[RolloutState, list[Action]]:
    """Route simulated traffic through the router, judge each window, apply it: the whole loop."""
    rng = np.random.default_rng(seed)
    spec = DeploymentSpec(strategy="canary", steps=[10, 50, 100], step_min_requests=300)
    router, state, actions = router_for(spec), initial_state(spec), []
    window = pd.DataFrame()  # the log since the step began (read_outcomes(since=step_started_at))
    for _ in range(30):
        units = [f"u{i}" for i in rng.integers(0, 10**9, 1000)]
        a = router.assign(units, state, None, rng)
        frames = [
            _outcomes(int((a.variant == v).sum()), v, e, rng)
            for v, e in (("champion", 0.1), ("challenger", challenger_error))
        ]
        window = pd.concat([window, *frames], ignore_index=True)
        d = judge_canary(
            spec,
            None,
            state,
            window_stats(window, "champion", "binary"),
            window_stats(window, "challenger", "binary"),
            "binary",
        )
        actions.append(d.action)
        state = next_state(spec, state, d, NOW)
        if d.action == "advance":
            window = pd.DataFrame()
        if state.complete or state.rolled_back:
            break
    return state, actions


def test_a_good_challenger_completes_and_a_bad_one_is_rolled_back() -> None:
    good, actions = _run_canary(0.1, seed=4)
    assert good.complete and actions.count("advance") == 2 and good.canary_step == 2
    bad, actions = _run_canary(0.3, seed=5)
    assert bad.rolled_back and "loss worse" in bad.rolled_back and not bad.complete


def test_a_busy_machine_slowing_both_variants_does_not_roll_the_canary_back() -> None:
    from mlsd.rollout.canary import LATENCY_RATIO, VariantWindow, judge_canary
    from mlsd.rollout.state import initial_state

    spec = DeploymentSpec(strategy="canary", steps=[10, 100], step_min_requests=10_000)
    state = initial_state(spec)

    def window(p99: float) -> VariantWindow:
        return VariantWindow(
            requests=500, failures=0, p99_latency_ms=p99, labelled=0, loss_sum=0.0, loss_sq_sum=0.0
        )

    # the flights demo under a concurrent test run: both near 100 ms against a 20 ms limit
    assert judge_canary(spec, 20.0, state, window(99.5), window(100.0), "binary").action == "hold"
    slow = judge_canary(spec, 20.0, state, window(99.5), window(99.5 * LATENCY_RATIO + 1), "binary")
    assert slow.action == "rollback" and "p99" in slow.reason


def test_sticky_units_cluster_the_variance_as_statsmodels_does() -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(8)
    units = rng.integers(0, 60, 900).astype(str)
    effect = rng.normal(0, 0.3, 60)[units.astype(int)]  # a unit's rows share its delays
    loss = (rng.random(900) < 0.3 + effect.clip(-0.25, 0.6)).astype(float)
    frame = pd.DataFrame(
        {"variant": "b", "assigned_variant": None, "fallback": None, "latency_ms": 1.0,
         "decision": 1, "outcome": 1 - loss, "score": 0.5, "unit": units}
    )  # fmt: skip
    w = window_stats(frame, "b", "binary")
    fit = sm.OLS(loss, np.ones((900, 1))).fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(units)[0]})
    assert w.mean_var == pytest.approx(float(fit.bse[0]) ** 2, rel=1e-9)
    assert w.mean_var > 1.5 * w.loss_var / w.labelled  # correlated rows: wider than rows alone
    # without units (random assignment) it is the row variance
    assert window_stats(frame.drop(columns="unit"), "b", "binary").mean_var == pytest.approx(w.loss_var / 900)


def test_an_aa_canary_over_clustered_units_rarely_rolls_back() -> None:
    """Both variants the same model; units (aircraft) carry correlated outcomes. Rows treated as
    independent roll back far more often than 1 - confidence; clustered by unit they do not."""
    rng = np.random.default_rng(9)
    spec = SPEC.model_copy(update={"max_degradation": 0.0})
    rolled = {"clustered": 0, "rows": 0}
    for _ in range(300):
        n_units = 80
        unit_rate = (0.3 + rng.normal(0, 0.2, n_units)).clip(0.01, 0.99)
        units = rng.integers(0, n_units, 3000)
        side = np.where(units % 2 == 0, "champion", "challenger")  # sticky: a unit keeps its side
        loss = (rng.random(3000) < unit_rate[units]).astype(float)
        frame = pd.DataFrame(
            {"variant": side, "assigned_variant": None, "fallback": None, "latency_ms": 1.0,
             "decision": 1, "outcome": 1 - loss, "score": 0.5, "unit": units.astype(str)}
        )  # fmt: skip
        for key, f in (("clustered", frame), ("rows", frame.drop(columns="unit"))):
            a, b = window_stats(f, "champion", "binary"), window_stats(f, "challenger", "binary")
            rolled[key] += _judge(a, b, spec=spec).action == "rollback"
    assert rolled["rows"] / 300 > 0.15  # the row-level bound is fooled by the clusters
    assert rolled["clustered"] / 300 < 0.05 + 3 * np.sqrt(0.05 * 0.95 / 300)

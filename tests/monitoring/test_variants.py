"""compare_variants on hand-built frames whose answers are known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlsd.errors import DataError, DesignError
from mlsd.monitoring import (
    MonitorResult,
    VariantReport,
    compare_variants,
    has_variants,
    sample_ratio_mismatch,
)
from mlsd.monitoring._results import WindowResult
from mlsd.monitoring.performance import PerformanceResult
from mlsd.monitoring.quality import QualityResult


def _predictions(n_champion: int = 600, n_challenger: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_champion + n_challenger
    variant = np.array(["champion"] * n_champion + ["challenger"] * n_challenger, dtype=object)
    score = np.concatenate([rng.uniform(0, 1, n_champion), rng.uniform(0.5, 1, n_challenger)])
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "logged_at": t0 + pd.to_timedelta(np.arange(n), unit="s"),
            "variant": variant,
            "assigned_variant": variant.copy(),
            "propensity": np.where(variant == "champion", 0.5, 0.5),
            "unit": None,
            "assignment": "random",
            "fallback": None,
            "score": score,
            "decision": score >= 0.5,
            "latency_ms": np.where(variant == "champion", 10.0, 20.0) + np.arange(n) % 5,
            "outcome": np.nan,
        }
    )


def test_volume_share_and_srm_against_scipy():
    p = _predictions(600, 400)
    r = compare_variants(p, task="binary", weights={"champion": 1, "challenger": 1}, order=["champion"])
    assert [v.variant for v in r.variants] == ["champion", "challenger"]
    champ, chall = r.variants
    assert (champ.requests, chall.requests) == (600, 400)
    assert champ.share == pytest.approx(0.6) and chall.intended_share == pytest.approx(0.5)
    expected = stats.chisquare([600, 400], f_exp=[500, 500]).pvalue
    assert r.srm_p_value == pytest.approx(expected)
    assert r.srm_detected  # 600/400 at 50/50 is far beyond chance
    # the split that was intended gives no alarm
    r2 = compare_variants(p, task="binary", weights={"champion": 0.6, "challenger": 0.4})
    assert r2.srm_p_value == pytest.approx(1.0) and not r2.srm_detected


def test_srm_counts_the_assignment_not_the_fallback():
    p = _predictions(500, 500)
    # 100 challenger requests failed over to the champion: the assignment still was 500/500
    moved = p.index[p["variant"] == "challenger"][:100]
    p.loc[moved, "variant"] = "champion"
    p.loc[moved, "fallback"] = "timeout"
    r = compare_variants(p, task="binary", weights={"champion": 1, "challenger": 1})
    assert r.srm_counts == {"champion": 500, "challenger": 500}
    assert r.srm_p_value == pytest.approx(1.0)
    champ, chall = r.variant("champion"), r.variant("challenger")
    assert (champ.requests, chall.requests) == (600, 400)
    assert (chall.fallbacks, chall.answered_for_others) == (100, 0)
    assert (champ.fallbacks, champ.answered_for_others) == (0, 100)
    assert r.fallback_reasons == {"timeout": 100}


def test_srm_since_counts_the_current_step_only():
    p = _predictions(500, 500)
    # the step started when the last 200 rows came: 100 of each among them
    rows = p.index[-200:]
    p.loc[rows, "variant"] = p.loc[rows, "assigned_variant"] = np.tile(["champion", "challenger"], 100)
    since = p.loc[rows[0], "logged_at"]
    r = compare_variants(p, task="binary", weights={"champion": 1, "challenger": 1}, srm_since=since)
    assert r.srm_counts == {"champion": 100, "challenger": 100}
    assert r.srm_p_value == pytest.approx(1.0)


def test_srm_edge_cases():
    # a variant without weight is left out of the test, as mlsd.rollout.srm does
    assert sample_ratio_mismatch({"a": 5, "b": 5, "z": 9}, {"a": 1, "b": 1}) == pytest.approx(1.0)
    assert sample_ratio_mismatch({"a": 5}, {"a": 1, "b": 0}) is None
    assert sample_ratio_mismatch({}, {"a": 1, "b": 1}) is None
    got = sample_ratio_mismatch({"a": 90, "b": 10, "c": 0}, {"a": 8, "b": 1, "c": 1})
    assert got == pytest.approx(stats.chisquare([90, 10, 0], f_exp=[80, 10, 10]).pvalue)


def test_accuracy_auc_latency_and_quantiles():
    p = _predictions(600, 400)
    y = np.where(np.arange(len(p)) % 3 == 0, 1.0, 0.0)
    p["outcome"] = y
    p.loc[p.index[::10], "outcome"] = np.nan  # some rows without feedback
    r = compare_variants(p, task="binary", order=["champion"])
    for v in r.variants:
        part = p[(p["variant"] == v.variant) & p["outcome"].notna()]
        assert v.labelled == len(part)
        assert v.accuracy == pytest.approx(((part["score"] >= 0.5) == (part["outcome"] == 1)).mean())
        from sklearn.metrics import roc_auc_score

        assert v.metric == "roc_auc"
        assert v.metric_value == pytest.approx(roc_auc_score(part["outcome"], part["score"]))
        all_rows = p[p["variant"] == v.variant]
        assert v.latency_p50_ms == pytest.approx(all_rows["latency_ms"].quantile(0.5))
        assert v.latency_p99_ms == pytest.approx(all_rows["latency_ms"].quantile(0.99))
        assert v.score_quantiles["p25"] == pytest.approx(all_rows["score"].quantile(0.25))
        assert sum(v.histogram) == v.requests
    assert len(r.histogram_edges) == len(r.variants[0].histogram) + 1
    assert r.srm_p_value is None  # no weights: no split to test


def test_regression_metrics():
    p = pd.DataFrame(
        {
            "variant": ["a", "a", "b", "b"],
            "score": [1.0, 2.0, 3.0, 5.0],
            "decision": [1.0, 2.0, 3.0, 5.0],
            "outcome": [1.0, 4.0, 4.0, 4.0],
        }
    )
    r = compare_variants(p, task="regression")
    a, b = r.variant("a"), r.variant("b")
    assert (
        a.metric == "rmse" and a.metric_value == pytest.approx(np.sqrt(2.0)) and a.mae == pytest.approx(1.0)
    )
    assert b.metric_value == pytest.approx(1.0) and b.accuracy is None


def test_multiclass_accuracy_compares_labels():
    p = pd.DataFrame(
        {
            "variant": ["a"] * 4,
            "score": [0.9] * 4,
            "decision": ["x", "y", "z", "x"],
            "outcome": ["x", "y", "x", None],
        }
    )
    assert compare_variants(p, task="multiclass").variant("a").accuracy == pytest.approx(2 / 3)


def _shadow() -> pd.DataFrame:
    primary = np.array([0.1, 0.4, 0.6, 0.9, 0.2, 0.8, 0.55, 0.3])
    shadow = np.array([0.2, 0.6, 0.7, 0.8, 0.1, 0.9, 0.45, np.nan])
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(8)],
            "logged_at": pd.Timestamp("2026-01-01", tz="UTC"),
            "variant": "challenger",
            "model_version": 2,
            "score": shadow,
            "decision": [False, True, True, True, False, True, False, None],
            "latency_ms": [12.0, 14, 16, 18, 20, 22, 24, np.nan],
            "error": [None] * 7 + ["timeout"],
            "primary_variant": "champion",
            "primary_score": primary,
            "primary_decision": primary >= 0.5,
            "primary_latency_ms": [10.0, 10, 10, 10, 10, 10, 10, 10],
        }
    )


def test_shadow_agreement_correlation_latency_errors():
    s = _shadow()
    r = compare_variants(_predictions(10, 0), shadow=s, task="binary")
    (c,) = r.shadow
    ok = s[s["error"].isna()]
    # decisions: shadow F T T T F T F vs primary F F T T F T T -> 5 of 7 agree
    assert c.agreement == pytest.approx(5 / 7) and c.n_compared == 7
    assert c.pearson == pytest.approx(stats.pearsonr(ok["score"], ok["primary_score"]).statistic)
    assert c.spearman == pytest.approx(stats.spearmanr(ok["score"], ok["primary_score"]).statistic)
    assert c.latency_p50_diff_ms == pytest.approx(18.0 - 10.0)
    assert c.latency_p99_diff_ms == pytest.approx(ok["latency_ms"].quantile(0.99) - 10.0)
    assert (c.n, c.n_errors, c.errors) == (8, 1, {"timeout": 1})
    assert c.error_rate == pytest.approx(1 / 8) and c.primary_variants == ["champion"]


def test_shadow_frame_must_have_the_columns():
    with pytest.raises(DataError) as exc:
        compare_variants(_predictions(5, 5), shadow=_shadow().drop(columns="primary_score"), task="binary")
    assert exc.value.field == "primary_score"


def test_timeline_sorted_and_traffic_bins():
    events = pd.DataFrame(
        {
            "logged_at": pd.to_datetime(["2026-01-01 00:10", "2026-01-01 00:01"], utc=True),
            "kind": ["canary_advance", "canary_start"],
            "variant": ["challenger", "challenger"],
            "reason": ["step 2 of 3", "rollout started"],
            "details": [{}, {}],
            "actor": ["server", "server"],
            "outcome": ["ok", "ok"],
        }
    )
    p = _predictions(600, 400)
    r = compare_variants(p, events=events, task="binary")
    assert [e.kind for e in r.timeline] == ["canary_start", "canary_advance"]
    assert r.timeline[0].reason == "rollout started"
    counts = r.traffic["counts"]
    assert sum(counts["champion"]) == 600 and sum(counts["challenger"]) == 400
    assert len(r.traffic["starts"]) == len(counts["champion"])


def test_round_trip_and_json():
    p = _predictions(60, 40)
    p["outcome"] = (np.arange(100) % 2).astype(float)
    r = compare_variants(p, shadow=_shadow(), task="binary", weights={"champion": 1, "challenger": 1})
    text = r.to_json()
    back = VariantReport.from_dict(json.loads(text))
    assert back.to_dict() == r.to_dict()
    # inside a monitoring result: present when measured, absent otherwise
    perf = PerformanceResult(task="binary", n_predictions=0, n_labelled=0, label_coverage=None)
    w = WindowResult(None, None, 0, None, None, QualityResult(n_rows=0, columns=[]), perf)
    result = MonitorResult(windows=[], overall=w, alerts=[], task="binary", window="1d", variants=r)
    assert MonitorResult.from_json(result.to_json()).variants.to_dict() == r.to_dict()
    assert (
        "variants"
        not in MonitorResult(windows=[], overall=w, alerts=[], task="binary", window="1d").to_dict()
    )


def test_has_variants_and_errors():
    one = _predictions(5, 0)
    assert not has_variants(one, None, None)
    assert has_variants(one, _shadow(), None)
    assert has_variants(one, None, pd.DataFrame({"kind": ["promote"]}))
    with pytest.raises(DesignError):
        compare_variants(one, task="ranking")
    with pytest.raises(DataError):
        compare_variants(one.drop(columns="score"), task="binary")


class _FakeLog:
    """The read methods of PredictionLog that variants_from_log uses."""

    def __init__(self, shadow=None, events=None):
        self.shadow, self.events = shadow, events

    def read_shadow(self):
        return self.shadow if self.shadow is not None else _shadow().iloc[:0]

    def read_events(self):
        return self.events if self.events is not None else pd.DataFrame(columns=["logged_at", "kind"])


def test_variants_from_log_absent_for_a_single_model():
    from mlsd.monitoring import variants_from_log

    assert variants_from_log(_FakeLog(), _predictions(10, 0), task="binary") is None


def test_variants_from_log_passes_the_split_on():
    from mlsd.monitoring import variants_from_log

    p = _predictions(600, 400)
    r = variants_from_log(_FakeLog(), p, task="binary", weights={"champion": 60.0, "challenger": 40.0})
    assert r.weights == {"champion": 0.6, "challenger": 0.4} and r.srm_p_value == pytest.approx(1.0)
    since = p["logged_at"].iloc[900]  # the last 100 rows, all the challenger's
    r = variants_from_log(
        _FakeLog(), p, task="binary", weights={"champion": 1, "challenger": 1}, srm_since=since
    )
    assert r.srm_counts == {"challenger": 100} and r.srm_detected


def test_variants_from_log_keeps_shadow_rows_of_the_judged_requests():
    from mlsd.monitoring import variants_from_log

    p = _predictions(5, 0)  # request ids r0..r4; the shadow frame has r0..r7
    r = variants_from_log(_FakeLog(shadow=_shadow()), p, task="binary")
    assert [s.n for s in r.shadow] == [5]


def test_variants_from_log_events_of_the_period():
    from mlsd.monitoring import variants_from_log

    p = _predictions(5, 0)
    events = pd.DataFrame(
        {
            "logged_at": [p["logged_at"].iloc[2], p["logged_at"].iloc[-1] + pd.Timedelta("1h")],
            "kind": ["a", "b"],
        }
    )
    assert [e.kind for e in variants_from_log(_FakeLog(events=events), p, task="binary").timeline] == [
        "a",
        "b",
    ]
    r = variants_from_log(_FakeLog(events=events), p, task="binary", period_given=True)
    assert [e.kind for e in r.timeline] == ["a"]


def test_a_variant_outside_the_split_is_named():
    p = _predictions(500, 500)
    p.loc[p.index[:10], ["variant", "assigned_variant"]] = "old"
    r = compare_variants(p, task="binary", weights={"champion": 1, "challenger": 1})
    assert r.srm_counts["old"] == 10 and any("old 10" in w for w in r.warnings)
    assert r.srm_p_value == pytest.approx(stats.chisquare([490, 500], f_exp=[495, 495]).pvalue)


def test_print_monitor_prints_the_variant_table(capsys):
    from mlsd import cli

    p = _predictions(600, 400)
    r = compare_variants(p, task="binary", weights={"champion": 1, "challenger": 1}, shadow=_shadow())
    perf = PerformanceResult(task="binary", n_predictions=0, n_labelled=0, label_coverage=None)
    w = WindowResult(None, None, 0, None, None, QualityResult(n_rows=0, columns=[]), perf)
    result = MonitorResult(windows=[], overall=w, alerts=[], task="binary", window="1d", variants=r)
    cli._print_monitor(result)
    text = capsys.readouterr().out
    assert "variants (the alias that answered)" in text
    assert "champion" in text and "60.0%" in text and "50.0%" in text
    assert "sample-ratio mismatch" in text and "shadow challenger" in text


def test_an_older_log_counts_the_answering_variant_and_says_so():
    p = _predictions(500, 500).drop(columns=["assigned_variant", "fallback"])
    r = compare_variants(p, task="binary", weights={"champion": 1, "challenger": 1})
    assert r.srm_counts == {"champion": 500, "challenger": 500}
    assert any("assigned_variant" in w for w in r.warnings)
    assert not compare_variants(p, task="binary").warnings  # no split tested: nothing to warn of


def test_timeline_events_carry_the_split_they_set():
    events = pd.DataFrame(
        {
            "logged_at": pd.to_datetime(["2026-01-01 00:01", "2026-01-01 00:02"], utc=True),
            "kind": ["advance", "note"],
            "details": [{"weights": {"champion": 75.0, "challenger": 25.0}}, {}],
        }
    )
    r = compare_variants(_predictions(10, 10), events=events, task="binary")
    assert [e.weights for e in r.timeline] == [{"champion": 0.75, "challenger": 0.25}, None]

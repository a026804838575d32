"""Detected vs material drift, effect thresholds from the design, rolling and seasonal references,
regression alerts and the event-time warning, all through :func:`run_monitor`.

The census case: a category share moving from 52.3 % to 48.0 % on 100k-row windows is highly
significant (chi2 p far below 1e-35) but its effect (balanced Cramér's V ~0.043) is below the
default threshold 0.1. It must be reported as detected, and as material once the design says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.data import infer_schema
from mlsd.design import MonitoringSpec
from mlsd.errors import DesignError
from mlsd.monitoring.monitor import REFERENCE_MODES, check_alert_names, list_alerts, run_monitor
from mlsd.monitoring.reference import ReferenceStatistics

_NO_REQUESTS = pd.DataFrame(
    {
        "logged_at": pd.Series([], dtype="datetime64[us, UTC]"),
        "status": pd.Series([], dtype="int64"),
        "n_rows": pd.Series([], dtype="int64"),
        "latency_ms": pd.Series([], dtype="float64"),
    }
)


def _logged(
    inputs: pd.DataFrame, event_time: pd.Series | None, score: np.ndarray, outcome=None
) -> pd.DataFrame:
    """``inputs`` in the columns of ``PredictionLog.read_predictions`` (logged within a minute)."""
    n = len(inputs)
    logged_at = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.linspace(0, 60, n), unit="s")
    frame = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "logged_at": logged_at,
            "event_time": pd.Series(pd.NaT, index=range(n), dtype="datetime64[us, UTC]")
            if event_time is None
            else pd.to_datetime(event_time, utc=True).reset_index(drop=True),
            "score": score,
            "decision": score,
            "outcome": pd.Series([None] * n, dtype=object) if outcome is None else outcome,
        }
    )
    return pd.concat([frame, inputs.reset_index(drop=True)], axis=1)


# --- the census case: detected and material -------------------------------------------------------


@pytest.fixture(scope="module")
def census() -> tuple[ReferenceStatistics, object, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n_ref, n_win = 200_000, 100_000
    train = pd.DataFrame(
        {
            "sex": np.where(rng.random(n_ref) < 0.523, "Male", "Female"),
            "age": rng.normal(40, 12, n_ref),
        }
    )
    reference = ReferenceStatistics.from_frame(train, numeric=["age"], categorical=["sex"])
    schema = infer_schema(train, categorical=["sex"])
    # two weekly windows of 100k rows each: the share of "Male" moved to 48.0 %, age did not move
    window = pd.DataFrame(
        {
            "sex": np.where(rng.random(2 * n_win) < 0.480, "Male", "Female"),
            "age": rng.normal(40, 12, 2 * n_win),
        }
    )
    i = np.arange(2 * n_win)
    offset = pd.to_timedelta(i // n_win, unit="W") + pd.to_timedelta((i % n_win) * 6, unit="s")
    times = pd.Series(pd.Timestamp("2026-03-02", tz="UTC") + offset)  # a Monday: 100k rows a week
    return reference, schema, _logged(window, times, np.full(2 * n_win, 0.5))


def test_a_four_point_share_shift_is_detected_but_not_material_by_default(census) -> None:
    reference, schema, predictions = census
    spec = MonitoringSpec(window="1w", alerts={"max_detected_share": 0.4, "max_drifted_share": 0.4})
    result = run_monitor(reference, schema, predictions, _NO_REQUESTS, spec, task="binary", n_resamples=0)
    assert len(result.windows) == 2 and all(w.n == 100_000 for w in result.windows)
    for w in result.windows:
        sex = next(f for f in w.drift.features if f.column == "sex")
        assert sex.detected and not sex.drifted
        assert sex.p_adjusted < 1e-35 and 0.035 < sex.effect_size < 0.05 and sex.threshold == 0.1
        age = next(f for f in w.drift.features if f.column == "age")
        assert not age.detected and not age.drifted
        assert w.drift.n_detected == 1 and w.drift.share_detected == 0.5 and w.drift.n_drifted == 0
    assert {a.name for a in result.alerts} == {"max_detected_share"}
    assert result.top_drifted().set_index("column").loc["sex", "n_detected_windows"] == 2


@pytest.mark.parametrize(
    "thresholds",
    [{"effect_threshold": 0.04}, {"effect_thresholds": {"sex": 0.04}}],
    ids=["global", "per_column"],
)
def test_the_design_threshold_makes_the_shift_material(census, thresholds) -> None:
    reference, schema, predictions = census
    spec = MonitoringSpec(window="1w", alerts={"max_drifted_share": 0.4}, **thresholds)
    result = run_monitor(reference, schema, predictions, _NO_REQUESTS, spec, task="binary", n_resamples=0)
    for w in result.windows:
        sex = next(f for f in w.drift.features if f.column == "sex")
        assert sex.detected and sex.drifted and sex.threshold == 0.04
        age = next(f for f in w.drift.features if f.column == "age")
        # the global key applies to every column, the per-column key to sex only
        assert age.threshold == (0.04 if "effect_threshold" in thresholds else 0.1)
    assert [a.name for a in result.alerts] == ["max_drifted_share", "max_drifted_share"]


def test_an_effect_threshold_on_an_unmonitored_column_names_the_field(census) -> None:
    reference, schema, predictions = census
    spec = MonitoringSpec(window="1w", effect_thresholds={"gender": 0.04})
    with pytest.raises(DesignError) as exc:
        run_monitor(reference, schema, predictions, _NO_REQUESTS, spec, task="binary", n_resamples=0)
    assert exc.value.field == "monitoring.effect_thresholds.gender"


# --- references: training, previous window, same period last year ---------------------------------


@pytest.fixture(scope="module")
def seasonal() -> tuple[ReferenceStatistics, object, pd.DataFrame]:
    """Two years of traffic (one row per 5 minutes) whose level follows the season; the model
    was trained where the season is at its mean. The season moves the level by up to 0.4 std
    from training but by less than 0.05 std from one week to the next."""
    rng = np.random.default_rng(1)
    start = pd.Timestamp("2024-01-01", tz="UTC")  # a Monday
    minutes = np.arange(0, 104 * 7 * 24 * 60, 5)
    times = pd.Series(start + pd.to_timedelta(minutes, unit="min"))
    day = minutes / (24 * 60)
    season = 4 * np.sin(2 * np.pi * day / 364)  # 364-day "years" of 52 weeks
    level = season + rng.normal(0, 10, len(minutes))
    # a step in week 70 only: a level the series has never had at that time of year
    level = level + np.where((day // 7).astype(int) == 70, 8.0, 0.0)
    train = pd.DataFrame({"riders": rng.normal(0, 10, 20_000)})
    scores = rng.random(5_000)
    reference = ReferenceStatistics.from_frame(train, numeric=["riders"], categorical=[], scores=scores)
    schema = infer_schema(train)
    predictions = _logged(pd.DataFrame({"riders": level}), times, rng.random(len(minutes)))
    return reference, schema, predictions


def _material_weeks(result) -> list[int]:
    first = result.windows[0].start
    return [
        int((w.start - first) / pd.Timedelta(weeks=1))
        for w in result.windows
        if w.drift is not None and w.drift.n_drifted
    ]


def test_the_training_reference_alerts_on_the_season(seasonal) -> None:
    reference, schema, predictions = seasonal
    result = run_monitor(
        reference, schema, predictions, _NO_REQUESTS, MonitoringSpec(window="1w"), task="regression"
    )
    assert len(result.windows) == 104 and result.reference == "training"
    assert len(_material_weeks(result)) > 60  # most of the year is not the winter it learnt
    assert all(w.reference == "training" for w in result.windows)


def test_previous_window_reference_flags_the_step_where_it_starts_and_ends(seasonal) -> None:
    reference, schema, predictions = seasonal
    spec = MonitoringSpec(window="1w", reference="previous_window")
    result = run_monitor(reference, schema, predictions, _NO_REQUESTS, spec, task="regression")
    first = result.windows[0]
    assert first.drift is None and first.reference.startswith("none")
    assert result.windows[1].reference == "window 2024-01-01 00:00"
    assert result.windows[1].prediction_drift is not None  # the score is compared with last week's too
    weeks = _material_weeks(result)
    assert {70, 71} <= set(weeks)  # the step up, then back down
    assert len(set(weeks) - {70, 71}) <= 3  # the season itself no longer alerts (> 60 against training)
    assert result.overall.drift is None and result.overall.reference == "per window only"


def test_same_period_last_year_reference_leaves_only_the_step(seasonal) -> None:
    reference, schema, predictions = seasonal
    spec = MonitoringSpec(window="1w", reference="same_period_last_year")
    result = run_monitor(reference, schema, predictions, _NO_REQUESTS, spec, task="regression")
    # each week looks back to the week holding its middle a year earlier: 52 weeks back, so week
    # 52 (2024-12-30, middle 2025-01-02) is compared with the log's first week (2024-01-01)
    first_year, second_year = result.windows[:52], result.windows[52:]
    assert all(w.drift is None and w.reference.startswith("none") for w in first_year)
    assert all(w.drift is not None for w in second_year)
    weeks = _material_weeks(result)
    assert 70 in weeks and 71 not in weeks and len(weeks) <= 4
    # week 70 (2025-05-05) is compared with the week of the same dates, starting 2024-05-06 (the
    # week holding 2024-05-05, a Sunday, would share one day of dates)
    week70 = result.windows[70]
    assert str(week70.start.date()) == "2025-05-05" and week70.reference == "window 2024-05-06 00:00"
    assert result.windows[52].reference == "window 2024-01-01 00:00"
    assert result.to_dict()["reference"] == "same_period_last_year"


def test_every_reference_mode_is_known_to_the_spec() -> None:
    from typing import get_args

    assert set(get_args(MonitoringSpec.model_fields["reference"].annotation)) == set(REFERENCE_MODES)


# --- regression alerts and performance ------------------------------------------------------------


def test_rmse_and_mae_alerts_for_a_regression() -> None:
    rng = np.random.default_rng(2)
    n = 2_000
    x = rng.normal(0, 1, n)
    train = pd.DataFrame({"x": x})
    reference = ReferenceStatistics.from_frame(train, numeric=["x"], categorical=[], scores=x * 10)
    times = pd.Series(pd.Timestamp("2026-01-05", tz="UTC") + pd.to_timedelta(np.arange(n) * 10, unit="min"))
    truth = x * 10 + rng.normal(0, 1, n)
    # the model is right for the first week, then predicts 5 too high
    week2 = (times >= pd.Timestamp("2026-01-12", tz="UTC")).to_numpy()
    predicted = x * 10 + np.where(week2, 5.0, 0.0)
    predictions = _logged(train, times, predicted, outcome=pd.Series(truth, dtype=object))
    spec = MonitoringSpec(window="1w", alerts={"max_rmse": 3.0, "max_mae": 3.0})
    result = run_monitor(reference, infer_schema(train), predictions, _NO_REQUESTS, spec, task="regression")
    first, second = result.windows[0].performance, result.windows[1].performance
    assert first.rmse < 1.5 and second.rmse > 4.5 and second.mae > 4.5
    assert second.mean_score_labelled - second.outcome_mean == pytest.approx(5.0, abs=0.2)
    assert first.label_rate is None  # a regression has no label rate
    fired = {(a.name, str(a.window_start.date())) for a in result.alerts}
    assert ("max_rmse", "2026-01-12") in fired and ("max_mae", "2026-01-12") in fired
    assert all(d != "2026-01-05" for _, d in fired)


def test_regression_alerts_are_refused_for_a_classifier() -> None:
    assert {"max_rmse", "max_mae"} <= set(list_alerts("regression"))
    assert not {"max_rmse", "max_mae"} & set(list_alerts("binary"))
    check_alert_names({"max_rmse": 10.0}, "regression")
    with pytest.raises(DesignError, match="regression task"):
        check_alert_names({"max_rmse": 10.0}, "binary")


# --- event time ------------------------------------------------------------------------------------


def test_predictions_without_event_time_raise_a_warning_with_their_count() -> None:
    rng = np.random.default_rng(3)
    train = pd.DataFrame({"x": rng.normal(0, 1, 1_000)})
    reference = ReferenceStatistics.from_frame(train, numeric=["x"], categorical=[])
    times = pd.Series(pd.Timestamp("2026-01-05", tz="UTC") + pd.to_timedelta(np.arange(1_000), unit="h"))
    times[:300] = pd.NaT
    predictions = _logged(train, times, rng.random(1_000))
    spec = MonitoringSpec(window="1w")
    result = run_monitor(
        reference,
        infer_schema(train),
        predictions,
        _NO_REQUESTS,
        spec,
        task="binary",
        time_column="arrival_date",
    )
    assert result.n_missing_event_time == 300
    assert len(result.warnings) == 1 and "300 of 1,000" in result.warnings[0]
    assert "'arrival_date'" in result.warnings[0]
    back = type(result).from_json(result.to_json())
    assert back.warnings == result.warnings and back.n_missing_event_time == 300
    complete = _logged(train, times.fillna(pd.Timestamp("2026-01-05", tz="UTC")), rng.random(1_000))
    quiet = run_monitor(reference, infer_schema(train), complete, _NO_REQUESTS, spec, task="binary")
    assert quiet.n_missing_event_time == 0 and quiet.warnings == []

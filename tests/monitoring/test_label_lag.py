"""Label lag over a real prediction log: delays per window, and immature windows not judged.

Flights of November-December 2013 logged through :class:`PredictionLog` with an informative
score; each flight's outcome arrives as feedback a few days after the flight (exponential delay,
mean 2 days), and only if it arrived before the newest flight of the log. In the last fortnight
the early feedback is the complaints: the flights the model got wrong are labelled first, so a
naive read of those windows shows a collapse of ROC AUC. With ``label_maturity: 14d`` they are
reported as not mature and raise no alert.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.design import MonitoringSpec
from mlsd.errors import DesignError
from mlsd.monitoring.monitor import run_monitor
from mlsd.store.prediction_log import PredictionLog, PredictionRecord
from monitoring.test_monitor import INPUTS, _scores, flights, reference, schema

__all__ = ["flights", "reference", "schema"]  # the fixtures of test_monitor, shared


@pytest.fixture(scope="module")
def logged(flights, tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = flights[flights["event_time"] >= "2013-11-01"].sample(3000, random_state=2)
    rows = rows.sort_values("event_time", kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(3)
    score = _scores(rows, rng)
    event = rows["event_time"]
    as_of = event.max()
    delay = pd.to_timedelta(rng.exponential(2.0, len(rows)), unit="D").round("s")
    wrong = (score >= 0.4) != rows["delayed"].to_numpy()
    late = (event >= as_of - pd.Timedelta("14D")).to_numpy()
    delay = delay.where(~(late & wrong), pd.Timedelta("1h"))  # complaints arrive within the hour
    arrived = (event + delay <= as_of).to_numpy()
    records = [
        PredictionRecord(
            request_id=f"r-{i}", logged_at=event[i].to_pydatetime(), event_time=event[i].to_pydatetime(),
            model_name="flight-delay", model_version=1, variant="champion",
            inputs={c: (None if pd.isna(v) else v) for c in INPUTS if (v := rows.at[i, c]) is not None},
            score=float(score[i]), decision=bool(score[i] >= 0.4), latency_ms=2.0,
        )
        for i in range(len(rows))
    ]  # fmt: skip
    with PredictionLog(f"sqlite:///{tmp_path_factory.mktemp('lag') / 'p.db'}") as log:
        log.write_sync(records)
        for i in np.flatnonzero(arrived):
            log.add_feedback(
                f"r-{i}", bool(rows.at[i, "delayed"]), received_at=(event[i] + delay[i]).to_pydatetime()
            )
        return log.read_predictions(), log.read_requests()


def _run(reference, schema, logged, **spec):
    predictions, requests = logged
    return run_monitor(
        reference, schema, predictions, requests,
        MonitoringSpec(window="1w", alerts={"min_roc_auc": 0.6}, **spec), task="binary", n_resamples=0,
    )  # fmt: skip


def test_delays_and_unlabelled_share_per_window(reference, schema, logged) -> None:
    result = _run(reference, schema, logged, label_maturity="14d")
    predictions = logged[0]
    event = pd.to_datetime(predictions["event_time"], utc=True)
    delay_h = (pd.to_datetime(predictions["feedback_at"], utc=True) - event).dt.total_seconds() / 3600
    for w in result.windows:
        inside = (event >= w.start) & (event < w.end)
        d = delay_h[inside].dropna()
        assert w.label_lag.n == int(inside.sum()) and w.label_lag.n_labelled == len(d)
        assert w.label_lag.median_delay_s / 3600 == pytest.approx(d.median())
        assert w.label_lag.p90_delay_s / 3600 == pytest.approx(d.quantile(0.9))
        assert w.label_lag.share_unlabelled == pytest.approx(1 - len(d) / inside.sum())
    # delays of about two days where the labels had time to arrive
    assert 1.0 < result.windows[0].label_lag.median_delay_s / 86400 < 2.0


def test_immature_windows_are_reported_as_such_not_as_a_performance_drop(reference, schema, logged) -> None:
    naive = _run(reference, schema, logged)
    assert all(w.label_lag.mature is None for w in naive.windows)
    fired = {a.window_start for a in naive.alerts if a.name == "min_roc_auc"}
    assert fired, "the complaints-first labels of the last fortnight look like a collapse"

    result = _run(reference, schema, logged, label_maturity="14d")
    as_of = pd.to_datetime(logged[0]["event_time"], utc=True).max()
    immature = [w for w in result.windows if not w.label_lag.mature]
    assert immature and all(w.end + pd.Timedelta("14D") > as_of for w in immature)
    assert {w.start for w in immature} >= fired  # every window that fired is one still maturing
    assert all(w.performance.n_labelled == 0 and w.performance.roc_auc is None for w in immature)
    assert not [a for a in result.alerts if a.name == "min_roc_auc"]
    mature = [w for w in result.windows if w.label_lag.mature]
    assert mature and all(w.performance.roc_auc > 0.6 for w in mature)
    # the overall entry judges the mature windows' labels only
    assert result.overall.performance.n_labelled == sum(w.performance.n_labelled for w in mature)
    again = type(result).from_json(result.to_json())
    assert again.windows[-1].label_lag == result.windows[-1].label_lag


def test_a_bad_maturity_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="label_maturity"):
        MonitoringSpec(label_maturity="two weeks")
    assert DesignError  # the design loader turns it into a DesignError naming monitoring.label_maturity


def test_the_report_and_the_terminal_show_the_label_lag(reference, schema, logged, tmp_path) -> None:
    from rich.console import Console

    from mlsd._cli_tables import print_monitor
    from mlsd.report.monitor import render_monitor_report

    result = _run(reference, schema, logged, label_maturity="14d")
    html = render_monitor_report(result, tmp_path / "monitor.html").read_text()
    assert 'id="label-lag-table"' in html and "not mature" in html and "label_maturity" in html
    console = Console(record=True, width=200)
    print_monitor(console, result)
    text = console.export_text()
    assert "label lag" in text and "not mature" in text

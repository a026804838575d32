"""A regression design split by time, end to end through the real CLI: validate, build, serve
(uvicorn on 127.0.0.1), replay with feedback, monitor in weekly windows of event time.

examples/hotel_rates/design.yaml predicts a hotel booking's daily rate (modeldata/hotel_rates,
15,402 bookings), split by arrival date; a subsample of 6,000 keeps it quick. No feature reads
the arrival date, so the windows are right only if replay sends it and the server logs it as
the event time. Rows posted without it must raise the event-time warning in the CLI and the
report.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pandas as pd
import pytest

from support import ROOT, mlsd_cli, mlsd_server

EXAMPLE = ROOT / "examples" / "hotel_rates" / "design.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hotel-serve")]


def _mlsd(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return mlsd_cli(*args, timeout=timeout, columns=220)


@pytest.fixture(scope="module")
def design(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = EXAMPLE.read_text().replace("  label: ", "  sample: {n: 6000, seed: 0}\n  label: ", 1)
    # the latency objective is the example's; on a shared test machine it would only add noise
    text = text.replace("p99_latency_ms: 50}", "p99_latency_ms: 500}")
    path = tmp_path_factory.mktemp("hotel") / "design.yaml"
    path.write_text(text)
    return path


def test_validate_checks_the_regression_alerts(design: Path, tmp_path: Path) -> None:
    ok = _mlsd("validate", "--no-data", str(design))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    typo = tmp_path / "design.yaml"
    typo.write_text(design.read_text().replace("max_rmse: 30", "max_rmsee: 30"))
    bad = _mlsd("validate", "--no-data", str(typo))
    assert bad.returncode == 2 and "monitoring.alerts.max_rmsee" in bad.stderr + bad.stdout
    assert "did you mean max_rmse" in bad.stderr + bad.stdout


def test_build_serve_replay_and_monitor_in_weekly_windows(design: Path) -> None:
    build = _mlsd("build", str(design), timeout=900)
    assert build.returncode == 0, build.stdout + build.stderr
    with mlsd_server(design) as (_, url):
        replay = _mlsd("replay", str(design), "--url", url, "--feedback", "--concurrency", "8")
        assert replay.returncode == 0, replay.stdout + replay.stderr
        monitor = _mlsd("monitor", str(design), "--json")
        # rows without the arrival date: served (it is no feature), logged without event time
        from mlsd.system import System

        rows, _ = System(design).replay_rows("test")
        assert "arrival_date" in rows.columns  # replay sends data.time though no feature reads it
        bare = json.loads(rows.drop(columns="arrival_date").head(5).to_json(orient="records"))
        answer = httpx.post(f"{url}/v1/predict", json={"inputs": bare})
        assert answer.status_code == 200, answer.text

    assert monitor.returncode == 1, monitor.stderr  # the RMSE alert fires on the summer weeks
    result = json.loads(monitor.stdout)
    assert result["task"] == "regression" and result["n_missing_event_time"] == 0 and not result["warnings"]
    windows = result["windows"]
    starts = pd.to_datetime([w["start"] for w in windows], utc=True)
    # weekly windows of arrival dates (the test split starts 2017-06-01), not one window of replay time
    assert len(windows) >= 12 and (starts.day_of_week == 0).all()
    assert starts.min() == pd.Timestamp("2017-05-29", tz="UTC") and starts.max() < pd.Timestamp(
        "2017-09-04", tz="UTC"
    )
    assert sum(w["n"] for w in windows) == len(rows)
    # the features the model reads, derived ones included; the helpers they derive from are not compared
    columns = {f["column"] for f in windows[0]["drift"]["features"]}
    assert {"nights", "weekend_share", "historical_adr", "market_segment"} <= columns
    assert not columns & {"stays_in_weekend_nights", "stays_in_week_nights", "country", "arrival_date"}
    threshold = next(
        f["threshold"] for f in windows[0]["drift"]["features"] if f["column"] == "market_segment"
    )
    assert threshold == 0.2  # monitoring.effect_thresholds
    # regression performance per window and the RMSE alert exactly where the RMSE exceeds the limit
    perf = [w["performance"] for w in windows]
    assert all(p["rmse"] is not None and p["mae"] is not None and p["label_rate"] is None for p in perf)
    over = {w["start"] for w in windows if w["performance"]["rmse"] > 30}
    fired = {a["window_start"] for a in result["alerts"] if a["name"] == "max_rmse"}
    assert over and fired == over

    table = _mlsd("monitor", str(design))
    assert table.returncode == 1
    assert "RMSE" in table.stdout and "mean outcome" in table.stdout and "label rate" not in table.stdout
    # the five bare rows: windowed by logging time, and said so in the CLI and the report
    assert "warning" in table.stderr and "5 of" in table.stderr and "'arrival_date'" in table.stderr
    reports = sorted((design.parent / ".mlsd" / "hotel-rates" / "reports").glob("monitor-*.html"))
    html = reports[-1].read_text()
    assert "5 of" in html and "no event time" in html and "RMSE" in html

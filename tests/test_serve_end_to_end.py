"""`mlsd serve`, `mlsd replay`, `mlsd log` and `mlsd monitor` end to end through the real CLI.

A real build on a subsample of the flights data, a real uvicorn server in a subprocess, real
HTTP from httpx, the SQLite prediction log in the workspace. The durability test kills the
server with SIGKILL in the middle of a replay and checks that every request that got a 200 is
in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from support import ROOT, mlsd_cli, mlsd_server

EXAMPLE = ROOT / "examples" / "flights" / "design.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flights-serve")]


def _mlsd(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return mlsd_cli(*args, timeout=timeout, columns=200)


@pytest.fixture(scope="module")
def design(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = EXAMPLE.read_text()
    text = text.replace("  label: ", "  sample: {n: 30000, seed: 0}\n  label: ", 1)
    text = text.replace("p99_latency_ms: 20}", "p99_latency_ms: 250}")
    # one model: this module tests serving and logging; tests/test_rollout_end_to_end.py the rollout
    text = re.sub(r"(?ms)^deployment:.*?(?=^\S)", "deployment: {strategy: single}\n", text)
    # two quick candidates: this module tests serving, not model choice
    start = text.index("  candidates:")
    end = text.index("  select:")
    text = (
        text[:start]
        + "  candidates:\n    - {name: logreg, type: logistic_regression}\n"
        + "    - {name: gbdt, type: lightgbm, params: {n_estimators: 60}}\n"
        + text[end:]
    )
    path = tmp_path_factory.mktemp("serve") / "design.yaml"
    path.write_text(text)
    result = _mlsd("build", str(path), timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def _workspace(design: Path) -> Path:
    return design.parent / ".mlsd" / "flight-delay"


def _logged_ids(design: Path) -> pd.DataFrame:
    from mlsd.store import PredictionLog

    return PredictionLog.for_workspace(_workspace(design)).read_predictions()


def test_replay_with_feedback_is_logged_exactly_and_monitored(design: Path, tmp_path: Path) -> None:
    before = len(_logged_ids(design)) if (_workspace(design) / "predictions.db").exists() else 0
    with mlsd_server(design) as (proc, url):
        replay = _mlsd(
            "replay", str(design), "--url", url, "--limit", "800", "--feedback", "--concurrency", "8"
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "800" in replay.stdout
        metrics = httpx.get(f"{url}/metrics").text
        assert 'mlsd_requests_total{route="/v1/predict",status="200"}' in metrics
    # uvicorn shuts down gracefully on SIGTERM (the lifespan drains the log), then re-raises it
    assert proc.returncode in (0, -signal.SIGTERM), proc.stderr.read()

    logged = _logged_ids(design)
    assert len(logged) - before == 800
    assert logged["outcome"].notna().sum() >= 800  # every prediction has its feedback joined
    assert logged["request_id"].is_unique
    # event time is the flight's scheduled hour, not the wall clock of the replay
    assert logged["event_time"].min() >= pd.Timestamp("2013-11-01", tz="UTC")

    out = tmp_path / "log.parquet"
    export = _mlsd("log", str(design), "--export", str(out), "--since", "2013-11-01")
    assert export.returncode == 0, export.stderr
    assert len(pd.read_parquet(out)) == len(logged)

    monitor = _mlsd("monitor", str(design), "--json")
    assert monitor.returncode in (0, 1), monitor.stdout + monitor.stderr
    report = json.loads(monitor.stdout)
    assert report["windows"], report
    reports = sorted((_workspace(design) / "reports").glob("monitor-*.html"))
    assert reports and "plotly" in reports[-1].read_text()


def test_invalid_requests_get_field_errors_and_the_server_keeps_serving(design: Path, tmp_path: Path) -> None:
    from mlsd.store import PredictionLog
    from mlsd.system import System

    rows, _ = System(design).replay_rows("test")
    good = json.loads(rows.head(1).to_json(orient="records", date_format="iso"))[0]
    scratch = (
        f"sqlite:///{tmp_path / 'scratch.db'}"  # --log-url: this test's traffic stays out of the workspace
    )
    with mlsd_server(design, "--log-url", scratch) as (_, url):
        bad_type = httpx.post(f"{url}/v1/predict", json={"inputs": {**good, "distance": "far"}})
        missing = httpx.post(
            f"{url}/v1/predict", json={"inputs": {k: v for k, v in good.items() if k != "temp"}}
        )
        malformed = httpx.post(
            f"{url}/v1/predict", content=b'{"inputs": {', headers={"content-type": "application/json"}
        )
        # 20 MB: past the body limit derived from 10,000 rows of this schema (about 5 MB)
        huge = httpx.post(
            f"{url}/v1/predict",
            content=b"[" + b"1," * 10_000_000 + b"1]",
            headers={"content-type": "application/json"},
        )
        unknown = httpx.post(f"{url}/v1/feedback", json={"request_id": "nope", "outcome": True})
        ok = httpx.post(f"{url}/v1/predict", json={"inputs": good})
    assert bad_type.status_code == 422 and "distance" in bad_type.text
    assert missing.status_code == 422 and "temp" in missing.text
    assert malformed.status_code == 400
    assert huge.status_code == 413
    assert unknown.status_code == 404
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["model"]["version"] >= 1 and body["predictions"][0]["request_id"]
    scratch_log = PredictionLog(scratch)
    assert list(scratch_log.read_predictions()["request_id"]) == [body["predictions"][0]["request_id"]]
    assert sorted(scratch_log.read_requests()["status"]) == [200, 400, 413, 422, 422]  # rejections too


def test_sigkill_during_replay_loses_no_acknowledged_prediction(design: Path) -> None:
    from mlsd.serving.replay import replay_async
    from mlsd.system import System

    rows, _ = System(design).replay_rows("test")
    with mlsd_server(design) as (proc, url):
        holder: dict = {}

        def run() -> None:
            holder["result"] = asyncio.run(replay_async(url, rows.head(4000), concurrency=8, timeout=5))

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 120
        # kill once a few hundred requests have been answered, mid-stream
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                text = httpx.get(f"{url}/metrics", timeout=2).text
                line = next((ln for ln in text.splitlines() if ln.startswith("mlsd_predictions_total{")), "")
                if line and float(line.rsplit(" ", 1)[1]) >= 300:
                    break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        thread.join(120)
    result = holder["result"]
    assert 300 <= result.ok < 4000  # killed mid-replay: some answered, the rest refused
    logged = set(_logged_ids(design)["request_id"])
    lost = [rid for rid in result.acknowledged if rid not in logged]
    assert lost == [], f"{len(lost)} acknowledged predictions are missing from the log"

"""`mlsd monitor` in the terminal: the event-time warning, detected vs material, regression columns.

The monitoring run itself is real (:func:`run_monitor` on synthetic frames); only the System the
command wraps is replaced, so the test needs no build.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

import mlsd.cli as cli
from mlsd.data import infer_schema
from mlsd.design import MonitoringSpec
from mlsd.monitoring.monitor import run_monitor
from mlsd.monitoring.reference import ReferenceStatistics


def _run(task: str, missing_time: int) -> object:
    rng = np.random.default_rng(0)
    n = 1_000
    train = pd.DataFrame({"x": rng.normal(0, 1, n), "meal": rng.choice(["BB", "HB"], n)})
    reference = ReferenceStatistics.from_frame(
        train, numeric=["x"], categorical=["meal"], scores=rng.random(n)
    )
    times = pd.Series(pd.Timestamp("2026-01-05", tz="UTC") + pd.to_timedelta(np.arange(n) * 15, unit="min"))
    times[:missing_time] = pd.NaT
    outcome = rng.normal(100, 10, n) if task == "regression" else rng.random(n) < 0.3
    log = train.assign(
        logged_at=pd.Timestamp("2026-02-01", tz="UTC"),
        event_time=times,
        score=rng.random(n) * (100 if task == "regression" else 1),
        decision=True,
        outcome=pd.Series(outcome, dtype=object),
    )
    requests = pd.DataFrame({"logged_at": log["logged_at"][:0], "status": [], "n_rows": [], "latency_ms": []})
    spec = MonitoringSpec(window="1w")
    return run_monitor(
        reference, infer_schema(train, categorical=["meal"]), log, requests, spec,
        task=task, n_resamples=0, time_column="arrival_date",
    )  # fmt: skip


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def invoke(result: object) -> tuple[int, str, str]:
        stdout, stderr = Console(record=True, width=220), Console(record=True, width=220, stderr=True)
        monkeypatch.setattr(cli, "out", stdout)
        monkeypatch.setattr(cli, "err", stderr)
        run = SimpleNamespace(result=result, html_path=tmp_path / "m.html", json_path=tmp_path / "m.json")
        monkeypatch.setattr(cli, "system_of", lambda *a, **k: SimpleNamespace(monitor=lambda **kw: run))
        code = CliRunner().invoke(cli.app, ["monitor", str(tmp_path / "design.yaml")]).exit_code
        return code, stdout.export_text(), stderr.export_text()

    return invoke


def test_regression_table_shows_errors_and_means(terminal) -> None:
    code, stdout, stderr = terminal(_run("regression", 0))
    assert code == 0 and "warning" not in stderr
    header = next(line for line in stdout.splitlines() if "window" in line and "rows" in line)
    for column in ("detected", "material", "RMSE", "MAE", "mean prediction", "mean outcome"):
        assert column in header
    assert "label rate" not in stdout and "ROC AUC" not in stdout
    assert "reference: training" in stdout


def test_binary_table_keeps_label_rate_and_auc(terminal) -> None:
    _, stdout, _ = terminal(_run("binary", 0))
    assert "label rate" in stdout and "ROC AUC" in stdout and "RMSE" not in stdout


def test_missing_event_time_is_a_warning_with_the_count(terminal) -> None:
    code, _, stderr = terminal(_run("regression", 250))
    assert code == 0  # a warning, not an alert
    assert "warning" in stderr and "250 of 1,000 predictions have no event time" in stderr
    assert "'arrival_date'" in stderr

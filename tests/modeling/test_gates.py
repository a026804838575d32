"""The decision's gate margins: measured value, bound, passed and how close, per model and constraint."""

from __future__ import annotations

import json
import math

import pytest

from mlsd.goals import MetricEstimate
from mlsd.modeling import CLOSE_MARGIN, CandidateEvaluation, TradeOffTable, select_model


def _ev(name: str, kind: str, auc: float, p99: float, recall: float = 0.7) -> CandidateEvaluation:
    valid = {"roc_auc": MetricEstimate(auc, n=100), "recall": MetricEstimate(recall, n=100)}
    return CandidateEvaluation(
        name, kind, "binary", "roc_auc", {"valid": valid}, p50_latency_ms=p99 / 2,
        p99_latency_ms=p99, throughput_rows_per_s=1e4, size_mb=1.0, train_seconds=1.0,
    )  # fmt: skip


def test_margins_and_close_calls() -> None:
    table = TradeOffTable(
        [
            _ev("majority", "baseline", 0.5, 0.1),
            _ev("gbdt", "candidate", 0.74, 19.0, recall=0.7),  # passes by 5 %: close
            _ev("forest", "candidate", 0.75, 23.0),  # fails by 15 %: close
            _ev("logreg", "candidate", 0.70, 4.0, recall=float("nan")),
        ]
    )
    d = select_model(table, maximize="roc_auc", subject_to={"p99_latency_ms": 20, "min_recall": 0.5})
    assert d.winner == "gbdt" and set(d.rejected) == {"forest", "logreg"}  # the old API still holds
    assert set(d.gates) == {"gbdt", "forest", "logreg"}  # candidates only
    p99, recall = d.gates["gbdt"]
    expected = ("p99_latency_ms", 19.0, 20.0, "<=", True)
    assert (p99.constraint, p99.value, p99.bound, p99.op, p99.passed) == expected
    assert p99.margin == pytest.approx(0.05) and p99.close
    assert (recall.op, recall.passed, recall.margin, recall.close) == (">=", True, pytest.approx(0.4), False)
    forest = d.gates["forest"][0]
    assert not forest.passed and forest.margin == pytest.approx(-0.15) and forest.close
    nan = d.gates["logreg"][1]
    assert nan.value is None and not nan.passed and nan.margin is None and not nan.close
    assert {n: [g.constraint for g in gs] for n, gs in d.close_gates.items()} == {
        "gbdt": ["p99_latency_ms"],
        "forest": ["p99_latency_ms"],
    }
    assert dict(p99)["margin"] == p99.margin  # the design document reads dict(gate)
    saved = json.loads(json.dumps(d.to_dict()))
    assert saved["gates"]["forest"][0]["close"] is True and saved["winner"] == "gbdt"
    assert 0 < CLOSE_MARGIN < 1 and not math.isnan(CLOSE_MARGIN)

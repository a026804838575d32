"""The decision rule: constraints, baseline gate, reasons with numbers, GateError."""

from __future__ import annotations

import pytest

from mlsd.errors import DesignError, GateError, ModelError
from mlsd.goals import MetricEstimate
from mlsd.modeling import CandidateEvaluation, TradeOffTable, select_model


def _ev(
    name: str,
    kind: str,
    auc: float,
    *,
    p99: float = 5.0,
    size: float = 1.0,
    ece: float = 0.02,
    recall: float = 0.6,
    log_loss: float = 0.5,
    ci: tuple[float, float] | None = None,
) -> CandidateEvaluation:
    low, high = ci or (None, None)
    valid = {
        "roc_auc": MetricEstimate(auc, low, high, 1000),
        "ece": MetricEstimate(ece, n=1000),
        "recall": MetricEstimate(recall, n=1000),
        "log_loss": MetricEstimate(log_loss, n=1000),
    }
    return CandidateEvaluation(
        name,
        kind,
        "binary",
        "roc_auc",
        {"valid": valid},
        p50_latency_ms=p99 / 3,
        p99_latency_ms=p99,
        throughput_rows_per_s=50_000.0,
        size_mb=size,
        train_seconds=3.0,
    )


@pytest.fixture
def table() -> TradeOffTable:
    return TradeOffTable(
        [
            _ev("majority", "baseline", 0.5, p99=0.1),
            _ev("rule", "baseline", 0.62, p99=0.2),
            _ev("gbdt", "candidate", 0.742, p99=8.0, ci=(0.735, 0.749), log_loss=0.45),
            _ev("logreg", "candidate", 0.701, p99=1.0, log_loss=0.52),
            _ev("rf", "candidate", 0.75, p99=34.0, size=80.0, log_loss=0.44),
            _ev("tiny", "candidate", 0.60, p99=0.5),
        ]
    )


def test_winner_under_latency_constraint(table) -> None:
    d = select_model(table, maximize="roc_auc", subject_to={"p99_latency_ms": 20})
    assert d.winner == "gbdt" and d.ranking == ["gbdt", "logreg"]
    assert d.rejected == {
        "rf": "p99 latency 34 ms > 20 ms",
        "tiny": "roc_auc 0.600 does not beat baseline rule (0.620)",
    }
    assert d.reason.startswith(
        "gbdt: roc_auc 0.742 [0.735, 0.749] on valid, best of 2 candidates meeting "
        "p99_latency_ms <= 20 and beating baseline rule (0.620); logreg 0.701"
    )
    assert "rf rejected: p99 latency 34 ms > 20 ms" in d.reason
    assert d.to_dict()["winner"] == "gbdt"


def test_without_constraints_the_best_metric_wins(table) -> None:
    assert select_model(table, maximize="roc_auc").winner == "rf"


def test_baseline_is_never_the_winner_and_gate_can_be_off() -> None:
    table = TradeOffTable([_ev("rule", "baseline", 0.9), _ev("logreg", "candidate", 0.7)])
    with pytest.raises(GateError):
        select_model(table, maximize="roc_auc")
    d = select_model(table, maximize="roc_auc", require_beats_baseline=False)
    assert d.winner == "logreg" and "baseline" not in d.reason


def test_min_max_and_metric_upper_bounds(table) -> None:
    d = select_model(table, maximize="roc_auc", subject_to={"min_recall": 0.5, "size_mb": 10, "ece": 0.05})
    assert d.winner == "gbdt" and d.rejected["rf"] == "size 80 MB > 10 MB"
    tight = {"max_ece": 0.01, "min_throughput_rows_per_s": 1e6}
    with pytest.raises(GateError) as info:
        select_model(table, maximize="roc_auc", subject_to=tight)
    err = info.value
    assert set(err.received) == {"gbdt", "logreg", "rf", "tiny"}
    for name in ("gbdt", "logreg", "rf", "tiny"):
        assert f"{name}: ece 0.020 > 0.01; throughput 5e+04 rows/s < 1e+06 rows/s" in err.message
    assert err.exit_code == 1 and "max_ece <= 0.01" in err.expected


def test_minimize(table) -> None:
    d = select_model(
        table, minimize="log_loss", subject_to={"p99_latency_ms": 20}, require_beats_baseline=False
    )
    assert d.winner == "gbdt" and d.metric == "log_loss"


def test_ties_go_to_the_faster_model() -> None:
    table = TradeOffTable([_ev("slow", "candidate", 0.7, p99=9.0), _ev("fast", "candidate", 0.7, p99=2.0)])
    assert select_model(table, maximize="roc_auc").ranking == ["fast", "slow"]


def test_nan_metric_is_a_rejection(table) -> None:
    table = TradeOffTable([*table, _ev("broken", "candidate", float("nan"))])
    assert select_model(table, maximize="roc_auc").rejected["broken"] == "roc_auc is undefined"


@pytest.mark.parametrize(
    ("kwargs", "field", "match"),
    [
        (
            {"maximize": "roc_auc", "subject_to": {"latency": 20}},
            "models.select.subject_to.latency",
            "unknown constraint",
        ),
        (
            {"maximize": "roc_auc", "subject_to": {"min_f1": 0.3}},
            "models.select.subject_to.min_f1",
            "not measured",
        ),
        (
            {"maximize": "roc_auc", "subject_to": {"size_mb": "big"}},
            "models.select.subject_to.size_mb",
            "number",
        ),
        ({"maximize": "pr_auc"}, "models.select.maximize", "not measured"),
        ({"maximize": "log_loss"}, "models.select.maximize", "lower is better"),
        ({"maximize": "roc_auc", "minimize": "log_loss"}, "models.select", "exactly one"),
        ({}, "models.select", "exactly one"),
    ],
)
def test_design_errors(table, kwargs, field, match) -> None:
    with pytest.raises(DesignError, match=match) as info:
        select_model(table, **kwargs)
    assert info.value.field == field


def test_no_candidates() -> None:
    with pytest.raises(ModelError, match="no candidates"):
        select_model(TradeOffTable([_ev("majority", "baseline", 0.5)]), maximize="roc_auc")

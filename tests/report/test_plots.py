"""Each plot builder on its own: the traces it draws and the numbers it shows."""

from __future__ import annotations

import warnings

import numpy as np
import plotly.graph_objects as go
import pytest

from mlsd.report import plots
from mlsd.report.document import Calibration, CostCurve, Curve, SliceRow, TimelineRow, TradeoffRow


def _xy(trace: go.BaseTraceType) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(trace.x, dtype=object), np.asarray(trace.y, dtype=object)


@pytest.fixture(scope="module")
def long_curves() -> dict[str, Curve]:
    rng = np.random.default_rng(1)
    y = (rng.random(20_000) < 0.3).astype(float)
    return {
        "weak": Curve(y_true=y, score=rng.random(20_000)),
        "strong": Curve(y_true=y, score=np.clip(y * 0.3 + rng.random(20_000) * 0.7, 0, 1)),
    }


def test_downsample_keeps_ends_and_limit() -> None:
    x = np.arange(10_001)
    (kept,) = plots.downsample(x)
    assert len(kept) <= plots.MAX_POINTS and kept[0] == 0 and kept[-1] == 10_000
    assert plots.downsample(x[:5])[0].tolist() == [0, 1, 2, 3, 4]


def test_roc_and_pr_all_models_downsampled(long_curves: dict[str, Curve]) -> None:
    roc = plots.roc_figure(long_curves)
    names = [t.name for t in roc.data]
    assert names[0].startswith("weak (AUC 0.4") or names[0].startswith("weak (AUC 0.5")
    assert names[1].startswith("strong (AUC") and names[-1] == "chance"
    assert all(len(t.x) <= plots.MAX_POINTS for t in roc.data)
    pr = plots.pr_figure(long_curves)
    assert [t.name.split(" ")[0] for t in pr.data] == ["weak", "strong"]
    assert all(len(t.x) <= plots.MAX_POINTS for t in pr.data)
    strong_ap = float(pr.data[1].name.split("AP ")[1].rstrip(")"))
    assert strong_ap > 0.6


def test_cost_curve_marks_threshold_and_baseline() -> None:
    fig = plots.cost_curve_figure(
        CostCurve(thresholds=[0.1, 0.3, 0.5], cost_per_1000=[500, 250, 400]), 0.3, 800
    )
    shapes = fig.layout.shapes
    assert len(shapes) == 2 and shapes[0].x0 == 0.3 and shapes[1].y0 == 800
    assert "chosen 0.300" in [a.text for a in fig.layout.annotations]


def test_timeline_stacks_splits_and_weights_label_rate() -> None:
    rows = [
        TimelineRow(period="2013-01", split="train", rows=100, label_rate=0.1),
        TimelineRow(period="2013-02", split="train", rows=100, label_rate=0.2),
        TimelineRow(period="2013-02", split="valid", rows=300, label_rate=0.4),
        TimelineRow(period="2013-03", split="test", rows=50, label_rate=0.3),
    ]
    fig = plots.timeline_figure(rows)
    assert fig.layout.barmode == "stack"
    bars = {t.name: t.y.tolist() for t in fig.data if t.type == "bar"}
    assert bars == {"train": [100, 100, 0], "valid": [0, 300, 0], "test": [0, 0, 50]}
    line = next(t for t in fig.data if t.name == "label rate")
    np.testing.assert_allclose(line.y, [0.1, (20 + 120) / 400, 0.3])


def test_confusion_counts_and_costs() -> None:
    y = [0, 0, 0, 1, 1, 1, 1]
    score = [0.1, 0.6, 0.2, 0.9, 0.4, 0.7, 0.8]
    fig = plots.confusion_figure(y, score, 0.5, {"false_positive": 1, "false_negative": 4})
    heat = fig.data[0]
    assert np.asarray(heat.z).tolist() == [[2, 1], [1, 3]]
    assert heat.text[1][0] == "FN<br>1<br>cost 4" and heat.text[0][1] == "FP<br>1<br>cost 1"
    assert "cost 5 (714.3 per 1,000)" in fig.layout.title.text


def test_calibration_reliability_and_ece() -> None:
    rng = np.random.default_rng(2)
    p = rng.random(5000)
    y = (rng.random(5000) < p).astype(float)
    fig = plots.calibration_figure(
        Calibration(y_true=y, score=p, uncalibrated=np.clip(p * 1.6, 0, 1), method="isotonic"), "gbdt"
    )
    names = [t.name for t in fig.data]
    assert (
        names[0] == "perfect"
        and names[1].startswith("uncalibrated")
        and names[2].startswith("calibrated (isotonic)")
    )
    ece_uncal, ece_cal = (float(n.split("ECE ")[1].rstrip(")")) for n in names[1:])
    assert ece_cal < 0.03 < ece_uncal
    assert plots.expected_calibration_error(y, p) == pytest.approx(ece_cal, abs=1e-3)
    assert sum(fig.data[2].customdata) == 5000


def test_slice_figure_hover_has_n() -> None:
    rows = [
        SliceRow(column="origin", value="EWR", n=1200, label_rate=0.2, metric="roc_auc", metric_value=0.7),
        SliceRow(column="origin", value="JFK", n=800, label_rate=0.25, metric="roc_auc", metric_value=0.74),
    ]
    fig = plots.slice_figure(rows)
    bar = fig.data[0]
    assert list(bar.x) == ["EWR", "JFK"] and list(bar.y) == [0.7, 0.74]
    assert "n=%{customdata[0]" in bar.hovertemplate and bar.customdata[0][0] == 1200
    assert fig.layout.title.text == "roc_auc by origin (test split)"


def test_tradeoff_separates_failed_models() -> None:
    rows = [
        TradeoffRow(name="a", test={"auc": {"value": 0.7, "low": 0.68, "high": 0.72}}, p99_ms=2.0),
        TradeoffRow(name="b", test={"auc": {"value": 0.75}}, p99_ms=40.0, passed=False, reason="slow"),
    ]
    fig = plots.tradeoff_figure(rows, "auc", latency_limit_ms=20)
    assert [t.name for t in fig.data] == ["passed the gates", "failed a gate"]
    np.testing.assert_allclose(fig.data[0].error_y.array, [0.02])
    assert fig.layout.shapes[0].x0 == 20


def test_predicted_vs_actual() -> None:
    y = np.arange(5000, dtype=float)
    fig = plots.predicted_vs_actual_figure({"m": Curve(y_true=y, value=y + 1)})
    assert len(fig.data[0].x) <= 2000 and fig.data[-1].name == "identity"
    assert list(fig.data[-1].x) == [0.0, 5000.0]


def test_degenerate_curves_draw_without_warnings() -> None:
    curves = {
        "one class": Curve(y_true=[0, 0, 0, 0], score=[0.1, 0.2, 0.3, 0.4]),
        "constant": Curve(y_true=[0, 1, 0, 1], score=[0.5] * 4),
        "empty": Curve(y_true=[], score=[]),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        roc, pr = plots.roc_figure(curves), plots.pr_figure(curves)
    assert [t.name for t in roc.data] == [
        "one class (AUC undefined: needs both classes)",
        "constant (AUC 0.500)",
        "empty (AUC undefined: needs both classes)",
        "chance",
    ]
    assert [t.name for t in pr.data][1] == "constant (AP 0.500)"
    assert pr.data[0].name == "one class (AP undefined: needs both classes)" and len(pr.data[0].x) == 0
    fig = plots.predicted_vs_actual_figure(
        {"empty": Curve(y_true=[], value=[]), "m": Curve(y_true=[1.0, 3.0], value=[float("nan"), 2.0])}
    )
    assert list(fig.data[-1].x) == [1.0, 3.0]

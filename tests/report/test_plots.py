"""Each plot builder on its own: the traces it draws and the numbers it shows.

The builders draw what the evaluation computed; the inputs here come from the same functions a
build uses, and the tests check that the figures show those numbers unchanged.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from mlsd.goals.costs import CostMatrix
from mlsd.modeling.assessment import confusion_with_costs
from mlsd.modeling.curves import classification_curves, reliability_bins
from mlsd.report import plots
from mlsd.report.document import (
    Calibration,
    ConfusionMatrix,
    CostCurve,
    Curve,
    SliceRow,
    TimelineRow,
    TradeoffRow,
)


def _xy(trace: go.BaseTraceType) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(trace.x, dtype=object), np.asarray(trace.y, dtype=object)


@pytest.fixture(scope="module")
def long_curves() -> dict[str, Curve]:
    rng = np.random.default_rng(1)
    y = (rng.random(20_000) < 0.3).astype(float)
    scores = {"weak": rng.random(20_000), "strong": np.clip(y * 0.3 + rng.random(20_000) * 0.7, 0, 1)}
    return {name: Curve(**classification_curves(y, s)) for name, s in scores.items()}


def test_roc_and_pr_draw_the_given_points(long_curves: dict[str, Curve]) -> None:
    roc = plots.roc_figure(long_curves)
    names = [t.name for t in roc.data]
    assert names[:2] == [
        f"weak (AUC {long_curves['weak'].roc_auc:.3f})",
        f"strong (AUC {long_curves['strong'].roc_auc:.3f})",
    ]
    assert names[-1] == "chance" and "20,000 rows" in roc.layout.title.text
    for trace, curve in zip(roc.data, long_curves.values(), strict=False):
        assert list(trace.x) == curve.roc.x and list(trace.y) == curve.roc.y
    pr = plots.pr_figure(long_curves)
    assert [t.name.split(" ")[0] for t in pr.data] == ["weak", "strong"]
    assert list(pr.data[1].x) == long_curves["strong"].pr.x
    strong_ap = float(pr.data[1].name.split("AP ")[1].rstrip(")"))
    assert strong_ap == pytest.approx(long_curves["strong"].average_precision, abs=5e-4) and strong_ap > 0.6
    # the label-rate line is the curve's precision at recall 1 (every row predicted positive)
    assert pr.layout.shapes[0].y0 == pytest.approx(0.3, abs=0.01)


def test_plots_compute_no_metric() -> None:
    assert not hasattr(plots, "expected_calibration_error") and not hasattr(plots, "_reliability")
    assert "sklearn" not in Path(plots.__file__).read_text(encoding="utf-8")


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


def test_confusion_shows_the_given_counts_and_costs() -> None:
    y = [0, 0, 0, 1, 1, 1, 1]
    score = [0.1, 0.6, 0.2, 0.9, 0.4, 0.7, 0.8]
    confusion = ConfusionMatrix(**confusion_with_costs(y, score, 0.5, CostMatrix(1, 4)))
    fig = plots.confusion_figure(confusion, "EUR")
    heat = fig.data[0]
    assert np.asarray(heat.z).tolist() == [[2, 1], [1, 3]]
    assert heat.text[1][0] == "FN<br>1<br>cost 4 EUR" and heat.text[0][1] == "FP<br>1<br>cost 1 EUR"
    assert "5 EUR (714.3 per 1,000)" in fig.layout.title.text


def test_confusion_draws_counts_it_is_given_not_recomputed() -> None:
    confusion = ConfusionMatrix(
        threshold=0.3,
        counts=[[10, 2], [3, 5]],
        cell_costs=[[0, 2], [12, 0]],
        total_cost=14,
        cost_per_1000=700,
        n_rows=20,
    )
    fig = plots.confusion_figure(confusion)
    assert np.asarray(fig.data[0].z).tolist() == [[10, 2], [3, 5]]
    assert "(700 per 1,000)" in fig.layout.title.text


def test_calibration_draws_the_given_bins_and_ece() -> None:
    rng = np.random.default_rng(2)
    p = rng.random(5000)
    y = (rng.random(5000) < p).astype(float)
    cal, uncal = reliability_bins(y, p), reliability_bins(y, np.clip(p * 1.6, 0, 1))
    fig = plots.calibration_figure(
        Calibration(n_rows=5000, calibrated=cal, uncalibrated=uncal, method="isotonic"), "gbdt"
    )
    names = [t.name for t in fig.data]
    assert names == [
        "perfect",
        f"uncalibrated (ECE {uncal['ece']:.3f})",
        f"calibrated (isotonic) (ECE {cal['ece']:.3f})",
    ]
    assert cal["ece"] < 0.03 < uncal["ece"]
    assert list(fig.data[2].x) == cal["mean_score"] and list(fig.data[2].y) == cal["fraction_positive"]
    assert sum(fig.data[2].customdata) == 5000 and "5,000 rows" in fig.layout.title.text


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


def test_tradeoff_one_trace_per_role() -> None:
    rows = [
        TradeoffRow(name="base", role="baseline", kind="baseline", test={"auc": {"value": 0.5}}, p99_ms=0.1),
        TradeoffRow(
            name="a", role="champion", test={"auc": {"value": 0.7, "low": 0.68, "high": 0.72}}, p99_ms=2.0
        ),
        TradeoffRow(name="b", role="rejected", test={"auc": {"value": 0.75}}, p99_ms=40.0, passed=False),
    ]
    fig = plots.tradeoff_figure(rows, "auc", latency_limit_ms=20)
    assert [t.name for t in fig.data] == ["champion", "rejected", "baseline"]
    np.testing.assert_allclose(fig.data[0].error_y.array, [0.02])
    assert fig.layout.shapes[0].x0 == 20
    assert "failed" not in " ".join(t.name for t in fig.data)


def test_cost_curve_axis_has_the_unit() -> None:
    fig = plots.cost_curve_figure(CostCurve(thresholds=[0.1, 0.5], cost_per_1000=[5, 3]), unit="EUR")
    assert fig.layout.yaxis.title.text == "EUR per 1,000 predictions"


def test_predicted_vs_actual_draws_every_given_pair() -> None:
    y = np.arange(2000, dtype=float)
    fig = plots.predicted_vs_actual_figure({"m": Curve(n_rows=5000, y_true=y, value=y + 1, n_sampled=2000)})
    assert len(fig.data[0].x) == 2000 and fig.data[-1].name == "identity"
    assert list(fig.data[-1].x) == [0.0, 2000.0]


def test_degenerate_curves_draw_without_warnings() -> None:
    curves = {
        "one class": Curve(**classification_curves([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4])),
        "constant": Curve(**classification_curves([0, 1, 0, 1], [0.5] * 4)),
        "empty": Curve(**classification_curves([], [])),
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

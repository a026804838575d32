"""Plot builders for the design document: one function per figure, each returns a plotly Figure.

Binary curves take labels coded 1 for the positive class and 0 otherwise. Long curves are
thinned to at most :data:`MAX_POINTS` points so that the HTML file stays small.

>>> curve = CostCurve(thresholds=[0.1, 0.5, 0.9], cost_per_1000=[800, 300, 450])
>>> fig = cost_curve_figure(curve, threshold=0.5)
>>> [trace.name for trace in fig.data]
['expected cost']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from mlsd.report.document import Calibration, CostCurve, Curve, SliceRow, TimelineRow, TradeoffRow

__all__ = [
    "MAX_POINTS",
    "calibration_figure",
    "confusion_figure",
    "cost_curve_figure",
    "downsample",
    "expected_calibration_error",
    "pr_figure",
    "predicted_vs_actual_figure",
    "roc_figure",
    "slice_figure",
    "timeline_figure",
    "tradeoff_figure",
]

MAX_POINTS = 500
_PALETTE = qualitative.Plotly
_SPLIT_COLOURS = {"train": "#4c78a8", "valid": "#f58518", "test": "#54a24b"}
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"


def _layout(fig: go.Figure, title: str, *, height: int = 380) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        font={"family": _FONT, "size": 13},
        # below the plot: long model names must not cover the curves in half-width figures
        legend={"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0, "bgcolor": "rgba(0,0,0,0)"},
    )
    return fig


def downsample(*arrays: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, ...]:
    """Keep at most ``max_points`` evenly spaced points (first and last always kept).

    >>> [a.tolist() for a in downsample(np.arange(10), max_points=4)]
    [[0, 3, 6, 9]]
    """
    n = len(arrays[0])
    if n <= max_points:
        return arrays
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return tuple(np.asarray(a)[keep] for a in arrays)


def expected_calibration_error(y_true: Sequence[float], score: Sequence[float], n_bins: int = 10) -> float:
    """ECE over ``n_bins`` equal-width bins: mean |observed rate - mean score|, weighted by bin size.

    >>> round(expected_calibration_error([0, 1, 0, 1], [0.0, 1.0, 0.0, 1.0]), 6)
    0.0
    """
    return float(_reliability(np.asarray(y_true, float), np.asarray(score, float), n_bins)[3])


def _reliability(
    y: np.ndarray, p: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    filled = counts > 0
    mean_score = np.bincount(idx, weights=p, minlength=n_bins)[filled] / counts[filled]
    observed = np.bincount(idx, weights=y, minlength=n_bins)[filled] / counts[filled]
    ece = float(np.sum(counts[filled] / len(p) * np.abs(observed - mean_score))) if len(p) else float("nan")
    return mean_score, observed, counts[filled], ece


def _both_classes(y_true: Sequence[float]) -> bool:
    # ROC and PR are undefined without positives and negatives (a one-class slice or split);
    # sklearn would warn and return NaN curves.
    return np.unique(np.asarray(y_true, float)).size >= 2


def _undefined(name: str, what: str, colour: str) -> go.Scatter:
    """An empty trace whose legend entry says why the model has no curve."""
    return go.Scatter(
        x=[], y=[], mode="lines", name=f"{name} ({what} undefined: needs both classes)", line_color=colour
    )


def cost_curve_figure(
    curve: CostCurve, threshold: float | None = None, baseline_cost: float | None = None
) -> go.Figure:
    """Expected cost per 1,000 predictions against the threshold, the chosen one marked."""
    x, y = downsample(np.asarray(curve.thresholds, float), np.asarray(curve.cost_per_1000, float))
    fig = go.Figure(
        go.Scatter(
            x=x,
            y=y,
            mode="lines",
            name="expected cost",
            hovertemplate="threshold %{x:.3f}<br>%{y:,.1f} per 1k",
        )
    )
    if threshold is not None:
        fig.add_vline(
            x=threshold, line_dash="dash", line_color="#d62728", annotation_text=f"chosen {threshold:.3f}"
        )
    if baseline_cost is not None:
        fig.add_hline(
            y=baseline_cost,
            line_dash="dot",
            line_color="#7f7f7f",
            annotation_text="baseline",
            annotation_position="top left",
        )
    fig.update_xaxes(title="decision threshold", range=[0, 1])
    fig.update_yaxes(title="cost per 1,000 predictions", rangemode="tozero")
    return _layout(fig, "Expected cost by threshold (validation split)")


def timeline_figure(rows: Sequence[TimelineRow]) -> go.Figure:
    """Rows per period stacked by split, with the label rate per period on a second axis."""
    df = pd.DataFrame([r.model_dump() for r in rows])
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if df.empty:
        return _layout(fig, "Rows and label rate over time")
    periods = sorted(df["period"].unique())
    for i, (split, part) in enumerate(df.groupby("split", sort=False)):
        counts = part.groupby("period")["rows"].sum().reindex(periods, fill_value=0)
        fig.add_trace(
            go.Bar(
                x=periods,
                y=counts.to_numpy(),
                name=str(split),
                marker_color=_SPLIT_COLOURS.get(str(split), _PALETTE[i % len(_PALETTE)]),
            ),
            secondary_y=False,
        )
    rated = df.dropna(subset=["label_rate"])
    if not rated.empty:
        weighted = (rated["label_rate"] * rated["rows"]).groupby(rated["period"]).sum()
        rate = (weighted / rated.groupby("period")["rows"].sum()).reindex(periods)
        fig.add_trace(
            go.Scatter(
                x=periods, y=rate.to_numpy(), name="label rate", mode="lines+markers", line_color="#222222"
            ),
            secondary_y=True,
        )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="period", type="category")
    fig.update_yaxes(title_text="rows", secondary_y=False)
    fig.update_yaxes(title_text="label rate", tickformat=".0%", rangemode="tozero", secondary_y=True)
    return _layout(fig, "Rows per period by split, and label rate")


def roc_figure(curves: Mapping[str, Curve]) -> go.Figure:
    """ROC curves of all models on one figure, AUC in the legend."""
    fig = go.Figure()
    for i, (name, curve) in enumerate(curves.items()):
        if curve.score is None:
            continue
        if not _both_classes(curve.y_true):
            fig.add_trace(_undefined(name, "AUC", _PALETTE[i % len(_PALETTE)]))
            continue
        fpr, tpr, _ = roc_curve(curve.y_true, curve.score, drop_intermediate=True)
        area = auc(fpr, tpr)
        fpr, tpr = downsample(fpr, tpr)
        fig.add_trace(
            go.Scatter(
                x=fpr,
                y=tpr,
                mode="lines",
                name=f"{name} (AUC {area:.3f})",
                line_color=_PALETTE[i % len(_PALETTE)],
            )
        )
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "#aaaaaa"})
    )
    fig.update_xaxes(title="false positive rate", range=[0, 1])
    fig.update_yaxes(title="true positive rate", range=[0, 1.02])
    return _layout(fig, "ROC curves (test split)")


def pr_figure(curves: Mapping[str, Curve]) -> go.Figure:
    """Precision-recall curves of all models on one figure, average precision in the legend."""
    fig = go.Figure()
    base_rate = None
    for i, (name, curve) in enumerate(curves.items()):
        if curve.score is None:
            continue
        if not _both_classes(curve.y_true):
            fig.add_trace(_undefined(name, "AP", _PALETTE[i % len(_PALETTE)]))
            continue
        precision, recall, _ = precision_recall_curve(curve.y_true, curve.score)
        ap = average_precision_score(curve.y_true, curve.score)
        recall, precision = downsample(recall, precision)
        base_rate = float(np.mean(curve.y_true))
        fig.add_trace(
            go.Scatter(
                x=recall,
                y=precision,
                mode="lines",
                name=f"{name} (AP {ap:.3f})",
                line_color=_PALETTE[i % len(_PALETTE)],
            )
        )
    if base_rate is not None:
        fig.add_hline(y=base_rate, line_dash="dot", line_color="#aaaaaa", annotation_text="label rate")
    fig.update_xaxes(title="recall", range=[0, 1])
    fig.update_yaxes(title="precision", range=[0, 1.02])
    return _layout(fig, "Precision-recall curves (test split)")


def calibration_figure(calibration: Calibration, name: str = "champion") -> go.Figure:
    """Reliability diagram: observed positive rate per score bin (before/after calibration)."""
    y = np.asarray(calibration.y_true, float)
    fig = go.Figure(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot", "color": "#aaaaaa"})
    )
    series = [("uncalibrated", calibration.uncalibrated, "#7f7f7f")] if calibration.uncalibrated else []
    label = f"calibrated ({calibration.method})" if calibration.method else name
    series.append((label, calibration.score, _PALETTE[0]))
    for label_i, score, colour in series:
        mean_score, observed, counts, ece = _reliability(y, np.asarray(score, float), calibration.n_bins)
        fig.add_trace(
            go.Scatter(
                x=mean_score,
                y=observed,
                mode="lines+markers",
                name=f"{label_i} (ECE {ece:.3f})",
                line_color=colour,
                customdata=counts,
                hovertemplate="mean score %{x:.3f}<br>observed %{y:.3f}<br>n=%{customdata:,}",
            )
        )
    fig.update_xaxes(title="mean predicted probability", range=[0, 1])
    fig.update_yaxes(title="observed positive rate", range=[0, 1.02])
    return _layout(fig, f"Reliability diagram: {name} (test split)")


def confusion_figure(
    y_true: Sequence[float], score: Sequence[float], threshold: float, costs: Mapping[str, float]
) -> go.Figure:
    """Confusion matrix at ``threshold`` with each cell's count and cost (``costs`` keyed
    ``true_negative``, ``false_positive``, ``false_negative``, ``true_positive``; missing = 0)."""
    y = np.asarray(y_true, float) >= 0.5
    pred = np.asarray(score, float) >= threshold
    counts = np.array([[np.sum(~y & ~pred), np.sum(~y & pred)], [np.sum(y & ~pred), np.sum(y & pred)]])
    unit = np.array(
        [
            [costs.get("true_negative", 0.0), costs.get("false_positive", 0.0)],
            [costs.get("false_negative", 0.0), costs.get("true_positive", 0.0)],
        ],
        dtype=float,
    )
    cell_cost = counts * unit
    labels = [["TN", "FP"], ["FN", "TP"]]
    text = [
        [f"{labels[r][c]}<br>{counts[r, c]:,}<br>cost {cell_cost[r, c]:,.0f}" for c in range(2)]
        for r in range(2)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=counts,
            x=["predicted negative", "predicted positive"],
            y=["actual negative", "actual positive"],
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
            hovertemplate="%{y}, %{x}: %{z:,}<extra></extra>",
        )
    )
    total, n = float(cell_cost.sum()), int(counts.sum())
    per_1000 = 1000 * total / n if n else float("nan")
    fig.update_yaxes(autorange="reversed")
    return _layout(
        fig, f"At threshold {threshold:.3f}: cost {total:,.0f} ({per_1000:,.1f} per 1,000)", height=360
    )


def slice_figure(rows: Sequence[SliceRow]) -> go.Figure:
    """The metric per value of one slice column, with n and label rate in the hover."""
    column = rows[0].column if rows else ""
    metric = rows[0].metric if rows else ""
    fig = go.Figure(
        go.Bar(
            x=[r.value for r in rows],
            y=[r.metric_value for r in rows],
            customdata=[[r.n, r.label_rate if r.label_rate is not None else float("nan")] for r in rows],
            hovertemplate="%{x}<br>" + metric + " %{y:.3f}<br>n=%{customdata[0]:,}"
            "<br>label rate %{customdata[1]:.1%}<extra></extra>",
            marker_color=_PALETTE[0],
        )
    )
    fig.update_xaxes(title=column, type="category")
    fig.update_yaxes(title=metric)
    return _layout(fig, f"{metric} by {column} (test split)", height=320)


def tradeoff_figure(
    rows: Sequence[TradeoffRow], metric: str, split: str = "test", latency_limit_ms: float | None = None
) -> go.Figure:
    """Quality against p99 latency per model, with CI bars; models that failed a gate in grey."""
    fig = go.Figure()
    for passed in (True, False):
        chosen = [r for r in rows if r.passed is passed and metric in getattr(r, split)]
        if not chosen:
            continue
        vals = [getattr(r, split)[metric] for r in chosen]
        y = np.array([v.value if v.value is not None else np.nan for v in vals], float)
        high = np.array([v.high if v.high is not None else np.nan for v in vals], float)
        low = np.array([v.low if v.low is not None else np.nan for v in vals], float)
        fig.add_trace(
            go.Scatter(
                x=[r.p99_ms for r in chosen],
                y=y,
                mode="markers+text",
                text=[r.name for r in chosen],
                textposition="top center",
                name="passed the gates" if passed else "failed a gate",
                marker={"size": 12, "color": _PALETTE[0] if passed else "#aaaaaa"},
                error_y={"type": "data", "array": high - y, "arrayminus": y - low, "visible": True},
            )
        )
    if latency_limit_ms is not None:
        fig.add_vline(x=latency_limit_ms, line_dash="dash", line_color="#d62728", annotation_text="p99 limit")
    fig.update_xaxes(title="p99 latency (ms)", rangemode="tozero")
    fig.update_yaxes(title=f"{metric} ({split})")
    return _layout(fig, f"Trade-off: {metric} against latency")


def predicted_vs_actual_figure(curves: Mapping[str, Curve], max_points: int = 2000) -> go.Figure:
    """Regression: predicted against actual values per model, with the identity line."""
    fig = go.Figure()
    lows, highs = [], []
    for i, (name, curve) in enumerate(curves.items()):
        if curve.value is None:
            continue
        actual, predicted = downsample(
            np.asarray(curve.y_true, float), np.asarray(curve.value, float), max_points=max_points
        )
        finite = np.concatenate([actual, predicted])
        finite = finite[np.isfinite(finite)]
        if finite.size:  # an empty or all-NaN curve has no extent
            lows.append(finite.min())
            highs.append(finite.max())
        fig.add_trace(
            go.Scatter(
                x=actual,
                y=predicted,
                mode="markers",
                name=name,
                opacity=0.5,
                marker_color=_PALETTE[i % len(_PALETTE)],
            )
        )
    if lows:
        lo, hi = float(min(lows)), float(max(highs))
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[lo, hi],
                mode="lines",
                name="identity",
                line={"dash": "dot", "color": "#aaaaaa"},
            )
        )
    fig.update_xaxes(title="actual")
    fig.update_yaxes(title="predicted")
    return _layout(fig, "Predicted against actual (test split)")

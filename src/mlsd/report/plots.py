"""Plot builders for the design document: one function per figure, each returns a plotly Figure.

The report computes no metric: every figure draws points the build's stages measured (ROC and
PR points with their areas, reliability bins with their ECE, the confusion matrix with its costs),
already computed on the whole split and thinned for drawing by :mod:`mlsd.modeling.curves`, so
a figure and a table of the same document cannot disagree.

>>> curve = CostCurve(thresholds=[0.1, 0.5, 0.9], cost_per_1000=[800, 300, 450])
>>> fig = cost_curve_figure(curve, threshold=0.5)
>>> [trace.name for trace in fig.data]
['expected cost']
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from mlsd.report.document import (
    Calibration,
    ConfusionMatrix,
    CostCurve,
    Curve,
    SliceRow,
    TimelineRow,
    TradeoffRow,
)

__all__ = [
    "ROLE_COLOURS",
    "calibration_figure",
    "confusion_figure",
    "cost_curve_figure",
    "coverage_risk_figure",
    "format_number",
    "importance_figure",
    "pr_figure",
    "predicted_vs_actual_figure",
    "roc_figure",
    "slice_figure",
    "timeline_figure",
    "tradeoff_figure",
]

# What the decision made of a model, in the trade-off figure and table: a baseline is a reference,
# not a failure, so it is neither green nor grey-as-rejected.
ROLE_COLOURS = {"champion": "#1a7f37", "passed": "#0969da", "rejected": "#aaaaaa", "baseline": "#8250df"}
_ROLE_NAMES = {
    "champion": "champion",
    "passed": "passed the gates",
    "rejected": "rejected",
    "baseline": "baseline",
}
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


def format_number(value: Any, digits: int = 3) -> str:
    """Readable numbers: 12,345 | 312.5 | 4.27 | 0.0123 (``digits`` significant below 100); NaN is —.

    The design document's tables and figure titles both use it, so the cost in the header and
    the cost in the confusion matrix's title are the same string.

    >>> [format_number(v) for v in (12345.6, 239.75, 4.2712, 0.01234, 3, float("nan"), None)]
    ['12,346', '239.8', '4.27', '0.0123', '3', '—', '—']
    """
    # NaN comes from degenerate measurements (a one-class slice, an empty split)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if float(value).is_integer() or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.{digits}g}"


def _plain(text: object) -> str:
    """``text`` shown literally: plotly reads tags such as ``<b>`` in names and labels as markup.

    >>> _plain("gbdt <b>v2</b>")
    'gbdt &lt;b&gt;v2&lt;/b&gt;'
    """
    return html.escape(str(text), quote=False)


def _undefined(name: str, what: str, colour: str) -> go.Scatter:
    """An empty trace whose legend entry says why the model has no curve.

    The evaluation leaves a curve out when the split has one class only (ROC and PR need both).
    """
    return go.Scatter(
        x=[],
        y=[],
        mode="lines",
        name=f"{_plain(name)} ({what} undefined: needs both classes)",
        line_color=colour,
    )


def cost_curve_figure(
    curve: CostCurve,
    threshold: float | None = None,
    baseline_cost: float | None = None,
    unit: str = "cost units",
) -> go.Figure:
    """Expected cost per 1,000 predictions (in ``unit``) against the threshold, the chosen one marked."""
    x, y = curve.thresholds, curve.cost_per_1000
    fig = go.Figure(
        go.Scatter(
            x=x,
            y=y,
            mode="lines",
            name="expected cost",
            hovertemplate="threshold %{x:.3f}<br>%{y:,.1f} " + unit + " per 1,000<extra></extra>",
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
    fig.update_yaxes(title=f"{unit} per 1,000 predictions", rangemode="tozero")
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
    """ROC curves of all models on one figure, with the AUC the evaluation measured in the legend."""
    fig = go.Figure()
    for i, (name, curve) in enumerate(curves.items()):
        colour = _PALETTE[i % len(_PALETTE)]
        if curve.roc is None or curve.roc_auc is None:
            fig.add_trace(_undefined(name, "AUC", colour))
            continue
        fig.add_trace(
            go.Scatter(
                x=curve.roc.x,
                y=curve.roc.y,
                mode="lines",
                name=f"{_plain(name)} (AUC {curve.roc_auc:.3f})",
                line_color=colour,
            )
        )
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "#aaaaaa"})
    )
    fig.update_xaxes(title="false positive rate", range=[0, 1])
    fig.update_yaxes(title="true positive rate", range=[0, 1.02])
    return _layout(fig, f"ROC curves ({_split_rows(curves)})")


def pr_figure(curves: Mapping[str, Curve]) -> go.Figure:
    """Precision-recall curves of all models on one figure, average precision in the legend.

    The label-rate line is read off a drawn curve: at recall 1 every row is predicted positive,
    so the precision there is the split's positive rate (no label is needed here).
    """
    fig = go.Figure()
    base_rate = None
    for i, (name, curve) in enumerate(curves.items()):
        colour = _PALETTE[i % len(_PALETTE)]
        if curve.pr is None or curve.average_precision is None:
            fig.add_trace(_undefined(name, "AP", colour))
            continue
        if curve.pr.x and base_rate is None:
            base_rate = curve.pr.y[int(np.argmax(curve.pr.x))]
        fig.add_trace(
            go.Scatter(
                x=curve.pr.x,
                y=curve.pr.y,
                mode="lines",
                name=f"{_plain(name)} (AP {curve.average_precision:.3f})",
                line_color=colour,
            )
        )
    if base_rate is not None:
        fig.add_hline(y=base_rate, line_dash="dot", line_color="#aaaaaa", annotation_text="label rate")
    fig.update_xaxes(title="recall", range=[0, 1])
    fig.update_yaxes(title="precision", range=[0, 1.02])
    return _layout(fig, f"Precision-recall curves ({_split_rows(curves)})")


def _split_rows(curves: Mapping[str, Curve]) -> str:
    """'test split, 84,346 rows': the rows every curve was computed on."""
    first = next(iter(curves.values()), None)
    if first is None:
        return "test split"
    return f"{first.split} split, {first.n_rows:,} rows" if first.n_rows else f"{first.split} split"


def calibration_figure(calibration: Calibration, name: str = "champion") -> go.Figure:
    """Reliability diagram from the evaluation's bins (before/after calibration), ECE in the legend."""
    fig = go.Figure(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot", "color": "#aaaaaa"})
    )
    series = [("uncalibrated", calibration.uncalibrated, "#7f7f7f")] if calibration.uncalibrated else []
    label = f"calibrated ({calibration.method})" if calibration.method else _plain(name)
    series.append((label, calibration.calibrated, _PALETTE[0]))
    for label_i, bins, colour in series:
        ece = "—" if bins.ece is None or not np.isfinite(bins.ece) else f"{bins.ece:.3f}"
        fig.add_trace(
            go.Scatter(
                x=bins.mean_score,
                y=bins.fraction_positive,
                mode="lines+markers",
                name=f"{label_i} (ECE {ece})",
                line_color=colour,
                customdata=bins.count,
                hovertemplate="mean score %{x:.3f}<br>observed %{y:.3f}<br>n=%{customdata:,}",
            )
        )
    fig.update_xaxes(title="mean predicted probability", range=[0, 1])
    fig.update_yaxes(title="observed positive rate", range=[0, 1.02])
    rows = f", {calibration.n_rows:,} rows" if calibration.n_rows else ""
    # a half-width figure clips a long title: the model name is cut short, the split and rows are not
    return _layout(fig, f"Reliability: {_plain(_short(name))} ({calibration.split}{rows})")


def _short(text: str, limit: int = 22) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (titles of half-width figures).

    >>> _short("gbdt"), _short("a-very-long-candidate-model-name", 10)
    ('gbdt', 'a-very-lo…')
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def confusion_figure(confusion: ConfusionMatrix, unit: str = "cost units") -> go.Figure:
    """The evaluation's confusion matrix (``[[TN, FP], [FN, TP]]``) with each cell's count and cost."""
    counts, cell_cost = confusion.counts, confusion.cell_costs
    labels = [["TN", "FP"], ["FN", "TP"]]
    text = [
        [f"{labels[r][c]}<br>{counts[r][c]:,}<br>cost {cell_cost[r][c]:,.0f} {unit}" for c in range(2)]
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
    fig.update_yaxes(autorange="reversed")
    # short enough for a half-width figure; the caption gives the rows
    title = (
        f"Threshold {confusion.threshold:.3f}: {confusion.total_cost:,.0f} {unit}"
        f" ({format_number(confusion.cost_per_1000)} per 1,000)"
    )
    return _layout(fig, title, height=360)


def slice_figure(rows: Sequence[SliceRow]) -> go.Figure:
    """The metric per value of one slice column, with n and label rate in the hover."""
    column = rows[0].column if rows else ""
    metric = rows[0].metric if rows else ""
    fig = go.Figure(
        go.Bar(
            x=[_plain(r.value) for r in rows],
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
    """Quality against gated p99 latency per model, with CI bars, one trace per role."""
    fig = go.Figure()
    for role in ("champion", "passed", "rejected", "baseline"):
        chosen = [r for r in rows if r.role == role and metric in getattr(r, split)]
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
                text=[_plain(r.name) for r in chosen],
                textposition="top center",
                cliponaxis=False,  # a label at the axis edge (a baseline at 0 ms) stays readable
                name=_ROLE_NAMES[role],
                marker={
                    "size": 14 if role == "champion" else 11,
                    "color": ROLE_COLOURS[role],
                    "symbol": "diamond" if role == "baseline" else "circle",
                },
                error_y={"type": "data", "array": high - y, "arrayminus": y - low, "visible": True},
            )
        )
    if latency_limit_ms is not None:
        fig.add_vline(x=latency_limit_ms, line_dash="dash", line_color="#d62728", annotation_text="p99 limit")
    fig.update_xaxes(title="p99 latency (ms, gated measurement)", rangemode="tozero")
    fig.update_yaxes(title=f"{metric} ({split})")
    return _layout(fig, f"Trade-off: {metric} against latency")


def predicted_vs_actual_figure(curves: Mapping[str, Curve]) -> go.Figure:
    """Regression: predicted against actual values per model (the pairs given), with the identity line."""
    fig = go.Figure()
    lows, highs = [], []
    for i, (name, curve) in enumerate(curves.items()):
        if curve.value is None or curve.y_true is None:
            continue
        actual, predicted = np.asarray(curve.y_true, float), np.asarray(curve.value, float)
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
                name=_plain(name),
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


# --- models.abstain (docs/abstention.md) -------------------------------------------------------


def coverage_risk_figure(abstention: Mapping[str, Any], unit: str = "cost units") -> go.Figure:
    """The champion's error rate among answered test rows against the share answered; with costs,
    the cost per 1,000 of all rows (declined ones at the review cost) on a second axis."""
    curve = abstention["curve"]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Scatter(
            x=curve["coverage"],
            y=curve["risk"],
            mode="lines",
            name="error rate among answered rows",
            hovertemplate="coverage %{x:.3f}<br>error rate %{y:.4f}<extra></extra>",
        ),
        secondary_y=False,
    )
    # with a review cost, the cost of every row (declined ones reviewed); without, that of the answered
    reviewed = curve.get("cost_with_review_per_1000") is not None
    cost = curve.get("cost_with_review_per_1000") if reviewed else curve.get("cost_per_1000")
    if cost is not None:
        what = (
            f"cost per 1,000 rows, declined at review cost {format_number(curve['review_cost'])}"
            if reviewed
            else "cost per 1,000 answered rows"
        )
        fig.add_trace(
            go.Scatter(
                x=curve["coverage"],
                y=cost,
                mode="lines",
                line_dash="dot",
                name=what,
                hovertemplate="coverage %{x:.3f}<br>%{y:,.1f} " + unit + " per 1,000<extra></extra>",
            ),
            secondary_y=True,
        )
        fig.update_yaxes(
            title=f"{unit} per 1,000 {'rows' if reviewed else 'answered rows'}",
            secondary_y=True,
            rangemode="tozero",
        )
    test = abstention.get("test", {})
    if test.get("coverage") is not None:
        fig.add_vline(
            x=test["coverage"],
            line_dash="dash",
            line_color="#d62728",
            annotation_text=f"policy: coverage {test['coverage']:.3f}",
        )
    fig.update_xaxes(title="coverage (share of rows answered)", range=[0, 1.02])
    fig.update_yaxes(title="error rate among answered rows", rangemode="tozero", secondary_y=False)
    return _layout(fig, f"Coverage and risk (test split, {curve['n_rows']:,} rows)")


_MAX_IMPORTANCE_BARS = 25


def importance_figure(explanations: Mapping[str, Any]) -> go.Figure:
    """The champion's global importance per input column (``models.explain``): mean |SHAP| on the
    left, permutation importance with its standard deviation on the right, largest on top.

    >>> fig = importance_figure({"importance": [
    ...     {"column": "temp", "mean_abs_shap": 0.4, "permutation": 0.03, "permutation_std": 0.01}],
    ...     "permutation": {"metric": "roc_auc"}, "output": "the log-odds of the positive class"})
    >>> [trace.name for trace in fig.data]
    ['mean |SHAP|', 'permutation importance']
    """
    rows = list(explanations.get("importance", []))[:_MAX_IMPORTANCE_BARS][::-1]  # plotly draws bottom-up
    columns = [_plain(r["column"]) for r in rows]
    shap = [r.get("mean_abs_shap") for r in rows]
    perm = [r.get("permutation") for r in rows]
    metric = (explanations.get("permutation") or {}).get("metric", "")
    panels = [
        p for p, values in (("shap", shap), ("permutation", perm)) if any(v is not None for v in values)
    ]
    titles = {
        "shap": f"mean |SHAP| ({_plain(explanations.get('output', 'raw score'))})",
        "permutation": f"permutation importance (fall in {_plain(metric)})",
    }
    fig = make_subplots(
        rows=1, cols=max(1, len(panels)), shared_yaxes=True, subplot_titles=[titles[p] for p in panels]
    )
    for i, panel in enumerate(panels, start=1):
        if panel == "shap":
            bar = go.Bar(x=shap, y=columns, orientation="h", name="mean |SHAP|", marker_color=_PALETTE[0])
        else:
            std = [r.get("permutation_std") or 0.0 for r in rows]
            bar = go.Bar(
                x=perm,
                y=columns,
                orientation="h",
                name="permutation importance",
                marker_color=_PALETTE[1],
                error_x={"type": "data", "array": std, "visible": True},
            )
        fig.add_trace(bar, row=1, col=i)
    # every column named (plotly would skip every other label of a tall category axis)
    fig.update_yaxes(type="category", tickmode="array", tickvals=columns, ticktext=columns)
    height = max(300, 110 + 26 * len(rows))
    fig = _layout(
        fig, f"What the champion relies on ({explanations.get('rows', 0):,} test rows)", height=height
    )
    # room for the panel titles under the figure's title; the panel titles name the bars
    fig.update_layout(margin={"t": 90}, showlegend=False)
    return fig

"""The monitoring report: one offline HTML file rendered from a monitoring run's plain dict.

:func:`render_monitor_report` takes the JSON-ready dict of a monitoring run
(``MonitorResult.to_dict()``; any object with a ``to_dict`` method is accepted too) and writes a
self-contained page: alerts first (red) or "no alert" (green), a heatmap of the drift effect
size per feature (rows ranked by their largest effect) and window (columns) with material (●)
and detected (○) drift marked, coloured on a fixed scale of the effect relative to each
feature's drift threshold,
trends over windows (shares of features with detected and material drift, mean score, label
rate and ROC AUC, or for a regression RMSE and the mean prediction against the mean outcome), the
ranked features of the latest window, data quality, performance and SLO tables, and for a
rollout (the run's ``variants``) the per-variant comparison: volume against the intended split
with the sample-ratio mismatch test, latency, score distributions, performance with feedback,
the shadow comparison and the timeline of rollout events (:mod:`mlsd.report.variants`).

It reads only plain dicts, so the report does not depend on :mod:`mlsd.monitoring` (both are
stage libraries). plotly.js is inlined once, as in the design document, with the same look.

>>> import tempfile
>>> result = {"task": "binary", "window": "1w", "created_at": "2024-01-01T00:00:00+00:00",
...           "limits": {}, "fired": False, "alerts": [], "windows": [], "overall": None}
>>> with tempfile.TemporaryDirectory() as tmp:
...     html = render_monitor_report(result, Path(tmp) / "monitor.html").read_text()
>>> "no alert" in html, "<script src=" in html
(True, False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from mlsd.report.plots import _layout
from mlsd.report.render import write_page
from mlsd.report.variants import variant_figures

__all__ = [
    "DRIFT_SCALE_MAX",
    "build_monitor_figures",
    "drift_heatmap_figure",
    "render_monitor_report",
    "trend_figure",
]

_TEMPLATE = "monitor.html.j2"
_MAX_HEATMAP_ROWS = 40
# The heatmap colours effect / threshold on a fixed 0..DRIFT_SCALE_MAX scale (1 = the drift
# threshold, a third of the way up), never on the data's own range: a quiet system stays pale
# instead of having its largest trivial effect painted dark red.
DRIFT_SCALE_MAX = 3.0
_AT_THRESHOLD = 1.0 / DRIFT_SCALE_MAX
_DRIFT_COLOURS = [
    [0.0, "#ffffff"],
    [_AT_THRESHOLD * 0.999, "#fde0c5"],  # below the threshold: no more than a light tint
    [_AT_THRESHOLD, "#fc8d59"],  # the threshold: a visible step to orange
    [1.0, "#990000"],
]


def _label(window: Mapping[str, Any]) -> str:
    start = window.get("start") or ""
    return start[:16].replace("T", " ").removesuffix(" 00:00")


def _effects(
    windows: Sequence[Mapping[str, Any]],
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Feature names ranked by max effect, and (features x windows) effect, threshold, drifted
    (material) and detected.

    The threshold is the one the run applied to that feature (its method's), read from the run:
    the report does not import :mod:`mlsd.monitoring`, a sibling stage library.
    """
    cells: dict[str, dict[int, tuple[float, float, bool, bool]]] = {}
    for j, w in enumerate(windows):
        for f in (w.get("drift") or {}).get("features", []):
            effect, threshold = f.get("effect_size"), f.get("threshold")
            cells.setdefault(f["column"], {})[j] = (
                np.nan if effect is None else float(effect),
                np.nan if not threshold else float(threshold),
                bool(f.get("drifted")),
                bool(f.get("detected", f.get("drifted"))),
            )
    names = sorted(cells, key=lambda c: -np.nanmax([v[0] for v in cells[c].values()] or [0.0]))
    effect = np.full((len(names), len(windows)), np.nan)
    threshold = np.full((len(names), len(windows)), np.nan)
    drifted = np.zeros((len(names), len(windows)), dtype=bool)
    detected = np.zeros((len(names), len(windows)), dtype=bool)
    for i, name in enumerate(names):
        for j, (e, t, d, s) in cells[name].items():
            effect[i, j], threshold[i, j], drifted[i, j], detected[i, j] = e, t, d, s
    return names, effect, threshold, drifted, detected


def drift_heatmap_figure(windows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Effect / threshold per feature (rows, largest effect on top) and window; material drift
    ``●``, detected drift below the threshold ``○``.

    The colour scale is fixed (0 to :data:`DRIFT_SCALE_MAX` times the threshold), so colours
    mean the same in every report.

    >>> w = [{"start": "2024-01-01", "drift": {"features": [
    ...     {"column": "x", "effect_size": 0.01, "threshold": 0.1, "drifted": False}]}}]
    >>> heat = drift_heatmap_figure(w).data[0]
    >>> heat.zmin, heat.zmax, heat.z.tolist()
    (0, 3.0, [[0.1]])
    """
    names, effect, threshold, drifted, detected = (a[:_MAX_HEATMAP_ROWS] for a in _effects(windows))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.round(np.asarray(effect, dtype=float) / np.asarray(threshold, dtype=float), 4)
    marks = np.where(drifted, "●", np.where(detected, "○", ""))
    fig = go.Figure(
        go.Heatmap(
            z=ratio,
            x=[_label(w) for w in windows],
            y=names,
            text=marks,
            texttemplate="%{text}",
            customdata=np.dstack([effect, threshold]),
            colorscale=_DRIFT_COLOURS,
            zmin=0,
            zmax=DRIFT_SCALE_MAX,
            colorbar={
                "title": "effect / threshold",
                "tickvals": [0, 1, 2, 3],
                "ticktext": ["0", "threshold", "2×", "≥ 3×"],
            },
            hovertemplate="%{y}<br>window %{x}<br>effect %{customdata[0]:.3f}"
            " (threshold %{customdata[1]:.3g})<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", title="window start")
    height = max(260, 60 + 24 * len(names))
    return _layout(fig, "Drift effect size per feature and window (● material, ○ detected)", height=height)


def trend_figure(
    windows: Sequence[Mapping[str, Any]],
    title: str,
    values: Sequence[float | None],
    *,
    limit: float | None = None,
    reference: float | None = None,
    band: tuple[Sequence[float | None], Sequence[float | None]] | None = None,
    percent: bool = False,
) -> go.Figure:
    """One measurement over windows, with an optional alert limit, reference line and interval band."""
    x = [_label(w) for w in windows]
    y = [np.nan if v is None else v for v in values]
    fig = go.Figure()
    if band is not None:
        low = [np.nan if v is None else v for v in band[0]]
        high = [np.nan if v is None else v for v in band[1]]
        fig.add_trace(go.Scatter(x=x, y=high, mode="lines", line={"width": 0}, showlegend=False))
        fig.add_trace(
            go.Scatter(
                x=x,
                y=low,
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                name="95% interval",
                fillcolor="rgba(76,120,168,0.2)",
            )
        )
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=title, line_color="#4c78a8"))
    if reference is not None:
        fig.add_hline(y=reference, line_dash="dot", line_color="#7f7f7f", annotation_text="reference")
    if limit is not None:
        fig.add_hline(y=limit, line_dash="dash", line_color="#d62728", annotation_text=f"alert {limit:g}")
    # one series per figure: the title names it, and a legend below would cover the dates
    fig.update_layout(showlegend=False)
    fig.update_xaxes(type="category")
    if percent:
        fig.update_yaxes(tickformat=".0%")
    return _layout(fig, title, height=320)


def _series(windows: Sequence[Mapping[str, Any]], *path: str) -> list[float | None]:
    out = []
    for w in windows:
        v: Any = w
        for key in path:
            v = v.get(key) if isinstance(v, Mapping) else None
        out.append(v)
    return out


def build_monitor_figures(result: Mapping[str, Any]) -> dict[str, go.Figure]:
    """Every figure the run allows, keyed by div id (page order)."""
    windows = result.get("windows") or []
    limits = result.get("limits") or {}
    # a rollout's comparison (present only with several variants, shadow rows or events)
    figs: dict[str, go.Figure] = variant_figures(result.get("variants"))
    if not windows:
        return figs
    if any((w.get("drift") or {}).get("features") for w in windows):
        figs["fig-drift-heatmap"] = drift_heatmap_figure(windows)
    share = _series(windows, "drift", "share_drifted")
    if any(v is not None for v in share):
        figs["fig-drift-share"] = trend_figure(
            windows,
            "Share of features with material drift",
            share,
            limit=limits.get("max_drifted_share"),
            percent=True,
        )
    detected = _series(windows, "drift", "share_detected")
    if any(v is not None for v in detected):
        figs["fig-detected-share"] = trend_figure(
            windows,
            "Share of features with detected drift",
            detected,
            limit=limits.get("max_detected_share"),
            percent=True,
        )
    score = _series(windows, "performance", "score_mean")
    if any(v is not None for v in score):
        figs["fig-score-mean"] = trend_figure(windows, "Mean score", score)
    rate = _series(windows, "performance", "label_rate")
    if any(v is not None for v in rate):
        reference = next((v for v in _series(windows, "performance", "reference_label_rate") if v), None)
        figs["fig-label-rate"] = trend_figure(
            windows, "Label rate (rows with feedback)", rate, reference=reference, percent=True
        )
    auc = _series(windows, "performance", "roc_auc")
    if any(v is not None for v in auc):
        band = (
            _series(windows, "performance", "roc_auc_low"),
            _series(windows, "performance", "roc_auc_high"),
        )
        figs["fig-roc-auc"] = trend_figure(
            windows, "ROC AUC (band: 95% DeLong interval)", auc, limit=limits.get("min_roc_auc"), band=band
        )
    rmse = _series(windows, "performance", "rmse")
    if any(v is not None for v in rmse):
        figs["fig-rmse"] = trend_figure(
            windows, "RMSE (rows with feedback)", rmse, limit=limits.get("max_rmse")
        )
    outcome = _series(windows, "performance", "outcome_mean")
    if any(v is not None for v in outcome):
        figs["fig-mean-outcome"] = _prediction_vs_outcome(
            windows, _series(windows, "performance", "mean_score_labelled"), outcome
        )
    return figs


def _prediction_vs_outcome(
    windows: Sequence[Mapping[str, Any]], predicted: Sequence[float | None], observed: Sequence[float | None]
) -> go.Figure:
    """Regression: the mean prediction and the mean outcome of the labelled rows per window."""
    x = [_label(w) for w in windows]
    fig = go.Figure()
    for name, values, colour in (
        ("mean prediction", predicted, "#4c78a8"),
        ("mean outcome", observed, "#f58518"),
    ):
        y = [np.nan if v is None else v for v in values]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, line_color=colour))
    fig.update_xaxes(type="category")
    return _layout(fig, "Mean prediction vs mean outcome (rows with feedback)", height=320)


def render_monitor_report(result: Mapping[str, Any] | Any, path: str | Path, *, title: str = "") -> Path:
    """Write the monitoring run ``result`` (a dict, or an object with ``to_dict``) as HTML at ``path``."""
    data: Mapping[str, Any] = result.to_dict() if hasattr(result, "to_dict") else result
    windows = list(data.get("windows") or [])
    return write_page(
        _TEMPLATE,
        path,
        build_monitor_figures(data),
        r=data,
        title=title or "Monitoring report",
        windows=windows,
        latest=windows[-1] if windows else None,
        overall=data.get("overall"),
        label=_label,
    )

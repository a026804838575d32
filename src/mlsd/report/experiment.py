"""The experiment report: one offline HTML page rendered from ``ExperimentAnalysis.to_dict()``.

It shows the SRM verdict first (a broken split invalidates everything below it), the variants,
one **lift figure** per challenger (each metric's relative lift with its confidence interval,
so metrics of different units share an axis; significant ones marked) with the table of
absolute lifts, p-values and the Bayesian read-out, and per metric the **sequential path**:
the always-valid p-value at each checkpoint against the ``alpha`` boundary (or ``|z|`` against
the O'Brien-Fleming boundary); then the plan (``--plan``) and a bandit's off-policy values.

It reads only the plain dict, so the report does not depend on :mod:`mlsd.experiments` (which
sits above the stage libraries).

>>> import tempfile
>>> result = {"task": "binary", "baseline": "champion", "n": 0, "alpha": 0.05, "unit_level": False,
...           "correction": "holm", "period": {}, "variants": [], "comparisons": [],
...           "srm": {"p_value": None, "detected": False, "counted": "requests"}, "warnings": []}
>>> with tempfile.TemporaryDirectory() as tmp:
...     html = render_experiment_report(result, Path(tmp) / "experiment.html").read_text()
>>> "no fixed split" in html, "<script src=" in html
(True, False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from mlsd.report.plots import _layout
from mlsd.report.render import write_page

__all__ = ["build_experiment_figures", "lift_figure", "render_experiment_report", "sequential_figure"]

_TEMPLATE = "experiment.html.j2"
_GOOD, _BAD, _NEUTRAL = "#1a7f37", "#cf222e", "#59636e"


def _colour(c: Mapping[str, Any]) -> str:
    return {"better": _GOOD, "worse": _BAD}.get(c.get("verdict", ""), _NEUTRAL)


def lift_figure(comparisons: Sequence[Mapping[str, Any]], variant: str) -> go.Figure:
    """Each metric's relative lift of ``variant`` with its interval (a forest plot, in %).

    >>> c = {"variant": "b", "metric": "accuracy", "relative": 0.1, "relative_ci": [0.05, 0.15],
    ...      "verdict": "better", "p_adjusted": 0.01}
    >>> list(lift_figure([c], "b").data[0].x)
    [10.0]
    """
    rows = [c for c in comparisons if c["variant"] == variant and c.get("relative") is not None]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[100 * c["relative"] for c in rows],
            y=[c["metric"] for c in rows],
            mode="markers",
            marker={"size": 11, "color": [_colour(c) for c in rows]},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [100 * (c["relative_ci"][1] - c["relative"]) for c in rows],
                "arrayminus": [100 * (c["relative"] - c["relative_ci"][0]) for c in rows],
            },
            hovertext=[f"{c['verdict']} (p adj {c['p_adjusted']:.3g})" for c in rows],
            showlegend=False,
        )
    )
    fig.add_vline(x=0, line={"color": _NEUTRAL, "dash": "dash"})
    fig.update_xaxes(title="relative lift over the baseline, % (interval: delta method)")
    return _layout(fig, f"{variant}: lift per metric", height=140 + 50 * max(len(rows), 1))


def sequential_figure(comparison: Mapping[str, Any], alpha: float) -> go.Figure:
    """The always-valid p-value over the checkpoints (log scale) and the ``alpha`` boundary; for
    a group-sequential test, ``|z|`` at each look against its O'Brien-Fleming boundary.

    >>> c = {"variant": "b", "metric": "m", "verdict": "better", "sequential": {"n": [10, 20],
    ...      "at": [], "p_values": [0.5, 0.01], "z": [0.7, 3.1], "bounds": [4.0, 2.0]}}
    >>> [t.name for t in sequential_figure(c, 0.05).data]
    ['|z|', "O'Brien-Fleming boundary"]
    """
    seq = comparison["sequential"]
    x = seq.get("at") or seq["n"]
    fig = go.Figure()
    if seq.get("bounds"):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[abs(v) for v in seq["z"]],
                mode="lines+markers",
                name="|z|",
                line={"color": _colour(comparison)},
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=seq["bounds"],
                mode="lines",
                name="O'Brien-Fleming boundary",
                line={"color": _BAD, "dash": "dash"},
            )
        )
        fig.update_yaxes(title="|z|")
        return _layout(
            fig, f"{comparison['variant']} · {comparison['metric']}: group-sequential test", height=300
        )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=seq["p_values"],
            mode="lines+markers",
            name="always-valid p",
            line={"color": _colour(comparison)},
        )
    )
    fig.add_hline(y=alpha, line={"color": _BAD, "dash": "dash"}, annotation_text=f"alpha {alpha}")
    fig.update_yaxes(type="log", title="p (mSPRT)")
    return _layout(fig, f"{comparison['variant']} · {comparison['metric']}: sequential test", height=300)


def build_experiment_figures(result: Mapping[str, Any]) -> dict[str, go.Figure]:
    comparisons = list(result.get("comparisons") or [])
    figures: dict[str, go.Figure] = {}
    for variant in dict.fromkeys(c["variant"] for c in comparisons):
        figures[f"fig-lift-{variant}"] = lift_figure(comparisons, variant)
    for c in comparisons:
        if c.get("sequential"):
            figures[f"fig-seq-{c['variant']}-{c['metric']}"] = sequential_figure(c, float(result["alpha"]))
    return figures


def render_experiment_report(result: Mapping[str, Any] | Any, path: str | Path, *, title: str = "") -> Path:
    """Write the analysis ``result`` (a dict, or an object with ``to_dict``) as HTML at ``path``."""
    data: Mapping[str, Any] = result.to_dict() if hasattr(result, "to_dict") else result
    comparisons = list(data.get("comparisons") or [])
    return write_page(
        _TEMPLATE,
        path,
        build_experiment_figures(data),
        r=data,
        title=title or "Experiment report",
        challengers=list(dict.fromkeys(c["variant"] for c in comparisons)),
        comparisons=comparisons,
    )

"""The simulation report: ``mlsd simulate``'s timeline and update policies as one offline HTML page.

:func:`render_simulation_report` reads the plain dict of a simulation
(``SimulationResult.to_dict()``): per window the served and the frozen model's metric and cost,
every event (retrain, canary start, advance, rollback, promote, planted challenger) marked on the
timeline, the served-vs-frozen comparison with its paired interval, and the update policies
compared by metric, cost and number of trainings. Like the monitoring report it reads only plain
dicts, so it does not depend on the orchestration that measured them.

>>> import tempfile
>>> windows = [{"start": "2024-01-01T00:00:00+00:00", "served_metric": 0.7, "frozen_metric": 0.7,
...             "served_cost_per_1000": 10.0, "frozen_cost_per_1000": 10.0, "phase": "single",
...             "answered": 100, "variants": {"champion": 100}, "drifted_share": 0.1}]
>>> events = [{"window": 0, "at": "2024-01-08T00:00:00+00:00", "kind": "retrain", "reason": "drift"}]
>>> with tempfile.TemporaryDirectory() as tmp:
...     page = render_simulation_report({"windows": windows, "events": events, "policies": [],
...                                      "metric": "roc_auc"}, Path(tmp) / "s.html").read_text()
>>> "retrain" in page and "fig-simulation-metric" in page
True
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from mlsd.report.plots import _layout
from mlsd.report.render import write_page

__all__ = ["render_simulation_report", "simulation_figures"]

_TEMPLATE = "simulation.html.j2"
# events that change what serves get a line on the timeline; the rest are listed in the table
_MARKED = {
    "retrain": "#4c78a8",
    "canary start": "#f58518",
    "advance": "#bab0ac",
    "complete": "#54a24b",
    "promote": "#54a24b",
    "rollback": "#e45756",
    "canary rolled back": "#e45756",
    "planted": "#b279a2",
}


def simulation_figures(data: Mapping[str, Any]) -> dict[str, go.Figure]:
    """The metric and the cost per window, served against frozen, with the events marked."""
    windows = list(data.get("windows") or [])
    if not windows:
        return {}
    x = [w["start"] for w in windows]
    figs = {}
    for key, field, title in (
        ("fig-simulation-metric", "metric", f"{data.get('metric', 'metric')} per window"),
        ("fig-simulation-cost", "cost_per_1000", "cost per 1,000 predictions per window"),
    ):
        served = [w.get(f"served_{field}") for w in windows]
        if all(v is None for v in served):
            continue
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=x, y=served, mode="lines+markers", name="served by the loop"))
        fig.add_trace(
            go.Scatter(
                x=x, y=[w.get(f"frozen_{field}") for w in windows], mode="lines", name="frozen first model"
            )
        )
        for event in data.get("events") or []:
            colour = _MARKED.get(str(event.get("kind")))
            if colour is not None:
                fig.add_vline(x=event["at"], line={"color": colour, "width": 1, "dash": "dot"})
                fig.add_annotation(
                    x=event["at"], y=1, yref="paper", text=str(event["kind"]), showarrow=False,
                    textangle=-90, xanchor="right", yanchor="top", font={"size": 10, "color": colour},
                )  # fmt: skip
        figs[key] = _layout(fig, title, height=360)
    return figs


def render_simulation_report(result: Mapping[str, Any] | Any, path: str | Path, *, title: str = "") -> Path:
    """Write the simulation ``result`` (a dict, or an object with ``to_dict``) as HTML at ``path``."""
    data: Mapping[str, Any] = result.to_dict() if hasattr(result, "to_dict") else result
    return write_page(
        _TEMPLATE,
        path,
        simulation_figures(data),
        r=data,
        title=title or "Simulation",
        windows=list(data.get("windows") or []),
        events=list(data.get("events") or []),
        policies=list(data.get("policies") or []),
        comparison=data.get("served_vs_frozen"),
    )

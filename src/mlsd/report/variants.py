"""Figures of a rollout's per-variant comparison, for the monitoring report and the design document.

Both read the plain dict of ``VariantReport.to_dict()`` (:mod:`mlsd.monitoring.variants`), so
the report does not import a sibling stage library:

- :func:`variant_scores_figure`: each variant's score histogram on the shared bin edges, as a
  share of that variant's requests (variants of very different volume stay comparable);
- :func:`variant_traffic_figure`: the share of requests each variant answered per time bin, with
  the rollout events (canary steps, rollbacks, admin actions) marked where they happened and
  the split they set (dashed).

>>> v = {"histogram_edges": [0.0, 0.5, 1.0], "variants": [
...     {"variant": "champion", "histogram": [3, 1]}, {"variant": "challenger", "histogram": [0, 2]}]}
>>> [t.y.tolist() for t in variant_scores_figure(v).data]
[[0.75, 0.25], [0.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from mlsd.report.plots import _layout

__all__ = ["variant_colours", "variant_figures", "variant_scores_figure", "variant_traffic_figure"]

_CHAMPION = "#1a7f37"
_EVENT_COLOURS = {"ok": "#0969da", "rollback": "#cf222e", "failed": "#cf222e", "error": "#cf222e"}


def variant_colours(names: list[str]) -> dict[str, str]:
    """One colour per variant, the champion always green.

    >>> variant_colours(["champion", "challenger"])["champion"]
    '#1a7f37'
    """
    others = [c for c in qualitative.Plotly if c.lower() != _CHAMPION]
    out, i = {}, 0
    for name in names:
        if name == "champion":
            out[name] = _CHAMPION
        else:
            out[name] = others[i % len(others)]
            i += 1
    return out


def variant_scores_figure(variants: Mapping[str, Any]) -> go.Figure:
    """The score distribution of each variant (share of its requests per bin), overlaid."""
    edges = np.asarray(variants.get("histogram_edges") or [], dtype=float)
    centres = (edges[:-1] + edges[1:]) / 2 if edges.size > 1 else np.array([])
    rows = variants.get("variants") or []
    colours = variant_colours([r["variant"] for r in rows])
    fig = go.Figure()
    for r in rows:
        counts = np.asarray(r.get("histogram") or [], dtype=float)
        if counts.size != centres.size or counts.sum() == 0:
            continue
        # outlines, not overlaid bars: two or three variants stay readable where they overlap
        fig.add_trace(
            go.Scatter(
                x=centres,
                y=counts / counts.sum(),
                mode="lines",
                line={"color": colours[r["variant"]], "shape": "hvh", "width": 2},
                name=r["variant"],
                customdata=counts,
                hovertemplate=r["variant"] + " %{x:.3g}: %{y:.1%} (%{customdata:,} requests)<extra></extra>",
            )
        )
    fig.update_xaxes(title="score")
    fig.update_yaxes(title="share of the variant's requests", tickformat=".0%", rangemode="tozero")
    return _layout(fig, "Score distribution per variant", height=340)


def variant_traffic_figure(variants: Mapping[str, Any]) -> go.Figure:
    """Share of requests per variant over time, rollout events as marked vertical lines."""
    traffic = variants.get("traffic") or {}
    starts = pd.to_datetime(traffic.get("starts") or [], utc=True, format="ISO8601")
    counts = {k: np.asarray(v, dtype=float) for k, v in (traffic.get("counts") or {}).items()}
    colours = variant_colours(list(counts))
    fig = go.Figure()
    if counts:
        total = np.sum(list(counts.values()), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, c in counts.items():
                fig.add_trace(
                    go.Scatter(
                        x=starts,
                        y=np.where(total > 0, c / np.where(total > 0, total, 1), np.nan),
                        mode="lines",
                        name=name,
                        line={"color": colours[name], "shape": "hv"},
                        customdata=c,
                        hovertemplate=name + " %{x}: %{y:.1%} (%{customdata:,} requests)<extra></extra>",
                    )
                )
    events = [e for e in variants.get("timeline") or [] if e.get("at")]
    # the intended split as the events set it (canary steps, admin traffic): dashed steps
    set_split = [e for e in events if e.get("weights")]
    if set_split:
        at = pd.to_datetime([e["at"] for e in set_split], utc=True, format="ISO8601")
        end = starts.max() if len(starts) else at.max()
        x = [*at, max(end, at.max())]
        names = list(dict.fromkeys([*colours, *(k for e in set_split for k in e["weights"])]))
        colours = {**variant_colours(names), **colours}
        for name in names:
            y = [e["weights"].get(name, 0.0) for e in set_split]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[*y, y[-1]],
                    mode="lines",
                    name=f"{name} intended",
                    line={"color": colours[name], "dash": "dash", "shape": "hv", "width": 1},
                    hovertemplate=name + " intended from %{x}: %{y:.0%}<extra></extra>",
                )
            )
    if events:
        at = pd.to_datetime([e["at"] for e in events], utc=True, format="ISO8601")
        event_colour = [
            _EVENT_COLOURS.get("rollback" if "rollback" in e["kind"] else e.get("outcome") or "ok", "#59636e")
            for e in events
        ]
        text = [
            f"{e['kind']}{' (' + e['variant'] + ')' if e.get('variant') else ''}: {e.get('reason') or ''}"
            for e in events
        ]
        # one trace of markers at the top (hover tells what happened), plus thin guide lines
        fig.add_trace(
            go.Scatter(
                x=at,
                y=[1.04] * len(events),
                mode="markers",
                marker={"symbol": "triangle-down", "size": 11, "color": event_colour},
                name="rollout events",
                text=text,
                hovertemplate="%{x}<br>%{text}<extra></extra>",
            )
        )
        for t, line_colour in zip(at, event_colour, strict=True):
            fig.add_vline(x=t, line_dash="dot", line_color=line_colour, line_width=1)
    fig.update_yaxes(title="share of requests", tickformat=".0%", range=[0, 1.08])
    fig.update_xaxes(title="logged at (UTC)")
    return _layout(fig, "Traffic per variant and rollout events", height=360)


def variant_figures(variants: Mapping[str, Any] | None, prefix: str = "fig-variant") -> dict[str, go.Figure]:
    """The figures the comparison allows, keyed by div id."""
    if not variants:
        return {}
    figs: dict[str, go.Figure] = {}
    if any(sum(r.get("histogram") or []) for r in variants.get("variants") or []):
        figs[f"{prefix}-scores"] = variant_scores_figure(variants)
    if (variants.get("traffic") or {}).get("counts") or variants.get("timeline"):
        figs[f"{prefix}-traffic"] = variant_traffic_figure(variants)
    return figs

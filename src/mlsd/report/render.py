"""Render a :class:`DesignDocument` as one self-contained HTML file that works offline.

plotly.js is inlined exactly once; each figure is a ``<div>`` with a stable id
(``fig-roc``, ``fig-slice-carrier``, ...) that uses it. The page comes from the jinja2
template ``mlsd/templates/design.html.j2`` with autoescaping on, so every user string (design
name, description, model names, slice values) is escaped.

>>> import tempfile
>>> from mlsd.report.document import DesignDocument, Goals
>>> doc = DesignDocument(name="<demo>", goals=Goals(task="binary", metric="roc_auc"))
>>> with tempfile.TemporaryDirectory() as tmp:
...     html = render_design_document(doc, Path(tmp) / "design.html").read_text()
>>> "&lt;demo&gt;" in html, "<demo>" in html
(True, False)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from jinja2 import Environment, FunctionLoader, StrictUndefined
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from mlsd.report import plots
from mlsd.report.document import Curve, DesignDocument, SliceRow
from mlsd.report.variants import variant_figures

__all__ = ["build_figures", "figure_html", "render_design_document", "write_page"]

_TEMPLATE = "design.html.j2"
# No mode bar: it covers the titles of the half-width figures; drag-to-zoom and hover still work.
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "displayModeBar": False}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def figure_html(fig: go.Figure, div_id: str) -> Markup:
    """The figure as a ``<div id=div_id>`` plus its script, without plotly.js itself."""
    return Markup(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_PLOTLY_CONFIG))


def build_figures(doc: DesignDocument) -> dict[str, go.Figure]:
    """Every figure the document's data allows, keyed by its div id (in page order).

    Figures draw what the stages measured; a figure whose measurement is absent is left out
    rather than recomputed here.
    """
    figs: dict[str, go.Figure] = {}
    goals, models = doc.goals, doc.models
    if goals.cost_curve and goals.cost_curve.thresholds:
        figs["fig-cost-curve"] = plots.cost_curve_figure(
            goals.cost_curve, goals.threshold, goals.baseline_cost_per_1000, unit=goals.cost_unit
        )
    if doc.data.timeline:
        figs["fig-timeline"] = plots.timeline_figure(doc.data.timeline)
    if any(r.p99_ms is not None for r in models.tradeoff) and goals.metric:
        limit = goals.constraints.get("p99_latency_ms")
        figs["fig-tradeoff"] = plots.tradeoff_figure(
            models.tradeoff, goals.metric, latency_limit_ms=float(limit) if limit is not None else None
        )
    if goals.task == "regression":
        if any(c.value is not None for c in models.curves.values()):
            figs["fig-pred-actual"] = plots.predicted_vs_actual_figure(models.curves)
    elif goals.task == "binary" and models.curves:
        figs["fig-roc"] = plots.roc_figure(models.curves)
        figs["fig-pr"] = plots.pr_figure(models.curves)
    if goals.task == "binary":
        if models.calibration is not None:
            figs["fig-calibration"] = plots.calibration_figure(models.calibration, _winner(doc) or "champion")
        if models.confusion is not None:
            figs["fig-confusion"] = plots.confusion_figure(models.confusion, goals.cost_unit)
    if models.abstention is not None:  # models.abstain (docs/abstention.md)
        figs["fig-coverage-risk"] = plots.coverage_risk_figure(models.abstention, unit=goals.cost_unit)
    if models.explanations and models.explanations.get("importance"):  # models.explain
        figs["fig-importance"] = plots.importance_figure(models.explanations)
    for column, rows in _slices_by_column(models.slices).items():
        figs[f"fig-slice-{_slug(column)}"] = plots.slice_figure(rows)
    if doc.monitoring.latest is not None:  # a rollout's variants, from the latest monitoring run
        figs.update(variant_figures(doc.monitoring.latest.variants))
    return figs


def render_design_document(doc: DesignDocument, path: str | Path) -> Path:
    """Write ``doc`` to ``path`` as one offline HTML file; return the path."""
    return write_page(
        _TEMPLATE,
        path,
        build_figures(doc),
        doc=doc,
        primary_metric=_primary_metric(doc),
        other_metrics=[c for c in _metric_columns(doc) if c[1] != _primary_metric(doc)],
        slice_ids={column: f"fig-slice-{_slug(column)}" for column in _slices_by_column(doc.models.slices)},
        winner=_winner(doc),
        saving=_saving(doc),
        scatter_caption=_scatter_caption(doc.models.curves),
    )


def write_page(template: str, path: str | Path, figures: Mapping[str, Any], **context: Any) -> Path:
    """Render ``template`` with its figures and plotly.js inlined once, and write it (the parent is made)."""
    html = (
        _environment()
        .get_template(template)
        .render(
            figures={key: figure_html(fig, key) for key, fig in figures.items()},
            plotlyjs=Markup(get_plotlyjs()),
            **context,
        )
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out


# -- helpers ------------------------------------------------------------------------------------


def _winner(doc: DesignDocument) -> str | None:
    return doc.models.decision.winner if doc.models.decision else None


def _scatter_caption(curves: Mapping[str, Curve]) -> str:
    """What the regression scatter shows: all test rows, or a sample of them (said so).

    >>> _scatter_caption({"m": Curve(n_rows=84346, y_true=[1.0], value=[1.0], n_sampled=2000)})
    'Predicted against actual values on a sample of 2,000 of 84,346 test rows.'
    """
    curve = next((c for c in curves.values() if c.value is not None), None)
    if curve is None:
        return ""
    n_rows = curve.n_rows or len(curve.value or [])
    n_sampled = curve.n_sampled if curve.n_sampled is not None else len(curve.value or [])
    what = "Predicted against actual values on"
    if n_sampled < n_rows:
        return f"{what} a sample of {n_sampled:,} of {n_rows:,} {curve.split} rows."
    return f"{what} all {n_rows:,} {curve.split} rows."


def _slices_by_column(rows: list[SliceRow]) -> dict[str, list[SliceRow]]:
    grouped: dict[str, list[SliceRow]] = {}
    for row in rows:
        grouped.setdefault(row.column, []).append(row)
    return grouped


def _metric_columns(doc: DesignDocument) -> list[tuple[str, str]]:
    """(split, metric) pairs present in the trade-off table, first-seen order, valid first."""
    seen: dict[tuple[str, str], None] = {}
    for split in ("valid", "test"):
        for row in doc.models.tradeoff:
            for metric in getattr(row, split):
                seen[(split, metric)] = None
    return list(seen)


def _primary_metric(doc: DesignDocument) -> str | None:
    """The metric the decision ranked by (the goals' metric), else the first one measured.

    >>> from mlsd.report.document import Goals
    >>> _primary_metric(DesignDocument(name="x", goals=Goals(task="binary", metric="roc_auc")))
    'roc_auc'
    """
    columns = [metric for _, metric in _metric_columns(doc)]
    if doc.goals.metric and (doc.goals.metric in columns or not columns):
        return doc.goals.metric
    return columns[0] if columns else None


def _saving(doc: DesignDocument) -> float | None:
    """Relative cost saving of the champion over the baseline (0.25 = 25 % cheaper)."""
    ours, base = doc.goals.cost_per_1000, doc.goals.baseline_cost_per_1000
    if ours is None or base is None or base == 0:
        return None
    saving = 1.0 - ours / base
    return saving if math.isfinite(saving) else None


def _missing(value: Any) -> bool:
    # NaN comes from degenerate measurements (a one-class slice, an empty split)
    return value is None or (isinstance(value, float) and math.isnan(value))


# One formatting rule for the tables and the figure titles, so a number reads the same in both.
_num = plots.format_number


def _pct(value: Any, digits: int = 1) -> str:
    return "—" if _missing(value) else f"{100 * float(value):.{digits}f}%"


def _interval(value: Any, digits: int = 3) -> Markup:
    if value is None or _missing(value.value):
        return Markup("—")
    text = Markup("{}").format(f"{value.value:.{digits}f}")
    if not _missing(value.low) and not _missing(value.high):
        text += Markup(' <span class="ci">[{}, {}]</span>').format(
            f"{value.low:.{digits}f}", f"{value.high:.{digits}f}"
        )
    return text


def _template_source(name: str) -> str:
    # Package data, read through importlib.resources so it also works from a wheel or a zip.
    return resources.files("mlsd").joinpath("templates", name).read_text(encoding="utf-8")


def _environment() -> Environment:
    env = Environment(
        loader=FunctionLoader(_template_source),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters: dict[str, Callable[..., Any]] = {"num": _num, "pct": _pct, "interval": _interval, "slug": _slug}
    env.filters.update(filters)
    return env

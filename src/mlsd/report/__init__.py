"""The design document: one offline HTML file rendered from what the build measured.

The orchestrator fills a :class:`DesignDocument` (five segments: goals, data, features,
models, monitoring) and :func:`render_design_document` writes it as a self-contained HTML
page (plotly.js inlined once, no network needed). The figures come from
:mod:`mlsd.report.plots`, one function per figure.

>>> from mlsd.report import DesignDocument, Goals
>>> DesignDocument(name="demo", goals=Goals(task="binary")).goals.task
'binary'
"""

from __future__ import annotations

from mlsd.report.document import (
    Calibration,
    CostCurve,
    Curve,
    Data,
    Decision,
    DesignDocument,
    Feature,
    Features,
    Goals,
    Interval,
    LeakageFinding,
    Models,
    Monitoring,
    SchemaColumn,
    SliceRow,
    Source,
    Split,
    Stakeholder,
    TimelineRow,
    TradeoffRow,
)
from mlsd.report.render import build_figures, render_design_document

__all__ = [
    "Calibration",
    "CostCurve",
    "Curve",
    "Data",
    "Decision",
    "DesignDocument",
    "Feature",
    "Features",
    "Goals",
    "Interval",
    "LeakageFinding",
    "Models",
    "Monitoring",
    "SchemaColumn",
    "SliceRow",
    "Source",
    "Split",
    "Stakeholder",
    "TimelineRow",
    "TradeoffRow",
    "build_figures",
    "render_design_document",
]

"""The design document and the monitoring report: offline HTML rendered from measurements.

The orchestrator fills a :class:`DesignDocument` (five segments: goals, data, features,
models, monitoring) and :func:`render_design_document` writes it as a self-contained HTML
page (plotly.js inlined once, no network needed). The figures come from
:mod:`mlsd.report.plots`, one function per figure. :func:`render_monitor_report` writes a
monitoring run (the plain dict of ``MonitorResult.to_dict()``) as the same kind of page, with
drift over time.

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
    DriftRow,
    Feature,
    Features,
    Goals,
    Interval,
    LeakageFinding,
    Models,
    Monitoring,
    MonitoringRun,
    SchemaColumn,
    SliceRow,
    Source,
    Split,
    Stakeholder,
    TimelineRow,
    TradeoffRow,
)
from mlsd.report.monitor import build_monitor_figures, render_monitor_report
from mlsd.report.render import build_figures, render_design_document

__all__ = [
    "Calibration",
    "CostCurve",
    "Curve",
    "Data",
    "Decision",
    "DesignDocument",
    "DriftRow",
    "Feature",
    "Features",
    "Goals",
    "Interval",
    "LeakageFinding",
    "Models",
    "Monitoring",
    "MonitoringRun",
    "SchemaColumn",
    "SliceRow",
    "Source",
    "Split",
    "Stakeholder",
    "TimelineRow",
    "TradeoffRow",
    "build_figures",
    "build_monitor_figures",
    "render_design_document",
    "render_monitor_report",
]

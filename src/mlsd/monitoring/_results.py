"""The result of a monitoring run: windows, the overall entry and alerts; JSON round-trips.

:class:`MonitorResult` is what :func:`mlsd.monitoring.monitor.run_monitor` returns.
:meth:`MonitorResult.to_dict` is plain JSON (ISO times, ``None`` for NaN), the input of the HTML
report (:func:`mlsd.report.monitor.render_monitor_report`), and :meth:`MonitorResult.from_dict`
reads it back.

>>> start = pd.Timestamp("2013-12-09", tz="UTC")
>>> alert = Alert("min_roc_auc", start, 0.51, 0.65, "ROC AUC 0.51 < limit 0.65")
>>> alert.to_dict()["window_start"]
'2013-12-09T00:00:00+00:00'
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from mlsd.monitoring._json import jsonable
from mlsd.monitoring.drift import DriftResult, FeatureDrift
from mlsd.monitoring.label_lag import LabelLag
from mlsd.monitoring.performance import PerformanceResult
from mlsd.monitoring.quality import QualityResult
from mlsd.monitoring.slo import SloResult
from mlsd.monitoring.text import TextWatch
from mlsd.monitoring.variants import VariantReport

__all__ = ["Alert", "MonitorResult", "WindowResult"]


def _iso(t: pd.Timestamp | None) -> str | None:
    return None if t is None else pd.Timestamp(t).isoformat()


def _ts(v: Any) -> pd.Timestamp | None:
    return None if v is None else pd.Timestamp(v)


@dataclasses.dataclass
class Alert:
    """One breached limit: ``value`` against ``limit`` in the window starting at ``window_start``."""

    name: str
    window_start: pd.Timestamp | None
    value: float
    limit: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        return jsonable({**dataclasses.asdict(self), "window_start": _iso(self.window_start)})


@dataclasses.dataclass
class WindowResult:
    """Everything measured on one window (``start``/``end`` bound it: start included, end excluded)."""

    start: pd.Timestamp | None
    end: pd.Timestamp | None
    n: int
    drift: DriftResult | None
    prediction_drift: FeatureDrift | None
    quality: QualityResult
    performance: PerformanceResult
    slo: SloResult | None = None
    #: what the drift was compared with: "training", "window <start>", or why nothing ("none (...)")
    reference: str | None = "training"
    #: one per features.text column: length, OOV rate, embedding drift (mlsd.monitoring.text)
    text: list[TextWatch] = dataclasses.field(default_factory=list)
    #: label delays and maturity (monitoring.label_maturity); an immature window is not judged
    label_lag: LabelLag | None = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "start": _iso(self.start),
                "end": _iso(self.end),
                "n": self.n,
                "drift": None if self.drift is None else self.drift.to_dict(),
                "prediction_drift": None
                if self.prediction_drift is None
                else dataclasses.asdict(self.prediction_drift),
                "quality": self.quality.to_dict(),
                "performance": self.performance.to_dict(),
                "slo": None if self.slo is None else self.slo.to_dict(),
                "reference": self.reference,
                "text": [t.to_dict() for t in self.text],
                "label_lag": None if self.label_lag is None else self.label_lag.to_dict(),
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowResult:
        return cls(
            start=_ts(data["start"]),
            end=_ts(data["end"]),
            n=int(data["n"]),
            drift=None if data["drift"] is None else _drift_from_dict(data["drift"]),
            prediction_drift=None if data["prediction_drift"] is None else _feature(data["prediction_drift"]),
            quality=QualityResult.from_dict(data["quality"]),
            performance=PerformanceResult.from_dict(data["performance"]),
            slo=None if data["slo"] is None else SloResult.from_dict(data["slo"]),
            reference=data.get("reference", "training"),
            text=[TextWatch.from_dict(t) for t in data.get("text", [])],
            label_lag=None if data.get("label_lag") is None else LabelLag.from_dict(data["label_lag"]),
        )


def _feature(d: Mapping[str, Any]) -> FeatureDrift:
    names = {f.name for f in dataclasses.fields(FeatureDrift)}
    floats = {"statistic", "effect_size", "threshold"}  # NaN was written as null
    values: dict[str, Any] = {
        k: (math.nan if v is None and k in floats else v) for k, v in d.items() if k in names
    }
    return FeatureDrift(**values)


def _drift_from_dict(d: Mapping[str, Any]) -> DriftResult:
    names = {f.name for f in dataclasses.fields(DriftResult)}
    kwargs = {k: v for k, v in d.items() if k in names}
    kwargs["features"] = [_feature(f) for f in d["features"]]
    return DriftResult(**kwargs)


@dataclasses.dataclass
class MonitorResult:
    """The windows, the overall entry and the alerts of one monitoring run; JSON round-trips."""

    windows: list[WindowResult]
    overall: WindowResult
    alerts: list[Alert]
    task: str
    window: str
    created_at: pd.Timestamp = dataclasses.field(default_factory=lambda: pd.Timestamp.now(tz="UTC"))
    limits: dict[str, float] = dataclasses.field(default_factory=dict)
    reference: str = "training"  # monitoring.reference
    #: predictions logged without an event time (windowed by their logging time instead)
    n_missing_event_time: int = 0
    warnings: list[str] = dataclasses.field(default_factory=list)
    #: the per-variant comparison of a rollout (several variants, shadow rows or rollout events
    #: in the period); ``None`` for a single model, and then absent from :meth:`to_dict`
    variants: VariantReport | None = None

    @property
    def fired(self) -> bool:
        """At least one alert fired (the CLI exits 1)."""
        return bool(self.alerts)

    def top_drifted(self, n: int = 10) -> pd.DataFrame:
        """Features ranked by their largest effect size over the windows (for the terminal summary).

        Columns: ``column, kind, method, max_effect_size, n_drifted_windows`` (material drift),
        ``n_detected_windows`` (significant after the correction), ``n_windows, worst_window``.
        """
        rows = [
            {"window": w.start, **dataclasses.asdict(f)}
            for w in self.windows
            if w.drift is not None
            for f in w.drift.features
        ]
        cols = [
            "column",
            "kind",
            "method",
            "max_effect_size",
            "n_drifted_windows",
            "n_detected_windows",
            "n_windows",
            "worst_window",
        ]
        if not rows:
            return pd.DataFrame(columns=cols)
        df = pd.DataFrame(rows)
        worst = df.loc[df.groupby("column")["effect_size"].idxmax()].set_index("column")
        out = pd.DataFrame(
            {
                "kind": worst["kind"],
                "method": worst["method"],
                "max_effect_size": worst["effect_size"],
                "n_drifted_windows": df.groupby("column")["drifted"].sum().astype(int),
                "n_detected_windows": df.groupby("column")["detected"].sum().astype(int),
                "n_windows": df.groupby("column").size(),
                "worst_window": worst["window"],
            }
        )
        out = out.sort_values("max_effect_size", ascending=False).head(n)
        return out.rename_axis("column").reset_index()[cols]

    def to_dict(self) -> dict[str, Any]:
        out = {
            "task": self.task,
            "window": self.window,
            "created_at": _iso(self.created_at),
            "limits": jsonable(self.limits),
            "reference": self.reference,
            "n_missing_event_time": self.n_missing_event_time,
            "warnings": list(self.warnings),
            "fired": self.fired,
            "alerts": [a.to_dict() for a in self.alerts],
            "overall": self.overall.to_dict(),
            "windows": [w.to_dict() for w in self.windows],
        }
        if self.variants is not None:
            out["variants"] = self.variants.to_dict()
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorResult:
        return cls(
            windows=[WindowResult.from_dict(w) for w in data["windows"]],
            overall=WindowResult.from_dict(data["overall"]),
            alerts=[Alert(**{**a, "window_start": _ts(a["window_start"])}) for a in data["alerts"]],
            task=data["task"],
            window=data["window"],
            created_at=pd.Timestamp(data["created_at"]),
            limits=dict(data.get("limits") or {}),
            reference=data.get("reference", "training"),
            n_missing_event_time=int(data.get("n_missing_event_time", 0)),
            warnings=list(data.get("warnings") or []),
            variants=None if data.get("variants") is None else VariantReport.from_dict(data["variants"]),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> MonitorResult:
        return cls.from_dict(json.loads(text))

"""One monitoring run over the prediction log: windows of drift, quality, performance, SLOs; alerts.

:func:`run_monitor` cuts the logged predictions into windows of ``spec.window`` (e.g. ``1d``,
``1w``) on their ``event_time`` (``logged_at`` where the row has none) and measures per window:

- **feature drift**: :func:`mlsd.monitoring.drift.detect_drift` over the reference's feature
  columns (the features the model reads; derived ones are computed from the logged inputs with
  ``derive``, see :mod:`.columns`) with the design's method, per-column overrides, correction,
  alpha and effect thresholds, in two tiers: detected (significant after the correction) and
  material (detected and at or above the effect threshold);
- **prediction drift**: the same test on the ``score`` column, reported apart from features;
- **text watches** of each ``features.text`` column (:mod:`.text`): length, out-of-vocabulary
  rate and embedding drift (``mmd``), against the training reference only;
- **data quality** of every schema column (:mod:`.quality`), **performance** on the rows with
  feedback (:mod:`.performance`);
- **SLOs** (:mod:`.slo`) from the request log.

Window alignment: window ``k`` covers ``[origin + k * size, origin + (k + 1) * size)`` where the
origin is the Unix epoch (1970-01-01 00:00 UTC), or Monday 1970-01-05 when the size is a whole
number of weeks, so daily windows start at midnight UTC and weekly ones on Mondays. Windows
without rows are skipped. An ``overall`` entry measures every row at once.

SLOs and time: a replay sends months of event time in minutes of wall time, so request
``logged_at`` says nothing about event-time windows. SLOs are therefore computed once over the
whole request frame (in ``overall``), and per window (requests whose ``logged_at`` falls in the
window) only when the requests span at least one window of wall time (live traffic);
otherwise a window's ``slo`` is ``None``.

References (``spec.reference``): ``training`` compares every window with the build's reference
statistics; ``previous_window`` with the logged traffic of the window just before it (window
``k - 1``, empty windows included: then there is nothing to compare with); and
``same_period_last_year`` with the window holding the same instant one calendar year earlier.
A window without a reference gets ``drift = None`` and says why in ``reference``; the overall
entry has a drift only against ``training``. Performance is always judged on the outcomes.

Event time: rows logged without one (the request did not carry ``data.time``) are windowed by
``logged_at``, which after a replay piles months of traffic into one window. The result counts
them (``n_missing_event_time``) and carries a warning the CLI and the report show.

Alerts come from ``spec.alerts`` (name -> limit, see :data:`KNOWN_ALERTS`); each breach in a
window is one :class:`Alert`. SLO alerts are also judged on the ``overall`` entry (its
``window_start`` is ``None``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlsd.data import Schema
from mlsd.design import MonitoringSpec, parse_duration
from mlsd.errors import DataError, DesignError
from mlsd.goals import CostMatrix
from mlsd.monitoring._results import Alert, MonitorResult, WindowResult
from mlsd.monitoring.columns import with_derived
from mlsd.monitoring.drift import DEFAULT_THRESHOLDS, DRIFT_METHODS, DriftResult, FeatureDrift, detect_drift
from mlsd.monitoring.label_lag import label_lag
from mlsd.monitoring.performance import labelled_performance
from mlsd.monitoring.quality import data_quality
from mlsd.monitoring.reference import ReferenceStatistics
from mlsd.monitoring.slo import service_levels
from mlsd.monitoring.text import TextWatch, watch_text

__all__ = [
    "KNOWN_ALERTS",
    "REFERENCE_MODES",
    "Alert",
    "MonitorResult",
    "WindowResult",
    "assign_windows",
    "check_alert_names",
    "list_alerts",
    "run_monitor",
]

_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_MONDAY = pd.Timestamp("1970-01-05", tz="UTC")
_SCORE = "score"
_SLO_ALERTS = ("max_p99_latency_ms", "max_error_rate")


def _abs(v: float | None) -> float | None:
    return None if v is None else abs(v)


#: alert name -> (what it measures, direction, value of a window entry or None when unmeasured)
KNOWN_ALERTS: dict[str, tuple[str, str, Callable[[WindowResult], float | None]]] = {
    "max_drifted_share": (
        "share of drifted features",
        "max",
        lambda w: None if w.drift is None else w.drift.share_drifted,
    ),
    "max_detected_share": (
        "share of features with detected drift",
        "max",
        lambda w: None if w.drift is None else w.drift.share_detected,
    ),
    "max_prediction_drift": (
        "prediction drift (score effect size)",
        "max",
        lambda w: None if w.prediction_drift is None else w.prediction_drift.effect_size,
    ),
    "min_roc_auc": ("ROC AUC", "min", lambda w: w.performance.roc_auc),
    "max_ece": ("expected calibration error", "max", lambda w: w.performance.ece),
    "max_label_drift": ("label drift (|Cohen's h|)", "max", lambda w: _abs(w.performance.label_drift_effect)),
    "max_rmse": ("RMSE", "max", lambda w: w.performance.rmse),
    "max_mae": ("MAE", "max", lambda w: w.performance.mae),
    "max_missing_rate_increase": (
        "missing-rate increase",
        "max",
        lambda w: w.quality.max_missing_rate_increase if w.n else None,
    ),
    "max_unseen_category_rate": (
        "share of rows with an unseen category",
        "max",
        lambda w: w.quality.max_unseen_category_rate if w.n else None,
    ),
    "max_p99_latency_ms": ("p99 latency (ms)", "max", lambda w: None if w.slo is None else w.slo.p99_ms),
    "max_error_rate": ("5xx error rate", "max", lambda w: None if w.slo is None else w.slo.error_rate),
}


# Alerts on measures only one task has (the positive-class score and a label rate for binary,
# errors of a numeric prediction for regression): for other tasks they would never fire, so a
# design naming them is refused instead of silently idle.
_TASK_ALERTS = {
    "min_roc_auc": "binary",
    "max_ece": "binary",
    "max_label_drift": "binary",
    "max_rmse": "regression",
    "max_mae": "regression",
}

#: what each window's drift is compared with (``monitoring.reference``, see the module docstring)
REFERENCE_MODES = ("training", "previous_window", "same_period_last_year")


def list_alerts(task: str | None = None) -> list[str]:
    """The alert names :func:`run_monitor` knows, or those it can measure for ``task``.

    >>> "min_roc_auc" in list_alerts("binary"), "min_roc_auc" in list_alerts("regression")
    (True, False)
    >>> "max_rmse" in list_alerts("regression"), "max_rmse" in list_alerts("binary")
    (True, False)
    """
    return [n for n in KNOWN_ALERTS if task is None or _TASK_ALERTS.get(n, task) == task]


def check_alert_names(alerts: Mapping[str, float], task: str | None = None) -> None:
    """Raise :class:`DesignError` naming ``monitoring.alerts.<name>`` for an unknown alert,
    or (with ``task``) one that cannot be measured for that task.

    >>> check_alert_names({"max_drifted_share": 0.3})
    >>> check_alert_names({"max_drifted": 0.3})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlsd.errors.DesignError: monitoring.alerts.max_drifted: unknown alert; did you mean max_drifted_share? \
(received 'max_drifted'; expected one of: max_drifted_share, ...
    >>> check_alert_names({"max_ece": 0.1}, task="regression")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlsd.errors.DesignError: monitoring.alerts.max_ece: the alert max_ece measures a binary task ...
    """
    import difflib

    for name in alerts:
        if name not in KNOWN_ALERTS:
            close = difflib.get_close_matches(str(name), list(KNOWN_ALERTS), n=1)
            raise DesignError(
                "unknown alert" + (f"; did you mean {close[0]}?" if close else ""),
                field=f"monitoring.alerts.{name}",
                received=name,
                expected="one of: " + ", ".join(KNOWN_ALERTS),
            )
        if task is not None and name not in list_alerts(task):
            raise DesignError(
                f"the alert {name} measures a {_TASK_ALERTS[name]} task and never fires for a {task} task",
                field=f"monitoring.alerts.{name}",
                received=name,
                expected=f"an alert for {task}, one of: " + ", ".join(list_alerts(task)),
            )


def assign_windows(times: pd.Series, size: dt.timedelta) -> pd.Series:
    """The start of the window holding each time (see the module docstring for the alignment).

    >>> t = pd.Series(pd.to_datetime(["2013-11-01 10:00", "2013-11-04 00:00", "2013-11-10 23:59"], utc=True))
    >>> assign_windows(t, dt.timedelta(weeks=1)).dt.strftime("%a %Y-%m-%d").tolist()
    ['Mon 2013-10-28', 'Mon 2013-11-04', 'Mon 2013-11-04']
    """
    step = pd.Timedelta(size)
    if step <= pd.Timedelta(0):
        raise DesignError("the window must be positive", field="monitoring.window", received=str(size))
    origin = _MONDAY if step % pd.Timedelta(weeks=1) == pd.Timedelta(0) else _EPOCH
    t = pd.to_datetime(times, utc=True)
    return origin + ((t - origin) // step) * step


def _event_times(frame: pd.DataFrame) -> pd.Series:
    if "event_time" in frame.columns:
        t = pd.to_datetime(frame["event_time"], utc=True)
        if "logged_at" in frame.columns:
            logged = pd.to_datetime(frame["logged_at"], utc=True)
            t = t.where(t.notna(), logged.astype(t.dtype))  # one time unit (ns or us) for both
        return t
    if "logged_at" in frame.columns:
        return pd.to_datetime(frame["logged_at"], utc=True)
    raise DataError(
        "the prediction frame has no time column",
        field="event_time",
        received=list(frame.columns)[:12],
        expected="event_time or logged_at (the columns of PredictionLog.read_predictions)",
    )


def _reference_missing(reference: ReferenceStatistics) -> dict[str, float]:
    getter = getattr(reference, "missing_rates", None)
    if callable(getter):
        return dict(getter())
    return dict(getter or {})


_DRIFT_FIELDS = {
    "method": "monitoring.drift",
    "overrides": "monitoring.drift_overrides",
    "alpha": "monitoring.alpha",
}


def _design_field(field: str | None) -> str | None:
    if not field:
        return field
    head, _, tail = field.partition(".")
    return _DRIFT_FIELDS[head] + (f".{tail}" if tail else "") if head in _DRIFT_FIELDS else field


class _Measure:
    """Measures one frame of predictions with the run's fixed settings."""

    def __init__(
        self,
        reference: ReferenceStatistics,
        schema: Schema,
        spec: MonitoringSpec,
        task: str,
        positive_class: Any,
        costs: CostMatrix | None,
        n_resamples: int,
    ) -> None:
        self.reference, self.schema, self.spec, self.task = reference, schema, spec, task
        self.positive_class, self.costs, self.n_resamples = positive_class, costs, n_resamples
        self.features = [c for c in [*reference.numeric, *reference.categorical] if c != _SCORE]
        self.has_score = _SCORE in reference.numeric
        self.missing = _reference_missing(reference)
        # monitoring.effect_threshold replaces every method's default; effect_thresholds a column's
        self.thresholds = (
            None if spec.effect_threshold is None else dict.fromkeys(DRIFT_METHODS, spec.effect_threshold)
        )
        unknown = [c for c in spec.effect_thresholds if c not in self.features]
        if unknown:
            raise DesignError(
                "not a monitored column",
                field=f"monitoring.effect_thresholds.{unknown[0]}",
                received=unknown[0],
                expected="one of the monitored columns: " + ", ".join(self.features),
            )

    def _detect(
        self, reference: ReferenceStatistics, frame: pd.DataFrame, columns: list[str], correction: str
    ) -> DriftResult:
        spec = self.spec
        try:
            return detect_drift(
                reference,
                frame,
                method=spec.drift,
                # a feature missing from a window's reference is not compared; a name that is no
                # feature at all stays, so detect_drift refuses it
                overrides={
                    k: v for k, v in spec.drift_overrides.items() if k in columns or k not in self.features
                },
                correction=correction,
                alpha=spec.alpha,
                columns=columns,
                thresholds=self.thresholds,
                column_thresholds=spec.effect_thresholds,
                missing="skip",  # an absent column is listed with a note; quality reports the break
            )
        except DesignError as exc:
            # name the design's own fields (monitoring.drift_overrides.temp), not the function's
            raise DesignError(
                exc.message,
                field=_design_field(exc.field),
                received=exc.received,
                expected=exc.expected,
            ) from exc

    def window_reference(self, frame: pd.DataFrame) -> ReferenceStatistics:
        """Reference statistics of a window of logged traffic (rolling and seasonal references)."""
        numeric = [c for c in self.reference.numeric if c != _SCORE and c in frame.columns]
        categorical = [c for c in self.reference.categorical if c in frame.columns]
        scores = None
        if self.has_score and _SCORE in frame.columns:
            scores = pd.to_numeric(frame[_SCORE], errors="coerce").to_numpy(dtype="float64")
        return ReferenceStatistics.from_frame(
            frame.reset_index(drop=True),
            numeric=numeric,
            categorical=categorical,
            scores=scores,
            seed=self.reference.seed,
        )

    def drift(
        self, frame: pd.DataFrame, reference: ReferenceStatistics | None
    ) -> tuple[DriftResult | None, FeatureDrift | None]:
        if not len(frame) or reference is None:
            return None, None
        known = {*reference.numeric, *reference.categorical}
        columns = [c for c in self.features if c in known]
        features = self._detect(reference, frame, columns, self.spec.correction) if columns else None
        prediction = None
        if _SCORE in reference.numeric and _SCORE in frame.columns:
            prediction = self._detect(reference, frame, [_SCORE], "none").features[0]
        return features, prediction

    def text(self, frame: pd.DataFrame, reference: ReferenceStatistics | None) -> list[TextWatch]:
        """Length, OOV and embedding drift (mmd) of each features.text column, against training."""
        if not len(frame) or reference is None or not reference.text:
            return []
        threshold = (self.thresholds or DEFAULT_THRESHOLDS)["mmd"]
        return [
            watch_text(ref, frame[column], threshold=threshold, alpha=self.spec.alpha)
            for column, ref in reference.text.items()
            if column in frame.columns
        ]

    def __call__(
        self,
        frame: pd.DataFrame,
        start: Any,
        end: Any,
        requests: pd.DataFrame | None,
        constraints: Mapping,
        reference: tuple[ReferenceStatistics | None, str],
        lag: Any = None,
        judged: pd.Series | None = None,
    ) -> WindowResult:
        drift, prediction = self.drift(frame, reference[0])
        labelled = frame
        if judged is not None and not judged.all():  # immature rows: their labels are still arriving
            labelled = frame.assign(outcome=frame["outcome"].where(judged.to_numpy(), None))
        return WindowResult(
            text=self.text(frame, reference[0]),
            start=start,
            end=end,
            n=len(frame),
            drift=drift,
            prediction_drift=prediction,
            quality=data_quality(frame, self.schema, reference_missing=self.missing),
            performance=labelled_performance(
                labelled,
                task=self.task,
                reference_label_rate=self.reference.label_rate,
                positive_class=self.positive_class,
                costs=self.costs,
                n_resamples=self.n_resamples,
            ),
            slo=None if requests is None else service_levels(requests, constraints),
            reference=reference[1],
            label_lag=lag,
        )


def _windows(predictions: pd.DataFrame, starts: pd.Series) -> dict[pd.Timestamp, pd.DataFrame]:
    """The rows of each window, oldest first, as ``predictions.groupby(starts)`` gives them.

    A log's rows come in time order, so each window is a slice of the frame (no copy of the
    frame per window, as the groupby made); other frames are put in window order once.
    """
    index = pd.DatetimeIndex(starts)
    keys = index.asi8
    rows = np.flatnonzero(~index.isna())  # groupby drops rows without a time
    order = rows[np.argsort(keys[rows], kind="stable")]
    in_order = len(order) == len(keys) and bool((np.diff(keys) >= 0).all())
    ordered = predictions if in_order else predictions.take(order)
    sorted_keys = keys[order]
    if not len(sorted_keys):
        return {}
    edges = [0, *(np.flatnonzero(np.diff(sorted_keys)) + 1).tolist(), len(sorted_keys)]
    return {
        pd.Timestamp(starts.iloc[order[lo]]): ordered.iloc[lo:hi]
        for lo, hi in itertools.pairwise(edges)
    }


def _reference_start(mode: str, start: pd.Timestamp, step: pd.Timedelta) -> pd.Timestamp:
    """The start of the window a rolling or seasonal reference reads, for the window at ``start``."""
    if mode == "previous_window":
        return start - step
    # The window holding the *middle* of this one a calendar year earlier: a year is not a whole
    # number of weeks, so a Monday a year back is a Sunday, and the window holding the start
    # would be 53 weeks back and share one day of dates; the middle's window shares most of them.
    a_year_ago = pd.Series([start + step / 2 - pd.DateOffset(years=1)])
    return pd.Timestamp(assign_windows(a_year_ago, step.to_pytimedelta()).iloc[0])


def _event_time_warning(predictions: pd.DataFrame, time_column: str | None) -> tuple[int, list[str]]:
    """How many predictions lack an event time, and the warning to print when any does."""
    n = len(predictions)
    if "event_time" in predictions.columns:
        missing = int(pd.to_datetime(predictions["event_time"], utc=True).isna().sum())
    else:
        missing = n
    # without data.time no request can carry an event time: windows of log time are the design
    if not missing or time_column is None:
        return missing, []
    return missing, [
        f"{missing:,} of {n:,} predictions have no event time: their requests carried no "
        f"{time_column!r} (the design's data.time), so they are windowed by the time the server "
        "logged them, not by when the events happened (mlsd replay sends it; live clients must too)"
    ]


def _alerts(entries: list[WindowResult], overall: WindowResult, limits: Mapping[str, float]) -> list[Alert]:
    out: list[Alert] = []
    for name, limit in limits.items():
        what, direction, get = KNOWN_ALERTS[name]
        targets = [*entries, overall] if name in _SLO_ALERTS else entries
        for w in targets:
            value = get(w)
            if value is None or not math.isfinite(value):
                continue
            if (value > limit) if direction == "max" else (value < limit):
                where = "overall" if w is overall else f"window {pd.Timestamp(w.start):%Y-%m-%d %H:%M}"
                sign = ">" if direction == "max" else "<"
                out.append(
                    Alert(
                        name=name,
                        window_start=None if w is overall else w.start,
                        value=float(value),
                        limit=float(limit),
                        message=f"{what} {value:.4g} {sign} limit {limit:g} ({where})",
                    )
                )
    return out


def run_monitor(
    reference: ReferenceStatistics,
    schema: Schema,
    predictions: pd.DataFrame,
    requests: pd.DataFrame,
    spec: MonitoringSpec,
    *,
    task: str,
    constraints: Mapping[str, float] | None = None,
    window: str | None = None,
    positive_class: Any = None,
    costs: CostMatrix | None = None,
    n_resamples: int = 200,
    derive: Mapping[str, str] | None = None,
    time_column: str | None = None,
) -> MonitorResult:
    """Measure ``predictions`` (``PredictionLog.read_predictions``) and ``requests`` per window.

    ``window`` overrides ``spec.window``; ``constraints`` are the design's ``goals.constraints``
    (SLO objectives); ``costs`` prices the logged decisions; ``n_resamples`` sets the bootstrap
    of the ROC AUC interval (0 = point value only); ``derive`` (the design's ``data.derive``)
    computes derived features from the logged inputs, so their drift is measured too;
    ``time_column`` (``data.time``) names the field a missing event time should have come in.
    """
    check_alert_names(spec.alerts, task)
    if spec.reference not in REFERENCE_MODES:
        raise DesignError(
            "unknown reference",
            field="monitoring.reference",
            received=spec.reference,
            expected="one of: " + ", ".join(REFERENCE_MODES),
        )
    text = window or spec.window
    try:
        size = parse_duration(text)
    except ValueError as exc:
        raise DesignError(
            str(exc), field="monitoring.window", received=text, expected="e.g. 1d or 1w"
        ) from exc
    if "logged_at" not in requests.columns:
        raise DataError(
            "the request frame lacks a column",
            field="logged_at",
            received=list(requests.columns),
            expected="the columns of PredictionLog.read_requests",
        )
    constraints = dict(constraints or {})
    measure = _Measure(reference, schema, spec, task, positive_class, costs, n_resamples)
    if derive:
        predictions = with_derived(predictions, derive)
    n_missing_time, warnings = _event_time_warning(predictions, time_column)
    times = _event_times(predictions)
    starts = assign_windows(times, size)
    step = pd.Timedelta(size)
    req_times = pd.to_datetime(requests["logged_at"], utc=True) if len(requests) else None
    live = req_times is not None and (req_times.max() - req_times.min()) >= step
    parts = _windows(predictions, starts)
    window_refs: dict[pd.Timestamp, ReferenceStatistics] = {}

    def reference_for(start: pd.Timestamp) -> tuple[ReferenceStatistics | None, str]:
        if spec.reference == "training":
            return reference, "training"
        ref_start = _reference_start(spec.reference, start, step)
        if ref_start not in parts:
            return None, f"none (no logged rows in the window of {ref_start:%Y-%m-%d %H:%M})"
        if ref_start not in window_refs:
            window_refs[ref_start] = measure.window_reference(parts[ref_start])
        return window_refs[ref_start], f"window {ref_start:%Y-%m-%d %H:%M}"

    # monitoring.label_maturity: a window is judged on performance once its labels had time to arrive
    maturity = None if spec.label_maturity is None else pd.Timedelta(parse_duration(spec.label_maturity))
    as_of = times.max() if len(times) else None
    judged = pd.Series(True, index=predictions.index)
    entries = []
    for start, part in parts.items():
        window_requests = None
        if live:
            window_requests = requests[(req_times >= start) & (req_times < start + step)]
        lag = label_lag(part, end=start + step, as_of=as_of, maturity=maturity)
        if lag.mature is False:
            judged[part.index] = False
        entries.append(
            measure(
                part,
                start,
                start + step,
                window_requests,
                constraints,
                reference_for(start),
                lag,
                judged[part.index],
            )
        )
    # a rolling or seasonal reference is defined per window; the whole period has none
    overall_reference = (reference, "training") if spec.reference == "training" else (None, "per window only")
    overall = measure(
        predictions,
        entries[0].start if entries else None,
        entries[-1].end if entries else None,
        requests,
        constraints,
        overall_reference,
        label_lag(predictions, end=None, as_of=as_of, maturity=None),
        judged,  # the overall performance reads the mature windows only
    )
    return MonitorResult(
        windows=entries,
        overall=overall,
        alerts=_alerts(entries, overall, spec.alerts),
        task=task,
        window=text,
        limits=dict(spec.alerts),
        reference=spec.reference,
        n_missing_event_time=n_missing_time,
        warnings=warnings,
    )

"""Per-variant monitoring of a rollout: volume, latency, scores, feedback, SRM, shadow, timeline.

:func:`compare_variants` reads the prediction log (``PredictionLog.read_predictions``: one row
per answered request, ``variant`` = the alias whose model answered, ``assigned_variant`` = the
alias routing chose, ``fallback`` = why another model answered), the shadow log
(``read_shadow``) and the rollout events (``read_events``) and measures:

- per variant (the alias that answered): requests and their share, latency p50/p99, the score's
  mean, quantiles and a histogram on edges shared by every variant (one plot overlays them);
  with feedback the labelled count, the decision accuracy and the design metric's cheap
  counterpart (ROC AUC for a binary task, RMSE and MAE for a regression); fallbacks both ways
  (requests routed to the variant but answered by another, and requests it answered for another);
- the **sample-ratio mismatch**: a chi-squared goodness-of-fit test
  (:func:`scipy.stats.chisquare`) of the requests routing *assigned* to each variant
  (``assigned_variant``, else ``variant``: a fallback moves who answered, not the assignment)
  against the intended ``weights``, the same test as the servers' :mod:`mlsd.rollout.srm`.
  A tiny p-value means the split is not the one intended: a bug in assignment or logging, and
  every comparison between the variants is suspect. Requests assigned to a variant without
  weight are left out of the test and named in a warning;
- **shadow**: per shadow variant, on the requests it scored beside the primary, the decision
  agreement, Pearson and Spearman correlation of the scores, the latency difference (shadow
  minus primary) at p50 and p99, and its errors;
- the **timeline**: the rollout events in time order, and the share of each variant's requests
  per time bin (how a canary's traffic moved).

Everything is vectorised over rows (group-bys, one ``np.histogram`` per variant). The shadow
comparison and the timeline are computed in :mod:`mlsd.monitoring._shadow_timeline`.

>>> import pandas as pd
>>> p = pd.DataFrame({"variant": ["champion"] * 6 + ["challenger"] * 4,
...                   "score": [.1, .2, .8, .9, .3, .7, .2, .6, .9, .4],
...                   "decision": [False, False, True, True, False, True, False, True, True, False],
...                   "outcome": [0, 0, 1, 1, 1, None, 0, 1, 0, None],
...                   "latency_ms": [5.0] * 10})
>>> r = compare_variants(p, task="binary", weights={"champion": 0.5, "challenger": 0.5})
>>> [(v.variant, v.requests, v.labelled, v.accuracy) for v in r.variants]
[('champion', 6, 5, 0.8), ('challenger', 4, 3, 0.6666666666666666)]
>>> round(r.srm_p_value, 4)  # 6 vs 4 of 10 at 50/50
0.5271
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlsd.errors import DataError, DesignError
from mlsd.monitoring._json import finite_or_none, jsonable
from mlsd.monitoring._shadow_timeline import (
    ShadowComparison,
    TimelineEvent,
    decision_text,
    event_timeline,
    shadow_comparisons,
    traffic_by_time,
)
from mlsd.monitoring.performance import _as_binary

__all__ = [
    "QUANTILES",
    "ShadowComparison",
    "TimelineEvent",
    "VariantReport",
    "VariantStats",
    "compare_variants",
    "has_variants",
    "sample_ratio_mismatch",
    "variants_from_log",
]

#: the score quantiles reported per variant
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_BINS = 20  # score histogram bins, shared by every variant
_TASKS = ("binary", "multiclass", "regression")


@dataclasses.dataclass
class VariantStats:
    """What one variant (the alias that answered) served in the period."""

    variant: str
    requests: int
    share: float | None
    intended_share: float | None = None
    assigned: int = 0  # requests routing assigned to this variant (answered by it or a fallback)
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    score_mean: float | None = None
    score_quantiles: dict[str, float | None] = dataclasses.field(default_factory=dict)
    histogram: list[int] = dataclasses.field(default_factory=list)  # on VariantReport.histogram_edges
    labelled: int = 0
    accuracy: float | None = None  # the logged decision against the outcome
    metric: str | None = None  # the design metric's counterpart: roc_auc (binary), rmse (regression)
    metric_value: float | None = None
    mae: float | None = None  # regression
    fallbacks: int = 0  # assigned to this variant, answered by another
    answered_for_others: int = 0  # answered by this variant for another that failed

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


@dataclasses.dataclass
class VariantReport:
    """The per-variant comparison of one monitoring period; :meth:`to_dict` is plain JSON."""

    task: str
    n: int
    variants: list[VariantStats]
    weights: dict[str, float] | None = None  # intended split (normalised), the SRM's null
    srm_p_value: float | None = None
    srm_counts: dict[str, int] = dataclasses.field(default_factory=dict)  # assigned counts tested
    srm_since: pd.Timestamp | None = None  # the SRM counts rows logged from then (the current step)
    histogram_edges: list[float] = dataclasses.field(default_factory=list)
    fallback_reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    shadow: list[ShadowComparison] = dataclasses.field(default_factory=list)
    timeline: list[TimelineEvent] = dataclasses.field(default_factory=list)
    #: requests per variant per time bin: {"starts": [iso...], "counts": {variant: [n...]}}
    traffic: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def srm_detected(self) -> bool:
        """The split differs from the intended one at the 0.001 level (the usual SRM alarm)."""
        return self.srm_p_value is not None and self.srm_p_value < 0.001

    def variant(self, name: str) -> VariantStats:
        """The stats of the variant ``name`` (KeyError when it served nothing)."""
        for v in self.variants:
            if v.variant == name:
                return v
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "task": self.task,
                "n": self.n,
                "variants": [v.to_dict() for v in self.variants],
                "weights": self.weights,
                "srm_p_value": self.srm_p_value,
                "srm_detected": self.srm_detected,
                "srm_counts": self.srm_counts,
                "srm_since": self.srm_since,
                "histogram_edges": self.histogram_edges,
                "fallback_reasons": self.fallback_reasons,
                "shadow": [s.to_dict() for s in self.shadow],
                "timeline": [e.to_dict() for e in self.timeline],
                "traffic": self.traffic,
                "warnings": list(self.warnings),
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariantReport:
        def ts(v: Any) -> pd.Timestamp | None:
            return None if v is None else pd.Timestamp(v)

        return cls(
            task=data["task"],
            n=int(data["n"]),
            variants=[VariantStats(**v) for v in data["variants"]],
            weights=data.get("weights"),
            srm_p_value=data.get("srm_p_value"),
            srm_counts=dict(data.get("srm_counts") or {}),
            srm_since=ts(data.get("srm_since")),
            histogram_edges=list(data.get("histogram_edges") or []),
            fallback_reasons=dict(data.get("fallback_reasons") or {}),
            shadow=[ShadowComparison(**s) for s in data.get("shadow") or []],
            timeline=[TimelineEvent(**{**e, "at": ts(e.get("at"))}) for e in data.get("timeline") or []],
            traffic=dict(data.get("traffic") or {}),
            warnings=list(data.get("warnings") or []),
        )


def has_variants(predictions: pd.DataFrame, shadow: pd.DataFrame | None, events: pd.DataFrame | None) -> bool:
    """Whether a period needs the per-variant section: more than one variant answered, or any
    shadow row or rollout event was logged.

    >>> has_variants(pd.DataFrame({"variant": ["champion", "champion"]}), None, None)
    False
    >>> has_variants(pd.DataFrame({"variant": ["champion", "b"]}), None, None)
    True
    """
    answered = predictions["variant"].dropna().nunique() if "variant" in predictions.columns else 0
    return (
        answered > 1 or (shadow is not None and len(shadow) > 0) or (events is not None and len(events) > 0)
    )


def sample_ratio_mismatch(counts: Mapping[str, int], weights: Mapping[str, float]) -> float | None:
    """The chi-squared p-value of the observed ``counts`` against the intended ``weights``.

    Over the variants of weight > 0 (normalised), as :func:`mlsd.rollout.srm.sample_ratio_mismatch`
    computes it for the servers: monitoring, a sibling stage library, may not import
    :mod:`mlsd.rollout`, so the same test is here. A variant counted despite no weight is left
    out (:func:`compare_variants` warns about it). ``None`` when fewer than two variants have a
    positive weight or none of them was counted: there is no split to test.

    >>> round(sample_ratio_mismatch({"a": 550, "b": 450}, {"a": 1, "b": 1}), 5)
    0.00157
    >>> round(sample_ratio_mismatch({"a": 550, "b": 450, "c": 7}, {"a": 1, "b": 1, "c": 0}), 5)
    0.00157
    >>> sample_ratio_mismatch({"a": 10}, {"a": 1}) is None
    True
    """
    positive = {k: float(w) for k, w in weights.items() if w is not None and np.isfinite(w) and float(w) > 0}
    if len(positive) < 2:
        return None
    names = list(positive)
    observed = np.array([counts.get(k, 0) for k in names], dtype=float)
    total = observed.sum()
    if total <= 0:
        return None
    share = np.array([positive[k] for k in names]) / sum(positive.values())
    return float(stats.chisquare(observed, f_exp=share * total).pvalue)


def _quantiles(values: pd.Series, groups: pd.Series, qs: Sequence[float]) -> pd.DataFrame:
    """(group x quantile) table of ``values`` (NaN dropped) per group."""
    ok = values.notna()
    if not ok.any():
        return pd.DataFrame()
    return values[ok].groupby(groups[ok], sort=False).quantile(list(qs)).unstack()


def _labelled_metrics(
    labelled: pd.DataFrame, task: str, positive_class: Any
) -> tuple[pd.Series, pd.Series, pd.Series, str | None]:
    """Per variant: decision accuracy, the metric counterpart, MAE (regression), and its name."""
    groups = labelled["variant"]
    empty = pd.Series(dtype=float)
    if labelled.empty:
        return (
            empty,
            empty,
            empty,
            ("rmse" if task == "regression" else "roc_auc" if task == "binary" else None),
        )
    if task == "regression":
        y = pd.to_numeric(labelled["outcome"], errors="coerce")
        s = pd.to_numeric(labelled["score"], errors="coerce")
        err = s - y
        rmse = np.sqrt((err**2).groupby(groups, sort=False).mean())
        mae = err.abs().groupby(groups, sort=False).mean()
        return pd.Series(dtype=float), rmse, mae, "rmse"
    if task == "multiclass":
        same = decision_text(labelled["decision"]) == decision_text(labelled["outcome"])
        return same.groupby(groups, sort=False).mean(), empty, empty, None
    y = pd.Series(_as_binary(labelled["outcome"], positive_class, "outcome"), index=labelled.index)
    accuracy = empty
    has_decision = labelled["decision"].notna()
    if has_decision.any():
        decided = labelled[has_decision]
        d = _as_binary(decided["decision"], positive_class, "decision", prefer_bool=True)
        hit = pd.Series(d == y[has_decision].to_numpy(), index=decided.index, dtype=float)
        accuracy = hit.groupby(decided["variant"], sort=False).mean()
    score = pd.to_numeric(labelled["score"], errors="coerce")
    auc = {}
    from sklearn.metrics import roc_auc_score

    # one AUC per variant: a handful of variants, each a vectorised sklearn call
    for name, idx in labelled.groupby("variant", sort=False).groups.items():
        ys, ss = y.loc[idx].to_numpy(), score.loc[idx].to_numpy(dtype=float)
        ok = np.isfinite(ss)
        ys, ss = ys[ok], ss[ok]
        if ys.size and 0 < ys.sum() < ys.size:
            auc[name] = float(roc_auc_score(ys, ss))
    return accuracy, pd.Series(auc, dtype=float), empty, "roc_auc"


def compare_variants(
    predictions: pd.DataFrame,
    *,
    shadow: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    weights: Mapping[str, float] | None = None,
    task: str,
    positive_class: Any = None,
    srm_since: Any = None,
    order: Sequence[str] | None = None,
) -> VariantReport:
    """Compare the variants of a period of the prediction log (see the module docstring).

    ``weights`` is the intended split (the rollout state's, else the design's ``traffic``) used by
    the SRM test, counted on the rows logged at or after ``srm_since`` when given (the split of
    the current canary step); ``order`` lists variants first (champion first), the others follow
    by volume.
    """
    if task not in _TASKS:
        raise DesignError("unknown task", field="goals.task", received=task, expected=", ".join(_TASKS))
    for col in ("variant", "score"):
        if col not in predictions.columns:
            raise DataError(
                "the prediction frame lacks a column",
                field=col,
                received=list(predictions.columns)[:14],
                expected="the columns of PredictionLog.read_predictions",
            )
    frame = predictions.assign(variant=predictions["variant"].fillna("(none)").astype(str))
    n = len(frame)
    counts = frame["variant"].value_counts()
    names = [v for v in (order or []) if v in counts.index]
    names += [v for v in counts.index if v not in names]
    assigned_col = (
        frame["assigned_variant"].where(frame["assigned_variant"].notna(), frame["variant"]).astype(str)
        if "assigned_variant" in frame.columns
        else frame["variant"]
    )
    fell_back = (
        frame["fallback"].notna() if "fallback" in frame.columns else pd.Series(False, index=frame.index)
    )

    score = pd.to_numeric(frame["score"], errors="coerce")
    finite = score[np.isfinite(score)]
    edges = np.histogram_bin_edges(finite, bins=_BINS) if len(finite) else np.array([])
    score_q = _quantiles(score, frame["variant"], QUANTILES)
    score_mean = score.groupby(frame["variant"]).mean()
    latency = pd.to_numeric(frame["latency_ms"], errors="coerce") if "latency_ms" in frame else None
    lat_q = _quantiles(latency, frame["variant"], (0.5, 0.99)) if latency is not None else pd.DataFrame()

    labelled = frame[frame["outcome"].notna()] if "outcome" in frame.columns else frame.iloc[:0]
    labelled_n = labelled["variant"].value_counts()
    if "decision" not in labelled.columns:
        labelled = labelled.assign(decision=None)
    accuracy, metric_values, mae, metric = _labelled_metrics(labelled, task, positive_class)

    assigned_n = assigned_col.value_counts()
    fallbacks_out = assigned_col[fell_back].value_counts()
    fallbacks_in = frame.loc[fell_back, "variant"].value_counts()
    normalised = None
    if weights:
        total_w = sum(float(w) for w in weights.values() if w and float(w) > 0)
        normalised = {k: (float(w) / total_w if total_w else 0.0) for k, w in weights.items()}

    def get(series: pd.Series, key: str) -> float | None:
        return finite_or_none(series.get(key)) if key in series.index else None

    def cell(table: pd.DataFrame, key: str, q: float) -> float | None:
        return finite_or_none(table.loc[key, q]) if key in table.index else None

    stats_rows = []
    for name in names:
        part = score[frame["variant"] == name]
        hist = np.histogram(part[np.isfinite(part)], bins=edges)[0].tolist() if len(edges) else []
        stats_rows.append(
            VariantStats(
                variant=name,
                requests=int(counts[name]),
                share=float(counts[name] / n) if n else None,
                intended_share=None if normalised is None else normalised.get(name, 0.0),
                assigned=int(assigned_n.get(name, 0)),
                latency_p50_ms=cell(lat_q, name, 0.5),
                latency_p99_ms=cell(lat_q, name, 0.99),
                score_mean=get(score_mean, name),
                score_quantiles={f"p{round(q * 100):02d}": cell(score_q, name, q) for q in QUANTILES},
                histogram=[int(c) for c in hist],
                labelled=int(labelled_n.get(name, 0)),
                accuracy=get(accuracy, name),
                metric=metric,
                metric_value=get(metric_values, name),
                mae=get(mae, name),
                fallbacks=int(fallbacks_out.get(name, 0)),
                answered_for_others=int(fallbacks_in.get(name, 0)),
            )
        )

    srm_p, srm_counts, since = None, {}, None
    if normalised:
        in_step = pd.Series(True, index=frame.index)
        if srm_since is not None and "logged_at" in frame.columns:
            since = pd.Timestamp(srm_since)
            since = since.tz_localize("UTC") if since.tzinfo is None else since.tz_convert("UTC")
            in_step = pd.to_datetime(frame["logged_at"], utc=True) >= since
        srm_counts = {str(k): int(v) for k, v in assigned_col[in_step].value_counts().items()}
        srm_p = sample_ratio_mismatch(srm_counts, normalised)

    warnings = []
    outside = {k: c for k, c in srm_counts.items() if c and not (normalised or {}).get(k)}
    if srm_p is not None and outside:
        warnings.append(
            "requests assigned to variants without weight in the intended split, left out of the "
            "sample-ratio test: "
            + ", ".join(f"{k} {c:,}" for k, c in outside.items())
            + " (the split changed within the period, or routing sent them there)"
        )
    if normalised and n and "assigned_variant" not in frame.columns:
        warnings.append(
            "the log has no assigned_variant column: the SRM test counts the variant that answered"
        )
    reasons = (
        frame.loc[fell_back, "fallback"].astype(str).value_counts()
        if "fallback" in frame.columns
        else pd.Series(dtype=int)
    )
    return VariantReport(
        task=task,
        n=n,
        variants=stats_rows,
        weights=normalised,
        srm_p_value=srm_p,
        srm_counts=srm_counts,
        srm_since=since,
        histogram_edges=[float(e) for e in edges],
        fallback_reasons={str(k): int(v) for k, v in reasons.items()},
        shadow=[] if shadow is None or shadow.empty else shadow_comparisons(shadow, task),
        timeline=[] if events is None else event_timeline(events),
        traffic=traffic_by_time(frame, names),
        warnings=warnings,
    )


def variants_from_log(
    log: Any,
    predictions: pd.DataFrame,
    *,
    task: str,
    weights: Mapping[str, float] | None = None,
    srm_since: Any = None,
    order: Sequence[str] | None = None,
    positive_class: Any = None,
    period_given: bool = False,
) -> VariantReport | None:
    """The per-variant comparison of ``predictions`` read from ``log`` (a ``PredictionLog``), or
    ``None`` when one model served alone (no second variant, shadow row or rollout event).

    The shadow rows are those of the requests judged (the predictions were chosen on event time,
    shadow rows carry only their logging time); with a period asked for (``period_given``) the
    events are those logged while its predictions were. ``weights``, ``srm_since`` and ``order``
    go to :func:`compare_variants` (the caller reads the intended split from the rollout state:
    monitoring does not import :mod:`mlsd.rollout`). A log without the rollout tables (an older
    store) gives the comparison of the answered variants alone.
    """
    shadow = log.read_shadow() if hasattr(log, "read_shadow") else None
    if shadow is not None and len(shadow) and "request_id" in predictions.columns:
        shadow = shadow[shadow["request_id"].isin(predictions["request_id"])]
    events = log.read_events() if hasattr(log, "read_events") else None
    if events is not None and len(events) and period_given and "logged_at" in predictions.columns:
        logged = pd.to_datetime(predictions["logged_at"], utc=True)
        at = pd.to_datetime(events["logged_at"], utc=True)
        events = events[(at >= logged.min()) & (at <= logged.max())]
    if not has_variants(predictions, shadow, events):
        return None
    return compare_variants(
        predictions,
        shadow=shadow,
        events=events,
        weights=weights,
        task=task,
        positive_class=positive_class,
        srm_since=srm_since,
        order=order,
    )

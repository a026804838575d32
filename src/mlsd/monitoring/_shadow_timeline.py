"""The shadow comparison and the timeline of a rollout, for :mod:`mlsd.monitoring.variants`.

Kept apart from :mod:`mlsd.monitoring.variants` (per-variant volume, latency, scores, feedback
and the sample-ratio test on the requests the variants *answered*) because these read other
rows: the shadow answers beside the primary answer of the same request, and the rollout events
with the traffic split per time bin. :func:`mlsd.monitoring.compare_variants` assembles both.

>>> decision_text(pd.Series([True, "true", 1, "0", 0.0])).tolist()
['true', 'true', 'true', 'false', 'false']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlsd.errors import DataError
from mlsd.monitoring._json import finite_or_none, jsonable

__all__ = [
    "ShadowComparison",
    "TimelineEvent",
    "decision_text",
    "event_timeline",
    "shadow_comparisons",
    "traffic_by_time",
]

# bins of the traffic-share timeline: about 100 requests each (a share of a handful of requests
# jumps about), between 6 and 48 bins
_TIME_BINS = (6, 48)
_PER_TIME_BIN = 100


@dataclasses.dataclass
class ShadowComparison:
    """A shadow variant against the primary answers of the same requests."""

    variant: str
    primary_variants: list[str]
    n: int  # shadow rows
    n_errors: int
    error_rate: float | None
    n_compared: int  # rows without error with both scores (correlations) / decisions (agreement)
    agreement: float | None  # share of equal decisions
    pearson: float | None
    spearman: float | None
    score_mean_abs_diff: float | None
    latency_p50_ms: float | None  # the shadow's
    latency_p99_ms: float | None
    primary_latency_p50_ms: float | None
    primary_latency_p99_ms: float | None
    latency_p50_diff_ms: float | None  # shadow minus primary
    latency_p99_diff_ms: float | None
    errors: dict[str, int] = dataclasses.field(default_factory=dict)  # the most frequent error texts

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


@dataclasses.dataclass
class TimelineEvent:
    """One rollout event (a canary step, a rollback, an admin action)."""

    at: pd.Timestamp | None
    kind: str
    variant: str | None
    reason: str
    actor: str | None = None
    outcome: str | None = None
    #: the split set by the event (normalised), when its details carry one (canary steps, traffic)
    weights: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


def _event_weights(details: Any) -> dict[str, float] | None:
    """The normalised ``weights`` of an event's details, or None."""
    weights = details.get("weights") if isinstance(details, Mapping) else None
    if not isinstance(weights, Mapping):
        return None
    try:
        values = {str(k): float(v) for k, v in weights.items()}
    except (TypeError, ValueError):
        return None
    total = sum(v for v in values.values() if np.isfinite(v) and v > 0)
    return {k: v / total for k, v in values.items()} if total > 0 else None


def decision_text(values: pd.Series) -> pd.Series:
    """Decisions in one comparable text form: JSON may give back True, "true", 1 or "1"."""
    text = values.astype("str").str.strip().str.lower()
    return text.replace({"1": "true", "1.0": "true", "0": "false", "0.0": "false"})


def shadow_comparisons(shadow: pd.DataFrame, task: str) -> list[ShadowComparison]:
    need = {"variant", "score", "decision", "latency_ms", "error", "primary_variant", "primary_score"}
    missing = sorted(need - set(shadow.columns))
    if missing:
        raise DataError(
            "the shadow frame lacks columns",
            field=missing[0],
            received=list(shadow.columns)[:14],
            expected="the columns of PredictionLog.read_shadow",
        )
    out = []
    for name, part in shadow.groupby("variant", sort=True):
        failed = part["error"].notna()
        ok = part[~failed]
        s = pd.to_numeric(ok["score"], errors="coerce")
        ps = pd.to_numeric(ok["primary_score"], errors="coerce")
        both = s.notna() & ps.notna()
        pearson = spearman = mad = None
        if both.sum() >= 3 and s[both].nunique() > 1 and ps[both].nunique() > 1:
            pearson = finite_or_none(stats.pearsonr(s[both], ps[both]).statistic)
            spearman = finite_or_none(stats.spearmanr(s[both], ps[both]).statistic)
        if both.any():
            mad = finite_or_none((s[both] - ps[both]).abs().mean())
        agreement = None
        decided = (
            ok["decision"].notna() & ok["primary_decision"].notna() if "primary_decision" in ok else None
        )
        if task != "regression" and decided is not None and decided.any():
            same = decision_text(ok["decision"][decided]) == decision_text(ok["primary_decision"][decided])
            agreement = float(same.mean())
        lat = pd.to_numeric(ok["latency_ms"], errors="coerce").dropna()
        plat = (
            pd.to_numeric(ok["primary_latency_ms"], errors="coerce").dropna()
            if "primary_latency_ms" in ok
            else pd.Series(dtype=float)
        )

        def q(x: pd.Series, p: float) -> float | None:
            return finite_or_none(x.quantile(p)) if len(x) else None

        l50, l99, p50, p99 = q(lat, 0.5), q(lat, 0.99), q(plat, 0.5), q(plat, 0.99)
        errors = part.loc[failed, "error"].astype(str).value_counts().head(5)
        out.append(
            ShadowComparison(
                variant=str(name),
                primary_variants=sorted(part["primary_variant"].dropna().astype(str).unique().tolist()),
                n=len(part),
                n_errors=int(failed.sum()),
                error_rate=float(failed.mean()) if len(part) else None,
                n_compared=int(both.sum() if task == "regression" or decided is None else decided.sum()),
                agreement=agreement,
                pearson=pearson,
                spearman=spearman,
                score_mean_abs_diff=mad,
                latency_p50_ms=l50,
                latency_p99_ms=l99,
                primary_latency_p50_ms=p50,
                primary_latency_p99_ms=p99,
                latency_p50_diff_ms=None if l50 is None or p50 is None else l50 - p50,
                latency_p99_diff_ms=None if l99 is None or p99 is None else l99 - p99,
                errors={str(k): int(v) for k, v in errors.items()},
            )
        )
    return out


def event_timeline(events: pd.DataFrame) -> list[TimelineEvent]:
    if events.empty:
        return []
    at = (
        pd.to_datetime(events["logged_at"], utc=True)
        if "logged_at" in events
        else pd.Series(pd.NaT, index=events.index, dtype="datetime64[ns, UTC]")
    )
    frame = events.assign(_at=at).sort_values("_at", kind="stable")

    def col(name: str) -> list[Any]:
        if name not in frame.columns:
            return [None] * len(frame)
        return [None if pd.isna(v) else str(v) for v in frame[name]]

    return [
        TimelineEvent(
            at=None if pd.isna(t) else pd.Timestamp(t),
            kind=k or "",
            variant=v,
            reason=r or "",
            actor=a,
            outcome=o,
            weights=_event_weights(d),
        )
        for t, k, v, r, a, o, d in zip(
            frame["_at"],
            col("kind"),
            col("variant"),
            col("reason"),
            col("actor"),
            col("outcome"),
            frame["details"] if "details" in frame.columns else [None] * len(frame),
            strict=True,
        )
    ]


def traffic_by_time(predictions: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    """Requests per variant in equal bins of logging time (the canary's moving split)."""
    if "logged_at" not in predictions.columns or predictions.empty:
        return {}
    t = pd.to_datetime(predictions["logged_at"], utc=True)
    if t.isna().all() or t.max() == t.min():
        return {}
    n_bins = int(np.clip(len(t) // _PER_TIME_BIN, *_TIME_BINS))
    edges = pd.date_range(t.min(), t.max(), periods=n_bins + 1)
    bins = pd.cut(t, edges, include_lowest=True, labels=False)
    table = pd.crosstab(bins, predictions["variant"]).reindex(range(n_bins), fill_value=0)
    return {
        "starts": [e.isoformat() for e in edges[:-1]],
        "counts": {n: table[n].astype(int).tolist() for n in names if n in table.columns},
    }

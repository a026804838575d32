"""The log's record types: one scored row (:class:`PredictionRecord`) and one HTTP call
(:class:`RequestRecord`), re-exported by :mod:`mlsd.store.prediction_log` and :mod:`mlsd.store`.

A module of their own so the log's encoders (:mod:`mlsd.store._log_batch`) can build records
without importing the log itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["PredictionRecord", "RequestRecord"]


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One scored row (a batch request yields one record, with its own id, per row)."""

    request_id: str
    logged_at: datetime  # UTC, tz-aware: when the server received the request
    event_time: datetime | None  # UTC: the row's design ``data.time`` value if present
    model_name: str
    model_version: int
    variant: str  # routing arm / alias, "champion" for now
    inputs: dict[str, Any]  # the raw JSON row as received (after validation)
    score: float
    decision: Any  # bool (binary), label (multiclass) or float (regression); stored as JSON
    latency_ms: float  # server-side time of the whole HTTP request
    # Rollout: how the request was routed (None: not recorded, e.g. a single-model deployment).
    assigned_variant: str | None = None  # the alias routing chose (None: same as ``variant``)
    propensity: float | None = None  # probability of assigned_variant under the policy then
    unit: str | None = None  # the unit of assignment (sticky_by value / X-Mlsd-Unit); None: random
    assignment: str | None = None  # "sticky" | "random" | "fixed"
    fallback: str | None = None  # why another model answered than the assigned one (else None)
    scoring_ms: float | None = None  # the model call that answered the row (its batch's), ms
    # models.abstain: why the model declined the row (None: answered); such a row is also
    # queued in review_queue, in the same transaction (docs/abstention.md)
    abstain_reason: str | None = None
    confidence: float | None = None  # the confidence the policy judged (abstained rows)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One HTTP call to ``/v1/predict``, rejected ones included (the SLOs are computed on these)."""

    logged_at: datetime
    route: str
    status: int
    n_rows: int
    latency_ms: float
    error: str | None = None

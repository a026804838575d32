"""The review queue: the served rows a model declined to answer (``models.abstain``), for a person.

One row per abstained prediction in table ``review_queue`` of the prediction log, keyed by its
request id (and deleted with it), written in the SAME transaction as the prediction: a caller
told ``abstain: true`` can count on the row being queued, even if the server dies right after.
The table is created like every table of the log (on open, ``checkfirst``), so a log written
before it gains it on open, on SQLite and PostgreSQL alike. ``mlsd log --review`` exports it
(docs/abstention.md), joined with the prediction's inputs and any feedback received since.

>>> from datetime import UTC, datetime
>>> from mlsd.store import PredictionLog, PredictionRecord
>>> at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
>>> record = PredictionRecord(
...     request_id="r-1", logged_at=at, event_time=None, model_name="m", model_version=1,
...     variant="champion", inputs={"x": 1.5}, score=0.48, decision=False, latency_ms=2.0,
...     abstain_reason="confidence 0.04 below 0.2", confidence=0.04)
>>> with PredictionLog("sqlite://") as log:
...     log.write_sync([record])
...     queue = log.read_review_queue()
>>> queue[["request_id", "score", "confidence", "reason", "x"]].to_dict("records")
[{'request_id': 'r-1', 'score': 0.48, 'confidence': 0.04, 'reason': 'confidence 0.04 below 0.2', 'x': 1.5}]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from mlsd.store._log_frames import decode_json_column, micros_to_utc
from mlsd.store._log_tables import ID_MAX, METADATA, feedback, predictions

__all__ = ["REVIEW_COLUMNS", "encode_review", "review_frame", "review_queue", "review_select"]

review_queue = sa.Table(
    "review_queue",
    METADATA,
    sa.Column(
        "request_id",
        sa.String(ID_MAX),
        sa.ForeignKey("predictions.request_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("queued_at", sa.BigInteger, nullable=False),
    sa.Column("confidence", sa.Float, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
)
sa.Index("ix_review_queue_queued_at", review_queue.c.queued_at)

#: the columns of :func:`review_frame`, before one column per input field
REVIEW_COLUMNS = (
    "request_id",
    "queued_at",
    "model_name",
    "model_version",
    "variant",
    "score",
    "decision",
    "confidence",
    "reason",
    "outcome",
)


def encode_review(row: dict[str, Any], record: Any) -> dict[str, Any] | None:
    """The queue row of an encoded prediction ``row`` whose record abstained, else None."""
    reason = getattr(record, "abstain_reason", None)
    if reason is None:
        return None
    confidence = getattr(record, "confidence", None)
    return {
        "request_id": row["request_id"],
        "queued_at": row["logged_at"],
        "confidence": None if confidence is None else float(confidence),
        "reason": str(reason)[:2000],
    }


def review_select(since: int | None = None, until: int | None = None) -> sa.Select[Any]:
    """The queue joined with its predictions (and their feedback), oldest first; times in micros."""
    q, p, f = review_queue.c, predictions.c, feedback.c
    stmt = sa.select(
        q.request_id,
        q.queued_at,
        p.model_name,
        p.model_version,
        p.variant,
        p.score,
        p.decision,
        q.confidence,
        q.reason,
        f.outcome,
        p.inputs,
    ).select_from(
        review_queue.join(predictions, p.request_id == q.request_id).outerjoin(
            feedback, f.request_id == q.request_id
        )
    )
    if since is not None:
        stmt = stmt.where(q.queued_at >= since)
    if until is not None:
        stmt = stmt.where(q.queued_at < until)
    return stmt.order_by(q.queued_at, q.request_id)


def review_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows of :func:`review_select` -> a frame of :data:`REVIEW_COLUMNS` then the input fields."""
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * (len(REVIEW_COLUMNS) + 1)
    rid, queued, name, version, variant, score, decision, conf, reason, outcome, inputs = columns
    meta = pd.DataFrame(
        {
            "request_id": pd.Series(rid, dtype="str"),
            "queued_at": micros_to_utc(queued),
            "model_name": pd.Series(name, dtype="str"),
            "model_version": pd.Series(version, dtype="int64"),
            "variant": pd.Series(variant, dtype="str"),
            "score": pd.Series(score, dtype="float64"),
            "decision": pd.Series(decode_json_column(decision), dtype=object),
            "confidence": pd.Series(conf, dtype="float64"),
            "reason": pd.Series(reason, dtype="str"),
            "outcome": pd.Series(decode_json_column(outcome), dtype=object),
        }
    )
    fields = decode_json_column(inputs, frame=True)
    fields.columns = [f"input_{c}" if c in meta.columns else str(c) for c in fields.columns]
    return pd.concat([meta, fields], axis=1)

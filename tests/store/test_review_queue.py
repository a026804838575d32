"""The review queue of the prediction log: queued in the prediction's own transaction, gained by a
log written before it, and its rows filtered by queued time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlsd.errors import ConflictError
from mlsd.store import PredictionLog, PredictionRecord


def _record(rid: str, at: datetime, reason: str | None = None) -> PredictionRecord:
    return PredictionRecord(
        request_id=rid,
        logged_at=at,
        event_time=None,
        model_name="m",
        model_version=1,
        variant="champion",
        inputs={"x": 1.0, "score": "a field called like a column"},
        score=0.5,
        decision=True,
        latency_ms=1.0,
        abstain_reason=reason,
        confidence=None if reason is None else 0.1,
    )


def test_rows_are_queued_with_their_prediction_or_not_at_all(tmp_path: Path) -> None:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with PredictionLog(url) as log:
        log.write_sync(
            [_record("a", at, "low"), _record("b", at), _record("c", at + timedelta(hours=1), "low")]
        )
        # a duplicate id fails its whole submission: its queue row is not written either
        with pytest.raises(ConflictError):
            log.write_sync([_record("a", at, "again"), _record("d", at, "low")])
        queue = log.read_review_queue()
        assert queue["request_id"].tolist() == ["a", "c"]
        assert queue["reason"].tolist() == ["low", "low"] and "input_score" in queue.columns
        assert log.read_review_queue(since=at + timedelta(minutes=30))["request_id"].tolist() == ["c"]
        assert log.count_predictions() == 3


def test_a_log_written_before_the_queue_gains_it_on_open(tmp_path: Path) -> None:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with PredictionLog(url) as log:
        log.write_sync([_record("old", at)])
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE review_queue"))
    engine.dispose()
    with PredictionLog(url) as log:
        log.write_sync([_record("new", at, "low")])
        assert log.read_review_queue()["request_id"].tolist() == ["new"]
        assert log.count_predictions() == 2

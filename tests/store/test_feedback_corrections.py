"""Feedback is first-write-wins; ``correct=True`` replaces an outcome and the audit table keeps both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlsd.errors import ConflictError, NotFoundError
from mlsd.store import PredictionLog, PredictionRecord, RequestRecord

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _predicted(log: PredictionLog, n: int = 2) -> list[str]:
    records = [
        PredictionRecord(f"r{i}", T0, None, "m", 1, "champion", {"x": i}, 0.5, True, 1.0) for i in range(n)
    ]
    log.write_sync(records, RequestRecord(T0, "/v1/predict", 200, n, 1.0))
    return [r.request_id for r in records]


@pytest.mark.parametrize("started", [True, False])
def test_a_correction_replaces_the_outcome_and_is_audited(tmp_path: Path, started: bool) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}").start()
    rid = _predicted(log)[0]
    if not started:  # add_feedback's own transactions (no writer thread)
        log.close()
        log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}")
    first, second, third = T0 + timedelta(hours=1), T0 + timedelta(hours=2), T0 + timedelta(hours=3)
    assert log.add_feedback(rid, True, received_at=first) == "created"
    with pytest.raises(ConflictError, match="different outcome"):
        log.add_feedback(rid, False, received_at=second)  # a silent overwrite stays refused
    assert log.read_corrections().empty
    assert log.add_feedback(rid, False, received_at=second, correct=True) == "corrected"
    assert log.add_feedback(rid, False, received_at=third, correct=True) == "unchanged"
    assert log.add_feedback(rid, 1, received_at=third, correct=True) == "corrected"  # and back
    with pytest.raises(NotFoundError):
        log.add_feedback("nope", True, correct=True)
    audit = log.read_corrections()
    assert audit["request_id"].tolist() == [rid, rid]
    assert audit["old_outcome"].tolist() == [True, False]
    assert audit["new_outcome"].tolist() == [False, 1]
    assert audit["old_received_at"].tolist() == [first, second]
    assert audit["new_received_at"].tolist() == [second, third]
    frame = log.read_predictions().set_index("request_id")
    assert frame.loc[rid, "outcome"] == 1 and frame.loc[rid, "feedback_at"] == third
    assert log.count_feedback() == 1
    log.close()


def test_created_and_corrected_in_one_group_commit(tmp_path: Path) -> None:
    with PredictionLog(f"sqlite:///{tmp_path / 'log.db'}", max_delay_ms=200) as log:
        rid, other = _predicted(log)
        # submitted back to back: the writer most likely commits them together; either way the
        # stored outcome is the correction's and the audit has one row
        futures = [
            log.submit_feedback(rid, True, received_at=T0),
            log.submit_feedback(rid, False, received_at=T0 + timedelta(seconds=1), correct=True),
            log.submit_feedback(other, True, received_at=T0),
            log.submit_feedback(other, False, received_at=T0 + timedelta(seconds=1)),
        ]
        statuses = []
        for future in futures:
            try:
                statuses.append(future.result(timeout=20))
            except ConflictError:
                statuses.append("conflict")
        assert statuses == ["created", "corrected", "created", "conflict"]
        frame = log.read_predictions().set_index("request_id")
        assert frame.loc[rid, "outcome"] is False or frame.loc[rid, "outcome"] == False  # noqa: E712
        assert frame.loc[other, "outcome"] == True  # noqa: E712
        audit = log.read_corrections()
        assert len(audit) == 1 and audit.iloc[0]["old_outcome"] is True
        engine = sa.create_engine(log.url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from feedback_corrections")).scalar() == 1
        engine.dispose()

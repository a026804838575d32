"""Chunked reads of the prediction log (keyset pagination on the request id), on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from mlsd.data.sampling import sample_prediction_log
from mlsd.store import PredictionLog, PredictionRecord

_T0 = datetime(2024, 3, 1, tzinfo=UTC)
# ids whose order differs between byte order and a linguistic collation (PostgreSQL's default)
_IDS = [f"{p}-{i:03d}" for i in range(50) for p in ("a", "B", "é", "Z", "_x")]


def _record(i: int, request_id: str) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id,
        logged_at=_T0 + timedelta(seconds=i),
        event_time=_T0 + timedelta(hours=i),
        model_name="m",
        model_version=1,
        variant="champion",
        inputs={"x": i, "c": request_id[0]},
        score=i / len(_IDS),
        decision=i % 2 == 0,
        latency_ms=1.0,
    )


def test_request_id_chunks_cover_the_log_once_and_read_back_whole(url: str) -> None:
    with PredictionLog(url) as log:
        log.write_sync([_record(i, r) for i, r in enumerate(_IDS)])
        log.add_feedback(_IDS[3], True)
        chunks = list(log.iter_request_ids(chunk_rows=7))
        assert all(len(c) == 7 for c in chunks[:-1]) and 1 <= len(chunks[-1]) <= 7
        ids = pd.concat(chunks)["request_id"]
        assert sorted(ids) == sorted(_IDS) and ids.is_unique
        # a window: only its rows
        since, until = _T0 + timedelta(hours=10), _T0 + timedelta(hours=20)
        window = pd.concat(log.iter_request_ids(since, until, chunk_rows=3))["request_id"]
        assert sorted(window) == sorted(_IDS[10:20])
        picked = [_IDS[3], _IDS[200], _IDS[17], "not-logged"]
        frame = log.read_predictions_by_id(picked)
        whole = log.read_predictions()
        expected = whole[whole["request_id"].isin(picked)].reset_index(drop=True)
        pd.testing.assert_frame_equal(frame, expected)
        assert frame.loc[frame["request_id"] == _IDS[3], "outcome"].item() is True
        sample = sample_prediction_log(log, 40, seed=1, chunk_rows=11)
        assert len(sample) == 40 and sample["request_id"].is_unique
        assert set(sample["request_id"]) <= set(_IDS)

"""The prediction log: group commit, durability, feedback, windows, export and errors."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlsd.errors import ConflictError, LogError, NotFoundError
from mlsd.store import PredictionLog, PredictionRecord, RequestRecord
from mlsd.store._log_tables import METADATA

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SRC = Path(__file__).resolve().parents[2] / "src"


def record(
    i: int | str,
    *,
    logged_at: datetime | None = None,
    event_time: datetime | None = None,
    inputs: dict[str, Any] | None = None,
    decision: Any = None,
) -> PredictionRecord:
    n = i if isinstance(i, int) else 0
    return PredictionRecord(
        request_id=f"r{i}",
        logged_at=logged_at or T0 + timedelta(seconds=n),
        event_time=event_time,
        model_name="flight-delay",
        model_version=2,
        variant="champion",
        inputs={"distance": 100 + n, "carrier": "UA"} if inputs is None else inputs,
        score=n / 1000,
        decision=n % 2 == 0 if decision is None else decision,
        latency_ms=1.5,
    )


@pytest.fixture
def log(tmp_path: Path) -> Any:
    with PredictionLog.for_workspace(tmp_path / "ws", max_delay_ms=1.0) as opened:
        yield opened


def other_engine(log: PredictionLog) -> sa.Engine:
    return sa.create_engine(log.url)


def test_round_trip_columns_types_and_values(log: PredictionLog) -> None:
    rows = [
        record(1, event_time=T0 - timedelta(days=1), inputs={"distance": 1.5, "carrier": "AA", "score": 7}),
        record(2, inputs={"distance": 2.5, "carrier": None, "extra": [1, 2]}, decision="delayed"),
    ]
    log.write_sync(rows, RequestRecord(T0, "/v1/predict", 200, 2, 3.25))
    frame = log.read_predictions()
    assert list(frame.columns[:17]) == [
        "request_id", "logged_at", "event_time", "model_name", "model_version", "variant",
        "score", "decision", "latency_ms", "outcome", "feedback_at",
        "assigned_variant", "propensity", "unit", "assignment", "fallback", "scoring_ms",
    ]  # fmt: skip
    assert set(frame.columns[17:]) == {"distance", "carrier", "input_score", "extra"}
    assert frame["request_id"].tolist() == ["r1", "r2"]
    assert str(frame["logged_at"].dtype) == "datetime64[us, UTC]"
    assert frame["logged_at"].tolist() == [T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]
    assert frame["event_time"].iloc[0] == T0 - timedelta(days=1)
    assert pd.isna(frame["event_time"].iloc[1])
    assert frame["decision"].tolist() == [False, "delayed"]
    assert frame["distance"].tolist() == [1.5, 2.5]
    assert frame["input_score"].iloc[0] == 7
    assert frame["extra"].iloc[1] == [1, 2]
    assert frame["outcome"].isna().all() and frame["feedback_at"].isna().all()
    assert frame["model_version"].tolist() == [2, 2]
    assert log.count_predictions() == 2
    calls = log.read_requests()
    assert calls[["route", "status", "n_rows"]].to_dict("records") == [
        {"route": "/v1/predict", "status": 200, "n_rows": 2}
    ]
    assert calls["logged_at"].iloc[0] == T0


def test_empty_log_reads_typed_frames(log: PredictionLog) -> None:
    frame = log.read_predictions()
    assert frame.empty and "outcome" in frame.columns
    assert str(frame["event_time"].dtype) == "datetime64[us, UTC]"
    assert log.read_requests().empty
    assert log.count_predictions() == 0 and log.count_feedback() == 0


def test_workspace_file_is_sqlite_wal_with_full_sync(tmp_path: Path) -> None:
    with PredictionLog.for_workspace(tmp_path / "a" / "b") as opened:
        opened.write_sync([record(1)])
        with opened._db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    assert (tmp_path / "a" / "b" / "predictions.db").is_file()


def test_group_commit_batches_concurrent_submissions(tmp_path: Path) -> None:
    n_threads, per_thread = 8, 250
    futures: list[Any] = []
    lock = threading.Lock()
    with PredictionLog(f"sqlite:///{tmp_path}/p.db", max_delay_ms=5.0) as opened:

        def worker(t: int) -> None:
            mine = [opened.submit([record(f"{t}-{i}")]) for i in range(per_thread)]
            with lock:
                futures.extend(mine)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for future in futures:
            future.result(timeout=30)
        assert opened.count_predictions() == n_threads * per_thread
        assert opened.queue_depth == 0
        assert opened.n_commits <= n_threads * per_thread // 10, opened.n_commits


def test_future_resolves_only_after_commit(tmp_path: Path) -> None:
    with PredictionLog(f"sqlite:///{tmp_path}/p.db", max_delay_ms=300.0) as opened:
        engine = other_engine(opened)
        query = sa.text("SELECT count(*) FROM predictions WHERE request_id = 'r1'")
        future = opened.submit([record(1)])
        # The writer is still gathering a batch: not done, and not visible anywhere yet.
        assert not future.done()
        with engine.connect() as conn:
            assert conn.execute(query).scalar() == 0
        future.result(timeout=10)
        with engine.connect() as conn:
            assert conn.execute(query).scalar() == 1
        for i in range(2, 4):  # and on every later commit, the row is visible once done
            opened.write_sync([record(i)])
            with engine.connect() as conn:
                assert conn.execute(
                    sa.text(f"SELECT count(*) FROM predictions WHERE request_id='r{i}'")
                ).scalar()
        engine.dispose()


def test_close_drains_the_queue_and_refuses_later_submits(tmp_path: Path) -> None:
    opened = PredictionLog(f"sqlite:///{tmp_path}/p.db", max_delay_ms=200.0, max_batch=64).start()
    futures = [opened.submit([record(i)]) for i in range(300)]
    opened.close()
    assert all(f.done() and f.exception() is None for f in futures)
    with pytest.raises(LogError, match="closed"):
        opened.submit([record(999)])
    reopened = PredictionLog(f"sqlite:///{tmp_path}/p.db").start()
    assert reopened.count_predictions() == 300
    reopened.close()


def test_duplicate_id_fails_only_its_own_submission(log: PredictionLog) -> None:
    log.write_sync([record(1)])
    slow = PredictionLog(log.url, max_delay_ms=200.0).start()
    first = slow.submit([record(2)])
    duplicate = slow.submit([record(3), record(1)])
    third = slow.submit([record(4)])
    inner_dup = slow.submit([record(5), record(5)])
    first.result(timeout=10)
    third.result(timeout=10)
    with pytest.raises(ConflictError) as info:
        duplicate.result(timeout=10)
    assert info.value.field == "request_id" and info.value.received == ["r1"]
    with pytest.raises(ConflictError):
        inner_dup.result(timeout=10)
    slow.close()
    assert slow.n_commits == 2  # one failed batch, then one transaction per submission
    assert set(log.read_predictions()["request_id"]) == {"r1", "r2", "r4"}  # r3 went with its submission


def test_database_error_fails_the_future_and_the_writer_survives(log: PredictionLog) -> None:
    log.write_sync([record(1)])
    engine = other_engine(log)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE feedback")
        conn.exec_driver_sql("DROP TABLE predictions")
    with pytest.raises(LogError, match="could not commit") as info:
        log.write_sync([record(2)])
    assert info.value.received == ["r2"] and not isinstance(info.value, ConflictError)
    with engine.begin() as conn:
        METADATA.create_all(conn)
    engine.dispose()
    log.write_sync([record(3)])
    assert log.read_predictions()["request_id"].tolist() == ["r3"]
    assert log.queue_depth == 0


def test_a_writer_that_dies_fails_its_waiters_instead_of_hanging(
    log: PredictionLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that kills the writer thread (not a database error: those it survives) must turn
    every blocked and queued caller into a LogError, and later submits into a refusal."""
    log.write_sync([record(1)])
    writer = log._writer
    monkeypatch.setattr("mlsd.store._log_writer.WAIT_POLL_S", 0.05)

    def broken_gather(*args: Any) -> Any:
        raise RuntimeError("a bug in the writer")

    monkeypatch.setattr(writer, "_gather", broken_gather)
    with pytest.raises(LogError, match=r"could not commit|writer has stopped") as info:
        log.add_feedback("r1", True)
    assert info.value.field in ("predictions", "feedback")
    writer._thread.join(5)
    assert not writer.alive and writer.failing and writer.closed
    with pytest.raises(LogError, match=r"closed|not running"):
        log.write_sync([record(2)])
    assert log.read_predictions()["request_id"].tolist() == ["r1"]  # nothing stored was lost


def test_a_blocked_caller_gives_up_after_the_bounded_wait(
    log: PredictionLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import Future

    monkeypatch.setattr("mlsd.store._log_writer.WAIT_POLL_S", 0.01)
    monkeypatch.setattr("mlsd.store._log_writer.MAX_WAIT_S", 0.05)
    never: Future[Any] = Future()  # a commit that never comes back (a hung database)
    with pytest.raises(LogError, match="has not committed for") as info:
        log._writer.wait(never, what="feedback", received="r9")
    assert info.value.field == "feedback" and info.value.received == "r9"


def test_feedback_created_unchanged_not_found_conflict(log: PredictionLog) -> None:
    log.write_sync([record(1), record(2)])
    assert log.add_feedback("r1", True, received_at=T0 + timedelta(hours=1)) == "created"
    assert log.add_feedback("r1", True) == "unchanged"
    assert log.add_feedback("r2", np.int64(0)) == "created"
    with pytest.raises(NotFoundError) as missing:
        log.add_feedback("nope", True)
    assert missing.value.field == "request_id" and missing.value.received == "nope"
    with pytest.raises(ConflictError):
        log.add_feedback("r1", False)
    assert log.count_feedback() == 2
    frame = log.read_predictions().set_index("request_id")
    assert frame.loc["r1", "outcome"] is True and frame.loc["r2", "outcome"] == 0
    assert frame.loc["r1", "feedback_at"] == T0 + timedelta(hours=1)


def test_feedback_without_a_running_writer_goes_straight_to_the_database(tmp_path: Path) -> None:
    with PredictionLog.for_workspace(tmp_path / "ws") as log:
        log.write_sync([record(1)])
    reopened = PredictionLog.for_workspace(tmp_path / "ws")  # not started, as the CLI reads it
    assert reopened.add_feedback("r1", True) == "created"
    assert reopened.add_feedback("r1", True) == "unchanged"
    with pytest.raises(ConflictError):
        reopened.add_feedback("r1", False)
    with pytest.raises(NotFoundError):
        reopened.add_feedback("nope", True)
    assert reopened.count_feedback() == 1


def test_feedback_is_group_committed_with_the_predictions(log: PredictionLog) -> None:
    log.write_sync([record(i) for i in range(500)])
    commits = log.n_commits
    futures = [log.submit_feedback(f"r{i}", i % 2) for i in range(500)]
    futures.append(log.submit_feedback("r7", 0))  # r7 was given 1 in the same batch: a conflict
    futures.append(log.submit_feedback("missing", 1))
    done = [f.exception() or f.result() for f in futures]
    assert done[:500] == ["created"] * 500
    assert isinstance(done[500], ConflictError) and isinstance(done[501], NotFoundError)
    assert log.n_commits - commits < 50  # many outcomes per transaction, not one each
    frame = log.read_predictions().set_index("request_id")
    assert frame["outcome"].notna().sum() == 500 and frame.loc["r7", "outcome"] == 1


def test_concurrent_feedback_for_one_id_creates_once(log: PredictionLog) -> None:
    log.write_sync([record(1)])
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(log.add_feedback("r1", 1))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["created"] + ["unchanged"] * 7


def test_feedback_raced_by_another_process_between_its_check_and_its_insert(
    log: PredictionLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two server processes (``mlsd serve --workers``) record one request's outcome at once.

    The writer checks what is stored, then inserts; another process's outcome lands in between
    (injected here at the insert, deterministically). The insert's IntegrityError is retried
    alone, the retry re-reads the stored outcome: the same outcome is ``unchanged``, a different
    one a conflict about the outcome, never "request ids already logged".
    """
    from mlsd.store import _log_writer

    log.write_sync([record(1), record(2)])
    other = PredictionLog(log.url)  # a second process's log, not started: it writes directly
    original = _log_writer.GroupCommitWriter._record_feedback
    raced: dict[str, Any] = {}  # the other process's outcome, injected once

    class Racing:
        def __init__(self, conn: Any) -> None:
            self._conn = conn

        def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(statement, sa.Insert) and statement.table.name == "feedback":
                while raced:  # popped first: the other log's own insert comes through here too
                    other.add_feedback(*raced.popitem())
            return self._conn.execute(statement, *args, **kwargs)

    monkeypatch.setattr(
        _log_writer.GroupCommitWriter,
        "_record_feedback",
        staticmethod(lambda conn, items: original(Racing(conn), items)),
    )
    raced["r1"] = 1
    assert log.submit_feedback("r1", 1).result(timeout=30) == "unchanged"
    raced["r2"] = 0
    with pytest.raises(ConflictError) as conflict:
        log.submit_feedback("r2", 1).result(timeout=30)
    assert conflict.value.field == "outcome"
    assert log.count_feedback() == 2


def test_windows_filter_on_event_time_with_fallback_and_on_logged_at(log: PredictionLog) -> None:
    log.write_sync(
        [
            record(1, logged_at=T0, event_time=T0 - timedelta(days=3)),
            record(2, logged_at=T0 - timedelta(days=2), event_time=None),  # falls back to logged_at
            record(3, logged_at=T0 + timedelta(days=1), event_time=T0 - timedelta(days=1)),
            record(4, logged_at=T0 + timedelta(days=2), event_time=T0 + timedelta(days=5)),
        ]
    )
    by_event = log.read_predictions()
    assert by_event["request_id"].tolist() == ["r1", "r2", "r3", "r4"]
    window = log.read_predictions(T0 - timedelta(days=2), T0)
    assert window["request_id"].tolist() == ["r2", "r3"]
    assert log.read_predictions(since=T0)["request_id"].tolist() == ["r4"]
    assert log.read_predictions(until=T0 - timedelta(days=2))["request_id"].tolist() == ["r1"]
    by_logged = log.read_predictions(T0, T0 + timedelta(days=2), time="logged_at")
    assert by_logged["request_id"].tolist() == ["r1", "r3"]
    assert log.read_predictions(time="logged_at")["request_id"].tolist() == ["r2", "r1", "r3", "r4"]
    naive = log.read_predictions(datetime(2024, 3, 1, 12), time="logged_at")  # naive means UTC
    assert naive["request_id"].tolist() == ["r1", "r3", "r4"]
    with pytest.raises(LogError) as bad:
        log.read_predictions(time="received")  # type: ignore[arg-type]
    assert bad.value.field == "time"


def test_read_requests_window(log: PredictionLog) -> None:
    for i, status in enumerate([200, 422, 200]):
        log.write_sync([], RequestRecord(T0 + timedelta(minutes=i), "/v1/predict", status, 1, 2.0, None))
    calls = log.read_requests(since=T0 + timedelta(minutes=1))
    assert calls["status"].tolist() == [422, 200]
    assert log.count_predictions() == 0


def test_export_parquet_round_trip_with_mixed_inputs(log: PredictionLog, tmp_path: Path) -> None:
    log.write_sync(
        [
            record(1, inputs={"distance": 1, "code": 7, "tags": ["a"]}),
            record(2, inputs={"distance": 2, "code": "x7", "tags": {"k": 1}}),
            record(3, inputs={"distance": 3, "code": None, "tags": None}),
        ]
    )
    log.add_feedback("r2", False)
    target = tmp_path / "out" / "window.parquet"
    assert log.export(target) == 3
    back = pd.read_parquet(target)
    assert back["request_id"].tolist() == ["r1", "r2", "r3"]
    assert back["code"].tolist()[:2] == ["7", "x7"] and pd.isna(back["code"].iloc[2])
    assert back["distance"].tolist() == [1, 2, 3]
    assert back["logged_at"].dt.tz is not None
    assert back["outcome"].tolist() == [None, False, None]
    assert [p.name for p in target.parent.iterdir()] == ["window.parquet"]  # no temp file left
    assert log.export(target, since=T0 + timedelta(seconds=2), time="logged_at") == 2
    assert len(pd.read_parquet(target)) == 2


def test_export_failure_leaves_no_partial_file(log: PredictionLog, tmp_path: Path) -> None:
    log.write_sync([record(1)])
    (tmp_path / "dir.parquet").mkdir()  # a directory where the file should go
    with pytest.raises(LogError) as info:
        log.export(tmp_path / "dir.parquet")
    assert info.value.field == "path"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.parquet", "ws"]


def test_async_write(log: PredictionLog) -> None:
    async def main() -> None:
        await asyncio.gather(*(log.write([record(i)]) for i in range(20)))

    asyncio.run(main())
    assert log.count_predictions() == 20


def test_in_memory_log_works_across_threads() -> None:
    with PredictionLog("sqlite://") as opened:
        opened.write_sync([record(1)])
        assert opened.add_feedback("r1", 1) == "created"
        assert opened.read_predictions()["outcome"].tolist() == [1]


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://x/y", ""])
def test_unreadable_url_names_the_url(url: str) -> None:
    with pytest.raises(LogError) as info:
        PredictionLog(url)
    assert info.value.field == "url" and info.value.received == url
    assert "sqlite:///path/predictions.db" in str(info.value.expected)


def test_bad_records_and_misuse_fail_in_the_caller(log: PredictionLog, tmp_path: Path) -> None:
    with pytest.raises(LogError) as info:
        log.submit([record(1, inputs={"x": object()})])
    assert info.value.field == "inputs"
    with pytest.raises(LogError) as info:
        log.submit([record(1, logged_at="yesterday")])  # type: ignore[arg-type]
    assert info.value.field == "logged_at"
    with pytest.raises(LogError) as info:
        PredictionLog(f"sqlite:///{tmp_path}/x.db").submit([record(1)])
    assert "not started" in str(info.value)
    with pytest.raises(LogError) as info:
        PredictionLog("sqlite://", max_batch=0)
    assert info.value.field == "max_batch"
    assert log.count_predictions() == 0


_CHILD = """
import sys
from datetime import UTC, datetime
from mlsd.store import PredictionLog, PredictionRecord
log = PredictionLog.for_workspace(sys.argv[1], max_delay_ms=0.5).start()
for i in range(1_000_000):
    rid = f"k{i}"
    log.write_sync([PredictionRecord(rid, datetime.now(UTC), None, "m", 1, "champion",
                                     {"i": i}, 0.5, True, 1.0)])
    print(rid, flush=True)
"""


def test_committed_records_survive_sigkill(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(_CHILD))
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "ws")], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None
    acknowledged = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 200 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acknowledged.append(line.strip())
    os.kill(child.pid, signal.SIGKILL)  # mid-stream: the writer may be inside a transaction
    acknowledged += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 200
    with PredictionLog.for_workspace(tmp_path / "ws") as reopened:
        stored = set(reopened.read_predictions(time="logged_at")["request_id"])
    assert set(acknowledged) <= stored
    assert len(stored) - len(acknowledged) <= 1  # at most the one committed but not yet printed

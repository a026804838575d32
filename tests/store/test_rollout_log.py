"""The prediction log's rollout part: routing fields, migration, shared state, events, outcomes,
reward counts and shadow answers, each on SQLite and on PostgreSQL (one throw-away cluster per
test process, the session fixture ``postgres_url``; its tests share one xdist worker)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from mlsd.errors import ConflictError, LogError, NotFoundError
from mlsd.store import PredictionLog, PredictionRecord, ShadowRecord

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SRC = Path(__file__).resolve().parents[2] / "src"


# The predictions table as mlsd created it before the rollout columns (kept verbatim).
OLD_SCHEMA = """
CREATE TABLE predictions (
    request_id VARCHAR(255) NOT NULL, logged_at BIGINT NOT NULL, event_time BIGINT,
    model_name VARCHAR(255) NOT NULL, model_version INTEGER NOT NULL, variant VARCHAR(255) NOT NULL,
    inputs TEXT NOT NULL, score FLOAT, decision TEXT NOT NULL, latency_ms FLOAT,
    PRIMARY KEY (request_id)
);
CREATE TABLE feedback (
    request_id VARCHAR(255) NOT NULL, outcome TEXT NOT NULL, received_at BIGINT NOT NULL,
    PRIMARY KEY (request_id), FOREIGN KEY(request_id) REFERENCES predictions (request_id) ON DELETE CASCADE
);
INSERT INTO predictions VALUES ('old-1', 1709294400000000, NULL, 'm', 1, 'champion',
    '{"x":1}', 0.25, 'false', 2.0);
INSERT INTO feedback VALUES ('old-1', 'true', 1709294401000000);
"""


def record(i: int, variant: str = "champion", **rollout: Any) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"r{i}",
        logged_at=T0 + timedelta(seconds=i),
        event_time=None,
        model_name="m",
        model_version=1 if variant == "champion" else 2,
        variant=variant,
        inputs={"x": i},
        score=i / 10,
        decision=i % 2 == 0,
        latency_ms=1.0 + i,
        **rollout,
    )


def shadow(i: int, variant: str = "challenger", **changes: Any) -> ShadowRecord:
    fields: dict[str, Any] = {
        "request_id": f"r{i}",
        "logged_at": T0 + timedelta(seconds=i, milliseconds=5),
        "variant": variant,
        "model_name": "m",
        "model_version": 2,
        "score": 1 - i / 10,
        "decision": i % 2 == 1,
        "latency_ms": 0.5,
    }
    return ShadowRecord(**{**fields, **changes})


@pytest.fixture
def log(url: str) -> Any:
    with PredictionLog(url, max_delay_ms=1.0) as opened:
        yield opened


def create_old_log(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in filter(str.strip, OLD_SCHEMA.split(";")):
            conn.exec_driver_sql(statement)  # raw: the JSON text holds a colon
    engine.dispose()


def predictions_columns(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return [c["name"] for c in sa.inspect(engine).get_columns("predictions")]
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# -- routing fields and migration ----------------------------------------------------------------
def test_routing_fields_round_trip_and_default_to_none(log: PredictionLog) -> None:
    routed = record(
        1, "challenger", assigned_variant="challenger", propensity=0.1, unit="u-7", assignment="sticky"
    )
    fell_back = record(2, "champion", assigned_variant="challenger", propensity=0.1, fallback="timeout")
    log.write_sync([routed, fell_back, record(3)])
    frame = log.read_predictions(time="logged_at").set_index("request_id")
    routing = ["assigned_variant", "unit", "assignment"]
    assert frame.loc["r1", routing].tolist() == ["challenger", "u-7", "sticky"]
    assert frame.loc["r1", "propensity"] == pytest.approx(0.1)
    assert frame.loc["r2", "fallback"] == "timeout"
    assert frame.loc["r2", "variant"] == "champion"
    assert frame.loc["r3", ["assigned_variant", "unit", "assignment", "fallback"]].tolist() == [None] * 4
    assert pd.isna(frame.loc["r3", "propensity"])
    assert "x" in frame.columns  # inputs still expanded after the new columns


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"assignment": "roundrobin"}, "assignment"),
        ({"propensity": 1.5}, "propensity"),
        ({"propensity": "high"}, "propensity"),
        ({"unit": "u" * 300}, "unit"),
        ({"assigned_variant": 3}, "assigned_variant"),
    ],
)
def test_invalid_routing_fields_are_refused_before_queueing(
    log: PredictionLog, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(LogError) as caught:
        log.submit([record(1, **change)])
    assert caught.value.field == field
    assert log.count_predictions() == 0


def test_an_old_database_gains_the_columns_and_keeps_its_rows(url: str) -> None:
    create_old_log(url)
    assert "assigned_variant" not in predictions_columns(url)
    with PredictionLog(url, max_delay_ms=0) as log:
        log.write_sync([record(5, "challenger", assigned_variant="challenger", assignment="random")])
        frame = log.read_predictions(time="logged_at").set_index("request_id")
        outcomes = log.read_outcomes()
    assert frame.index.tolist() == ["old-1", "r5"]
    assert frame.loc["old-1", "score"] == 0.25
    assert frame.loc["old-1", "outcome"] is True
    assert frame.loc["old-1", "assigned_variant"] is None
    assert frame.loc["r5", "assignment"] == "random"
    assert outcomes["outcome"].tolist() == [True, None]
    columns = predictions_columns(url)
    assert columns[-6:] == ["assigned_variant", "propensity", "unit", "assignment", "fallback", "scoring_ms"]
    assert {"shadow_predictions", "rollout_state", "rollout_events"} <= table_names(url)
    with PredictionLog(url) as again:  # reopening a migrated log changes nothing
        assert again.count_predictions() == 2
    assert predictions_columns(url) == columns


def test_logs_migrating_the_same_old_database_at_once_all_open(url: str) -> None:
    create_old_log(url)
    barrier, errors = threading.Barrier(4), []

    def open_it() -> None:
        barrier.wait()
        try:
            with PredictionLog(url) as log:
                log.read_outcomes()
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert predictions_columns(url)[-6:] == [
        "assigned_variant",
        "propensity",
        "unit",
        "assignment",
        "fallback",
        "scoring_ms",
    ]


# -- shared state (compare-and-set) -----------------------------------------------------------------
def test_write_state_is_a_compare_and_set(log: PredictionLog) -> None:
    assert log.read_state("flights") is None
    assert log.write_state("flights", {"weights": {"champion": 1.0}}, expected_revision=None) == 1
    assert log.write_state("flights", {"weights": {}}, expected_revision=None) is None  # exists
    assert log.write_state("flights", {"step": 1}, expected_revision=1) == 2
    assert log.write_state("flights", {"step": 99}, expected_revision=1) is None  # stale
    assert log.write_state("flights", {"step": 99}, expected_revision=7) is None  # never was
    assert log.read_state("flights") == (2, {"step": 1})
    assert log.write_state("other", {"a": [1, None]}, expected_revision=None) == 1
    assert log.read_state("other") == (1, {"a": [1, None]})
    assert log.read_state("flights") == (2, {"step": 1})


def test_write_state_refuses_what_it_cannot_store(log: PredictionLog) -> None:
    with pytest.raises(LogError) as caught:
        log.write_state("k", ["not", "a", "dict"], expected_revision=None)  # type: ignore[arg-type]
    assert caught.value.field == "state"
    with pytest.raises(LogError) as caught:
        log.write_state("", {}, expected_revision=None)
    assert caught.value.field == "key"
    with pytest.raises(LogError) as caught:
        log.write_state("k", {}, expected_revision="1")  # type: ignore[arg-type]
    assert caught.value.field == "expected_revision"
    assert log.read_state("k") is None


def race(logs: list[PredictionLog], key: str, expected: int | None, per_log: int = 4) -> list[int | None]:
    """Every thread writes ``key`` expecting the same revision at the same moment."""
    n = len(logs) * per_log
    barrier, results, errors = threading.Barrier(n), [None] * n, []

    def write(i: int) -> None:
        barrier.wait()
        try:
            results[i] = logs[i % len(logs)].write_state(key, {"writer": i}, expected_revision=expected)
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


def check_race(logs: list[PredictionLog], key: str) -> None:
    created = race(logs, key, None)
    assert created.count(1) == 1 and created.count(None) == len(created) - 1
    first = created.index(1)
    assert logs[1].read_state(key) == (1, {"writer": first})
    updated = race(logs, key, 1)
    assert updated.count(2) == 1 and updated.count(None) == len(updated) - 1
    assert logs[0].read_state(key) == (2, {"writer": updated.index(2)})


def test_two_logs_on_one_database_race_and_exactly_one_wins(url: str) -> None:
    with PredictionLog(url) as a, PredictionLog(url) as b:
        check_race([a, b], "flights")


WRITER = textwrap.dedent(
    """
    import os, sys, time
    from mlsd.store import PredictionLog
    url, me, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with PredictionLog(url) as log:
        open(f"{go}.{me}", "w").close()
        while not os.path.exists(go):
            time.sleep(0.001)
        print(log.write_state("k", {"writer": me}, expected_revision=1))
    """
)


def test_writers_in_separate_processes_race_and_exactly_one_wins(url: str, tmp_path: Path) -> None:
    with PredictionLog(url) as log:
        assert log.write_state("k", {"writer": -1}, expected_revision=None) == 1
    go, n = tmp_path / "go", 3
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(i), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.{i}").exists() for i in range(n)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [
            p.communicate() for p in procs if p.poll() is not None
        ]
        time.sleep(0.01)
    go.touch()  # every writer has its log open and read nothing yet: they write at once
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    results = [out.strip() for out, _ in outputs]
    assert sorted(results) == ["2"] + ["None"] * (n - 1)
    with PredictionLog(url) as log:
        assert log.read_state("k") == (2, {"writer": results.index("2")})


# -- events -----------------------------------------------------------------------------------
def add_events(log: PredictionLog) -> None:
    log.add_event("canary_step", reason="gates passed", actor="server", variant="challenger",
                  details={"step": 1, "weight": 0.05}, at=T0 + timedelta(minutes=1))  # fmt: skip
    log.add_event("rollback", reason="p99 over SLO", actor="server", variant="challenger",
                  outcome="ok", at=T0 + timedelta(minutes=2))  # fmt: skip
    log.add_event("promote", reason="manual", actor="cli", outcome="refused", at=T0)


def test_events_are_read_back_in_time_order_and_windowed(log: PredictionLog) -> None:
    add_events(log)
    events = log.read_events()
    assert list(events.columns) == ["logged_at", "kind", "variant", "reason", "details", "actor", "outcome"]
    assert events["kind"].tolist() == ["promote", "canary_step", "rollback"]
    assert events["details"].tolist() == [{}, {"step": 1, "weight": 0.05}, {}]
    assert events["variant"].tolist() == [None, "challenger", "challenger"]
    assert events["outcome"].tolist() == ["refused", "ok", "ok"]
    assert str(events["logged_at"].dtype) == "datetime64[us, UTC]"
    window = log.read_events(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=2))
    assert window["kind"].tolist() == ["canary_step"]
    assert log.read_events(since=T0 + timedelta(hours=1)).empty


def test_an_event_without_time_is_stamped_now_and_bad_fields_are_refused(log: PredictionLog) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    log.add_event("traffic", reason="admin", actor="admin-api", details={"weights": {"a": 1}})
    after = datetime.now(UTC) + timedelta(seconds=1)
    (at,) = log.read_events()["logged_at"]
    assert before <= at <= after  # stamped by the clock at the call, not left empty
    for kwargs, field in [
        ({"kind": "", "reason": "r", "actor": "a"}, "kind"),
        ({"kind": "k", "reason": "r", "actor": ""}, "actor"),
        ({"kind": "k", "reason": None, "actor": "a"}, "reason"),
        ({"kind": "k", "reason": "r", "actor": "a", "details": [1]}, "details"),
        ({"kind": "k", "reason": "r", "actor": "a", "details": {"f": object()}}, "details"),
    ]:
        with pytest.raises(LogError) as caught:
            log.add_event(**kwargs)
        assert caught.value.field == field
    assert len(log.read_events()) == 1


# -- outcomes and reward counts -----------------------------------------------------------------------
def fill(log: PredictionLog) -> None:
    to_challenger = {"assigned_variant": "challenger", "propensity": 0.1}
    rows = [
        record(1, assigned_variant="champion", propensity=0.9, assignment="random"),
        record(2, "challenger", **to_challenger, unit="u2", assignment="sticky"),
        record(3, **to_challenger, assignment="random", fallback="breaker open"),
        record(4, "challenger", **to_challenger, assignment="random"),
        record(5),
        record(6),
        record(7, "challenger"),
    ]
    log.write_sync(rows)
    for i, outcome in [(1, True), (2, True), (3, False), (4, False), (6, True), (7, True)]:
        log.add_feedback(f"r{i}", outcome)


def test_read_outcomes_is_the_labelled_window_without_inputs(log: PredictionLog) -> None:
    fill(log)
    out = log.read_outcomes()
    assert list(out.columns) == [
        "request_id", "logged_at", "variant", "assigned_variant", "model_version", "propensity", "unit",
        "assignment", "fallback", "score", "decision", "latency_ms", "scoring_ms", "outcome",
    ]  # fmt: skip
    assert out["request_id"].tolist() == [f"r{i}" for i in range(1, 8)]
    assert out["outcome"].tolist() == [True, True, False, False, None, True, True]
    assert out["decision"].tolist() == [False, True, False, True, False, True, False]
    assert out["fallback"].tolist() == [None, None, "breaker open", None, None, None, None]
    assert out["propensity"].iloc[:4].tolist() == pytest.approx([0.9, 0.1, 0.1, 0.1])
    assert out["unit"].tolist()[1] == "u2"
    since = log.read_outcomes(since=T0 + timedelta(seconds=4))
    assert since["request_id"].tolist() == ["r4", "r5", "r6", "r7"]
    # assigned to the challenger (r3 fell back to the champion) or answered by it
    chall = log.read_outcomes(variants=["challenger"])
    assert chall["request_id"].tolist() == ["r2", "r3", "r4", "r7"]
    assert log.read_outcomes(variants=[]).empty


def test_reward_counts_group_labelled_rows_without_fallback(log: PredictionLog) -> None:
    fill(log)
    counts = log.reward_counts()
    assert list(counts.columns) == ["variant", "decision", "outcome", "n"]
    # the same counts from the rows themselves
    out = log.read_outcomes()
    kept = out[out["outcome"].notna() & out["fallback"].isna()]
    expected = kept.groupby(["variant", "decision", "outcome"]).size().rename("n").reset_index()
    key = ["variant", "decision", "outcome"]
    got = counts.sort_values(key).reset_index(drop=True)
    assert got.to_dict("records") == expected.sort_values(key).reset_index(drop=True).to_dict("records")
    assert int(counts["n"].sum()) == 5  # 6 labelled, r3 fell back
    assert counts["decision"].map(type).eq(bool).all() and counts["outcome"].map(type).eq(bool).all()
    later = log.reward_counts(since=T0 + timedelta(seconds=5))
    assert later.to_dict("records") == [
        {"variant": "challenger", "decision": False, "outcome": True, "n": 1},
        {"variant": "champion", "decision": True, "outcome": True, "n": 1},
    ]


def test_reads_of_an_empty_log_have_their_columns(log: PredictionLog) -> None:
    assert list(log.reward_counts().columns) == ["variant", "decision", "outcome", "n"]
    assert len(log.read_outcomes().columns) == 14
    assert len(log.read_shadow().columns) == 12
    assert len(log.read_events().columns) == 7


# -- shadow predictions -------------------------------------------------------------------------------
def test_shadow_answers_are_read_beside_the_primary(log: PredictionLog) -> None:
    log.write_sync([record(1), record(2)])
    failed = shadow(2, score=None, decision=None, latency_ms=None, error="TimeoutError")
    log.submit_shadow([shadow(1), failed, shadow(1, variant="candidate-b", score=0.3)]).result()
    frame = log.read_shadow()
    assert list(frame.columns) == [
        "request_id", "logged_at", "variant", "model_version", "score", "decision", "latency_ms", "error",
        "primary_variant", "primary_score", "primary_decision", "primary_latency_ms",
    ]  # fmt: skip
    assert frame[["request_id", "variant"]].values.tolist() == [
        ["r1", "candidate-b"], ["r1", "challenger"], ["r2", "challenger"]
    ]  # fmt: skip
    assert frame["score"].tolist()[:2] == pytest.approx([0.3, 0.9])
    assert pd.isna(frame["score"].iloc[2])
    assert frame["decision"].tolist() == [True, True, None]
    assert frame["error"].tolist() == [None, None, "TimeoutError"]
    assert frame["primary_variant"].tolist() == ["champion"] * 3
    assert frame["primary_score"].tolist() == pytest.approx([0.1, 0.1, 0.2])
    assert frame["primary_decision"].tolist() == [False, False, True]
    assert frame["primary_latency_ms"].tolist() == pytest.approx([2.0, 2.0, 3.0])
    assert log.read_shadow(since=T0 + timedelta(seconds=2)).request_id.tolist() == ["r2"]
    assert log.read_shadow(until=T0 + timedelta(seconds=2)).request_id.tolist() == ["r1", "r1"]


def test_a_shadow_submitted_right_after_its_primary_needs_no_wait(log: PredictionLog) -> None:
    primary = log.submit([record(1)])
    log.submit_shadow([shadow(1)]).result()
    primary.result()
    assert log.read_shadow()["request_id"].tolist() == ["r1"]


def test_answers_commit_before_a_backlog_of_shadow_rows(log: PredictionLog, monkeypatch) -> None:
    from mlsd.store._log_writer import MAX_SHADOW_ROWS_PER_COMMIT as LIMIT

    log.write_sync([record(i) for i in range(3 * LIMIT)])
    writer, seen, release = log._writer, [], threading.Event()
    commit = writer._commit_batch

    def recorded(batch: list[Any]) -> None:
        seen.append([("shadow" if item.shadow_only else "answer", item.size) for item in batch])
        if len(seen) == 1:
            release.wait(10)  # the writer is busy: what follows queues up behind it
        commit(batch)

    monkeypatch.setattr(writer, "_commit_batch", recorded)
    busy = log.submit([record(10_000)])
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    shadows = [log.submit_shadow([shadow(i) for i in range(k * LIMIT, (k + 1) * LIMIT)]) for k in range(3)]
    answer = log.submit([record(10_001)])  # queued after three shadow submissions
    release.set()
    for future in [busy, answer, *shadows]:
        future.result(10)
    # the answer takes the next transaction, with at most LIMIT shadow rows riding along
    assert seen[1][0] == ("answer", 1), seen
    assert all(sum(n for kind, n in batch if kind == "shadow") <= LIMIT for batch in seen), seen
    assert len(log.read_shadow()) == 3 * LIMIT


def test_shadow_rows_queued_at_close_are_committed(url: str) -> None:
    with PredictionLog(url, max_delay_ms=1.0) as log:
        log.write_sync([record(i) for i in range(50)])
        futures = [log.submit_shadow([shadow(i)]) for i in range(50)]
    assert all(f.done() and f.exception() is None for f in futures)
    with PredictionLog(url) as again:
        assert len(again.read_shadow()) == 50


def test_shadow_failures_are_the_futures_never_the_callers(log: PredictionLog) -> None:
    log.write_sync([record(1)])
    orphan = log.submit_shadow([shadow(9)])  # its primary was never logged
    with pytest.raises(NotFoundError):
        orphan.result()
    log.submit_shadow([shadow(1)]).result()
    with pytest.raises(ConflictError):
        log.submit_shadow([shadow(1)]).result()
    with pytest.raises(LogError) as caught:
        log.submit_shadow([shadow(1, request_id="")]).result()
    assert caught.value.field == "request_id"
    with pytest.raises(LogError):
        log.submit_shadow([shadow(1, decision={1, object()})]).result()
    assert not log.failing  # a bad shadow is not a log that cannot commit
    log.write_sync([record(2)])  # and later writes still go through
    assert log.read_shadow()["request_id"].tolist() == ["r1"]
    assert log.submit_shadow([]).result() is None


def test_shadow_on_a_log_that_is_not_running_fails_the_future(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}")  # no database work: SQLite only
    with pytest.raises(LogError, match="not running"):
        log.submit_shadow([shadow(1)]).result()
    log.start()
    log.close()
    with pytest.raises(LogError, match="not running"):
        log.submit_shadow([shadow(1)]).result()

"""The column-wise SQLite read gives read_predictions' generic (SQLAlchemy rows) frame exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlsd.store import PredictionLog, PredictionRecord
from mlsd.store import _log_sqlite_read as fast

T0 = datetime(2024, 3, 4, tzinfo=UTC)


def _records(n: int, seed: int, inputs: Any) -> list[PredictionRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        # written in shuffled time order, with ties and rows without an event time: the rowid
        # order the aggregates meet the rows in is not the window's order
        hour = int(rng.integers(0, 24 * 14))
        when = T0 + timedelta(hours=hour)
        routed = i % 3 == 0
        out.append(
            PredictionRecord(
                request_id=f"r-{rng.integers(0, 10**9):09d}-{i}",
                logged_at=when + timedelta(seconds=int(rng.integers(0, 60))),
                event_time=None if i % 11 == 0 else when,
                model_name="m",
                model_version=1 + i % 2,
                variant="champion" if i % 4 else "challenger",
                inputs=inputs(i, rng),
                score=None if i % 17 == 0 else float(rng.random()),
                decision=bool(i % 2),
                latency_ms=float(rng.random() * 10),
                assigned_variant="challenger" if routed else None,
                propensity=0.25 if routed else None,
                unit=f"u{i % 7}" if routed else None,
                assignment="sticky" if routed else None,
                fallback="timeout" if i % 13 == 0 else None,
                scoring_ms=None if i % 5 == 0 else 1.5,
            )
        )
    return out


def _flat(i: int, rng: np.random.Generator) -> dict[str, Any]:
    row: dict[str, Any] = {"distance": int(rng.integers(100, 3000)), "carrier": ["UA", "AA", "DL"][i % 3]}
    if i % 9 == 4:  # a field only some rows carry, first met late in rowid order
        row["late"] = float(rng.random())
    if i % 6 == 0:
        row["temp"] = None
    else:
        row["temp"] = float(rng.normal(10, 5))
    return row


def _mixed(i: int, rng: np.random.Generator) -> dict[str, Any]:
    # mixed types in a field and nested values: Arrow cannot type them, json.loads decides
    return {"x": i if i % 2 else str(i), "tags": ["a", i], "y": float(rng.random())}


def _log(tmp_path: Path, inputs: Any, n: int = 700) -> PredictionLog:
    log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}").start()
    records = _records(n, seed=3, inputs=inputs)
    for lo in range(0, n, 50):
        log.write_sync(records[lo : lo + 50])
    for j, record in enumerate(records):
        if j % 3:
            log.add_feedback(record.request_id, bool(j % 2), received_at=record.logged_at + timedelta(days=1))
    return log


def _generic(log: PredictionLog, monkeypatch: pytest.MonkeyPatch, **window: Any) -> pd.DataFrame:
    with monkeypatch.context() as m:
        m.setattr(log, "_read_sqlite", lambda *args: None)
        return log.read_predictions(**window)


WINDOWS = [
    {},
    {"since": T0 + timedelta(days=3), "until": T0 + timedelta(days=9)},
    {"since": T0 + timedelta(days=2), "time": "logged_at"},
    {"until": T0 - timedelta(days=1)},  # nothing in it
]


@pytest.mark.parametrize("inputs", [_flat, _mixed], ids=["arrow", "json-loads"])
@pytest.mark.parametrize("window", WINDOWS, ids=["all", "since-until", "logged-at", "empty"])
def test_the_columnwise_read_equals_the_generic_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inputs: Any, window: dict[str, Any]
) -> None:
    log = _log(tmp_path, inputs)
    # several batches of tuples and several rowid ranges of aggregates
    monkeypatch.setattr(fast, "_BATCH", 64)
    monkeypatch.setattr(fast, "_ROWID_SPAN", 97)
    expected = _generic(log, monkeypatch, **window)
    seen = []
    real = fast.read_sqlite_predictions
    monkeypatch.setattr(
        "mlsd.store.prediction_log.read_sqlite_predictions",
        lambda *a: seen.append(1) or real(*a),
    )
    got = log.read_predictions(**window)
    log.close()
    assert seen, "the SQLite log did not take the column-wise read"
    pd.testing.assert_frame_equal(got, expected)
    if window == {}:
        assert len(got) == 700 and got["outcome"].notna().sum() > 400
        assert got["event_time"].isna().any() and got["score"].isna().any()


def test_an_empty_log_reads_as_the_generic_empty_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PredictionLog(f"sqlite:///{tmp_path / 'p.db'}") as log:
        pd.testing.assert_frame_equal(log.read_predictions(), _generic(log, monkeypatch))


def test_rows_added_between_the_two_reads_are_not_mixed_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the tuples and the aggregates are read in one snapshot: a row committed in between (by
    # another connection) is in neither, so the frame stays aligned
    log = _log(tmp_path, _flat, n=200)
    other = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}").start()
    late = _records(1, seed=9, inputs=_flat)
    real = fast._meta

    def meta_then_write(*args: Any) -> Any:
        out = real(*args)
        other.write_sync(late)
        return out

    monkeypatch.setattr(fast, "_meta", meta_then_write)
    got = log.read_predictions()
    assert len(got) == 200 and late[0].request_id not in set(got["request_id"])
    monkeypatch.setattr(fast, "_meta", real)
    assert len(log.read_predictions()) == 201
    other.close()
    log.close()


def _reordered_keys(i: int, rng: np.random.Generator) -> dict[str, Any]:
    # clients sending the fields in another order, and one that only some rows carry
    row = _flat(i, rng)
    if i % 4 == 1:
        row = dict(reversed(list(row.items())))
    return row


def test_input_columns_come_in_the_order_the_window_meets_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _log(tmp_path, _reordered_keys, n=300)
    monkeypatch.setattr(fast, "_ROWID_SPAN", 41)
    for window in WINDOWS[:3]:
        expected = _generic(log, monkeypatch, **window)
        got = log.read_predictions(**window)
        assert list(got.columns) == list(expected.columns)
        pd.testing.assert_frame_equal(got, expected)
    log.close()


@pytest.mark.parametrize("in_time_order", [True, False])
def test_a_key_first_met_with_a_null_value_keeps_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_time_order: bool
) -> None:
    # the window's first row carries "b" as null: the generic read places "b" there, not where
    # it first has a value (found on a week of the benchmark's flights, "pressure")
    records = _records(120, seed=5, inputs=lambda i, rng: {"a": i, "b": None if i < 60 else 1.5, "c": "x"})
    if in_time_order:
        records.sort(key=lambda r: (r.event_time or r.logged_at, r.request_id))
    log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}").start()
    log.write_sync(records)
    monkeypatch.setattr(fast, "_ROWID_SPAN", 29)
    for window in WINDOWS[:3]:
        expected = _generic(log, monkeypatch, **window)
        got = log.read_predictions(**window)
        assert list(got.columns)[-3:] == ["a", "b", "c"]
        pd.testing.assert_frame_equal(got, expected)
    log.close()


def test_a_blob_in_a_text_column_is_left_to_the_generic_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the text columns are aggregated as bytes and typed by Arrow; a value stored as a BLOB (not
    # UTF-8 text) is what the driver returns as bytes, so the generic read decides for that window
    import sqlite3

    log = _log(tmp_path, _flat, n=60)
    with sqlite3.connect(tmp_path / "p.db") as raw:
        raw.execute("UPDATE predictions SET unit = X'00ff' WHERE rowid = 7")
    expected = _generic(log, monkeypatch)
    got = log.read_predictions()
    log.close()
    assert b"\x00\xff" in set(got["unit"])
    pd.testing.assert_frame_equal(got, expected)


def test_rows_logged_in_strictly_increasing_time_read_in_that_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the usual log (the benchmark's): no two rows share a time, so the window's order is the
    # aggregates' own and no sort runs; a window read through the time index still aligns
    import dataclasses

    records = [
        dataclasses.replace(r, event_time=T0 + timedelta(minutes=i), logged_at=T0 + timedelta(minutes=i))
        for i, r in enumerate(_records(150, seed=11, inputs=_flat))
    ]
    log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}").start()
    log.write_sync(records)
    monkeypatch.setattr(fast, "_ROWID_SPAN", 23)
    for window in WINDOWS:
        expected = _generic(log, monkeypatch, **window)
        got = log.read_predictions(**window)
        pd.testing.assert_frame_equal(got, expected)
    assert list(log.read_predictions()["request_id"]) == [r.request_id for r in records]
    log.close()

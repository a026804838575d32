"""``PredictionLog.variant_counts``: the per-variant counts ``GET /v1/admin/state`` reports, counted
in SQL, equal what pandas counts on the rows of ``read_outcomes`` (the way the admin state was
computed before), on a SQLite log file and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlsd.store import PredictionLog, PredictionRecord

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
ALIASES = np.array(["champion", "challenger", "old"])


def random_records(seed: int, n: int) -> list[PredictionRecord]:
    """Rows answered by one alias and assigned to another (a fallback) or not recorded (None)."""
    rng = np.random.default_rng(seed)
    answered = rng.choice(ALIASES, size=n, p=[0.6, 0.3, 0.1])
    assigned = rng.choice(np.append(ALIASES, None), size=n, p=[0.4, 0.3, 0.1, 0.2])
    seconds = rng.integers(0, 3600, size=n)
    return [
        PredictionRecord(
            request_id=f"s{seed}-{i}",
            logged_at=T0 + timedelta(seconds=int(s)),
            event_time=None,
            model_name="m",
            model_version=1,
            variant=str(v),
            inputs={"x": i},
            score=0.5,
            decision=bool(i % 2),
            latency_ms=1.0,
            assigned_variant=None if a is None else str(a),
            fallback=None if a is None or a == v else "circuit_open",
        )
        for i, (v, a, s) in enumerate(zip(answered, assigned, seconds, strict=True))
    ]


def pandas_counts(log: PredictionLog, since: datetime | None) -> pd.DataFrame:
    """The counts as the admin state computed them from the rows."""
    served = log.read_outcomes(since=since)
    requests = served["assigned_variant"].fillna(served["variant"]).value_counts()
    answered = served["variant"].value_counts()
    names = sorted(set(requests.index) | set(answered.index))
    return pd.DataFrame(
        {
            "variant": pd.Series(names, dtype=object),
            "requests": [int(requests.get(k, 0)) for k in names],
            "answered": [int(answered.get(k, 0)) for k in names],
        }
    ).astype({"requests": "int64", "answered": "int64"})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sql_counts_equal_the_pandas_counts(url: str, seed: int) -> None:
    records = random_records(seed, 400)
    with PredictionLog(url, max_delay_ms=1.0) as log:
        log.write_sync(records)
        for r in records[::3]:  # feedback joins one row per prediction: it must not change a count
            log.add_feedback(r.request_id, r.decision)
        cuts: list[Any] = [None, T0 + timedelta(minutes=20), T0 + timedelta(minutes=59)]
        for since in cuts:
            got = log.variant_counts(since=since)
            pd.testing.assert_frame_equal(got, pandas_counts(log, since))
        everything = log.variant_counts()
        assert everything["answered"].sum() == everything["requests"].sum() == len(records)


def test_no_rows_counts_nothing(url: str) -> None:
    with PredictionLog(url) as log:
        empty = log.variant_counts()
        assert list(empty.columns) == ["variant", "requests", "answered"] and empty.empty
        log.write_sync(random_records(3, 10))
        assert log.variant_counts(since=T0 + timedelta(days=1)).empty

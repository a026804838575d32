"""Reservoir sampling over the prediction log (``mlsd log --sample``): uniform, in bounded memory.

Uniformity is judged by a chi-squared test on the sampled rows' stream positions bucketed into
deciles; a deliberately biased sampler fails the same test, so the test can fail.
"""

from __future__ import annotations

import io
import sqlite3
import tracemalloc
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.data.sampling import reservoir_sample, sample_prediction_log
from mlsd.store import PredictionLog, PredictionRecord
from support import write_tiny_design

_T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _decile_p(positions: np.ndarray, total: int) -> float:
    observed = np.bincount(np.asarray(positions) * 10 // total, minlength=10)
    return float(stats.chisquare(observed).pvalue)


def naive_merge_sample(chunks: Iterable[pd.DataFrame], n: int, *, seed: int = 0) -> pd.DataFrame:
    """A plausible bug: each chunk is merged with the kept rows and ``n`` drawn uniformly from the
    union, as if the kept rows stood for themselves and not for everything read before them.
    Later chunks are over-represented."""
    rng = np.random.default_rng(seed)
    kept = pd.DataFrame()
    for chunk in chunks:
        union = pd.concat([kept, chunk], ignore_index=True)
        kept = union.iloc[np.sort(rng.choice(len(union), size=min(n, len(union)), replace=False))]
    return kept.reset_index(drop=True)


def _stream(total: int, chunk: int) -> Iterator[pd.DataFrame]:
    for start in range(0, total, chunk):
        yield pd.DataFrame({"position": np.arange(start, min(start + chunk, total))})


def test_reservoir_deciles_pass_chi_square_and_a_biased_sampler_fails() -> None:
    total, n = 1_000_000, 2_000
    p_values = [
        _decile_p(reservoir_sample(_stream(total, 50_000), n, seed=s)["position"].to_numpy(), total)
        for s in range(3)
    ]
    assert min(p_values) > 1e-3, p_values
    biased = naive_merge_sample(_stream(total, 50_000), n, seed=0)["position"].to_numpy()
    assert len(biased) == n and _decile_p(biased, total) < 1e-10


def _fill_log(path: Path, rows: int) -> PredictionLog:
    """A log of ``rows`` predictions, ids ``r0000000``... in stream order, built by one SQL statement
    (a recursive CTE inside SQLite: no Python loop, about 2 s for a million rows)."""
    log = PredictionLog(f"sqlite:///{path}")
    log.count_predictions()  # creates the tables, indexes included
    log.close()
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA synchronous=OFF")
        con.execute(
            """WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1)
            INSERT INTO predictions (request_id, logged_at, event_time, model_name, model_version,
                                     variant, inputs, score, decision, latency_ms)
            SELECT printf('r%07d', i), ? + i * 1000000, ? + i * 1000000, 'm', 1, 'champion',
                   '{"x":' || i || ',"c":"' || (i % 3) || '"}', (i % 100) / 100.0, 'true', 1.0
            FROM n""",
            (rows, int(_T0.timestamp() * 1e6), int(_T0.timestamp() * 1e6)),
        )
    return PredictionLog(f"sqlite:///{path}")


def _positions(frame: pd.DataFrame) -> np.ndarray:
    return frame["request_id"].str[1:].astype(int).to_numpy()


@pytest.mark.slow
def test_log_sample_of_a_million_rows_is_uniform_in_bounded_memory(tmp_path: Path) -> None:
    total, n = 1_000_000, 2_000
    path = tmp_path / "predictions.db"
    log = _fill_log(path, total)
    tracemalloc.start()
    sample = sample_prediction_log(log, n, seed=5, chunk_rows=20_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(sample) == n and sample["request_id"].is_unique
    assert (sample["x"].to_numpy() == _positions(sample)).all()  # whole rows, inputs decoded
    assert _decile_p(_positions(sample), total) > 1e-3
    # the database alone is ~140 MB; one 20,000-id chunk and the reservoir are a few MB
    assert peak < path.stat().st_size / 10, (peak, path.stat().st_size)
    # the same id chunks through the biased sampler fail the same test
    biased = naive_merge_sample(log.iter_request_ids(chunk_rows=20_000), n)
    assert _decile_p(_positions(biased), total) < 1e-10


def test_log_sample_is_uniform_and_reads_whole_rows_of_the_period(tmp_path: Path) -> None:
    total = 60_000
    log = _fill_log(tmp_path / "predictions.db", total)
    sample = sample_prediction_log(log, 3_000, seed=2, chunk_rows=7_000)
    assert len(sample) == 3_000 and _decile_p(_positions(sample), total) > 1e-3
    # the rows are read_predictions' rows for those ids, in its order
    whole = log.read_predictions()
    expected = whole[whole["request_id"].isin(sample["request_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(sample, expected)
    # a period: only its rows can be drawn, and a sample larger than it is all of it
    since, until = _T0 + timedelta(seconds=100), _T0 + timedelta(seconds=150)
    part = sample_prediction_log(log, 1_000, since=since, until=until, chunk_rows=9)
    assert _positions(part).tolist() == list(range(100, 150))


def test_request_id_chunks_cover_every_row_once(tmp_path: Path) -> None:
    log = _fill_log(tmp_path / "predictions.db", 1_003)
    chunks = list(log.iter_request_ids(chunk_rows=100))
    assert [len(c) for c in chunks] == [100] * 10 + [3]
    ids = pd.concat(chunks)["request_id"]
    assert ids.is_unique and len(ids) == 1_003 and ids.is_monotonic_increasing
    assert log.read_predictions_by_id(["nope"]).empty
    assert sample_prediction_log(PredictionLog("sqlite://"), 5).empty


runner = CliRunner()


def _record(i: int) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"r-{i:03d}",
        logged_at=_T0 + timedelta(minutes=i),
        event_time=_T0 + timedelta(days=i),
        model_name="tiny",
        model_version=1,
        variant="champion",
        inputs={"mpg": 20.0 + i, "hp": 100, "wt": 2.5},
        score=i / 40,
        decision=bool(i % 2),
        latency_ms=1.0,
    )


def test_cli_log_sample_exports_or_prints_a_uniform_sample(tmp_path: Path) -> None:
    design = write_tiny_design(tmp_path)
    workspace = tmp_path / ".mlsd" / "tiny"
    workspace.mkdir(parents=True)
    with PredictionLog.for_workspace(workspace) as log:
        log.write_sync([_record(i) for i in range(40)])
    out = tmp_path / "sample.parquet"
    result = runner.invoke(app, ["log", str(design), "--sample", "6", "--seed", "3", "--export", str(out)])
    assert result.exit_code == 0, result.output
    assert "a uniform sample of 6 predictions (seed 3)" in " ".join(result.output.split())
    frame = pd.read_parquet(out)
    assert (
        len(frame) == 6 and frame["request_id"].is_unique and frame["request_id"].str.startswith("r-").all()
    )
    assert (frame["mpg"] == 20.0 + frame["request_id"].str[2:].astype(int)).all()
    again = runner.invoke(app, ["log", str(design), "--sample", "6", "--seed", "3"])
    assert again.exit_code == 0, again.output
    printed = pd.read_csv(io.StringIO(again.stdout))
    assert printed["request_id"].tolist() == frame["request_id"].tolist()  # same seed, same sample
    period = runner.invoke(app, ["log", str(design), "--sample", "100", "--since", "2024-01-31"])
    assert period.exit_code == 0 and "the period holds only 10" in " ".join(period.output.split())
    bad = runner.invoke(app, ["log", str(design), "--sample", "0"])
    assert bad.exit_code == 2

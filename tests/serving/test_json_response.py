"""The orjson answers and the per-label counting of the predict route equal what they replaced:
Starlette's JSONResponse (json.dumps) and one ``inc`` per committed record."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import JSONResponse

from mlsd.serving.bodies import json_response
from mlsd.serving.metrics import ServingMetrics

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=16)  # non-ASCII, controls, emoji
_float = st.floats(allow_nan=False, allow_infinity=False)  # tiny, huge, -0.0, subnormal
_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), _float, _text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=12,
)


def _reference(content: Any) -> bytes:
    return bytes(JSONResponse(content).body)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_text, _value, max_size=6))
def test_the_body_is_the_json_value_starlette_writes(content: dict[str, Any]) -> None:
    got = bytes(json_response(content).body)
    want = _reference(content)
    assert json.loads(got) == json.loads(want)
    # same keys in the same order, same strings byte for byte; a float may only be spelled otherwise
    assert list(json.loads(got)) == list(content)
    if not any(isinstance(v, float) for v in _leaves(content)):
        assert got == want


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=20), st.lists(_text, min_size=1, max_size=20))
def test_a_predict_answer_parses_to_the_same_floats(scores: list[float], ids: list[str]) -> None:
    answers = [{"request_id": i, "score": s, "decision": s >= 0.5} for i, s in zip(ids, scores, strict=False)]
    body = {"model": {"name": "flight-delay", "version": 3}, "predictions": answers}
    got = json.loads(json_response(body, finite=[a["score"] for a in answers]).body)
    assert got == json.loads(_reference(body))
    assert [a["score"] for a in got["predictions"]] == [a["score"] for a in answers]  # exact floats


def test_a_golden_answer_is_byte_for_byte_starlettes() -> None:
    body = {
        "model": {"name": "flight-delay", "version": 1},
        "predictions": [
            {"request_id": "01a242fb15aa96b3", "score": 0.6081680069045236, "decision": True},
            {"request_id": "01a242fb15aa96b4", "score": 0.0, "decision": "Zürich ✈", "reason": None},
        ],
    }
    assert json_response(body).body == _reference(body)
    assert json_response(body).headers["content-type"] == "application/json"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_score_is_refused_as_json_response_refuses_it(bad: float) -> None:
    body = {"predictions": [{"score": bad}]}
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        json_response(body, finite=[bad])
    with pytest.raises(ValueError):
        _reference(body)


@pytest.mark.parametrize("content", [{"n": np.float64(0.5)}, {"n": 2**70}, {1: "key"}])
def test_what_orjson_writes_otherwise_is_left_to_json_response(content: Any) -> None:
    try:
        want: Any = _reference(content)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            json_response(content)
        return
    assert json_response(content).body == want


@pytest.mark.parametrize(
    ("versions", "variants"),
    [
        ([3, 3, 3], ["champion"] * 3),
        ([3, 4, 3, 1], ["champion", "challenger", "champion", "baseline"]),
        (np.array([2, 2, 5]), np.array(["champion", "champion", "challenger"], dtype=object)),
        ([], []),
    ],
)
def test_predictions_are_counted_per_label_as_one_inc_per_row_counts_them(
    versions: Any, variants: Any
) -> None:
    batched, per_row = ServingMetrics(), ServingMetrics()
    batched.count_predictions(versions, variants)
    for version, variant in zip(list(versions), list(variants), strict=True):
        per_row.predictions.labels(model_version=str(version)).inc()
        per_row.variant_predictions.labels(variant=variant).inc()
    assert _counters(batched) == _counters(per_row)


def _counters(m: ServingMetrics) -> list[str]:
    text = m.render().decode().splitlines()
    return sorted(
        line for line in text if line.startswith(("mlsd_predictions_total", "mlsd_variant_predictions_total"))
    )


def test_observed_requests_are_counted_per_route_and_status() -> None:
    m = ServingMetrics()
    for status in (200, 200, 422):
        m.observe_request("/v1/predict", status, 0.004)
    m.observe_request("/v1/feedback", 200, 0.5)
    text = m.render().decode()
    assert 'mlsd_requests_total{route="/v1/predict",status="200"} 2.0' in text
    assert 'mlsd_requests_total{route="/v1/predict",status="422"} 1.0' in text
    assert 'mlsd_requests_total{route="/v1/feedback",status="200"} 1.0' in text
    assert 'mlsd_request_latency_seconds_count{route="/v1/predict"} 3.0' in text
    assert 'mlsd_request_latency_seconds_bucket{le="0.005",route="/v1/predict"} 3.0' in text
    assert 'mlsd_request_latency_seconds_bucket{le="0.25",route="/v1/feedback"} 0.0' in text

"""The fast paths give what the slow ones gave: PackagedModel through LightGBM's booster (the
wrapper's numbers exactly), request bodies through orjson (json.loads's values and errors)."""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.compose import make_column_transformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlsd.serving import bodies
from mlsd.serving.bodies import parse_json
from mlsd.serving.responses import RequestError
from mlsd.store import PackagedModel

rng = np.random.default_rng(0)
X = pd.DataFrame(
    {
        "x": rng.normal(size=600),
        "z": rng.uniform(size=600),
        "c": rng.choice(["a", "b", "c"], size=600),
    }
)
FEATURES = make_column_transformer(
    (StandardScaler(), ["x", "z"]), (OneHotEncoder(sparse_output=False), ["c"])
)


def _fitted(task: str) -> PackagedModel:
    y: np.ndarray
    if task == "regression":
        y = X["x"].to_numpy() * 2 + (X["c"] == "b")
        final = LGBMRegressor(n_estimators=30, verbose=-1)
    elif task == "binary":
        y = np.where(X["x"] + rng.normal(size=600) > 0, "late", "on time")
        final = LGBMClassifier(n_estimators=30, verbose=-1)
    else:
        y = np.where(X["x"] > 0.5, "high", np.where(X["x"] < -0.5, "low", "mid"))
        final = LGBMClassifier(n_estimators=30, verbose=-1)
    pipeline = make_pipeline(FEATURES, final).fit(X, y)
    classes = ["on time", "late"] if task == "binary" else []
    return PackagedModel(pipeline=pipeline, task=task, input_columns=["x", "z", "c"], classes=classes)  # type: ignore[arg-type]


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_booster_gives_the_wrappers_numbers(task: str) -> None:
    model = _fitted(task)
    assert model._direct_booster() is not None  # the fast path is the one under test
    rows = X.sample(50, random_state=1)
    got = model.predict_frame(rows)
    if task == "regression":
        expected = model.pipeline.predict(rows)
        np.testing.assert_array_equal(got["score"].to_numpy(), expected)
        np.testing.assert_array_equal(got["decision"].to_numpy(), expected)
    else:
        proba = model.pipeline.predict_proba(rows)
        if task == "binary":
            positive = list(model.pipeline.classes_).index("late")
            np.testing.assert_array_equal(got["score"].to_numpy(), proba[:, positive])
            assert got["decision"].tolist() == (proba[:, positive] >= 0.5).tolist()
        else:
            np.testing.assert_array_equal(got["score"].to_numpy(), proba.max(axis=1))
            assert got["decision"].tolist() == model.pipeline.predict(rows).tolist()
    assert got.index.equals(rows.index)


def test_a_pickled_model_finds_its_booster_again() -> None:
    model = _fitted("binary")
    before = model.predict_frame(X.head(5))
    assert "_booster" in model.__dict__
    again = pickle.loads(pickle.dumps(model))
    assert "_booster" not in again.__dict__  # the cache is not pickled: a view into the pipeline
    pd.testing.assert_frame_equal(again.predict_frame(X.head(5)), before)


def test_a_pipeline_not_ending_in_lightgbm_takes_the_wrapper() -> None:
    from sklearn.linear_model import LogisticRegression

    pipeline = make_pipeline(FEATURES, LogisticRegression()).fit(X, X["x"] > 0)
    model = PackagedModel(pipeline=pipeline, task="binary", input_columns=["x", "z", "c"])
    assert model._direct_booster() is None
    np.testing.assert_array_equal(
        model.predict_frame(X.head(9))["score"].to_numpy(), pipeline.predict_proba(X.head(9))[:, 1]
    )


# --- request bodies: orjson first, json.loads for what orjson refuses --------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


def _stdlib(raw: bytes) -> Any:
    """parse_json as it was: json.loads with its hooks, then the surrogate walk (the reference)."""
    try:
        return ("ok", bodies._stdlib_parse(raw))
    except RequestError as exc:
        return ("error", exc.status_code, exc.message, exc.errors)


def _ours(raw: bytes) -> Any:
    try:
        return ("ok", parse_json(raw))
    except RequestError as exc:
        return ("error", exc.status_code, exc.message, exc.errors)


def _same(a: Any, b: Any) -> bool:
    # repr keeps what == hides: 1 vs 1.0 vs True, -0.0 vs 0.0
    return repr(a) == repr(b)


@settings(max_examples=400, deadline=None)
@given(
    value=_json_values,
    cut=st.integers(min_value=0, max_value=200),
    junk=st.sampled_from(
        [
            b"",
            b"NaN",
            b"1e309",
            b"\xff",
            b'"\\ud800"',
            b'"\\udc00x"',
            b"]",
            b",",
            b"01",
            b"\xef\xbb\xbf",
            b"\x01",
        ]
    ),
)
def test_parse_json_reads_what_json_loads_reads(value: Any, cut: int, junk: bytes) -> None:
    raw = json.dumps(value, ensure_ascii=bool(cut % 2)).encode("utf-8", "surrogatepass")
    assert _same(_ours(raw), _stdlib(raw))
    broken = raw[:cut] + junk + raw[cut:]  # hostile: the same error (400 / 422) in the same words
    assert _same(_ours(broken), _stdlib(broken))

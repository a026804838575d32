"""The columns path (DeriveColumns.transform_columns, FeaturePipeline.transform_columns, and
PackagedModel's use of them) gives exactly the frame path's matrix and the wrapper's scores.

The rows are frames as the validator types them (int64, float64 with NaN, pandas' str with gaps,
datetime strings) and as pandas reads them (object columns of mixed values, nullable Int64), one
row to a few hundred, with unseen categories, gaps and bad timestamps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lightgbm import LGBMClassifier
from sklearn.pipeline import Pipeline

from mlsd.features import DeriveColumns, build_feature_pipeline
from mlsd.store import PackagedModel
from mlsd.store.packaged import _through_columns

INPUTS = ["dist", "temp", "carrier", "origin", "tail", "dep", "arr", "when"]
DERIVE = {"dep_hour": "dep // 100", "arr_hour": "arr // 100", "span": "dist * 0.5 + temp"}
SPEC: dict[str, Any] = {
    "numeric": ["dist", "temp", "span"],
    "categorical": ["carrier", "origin"],
    "hashed": {"tail": 16},
    "cyclical": {"dep_hour": 24, "arr_hour": 24},
    "time_column": "when",
    "time_parts": ["dayofweek", "hour"],
    "crosses": [["origin", "carrier"]],
}
CARRIERS = ["AA", "UA", "B6", "DL", "ZZ"]  # ZZ: never seen in training
TIMES = ["2013-11-01T00:00:00Z", "2013-03-02T17:00:00Z", "2013-06-01", "not a time", "2013-02-30T00:00:00Z"]


def _rows(rng: np.random.Generator, n: int, *, unseen: bool) -> pd.DataFrame:
    carriers = CARRIERS if unseen else CARRIERS[:4]
    temp = rng.normal(50, 20, n).round(2)
    temp[rng.random(n) < 0.1] = np.nan
    carrier = rng.choice(np.array(carriers, dtype=object), n)
    carrier[rng.random(n) < 0.05] = None
    return pd.DataFrame(
        {
            "dist": rng.integers(80, 5000, n),
            "temp": temp,
            "carrier": pd.array(carrier, dtype="str"),
            "origin": pd.array(rng.choice(["EWR", "JFK", "LGA"], n), dtype="str"),
            "tail": pd.array(rng.choice([f"N{i}" for i in range(40)], n), dtype="str"),
            "dep": rng.integers(500, 2359, n),
            "arr": rng.integers(0, 2359, n),
            "when": pd.array(rng.choice(TIMES if unseen else TIMES[:3], n), dtype="str"),
        }
    )


@pytest.fixture(scope="module")
def model() -> PackagedModel:
    rng = np.random.default_rng(0)
    train = _rows(rng, 800, unseen=False)
    y = (train["temp"].fillna(50) + rng.normal(0, 10, len(train)) > 50).to_numpy()
    pipeline = Pipeline(
        [
            ("derive", DeriveColumns(DERIVE)),
            ("features", build_feature_pipeline(**SPEC)),
            ("model", LGBMClassifier(n_estimators=20, verbose=-1)),
        ]
    ).fit(train, y)
    assert pipeline.named_steps["features"].compiled_ is not None
    return PackagedModel(pipeline=pipeline, task="binary", input_columns=INPUTS)


def _frame_path(model: PackagedModel, rows: pd.DataFrame, engine: str = "auto") -> np.ndarray:
    derive, features = model.pipeline.named_steps["derive"], model.pipeline.named_steps["features"]
    return features.transform(derive.transform(rows), engine=engine)


def _steps(model: PackagedModel) -> list[Any]:
    return [s for _, s in model.pipeline.steps[:-1]]


def _variants(rows: pd.DataFrame) -> list[pd.DataFrame]:
    """The same rows typed as the validator types them, and as pandas reads JSON records."""
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    loose = pd.DataFrame(records)  # object columns, None for gaps
    nullable = rows.astype({"dist": "Int64"})
    shuffled = rows[INPUTS[::-1]].assign(extra="x")  # another column order, a column not read
    return [rows, loose, nullable, shuffled, rows.set_index(pd.Index(np.arange(len(rows)) * 3 + 7))]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from([1, 2, 5, 31, 100, 300]))
def test_the_columns_path_equals_the_frame_path_and_the_wrapper(
    model: PackagedModel, seed: int, n: int
) -> None:
    rows = _rows(np.random.default_rng(seed), n, unseen=True)
    for frame in _variants(rows):
        fast = _through_columns(_steps(model), frame, INPUTS)
        assert fast is not None  # the path under test was taken
        assert fast.dtype == np.float64 and fast.flags.c_contiguous
        np.testing.assert_array_equal(fast, _frame_path(model, frame), strict=True)
        np.testing.assert_array_equal(fast, _frame_path(model, frame, "sklearn"), strict=True)
        got = model.predict_frame(frame)
        expected = model.pipeline.predict_proba(frame)[:, 1]
        np.testing.assert_array_equal(got["score"].to_numpy(), expected, strict=True)
        assert got["decision"].tolist() == (expected >= 0.5).tolist()
        assert got.index.equals(frame.index)


def test_an_expression_numpy_does_not_take_goes_through_pandas_on_the_arrays() -> None:
    rows = _rows(np.random.default_rng(1), 40, unseen=True)
    step = DeriveColumns({"late": "(dep > 1700) & temp.notna()", "dep_hour": "dep // 100"}).fit(rows)
    out = step.transform_columns(
        {c: rows[c].to_numpy() if c in ("dep", "temp") else rows[c].array for c in rows}, rows.index
    )
    assert out is not None
    reference = step.transform(rows)
    for name in ("late", "dep_hour"):
        pd.testing.assert_series_equal(pd.Series(out[name], name=name), reference[name], check_exact=True)


def test_what_the_columns_path_declines_the_frame_path_decides(model: PackagedModel) -> None:
    rows = _rows(np.random.default_rng(2), 5, unseen=True)
    steps = _steps(model)
    # infinity: the compiled kernels hand it back; the frame path raises sklearn's error
    bad = rows.assign(temp=[np.inf, 1.0, 2.0, 3.0, 4.0])
    assert _through_columns(steps, bad, INPUTS) is None
    with pytest.raises(ValueError, match="infinity"):
        model.predict_frame(bad)
    # text in a number column: the frame path's SchemaError names the column
    assert _through_columns(steps, rows.assign(temp=["far", 1, 2, 3, 4]), INPUTS) is None
    with pytest.raises(Exception, match="temp"):
        model.predict_frame(rows.assign(temp=["far", 1, 2, 3, 4]))
    # duplicated column names: the frame path's own handling
    twice = pd.concat([rows, rows[["temp"]]], axis=1)
    assert _through_columns(steps, twice, INPUTS) is None
    # a step without the method: the frame path
    assert _through_columns([*steps, object()], rows, INPUTS) is None

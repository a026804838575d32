"""The project transformers follow scikit-learn's rules and do what their names say."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from mlsd.features.transformers import (
    CyclicalEncoder,
    DateTimeParts,
    FeatureCross,
    HashingEncoder,
    as_category_strings,
)

# sklearn compares transformer outputs with assert_allclose, which cannot subtract strings;
# the same properties are checked below by string equality.
_STRING_OUTPUT_CHECKS = {
    name: "outputs strings, which sklearn compares numerically (checked below by equality)"
    for name in (
        "check_pipeline_consistency",
        "check_estimators_pickle",
        "check_transformer_data_not_an_array",
        "check_transformer_general",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_fit_idempotent",
    )
}


def _expected_failed(estimator):
    return _STRING_OUTPUT_CHECKS if isinstance(estimator, FeatureCross) else {}


ESTIMATORS = [
    CyclicalEncoder(period=24.0),
    DateTimeParts(),
    DateTimeParts(parts=("weekofyear", "is_weekend", "dayofyear", "minute", "day")),
    HashingEncoder(n_features=16),
    HashingEncoder(n_features=8, sparse_output=True),
    FeatureCross(),
]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def crossable() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "origin": ["EWR", "JFK", "LGA", "EWR", None, "JFK"],
            "carrier": ["UA", "B6", "DL", "UA", "AA", None],
            "flight": [1545, 725, 461, 1545, 3.0, 1.5],
        }
    )


def test_feature_cross_is_pairwise_and_handles_missing(crossable):
    cross = FeatureCross(separator="|").fit(crossable)
    out = cross.transform(crossable)
    assert cross.get_feature_names_out().tolist() == [
        "origin_x_carrier",
        "origin_x_flight",
        "carrier_x_flight",
    ]
    assert out[0].tolist() == ["EWR|UA", "EWR|1545", "UA|1545"]
    assert out[4].tolist() == ["missing|AA", "missing|3", "AA|3"]
    assert out[5].tolist() == ["JFK|missing", "JFK|1.5", "missing|1.5"]


def test_feature_cross_string_invariances(crossable):
    """The sklearn checks skipped for string output, by string equality."""
    cross = FeatureCross().fit(crossable)
    expected = cross.transform(crossable)
    np.testing.assert_array_equal(FeatureCross().fit_transform(crossable), expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(cross)).transform(crossable), expected)
    order = np.arange(len(crossable))[::-1]
    np.testing.assert_array_equal(cross.transform(crossable.iloc[order]), expected[order])
    np.testing.assert_array_equal(cross.transform(crossable.iloc[2:4]), expected[2:4])
    np.testing.assert_array_equal(cross.fit(crossable).transform(crossable), expected)
    np.testing.assert_array_equal(
        FeatureCross().fit(crossable.to_numpy()).transform(crossable.to_numpy()), expected
    )


def test_feature_cross_needs_two_columns():
    with pytest.raises(ValueError, match="at least 2 columns"):
        FeatureCross().fit(pd.DataFrame({"a": ["x"]}))


def test_cyclical_encoder_wraps_around_and_keeps_missing():
    enc = CyclicalEncoder(period=[24, 12]).fit(pd.DataFrame({"hour": [0.0], "month": [1.0]}))
    out = enc.transform(pd.DataFrame({"hour": [0.0, 24.0, 12.0, np.nan], "month": [12.0, 0.0, 6.0, 3.0]}))
    np.testing.assert_allclose(out[0], out[1], atol=1e-12)
    np.testing.assert_allclose(out[2], [0.0, -1.0, 0.0, -1.0], atol=1e-12)
    assert np.isnan(out[3, :2]).all() and np.isfinite(out[3, 2:]).all()
    assert enc.get_feature_names_out().tolist() == ["hour_sin", "hour_cos", "month_sin", "month_cos"]


@pytest.mark.parametrize("period", [0, -3.0, [24.0, 0.0], [24.0, 12.0, 7.0], float("nan")])
def test_cyclical_encoder_rejects_bad_period(period):
    with pytest.raises(ValueError, match="period"):
        CyclicalEncoder(period=period).fit(np.ones((3, 2)))


def test_date_time_parts_same_instant_any_form():
    iso = pd.Series(["2013-01-05T10:00:00Z", "2013-06-30T23:59:00Z", "2013-12-30T00:15:00Z"], name="t")
    utc = pd.to_datetime(iso, utc=True)
    forms = {
        "iso": iso.to_frame(),
        "object_iso": iso.astype(object).to_frame(),
        "naive": utc.dt.tz_localize(None).to_frame(),
        "aware_utc": utc.to_frame(),
        "aware_new_york": utc.dt.tz_convert("America/New_York").to_frame(),
        "timestamps_as_objects": utc.astype(object).to_frame(),
        "epoch_seconds": ((utc - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_frame(),
    }
    enc = DateTimeParts(
        parts=("hour", "dayofweek", "day", "month", "dayofyear", "weekofyear", "is_weekend", "minute")
    )
    expected = enc.fit(forms["iso"]).transform(forms["iso"])
    assert expected.tolist() == [
        [10, 5, 5, 1, 5, 1, 1, 0],
        [23, 6, 30, 6, 181, 26, 1, 59],
        [0, 0, 30, 12, 364, 1, 0, 15],
    ]
    for name, frame in forms.items():
        np.testing.assert_array_equal(enc.transform(frame), expected, err_msg=name)


def test_date_time_parts_unparseable_is_nan_and_time_zone_is_applied():
    frame = pd.DataFrame({"t": ["2013-01-01T10:00:00Z", "yesterday", None, ""]})
    out = DateTimeParts(parts=("hour", "is_weekend")).fit_transform(frame)
    assert out[0].tolist() == [10.0, 0.0]
    assert np.isnan(out[1:]).all()
    local = DateTimeParts(parts=("hour",), tz="America/New_York").fit_transform(frame.iloc[:1])
    assert local.tolist() == [[5.0]]


def test_date_time_parts_rejects_unknown_part():
    with pytest.raises(ValueError, match="parts must be"):
        DateTimeParts(parts=("hour", "fortnight")).fit(pd.DataFrame({"t": ["2013-01-01"]}))


def test_hashing_encoder_prefixes_columns_and_normalises_values():
    enc = HashingEncoder(n_features=2**20, alternate_sign=False).fit(pd.DataFrame({"a": ["x"], "b": ["x"]}))
    out = enc.transform(pd.DataFrame({"a": ["x"], "b": ["x"]}))
    assert np.count_nonzero(out) == 2  # same value, two columns, two buckets
    one = HashingEncoder(n_features=64, alternate_sign=False)
    as_int = one.fit_transform(pd.DataFrame({"n": [1, 2]}))
    as_float = one.fit_transform(pd.DataFrame({"n": [1.0, np.nan]}))
    as_text = one.fit_transform(pd.DataFrame({"n": ["1", None]}))
    np.testing.assert_array_equal(as_int[0], as_float[0])
    np.testing.assert_array_equal(as_float, as_text)
    assert as_float[1].sum() == 1.0  # the missing token is hashed like any value


def test_hashing_encoder_sparse_output_and_names():
    frame = pd.DataFrame({"tailnum": ["N14228", "N24211", None]})
    enc = HashingEncoder(n_features=8, sparse_output=True).fit(frame)
    out = enc.transform(frame)
    assert out.format == "csr" and out.shape == (3, 8)
    np.testing.assert_array_equal(out.toarray(), HashingEncoder(n_features=8).fit_transform(frame))
    assert enc.get_feature_names_out().tolist() == [f"hash{i}" for i in range(8)]


@pytest.mark.parametrize("n_features", [0, -1, 2.5, True])
def test_hashing_encoder_rejects_bad_n_features(n_features):
    with pytest.raises(ValueError, match="n_features"):
        HashingEncoder(n_features=n_features).fit(pd.DataFrame({"a": ["x"]}))


def test_as_category_strings_agrees_across_json_forms():
    from_frame = as_category_strings(pd.DataFrame({"a": [1.0, np.nan, 3.5], "b": ["x", None, "y"]}))
    from_json = as_category_strings(
        pd.DataFrame([{"a": 1, "b": "x"}, {"a": None, "b": None}, {"a": 3.5, "b": "y"}])
    )
    np.testing.assert_array_equal(from_frame, from_json)
    assert from_frame.tolist() == [["1", "x"], ["missing", "missing"], ["3.5", "y"]]

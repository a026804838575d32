"""Project transformers for segment 3: cyclical, date-time parts, feature hashing and crosses.

Each one is a scikit-learn transformer: ``__init__`` only stores parameters, ``fit`` learns
``n_features_in_`` (and ``feature_names_in_`` from a DataFrame) and returns ``self``, and
``get_feature_names_out`` names every output column. They take numpy arrays as well as
DataFrames, so they run inside a ``ColumnTransformer`` and pass ``parametrize_with_checks``.

>>> import pandas as pd
>>> CyclicalEncoder(period=24).fit_transform(pd.DataFrame({"hour": [0, 6]})).round(3).tolist()
[[0.0, 1.0], [1.0, 0.0]]
>>> DateTimeParts(parts=("hour", "month")).fit_transform(pd.DataFrame({"t": ["2013-01-01T10:00:00Z"]}))
array([[10.,  1.]])
>>> FeatureCross().fit_transform(pd.DataFrame({"a": ["EWR"], "b": ["UA"]}))
array([['EWR|UA']], dtype=object)
>>> HashingEncoder(n_features=8).fit_transform(pd.DataFrame({"tailnum": ["N14228"]})).shape
(1, 8)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction import FeatureHasher
from sklearn.utils.validation import (
    FLOAT_DTYPES,
    _check_feature_names_in,
    check_array,
    check_is_fitted,
    validate_data,
)

__all__ = [
    "MISSING_TOKEN",
    "PERIODIC_TIME_PARTS",
    "TIME_PARTS",
    "CyclicalEncoder",
    "DateTimeParts",
    "FeatureCross",
    "HashingEncoder",
    "as_category_strings",
]

MISSING_TOKEN = "missing"
"""The string that stands for a missing value in categorical, hashed and crossed columns."""

TIME_PARTS: tuple[str, ...] = (
    "hour",
    "dayofweek",
    "day",
    "month",
    "dayofyear",
    "weekofyear",
    "is_weekend",
    "minute",
)
"""Every part :class:`DateTimeParts` can extract."""

PERIODIC_TIME_PARTS: dict[str, float] = {
    "hour": 24.0,
    "dayofweek": 7.0,
    "month": 12.0,
    "dayofyear": 365.25,
    "day": 31.0,
    "minute": 60.0,
}
"""Time parts that wrap around, with the period used to encode them on a circle."""

_PANDAS_PART = {"dayofweek": "day_of_week", "dayofyear": "day_of_year"}

_NUMBER_KINDS = ("integer", "floating", "mixed-integer-float")

# Integers are exact in float64 up to 2**53; past that the float text is kept as is.
_EXACT_INT = 2.0**53


def _column_strings(values: pd.Series) -> pd.Series:
    """One column as strings; integral numbers print without '.0' so 1 and 1.0 agree."""
    # Numbers inside an object column (JSON rows) are written like those of a numeric column.
    numeric = pd.api.types.is_numeric_dtype(values.dtype) or (
        values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in _NUMBER_KINDS
    )
    if pd.api.types.is_bool_dtype(values.dtype):
        out = values.astype(object).astype(str)
    elif numeric:
        as_float = values.astype("float64")
        out = as_float.astype(str).astype(object)
        integral = np.isfinite(as_float) & (as_float == np.floor(as_float)) & (as_float.abs() < _EXACT_INT)
        out[integral] = as_float[integral].astype("int64").astype(str)
    else:
        out = values.astype(object).astype(str).astype(object)
    out[values.isna().to_numpy()] = MISSING_TOKEN
    return out


def as_category_strings(X: Any) -> np.ndarray:
    """Every cell as a string, missing cells as ``'missing'`` (a stateless categorical imputation).

    Used before one-hot encoding so numbers, strings and ``None`` from JSON all become
    comparable categories.

    >>> as_category_strings(pd.DataFrame({"a": ["x", None], "b": [1.0, 2.5]}))
    array([['x', '1'],
           ['missing', '2.5']], dtype=object)
    """
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
    if frame.shape[1] == 0:
        return np.empty((frame.shape[0], 0), dtype=object)
    columns = [_column_strings(frame.iloc[:, i]).to_numpy(dtype=object) for i in range(frame.shape[1])]
    return np.column_stack(columns)


def _parse_times(values: pd.Series, tz: str = "UTC") -> pd.Series:
    """One column of date-times in any accepted form as time-zone aware stamps in ``tz``.

    The single parser behind :class:`DateTimeParts` (and its compiled copy), so both agree.

    >>> _parse_times(pd.Series(["2013-01-01T10:00:00Z", "nope", None])).dt.hour.tolist()
    [10.0, nan, nan]
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        stamps = values
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        stamps = values.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        as_float = values.astype("float64").where(np.isfinite(values.astype("float64")))
        stamps = pd.to_datetime(as_float, unit="s", utc=True, errors="coerce")
    else:
        # Text of datetime objects is ISO 8601 too, so one strict format covers every object column.
        text = values.astype(object).astype(str).where(values.notna().to_numpy())
        stamps = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    return stamps.dt.tz_convert(tz)


def _validated_frame(estimator: BaseEstimator, X: Any, *, reset: bool) -> pd.DataFrame:
    """Check shape and feature names like sklearn does, keeping a DataFrame's own dtypes."""
    if isinstance(X, pd.DataFrame):
        if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"Found array with shape {X.shape}; expected at least 1 sample and 1 feature.")
        frame = X
    else:
        # dtype=None keeps strings and datetimes; the finiteness check is left to each transform.
        array = check_array(X, dtype=None, ensure_all_finite=False, estimator=estimator)
        frame = pd.DataFrame(array)
    validate_data(estimator, X, reset=reset, skip_check_array=True)
    return frame


def _input_names(estimator: BaseEstimator) -> list[str]:
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    return [f"x{i}" for i in range(estimator.n_features_in_)]


class CyclicalEncoder(TransformerMixin, BaseEstimator):
    """Encode periodic numbers (hour, month, angle) as ``sin`` and ``cos`` of ``2πx/period``.

    Hour 23 and hour 0 end up close together, which a plain number cannot express.
    ``period`` is one number for every column or a list with one per column. Missing
    values stay missing (impute first).

    >>> enc = CyclicalEncoder(period=[24, 12]).fit(pd.DataFrame({"hour": [6], "month": [3]}))
    >>> enc.get_feature_names_out().tolist()
    ['hour_sin', 'hour_cos', 'month_sin', 'month_cos']
    >>> enc.transform(pd.DataFrame({"hour": [6], "month": [3]})).round(6).tolist()
    [[1.0, 0.0, 1.0, 0.0]]
    """

    def __init__(self, period: float | Sequence[float]) -> None:
        self.period = period

    def fit(self, X: Any, y: Any = None) -> CyclicalEncoder:
        X = validate_data(self, X, dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan", reset=True)
        periods = np.asarray(self.period, dtype=np.float64).ravel()
        if periods.size == 1:
            periods = np.repeat(periods, self.n_features_in_)
        if periods.size != self.n_features_in_:
            raise ValueError(
                f"period has {periods.size} values but X has {self.n_features_in_} feature(s); "
                "give one period, or one per column."
            )
        if not np.all(np.isfinite(periods) & (periods > 0)):
            raise ValueError(f"period must be finite and > 0; got {self.period!r}.")
        self.periods_ = periods
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan", reset=False)
        angle = (2.0 * np.pi / self.periods_).astype(X.dtype) * X
        out = np.empty((X.shape[0], 2 * X.shape[1]), dtype=X.dtype)
        out[:, 0::2] = np.sin(angle)
        out[:, 1::2] = np.cos(angle)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        return np.asarray([f"{n}_{f}" for n in names for f in ("sin", "cos")], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class DateTimeParts(TransformerMixin, BaseEstimator):
    """Extract numeric parts (hour, day of week, month, ...) from date-time columns.

    Values may be ``datetime64`` (naive values are read as UTC), time-zone aware, ISO 8601
    strings such as ``'2013-01-01T10:00:00Z'`` or numbers (Unix seconds). Every value is
    converted to ``tz`` before the parts are read, so the same instant gives the same parts
    whatever form it arrives in. Unparseable values give NaN, to be imputed downstream.
    ``is_weekend`` is 1.0 on Saturday and Sunday; ``dayofweek`` is 0 on Monday.

    >>> frame = pd.DataFrame({"t": ["2013-01-05T23:30:00Z", "not a date"]})
    >>> DateTimeParts(parts=("dayofweek", "is_weekend", "minute")).fit_transform(frame).tolist()
    [[5.0, 1.0, 30.0], [nan, nan, nan]]
    """

    def __init__(self, parts: Sequence[str] = ("hour", "dayofweek", "month"), tz: str = "UTC") -> None:
        self.parts = parts
        self.tz = tz

    def fit(self, X: Any, y: Any = None) -> DateTimeParts:
        parts = list(self.parts)
        unknown = sorted(set(parts) - set(TIME_PARTS))
        if not parts or unknown:
            raise ValueError(f"parts must be a non-empty subset of {list(TIME_PARTS)}; got {parts!r}.")
        _validated_frame(self, X, reset=True)
        return self

    def _parse(self, values: pd.Series) -> pd.Series:
        return _parse_times(values, self.tz)

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        frame = _validated_frame(self, X, reset=False)
        parts = list(self.parts)
        out = np.empty((frame.shape[0], frame.shape[1] * len(parts)), dtype=np.float64)
        for i in range(frame.shape[1]):
            dt = self._parse(frame.iloc[:, i]).dt
            missing = dt.hour.isna().to_numpy()
            for j, part in enumerate(parts):
                if part == "weekofyear":
                    values = dt.isocalendar().week.to_numpy(dtype=np.float64, na_value=np.nan)
                elif part == "is_weekend":
                    values = np.where(missing, np.nan, (dt.day_of_week >= 5).to_numpy(dtype=np.float64))
                else:
                    values = getattr(dt, _PANDAS_PART.get(part, part)).to_numpy(
                        dtype=np.float64, na_value=np.nan
                    )
                out[:, i * len(parts) + j] = values
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        return np.asarray([f"{n}_{p}" for n in names for p in self.parts], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        return tags


class HashingEncoder(TransformerMixin, BaseEstimator):
    """Hash high-cardinality string columns into ``n_features`` columns (the hashing trick).

    Each value becomes the token ``'<column>=<value>'`` (so equal values in two columns do
    not collide on purpose), numbers are written as strings and missing values as
    ``'<column>=missing'``. Unseen values need no vocabulary: they hash like any other.
    Wraps :class:`sklearn.feature_extraction.FeatureHasher`.

    >>> frame = pd.DataFrame({"tailnum": ["N14228", None]})
    >>> HashingEncoder(n_features=4, alternate_sign=False).fit_transform(frame).sum(axis=1).tolist()
    [1.0, 1.0]
    """

    def __init__(
        self, n_features: int = 256, alternate_sign: bool = True, sparse_output: bool = False
    ) -> None:
        self.n_features = n_features
        self.alternate_sign = alternate_sign
        self.sparse_output = sparse_output

    def fit(self, X: Any, y: Any = None) -> HashingEncoder:
        if isinstance(self.n_features, bool) or not isinstance(self.n_features, int | np.integer):
            raise ValueError(f"n_features must be an int; got {self.n_features!r}.")
        if self.n_features < 1:
            raise ValueError(f"n_features must be >= 1; got {self.n_features}.")
        _validated_frame(self, X, reset=True)
        self.hasher_ = FeatureHasher(
            n_features=int(self.n_features), input_type="string", alternate_sign=self.alternate_sign
        )
        return self

    def transform(self, X: Any) -> np.ndarray | sparse.csr_matrix:
        check_is_fitted(self)
        frame = _validated_frame(self, X, reset=False)
        tokens = np.column_stack(
            [
                (name + "=" + _column_strings(frame.iloc[:, i])).to_numpy(dtype=object)
                for i, name in enumerate(_input_names(self))
            ]
        )
        hashed = self.hasher_.transform(tokens)
        return hashed.tocsr() if self.sparse_output else hashed.toarray()

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self)
        _check_feature_names_in(self, input_features, generate_names=False)
        return np.asarray([f"hash{i}" for i in range(self.n_features)], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags


class FeatureCross(TransformerMixin, BaseEstimator):
    """Cross categorical columns: one string column ``'a|b'`` per pair of input columns.

    With columns ``a, b, c`` the outputs are ``a_x_b``, ``a_x_c`` and ``b_x_c``. Missing
    values take part as ``'missing'``. One-hot encode or hash the result.

    >>> frame = pd.DataFrame({"origin": ["EWR", "JFK"], "carrier": ["UA", None], "dest": ["IAH", "MIA"]})
    >>> cross = FeatureCross().fit(frame)
    >>> cross.get_feature_names_out().tolist()
    ['origin_x_carrier', 'origin_x_dest', 'carrier_x_dest']
    >>> cross.transform(frame)[1].tolist()
    ['JFK|missing', 'JFK|MIA', 'missing|MIA']
    """

    def __init__(self, separator: str = "|") -> None:
        self.separator = separator

    def fit(self, X: Any, y: Any = None) -> FeatureCross:
        frame = _validated_frame(self, X, reset=True)
        if frame.shape[1] < 2:
            raise ValueError(f"FeatureCross needs at least 2 columns; got {frame.shape[1]} feature(s).")
        if not isinstance(self.separator, str):
            raise ValueError(f"separator must be a string; got {self.separator!r}.")
        self.pairs_ = list(itertools.combinations(range(frame.shape[1]), 2))
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        frame = _validated_frame(self, X, reset=False)
        strings = as_category_strings(frame)
        crossed = [strings[:, a] + self.separator + strings[:, b] for a, b in self.pairs_]
        return np.column_stack(crossed).astype(object)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        return np.asarray([f"{names[a]}_x_{names[b]}" for a, b in self.pairs_], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        tags.transformer_tags.preserves_dtype = []
        return tags

"""Raw columns of one call read once and converted exactly as the reference path converts them.

The compiled feature kernels (:mod:`mlsd.features._compiled`) read their inputs through
:class:`RawColumns`: number columns as float64 (:func:`float_column`, which the reference
path uses too), category columns as the strings :func:`~mlsd.features.as_category_strings`
writes, and date-times as naive-UTC ``datetime64`` with their parts computed in numpy.
Small inputs take per-value shortcuts whose results equal the pandas ones.

>>> import pandas as pd
>>> cols = RawColumns(pd.DataFrame({"t": ["2013-01-05T23:30:00Z"], "c": [None]}), ["t", "c"], frozenset())
>>> time_parts(cols.stamps("t"), ("dayofweek", "hour")).tolist(), cols.strings("c").tolist()
([[5.0, 23.0]], ['missing'])
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import SchemaError
from mlsd.features.transformers import MISSING_TOKEN, _column_strings, _parse_times

__all__ = ["SMALL", "RawColumns", "category_strings", "float_column", "time_parts"]

# Up to this many rows, per-value Python (a dict lookup, a regex) beats a vectorised call's fixed cost.
SMALL = 256
_BULK_CELLS = 8192  # frames up to this many cells are read as one object array
_NO_VALUES = np.empty(0, dtype=object)  # the values of a column not read up front (its dtype is None)
# Only stamps this plain are parsed without pandas; pandas judges anything else (offsets, fractions).
_ISO_UTC = re.compile(
    r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"[T ](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:Z|\+00:00)?"
)


def float_column(values: pd.Series, column: str) -> np.ndarray:
    """A number column as float64 (``None`` and gaps as NaN), or SchemaError naming the column.

    >>> float_column(pd.Series([1, None, "2.5"], dtype=object), "distance").tolist()
    [1.0, nan, 2.5]
    """
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "fiu":
        return values.to_numpy(dtype=np.float64)
    try:
        # JSON rows carry None and ints in object columns.
        return pd.to_numeric(values, errors="raise").astype("float64").to_numpy()
    except (TypeError, ValueError) as exc:
        bad = values[values.notna() & pd.to_numeric(values, errors="coerce").isna()]
        raise SchemaError(
            "a number column holds values that are not numbers",
            field=column,
            received=bad.head(3).tolist() or str(values.dtype),
            expected="numbers or missing values",
        ) from exc


def _is_text(dtype: Any, values: pd.Series | np.ndarray) -> bool:
    """Whether a column holds only strings and gaps (so its category strings are its values)."""
    if isinstance(dtype, pd.StringDtype):
        return True
    is_object = isinstance(dtype, np.dtype) and dtype.kind == "O"
    return is_object and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")


def _text_strings(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[pd.isna(out)] = MISSING_TOKEN
    return out


def category_strings(values: pd.Series) -> np.ndarray:
    """One column as :func:`~mlsd.features.as_category_strings` writes it, quick for text columns.

    >>> category_strings(pd.Series(["UA", None])).tolist(), category_strings(pd.Series([1.0])).tolist()
    (['UA', 'missing'], ['1'])
    """
    if _is_text(values.dtype, values):
        return _text_strings(values.to_numpy(dtype=object))
    return _column_strings(values).to_numpy(dtype=object)


def _iso_seconds(text: np.ndarray, missing: np.ndarray) -> np.ndarray | None:
    """Plain UTC ISO stamps of a few rows via numpy; None when pandas must judge any of them."""
    present = text[~missing]
    if not all(_ISO_UTC.fullmatch(t) for t in present):
        return None
    out = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[s]")
    try:
        out[~missing] = np.array([f"{t[:10]}T{t[11:19]}" for t in present], dtype="datetime64[s]")
    except ValueError:  # a day past the month's end: pandas decides what that becomes
        return None
    return out


def time_parts(stamps: np.ndarray, parts: Sequence[str]) -> np.ndarray:
    """The parts of naive-UTC datetime64 values, as pandas' ``.dt`` gives them (NaT -> NaN)."""
    nat = np.isnat(stamps)
    stamps = np.where(nat, np.zeros(1, dtype=stamps.dtype), stamps)
    day = stamps.astype("datetime64[D]")
    weekday = (day.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    month = stamps.astype("datetime64[M]")
    out = np.empty((len(stamps), len(parts)), dtype=np.float64)
    for j, part in enumerate(parts):
        if part == "hour":
            value = (stamps - day) // np.timedelta64(1, "h")
        elif part == "minute":
            value = (stamps - stamps.astype("datetime64[h]")) // np.timedelta64(1, "m")
        elif part == "dayofweek":
            value = weekday
        elif part == "is_weekend":
            value = weekday >= 5
        elif part == "month":
            value = month.astype(np.int64) % 12 + 1
        elif part == "day":
            value = (day - month.astype("datetime64[D]")).astype(np.int64) + 1
        elif part == "dayofyear":
            value = (day - stamps.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) + 1
        else:  # weekofyear: ISO weeks belong to the year of their Thursday
            thursday = day + (3 - weekday).astype("timedelta64[D]")
            start = thursday.astype("datetime64[Y]").astype("datetime64[D]")
            value = (thursday - start).astype(np.int64) // 7 + 1
        out[:, j] = value
    out[nat] = np.nan
    return out


def _plain(dtype: Any) -> bool:
    return isinstance(dtype, pd.StringDtype) or (isinstance(dtype, np.dtype) and dtype.kind in "fiuO")


class RawColumns:
    """The raw columns of one call, each read from the frame once and converted once.

    A small frame is turned into one object array up front: a pandas column lookup costs
    more than the whole conversion. Columns of other dtypes (datetimes, categoricals,
    nullable numbers) and large frames are read as pandas columns, as the reference does.
    """

    def __init__(
        self,
        frame: pd.DataFrame | None,
        columns: Sequence[str],
        float_columns: frozenset[str],
        arrays: Mapping[str, Any] | None = None,
    ) -> None:
        self.frame = frame
        self.float_columns = float_columns
        self._floats: dict[str, np.ndarray] = {}
        self._strings: dict[str, np.ndarray] = {}
        self._plain: dict[str, tuple[Any, np.ndarray]] = {}
        self._arrays: Mapping[str, Any] = arrays or {}
        if frame is None:
            # columns handed over as arrays (numpy, or pandas extension arrays): a numpy array is
            # read as the frame's own column would be; anything else through a Series of it
            for column in columns:
                values = self._arrays[column]
                if isinstance(values, np.ndarray) and _plain(values.dtype):
                    self._plain[column] = (values.dtype, values)
                elif isinstance(values.dtype, pd.StringDtype):
                    self._plain[column] = (values.dtype, values.to_numpy(dtype=object))
        elif frame.shape[0] * frame.shape[1] <= _BULK_CELLS:
            values = frame.to_numpy(dtype=object)
            dtypes = frame.dtypes.to_numpy()
            for column in columns:
                position = frame.columns.get_loc(column)  # get_indexer costs more on a few names
                if _plain(dtypes[position]):
                    self._plain[column] = (dtypes[position], values[:, position])

    def _column(self, column: str) -> pd.Series:
        """The column as the reference path reads it: the frame's, or a Series over the array."""
        if self.frame is not None:
            return self.frame[column]
        return pd.Series(self._arrays[column], copy=False)

    def floats(self, column: str) -> np.ndarray:
        if column not in self._floats:
            dtype, values = self._plain.get(column, (None, _NO_VALUES))
            if dtype is not None and dtype.kind in "fiu":
                self._floats[column] = values.astype(np.float64)
            else:
                self._floats[column] = float_column(self._column(column), column)
        return self._floats[column]

    def strings(self, column: str) -> np.ndarray:
        if column not in self._strings:
            dtype, values = self._plain.get(column, (None, _NO_VALUES))
            if column in self.float_columns:
                # The reference path sees number columns after their float conversion, crosses included.
                self._strings[column] = category_strings(pd.Series(self.floats(column)))
            elif dtype is not None and _is_text(dtype, values):
                self._strings[column] = _text_strings(values)
            else:
                self._strings[column] = category_strings(self._column(column))
        return self._strings[column]

    def stamps(self, column: str) -> np.ndarray:
        """Naive UTC datetime64 values, as :class:`DateTimeParts` parses them."""
        dtype, values = self._plain.get(column, (None, _NO_VALUES))
        if dtype is not None and len(values) <= SMALL and _is_text(dtype, values):
            stamps = _iso_seconds(values, pd.isna(values))
            if stamps is not None:
                return stamps
        return _parse_times(self._column(column), "UTC").dt.tz_localize(None).to_numpy()

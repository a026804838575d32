"""Near-duplicate rows of a table: equal on every column once values are normalised.

Normalisation makes copies that differ only in noise compare equal:

* floating-point numbers are rounded to ``digits`` significant digits (``digits=6`` is a
  relative tolerance of about 5e-6); ``-0.0`` becomes ``0.0``; ``inf`` and NaN stay as they are;
* text (object, string and categorical columns) is stripped, runs of white space become one
  space, and it is case-folded (``" JFK "`` and ``"jfk"`` are equal);
* integers, booleans and dates are compared exactly;
* a missing value is a value: two rows missing the same column are equal there.

Rows are compared through a 64-bit hash of the normalised row (pandas'
``hash_pandas_object``), so a table of any size is handled without a Python loop over rows.
Rounding puts values into bins: two values a hair apart on either side of a bin edge (``1.2345649``
and ``1.2345651`` at 6 digits) stay different. Only tabular rows are compared: there are no text
features yet, so MinHash or embedding similarity for free text is not implemented.

>>> import pandas as pd
>>> df = pd.DataFrame({"x": [1.0, 1.0 + 1e-9, 2.0], "s": ["JFK", " jfk ", "JFK"]})
>>> near_duplicate_keys(df, ["x", "s"]).tolist()[:2] == [near_duplicate_keys(df, ["x", "s"])[0]] * 2
True
>>> normalise_rows(df, ["x", "s"], digits=3)["s"].tolist()
['jfk', 'jfk', 'jfk']
>>> link_components(np.array([0, 0, 1, 2]), np.array([5, 6, 6, 7])).tolist()
[0, 0, 0, 1]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mlsd.errors import DesignError

__all__ = ["link_components", "near_duplicate_keys", "normalise_rows", "round_significant"]

_MISSING_TEXT = "\x00<missing>"  # a value no real text has, so missing never equals a string


def round_significant(values: np.ndarray, digits: int) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits, vectorised.

    The rounded value is built from an integer and an exact power of ten, so two inputs that
    round to the same decimal give the very same float (and the same hash).

    >>> round_significant(np.array([123456.789, 0.000123456, -1.5e-20, np.nan]), 3).tolist()
    [123000.0, 0.000123, -1.5e-20, nan]
    """
    if not 1 <= digits <= 15:
        raise DesignError(
            "cannot round to that many digits",
            field="data.leakage.near_duplicate_digits",
            received=digits,
            expected="1 to 15 significant digits",
        )
    x = np.asarray(values, dtype=float)
    ok = np.isfinite(x) & (x != 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mag = np.floor(np.log10(np.abs(np.where(ok, x, 1.0))))
        e = (digits - 1 - mag).astype(np.int64)
        up = np.float_power(10.0, np.abs(e))  # exact for |e| <= 22
        # e >= 0: n / 10^e ; e < 0: n * 10^-e -- both from an integer n, so equal decimals are equal floats
        rounded = np.where(e >= 0, np.round(x * up) / up, np.round(x / up) * up)
    out = np.where(ok & np.isfinite(rounded), rounded, x)
    return out + 0.0  # -0.0 -> 0.0


def _normalise_column(s: pd.Series, digits: int) -> pd.Series:
    if ptypes.is_bool_dtype(s.dtype) or ptypes.is_integer_dtype(s.dtype):
        return s
    if ptypes.is_datetime64_any_dtype(s.dtype) or ptypes.is_timedelta64_dtype(s.dtype):
        return s
    if ptypes.is_float_dtype(s.dtype):
        values = s.to_numpy(dtype=float, na_value=np.nan)
        return pd.Series(round_significant(values, digits), index=s.index, name=s.name)
    text = s.astype("string").str.strip().str.replace(r"\s+", " ", regex=True).str.casefold()
    return text.fillna(_MISSING_TEXT).astype(object)


def normalise_rows(df: pd.DataFrame, columns: list[str], *, digits: int = 6) -> pd.DataFrame:
    """The ``columns`` of ``df`` normalised as the module describes (same index)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DesignError(
            f"column {missing[0]!r} is not in the data",
            field="columns",
            received=missing[0],
            expected="one of: " + ", ".join(map(str, df.columns[:30])),
        )
    return pd.DataFrame({c: _normalise_column(df[c], digits) for c in columns}, index=df.index)


def near_duplicate_keys(df: pd.DataFrame, columns: list[str], *, digits: int = 6) -> np.ndarray:
    """One uint64 per row; near-duplicate rows (equal after normalisation) share their key."""
    normal = normalise_rows(df, columns, digits=digits)
    return pd.util.hash_pandas_object(normal, index=False).to_numpy()


def link_components(*labels: np.ndarray) -> np.ndarray:
    """Rows joined into components: two rows are in one component when they share a value of
    any label (directly or through a chain of rows). Returns a component number per row.

    Used to keep near-duplicates *and* groups together: a row links its group to its
    near-duplicate key, so a group split over components never separates either.
    """
    if not labels:
        raise ValueError("link_components needs at least one label array")
    n = len(labels[0])
    codes, offset = [], 0
    for lab in labels:
        c, uniques = pd.factorize(np.asarray(lab), use_na_sentinel=False)
        codes.append(c + offset)
        offset += len(uniques)
    # a bipartite graph: node per label value, an edge from each row's first value to the others
    src = np.concatenate([codes[0]] * (len(codes) - 1)) if len(codes) > 1 else codes[0]
    dst = np.concatenate(codes[1:]) if len(codes) > 1 else codes[0]
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(offset, offset))
    _, comp = connected_components(graph, directed=False)
    # number components by first appearance so the result does not depend on label order
    return pd.factorize(comp[codes[0][:n]])[0]

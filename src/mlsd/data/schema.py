"""The schema of a table: inferred at build time, saved with the model, checked on every request.

:func:`infer_schema` records per column a logical type, whether missing values were seen,
the missing rate, the range (numbers, datetimes) and, for categoricals, the allowed values.
:meth:`Schema.validate_frame` compares a DataFrame (a whole batch or a request of one row)
with it, column by column and vectorised, and returns :class:`SchemaViolation` s:

``missing_column``  (error) a schema column is absent from the frame. Extra columns are ignored.
``type``            (error) non-missing values that cannot be read as the schema type: text in a
                    number column, a fraction in an integer column, an unparseable date,
                    a value other than true/false/1/0 in a boolean column. Strings accept anything.
``range``           (error) numbers or datetimes outside ``[min - t, max + t]`` with
                    ``t = range_tolerance * (max - min)``.
``category``        a value of a categorical column never seen at build time. A warning when
                    ``allow_unseen_categories`` (the model handles unknown categories), else an error.
``missing``         (error) missing values in a column that had none at build time; or (warning) a
                    nullable column whose missing rate exceeds the build-time rate by more than
                    ``max_missing_rate_increase``, judged only on frames of ``min_rows_for_rates`` rows+.

>>> import pandas as pd
>>> train = pd.DataFrame({"distance": [100, 500, 1000], "carrier": ["UA", "AA", "UA"]})
>>> schema = infer_schema(train, categorical=["carrier"])
>>> schema.columns["carrier"].allowed
['AA', 'UA']
>>> request = pd.DataFrame({"distance": ["x"], "carrier": ["ZZ"]})
>>> [(v.column, v.kind, v.received) for v in schema.validate_frame(request)]
[('distance', 'type', ['x']), ('carrier', 'category', ['ZZ'])]
>>> Schema.from_json(schema.to_json()) == schema
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pydantic import BaseModel, Field

from mlsd.errors import SchemaError

__all__ = ["ColumnSchema", "Schema", "SchemaViolation", "infer_schema"]

DType = Literal["number", "integer", "string", "boolean", "datetime"]
_TRUE = {"true", "1", "yes", "t", "y", "1.0"}
_FALSE = {"false", "0", "no", "f", "n", "0.0"}
_EXACT_INT = 2.0**53  # floats are exact integers below this


class ColumnSchema(BaseModel):
    """What one column looked like at build time (``min``/``max`` of datetimes are ISO strings)."""

    name: str
    dtype: DType
    nullable: bool = True
    missing_rate: float = 0.0
    min: float | str | None = None
    max: float | str | None = None
    allowed: list[str] | None = None
    n_unique: int = 0
    max_length: int | None = None  # text columns: the longest value seen (request string limits)


class SchemaViolation(BaseModel):
    """One failed check on one column: how many rows, a few received values and what was expected."""

    column: str
    kind: Literal["missing_column", "type", "range", "category", "missing"]
    n_rows: int
    received: list[Any] = Field(default_factory=list)
    expected: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return (
            f"{self.column}: {self.kind} in {self.n_rows} rows "
            f"(received {self.received}; expected {self.expected})"
        )


def _examples(s: pd.Series, n: int = 5) -> list[Any]:
    vals = s.drop_duplicates().head(n).tolist()
    return [
        v.item() if isinstance(v, np.generic) else (str(v) if isinstance(v, pd.Timestamp) else v)
        for v in vals
    ]


def _category_keys(s: pd.Series) -> pd.Series:
    """Categories compared as text; integral floats lose their ``.0`` so ``1`` and ``1.0`` agree."""
    if ptypes.is_float_dtype(s.dtype):
        values = s.to_numpy(dtype="float64", na_value=np.nan)
        # only floats that are exact integers: inf or 1e30 would not fit in int64
        ints = np.isfinite(values) & (values == np.floor(values)) & (np.abs(values) < _EXACT_INT)
        # written as text before the assignment: ints put back into a float column become floats again
        out = s.astype("str")
        out[ints] = values[ints].astype("int64").astype("str")
        return out.where(s.notna())
    return s.astype("str").where(s.notna())


def _to_datetime(s: pd.Series) -> pd.Series:
    if ptypes.is_datetime64_any_dtype(s.dtype):
        out = s
    else:
        out = pd.to_datetime(s, errors="coerce", utc=True, format="mixed")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def _to_bool(s: pd.Series) -> pd.Series:
    """1.0/0.0 for readable booleans, NaN otherwise (vectorised)."""
    if ptypes.is_bool_dtype(s.dtype):
        return s.astype("float64")
    text = s.astype("str").str.strip().str.lower()
    return pd.Series(np.where(text.isin(_TRUE), 1.0, np.where(text.isin(_FALSE), 0.0, np.nan)), index=s.index)


def _logical_dtype(s: pd.Series) -> DType:
    if ptypes.is_bool_dtype(s.dtype):
        return "boolean"
    if ptypes.is_integer_dtype(s.dtype):
        return "integer"
    if ptypes.is_numeric_dtype(s.dtype):
        return "number"
    if ptypes.is_datetime64_any_dtype(s.dtype):
        return "datetime"
    return "string"


class Schema(BaseModel):
    """The columns of a table by name; JSON round-trips exactly."""

    columns: dict[str, ColumnSchema]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        return cls.model_validate(data)

    def to_json(self, indent: int | None = None) -> str:
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> Schema:
        return cls.model_validate_json(text)

    def validate_frame(
        self,
        df: pd.DataFrame,
        *,
        allow_unseen_categories: bool = True,
        range_tolerance: float = 0.0,
        max_missing_rate_increase: float = 0.1,
        min_rows_for_rates: int = 100,
        columns: Iterable[str] | None = None,
    ) -> list[SchemaViolation]:
        """All violations of ``df`` against this schema (see the module docstring for each kind)."""
        names = list(self.columns) if columns is None else list(columns)
        unknown = [n for n in names if n not in self.columns]
        if unknown:
            raise SchemaError(
                f"column {unknown[0]!r} is not in the schema",
                field="columns",
                received=unknown[0],
                expected="one of: " + ", ".join(list(self.columns)[:30]),
            )
        out: list[SchemaViolation] = []
        for name in names:
            col = self.columns[name]
            if name not in df.columns:
                out.append(
                    SchemaViolation(column=name, kind="missing_column", n_rows=len(df), expected="present")
                )
                continue
            out.extend(
                _check_column(
                    col,
                    df[name],
                    allow_unseen_categories,
                    range_tolerance,
                    max_missing_rate_increase,
                    min_rows_for_rates,
                )
            )
        return out

    def check(self, df: pd.DataFrame, **kwargs: Any) -> None:
        """Raise :class:`SchemaError` listing the error-severity violations of ``df`` (warnings pass)."""
        errors = [v for v in self.validate_frame(df, **kwargs) if v.severity == "error"]
        if errors:
            raise SchemaError(
                f"{len(errors)} schema violations: " + "; ".join(map(str, errors)),
                field=errors[0].column,
                received=errors[0].received,
                expected=errors[0].expected,
            )


def _check_column(
    col: ColumnSchema, s: pd.Series, allow_unseen: bool, tol: float, max_increase: float, min_rows: int
) -> list[SchemaViolation]:
    out: list[SchemaViolation] = []
    present = s.notna()
    if col.dtype != "string" and (ptypes.is_object_dtype(s.dtype) or ptypes.is_string_dtype(s.dtype)):
        # an empty string in a typed column is a missing value, not a type error
        present &= s.astype("str").str.strip() != ""
    values: pd.Series | None = None
    if col.dtype in ("number", "integer"):
        values = (
            pd.to_numeric(s.where(present), errors="coerce") if not ptypes.is_bool_dtype(s.dtype) else None
        )
        if values is None:
            bad = present
        else:
            bad = present & values.isna()
            if col.dtype == "integer":
                bad |= present & values.notna() & (values != np.floor(values))
        expected = "numbers" if col.dtype == "number" else "whole numbers"
    elif col.dtype == "datetime":
        values = _to_datetime(s.where(present))
        bad = present & values.isna()
        expected = "dates/times (ISO 8601)"
    elif col.dtype == "boolean":
        bad = present & _to_bool(s).isna()
        expected = "true/false"
    else:
        bad = pd.Series(False, index=s.index)
        expected = ""
    if bad.any():
        out.append(
            SchemaViolation(
                column=col.name,
                kind="type",
                n_rows=int(bad.sum()),
                received=_examples(s[bad]),
                expected=expected,
            )
        )
    if values is not None and col.min is not None and col.max is not None:
        lo, hi = _bounds(col, tol)
        ok = values.notna() & ~bad
        outside = ok & ((values < lo) | (values > hi))
        if outside.any():
            out.append(
                SchemaViolation(
                    column=col.name,
                    kind="range",
                    n_rows=int(outside.sum()),
                    received=_examples(s[outside]),
                    expected=f"values in [{lo}, {hi}]",
                )
            )
    if col.allowed is not None:
        keys = _category_keys(s)
        unseen = keys.notna() & ~keys.isin(col.allowed)
        if unseen.any():
            shown = ", ".join(col.allowed[:20]) + (", ..." if len(col.allowed) > 20 else "")
            out.append(
                SchemaViolation(
                    column=col.name,
                    kind="category",
                    n_rows=int(unseen.sum()),
                    received=_examples(s[unseen]),
                    expected=f"one of: {shown}",
                    severity="warning" if allow_unseen else "error",
                )
            )
    n_missing = int((~present).sum())
    if n_missing and not col.nullable:
        out.append(
            SchemaViolation(
                column=col.name,
                kind="missing",
                n_rows=n_missing,
                received=[None],
                expected="no missing values (none at build time)",
            )
        )
    elif n_missing and len(s) >= min_rows and n_missing / len(s) > col.missing_rate + max_increase:
        out.append(
            SchemaViolation(
                column=col.name,
                kind="missing",
                n_rows=n_missing,
                received=[round(n_missing / len(s), 4)],
                severity="warning",
                expected=f"missing rate <= {col.missing_rate + max_increase:.4f} "
                f"(build time {col.missing_rate:.4f})",
            )
        )
    return out


def _bounds(col: ColumnSchema, tol: float) -> tuple[Any, Any]:
    if col.dtype == "datetime":
        lo, hi = pd.Timestamp(col.min), pd.Timestamp(col.max)
        if lo.tzinfo is not None:
            lo, hi = lo.tz_convert("UTC").tz_localize(None), hi.tz_convert("UTC").tz_localize(None)
    else:
        lo, hi = float(col.min), float(col.max)  # type: ignore[arg-type]
    margin = (hi - lo) * tol
    return lo - margin, hi + margin


def infer_schema(
    df: pd.DataFrame,
    *,
    columns: Iterable[str] | None = None,
    categorical: Iterable[str] | None = None,
    max_categories: int = 200,
    range_margin: float = 0.0,
) -> Schema:
    """Infer a :class:`Schema` from ``df`` (usually the training features).

    ``allowed`` is recorded for the ``categorical`` columns (whatever their type) and for text
    columns with at most ``max_categories`` distinct values; ``range_margin`` widens every
    recorded range by that fraction of its width on each side.
    """
    names = list(df.columns) if columns is None else list(columns)
    declared = set(categorical or [])
    missing = [c for c in [*names, *declared] if c not in df.columns]
    if missing:
        raise SchemaError(
            f"column {missing[0]!r} is not in the data",
            field="columns",
            received=missing[0],
            expected="one of: " + ", ".join(map(str, df.columns[:30])),
        )
    out: dict[str, ColumnSchema] = {}
    for name in names:
        s = df[name]
        dtype = _logical_dtype(s)
        n_missing = int(s.isna().sum())
        info: dict[str, Any] = {
            "name": str(name),
            "dtype": dtype,
            "nullable": n_missing > 0,
            "missing_rate": n_missing / len(s) if len(s) else 0.0,
            "n_unique": int(s.nunique()),
        }
        if dtype in ("number", "integer") and s.notna().any():
            lo, hi = float(s.min()), float(s.max())
            m = (hi - lo) * range_margin
            info |= {"min": lo - m, "max": hi + m}
        elif dtype == "datetime" and s.notna().any():
            t = _to_datetime(s)
            m = (t.max() - t.min()) * range_margin
            info |= {"min": (t.min() - m).isoformat(), "max": (t.max() + m).isoformat()}
        if dtype == "string" and s.notna().any():
            info["max_length"] = int(s.dropna().astype("str").str.len().max())
        is_cat = isinstance(s.dtype, pd.CategoricalDtype)
        if name in declared or (dtype == "string" and (is_cat or info["n_unique"] <= max_categories)):
            keys = _category_keys(s.astype("object") if is_cat else s)
            info["allowed"] = sorted(keys.dropna().unique().tolist())
        out[str(name)] = ColumnSchema(**info)
    return Schema(columns=out)

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
                    ``t = tolerance * (max - min)``; the column's own ``range_tolerance`` wins over
                    the one passed in. A column with ``range_check="growing"`` (it grows with time:
                    ids, dates, counters) has no upper bound, one with ``range_check="none"`` no
                    range check at all (see :func:`infer_schema`).
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

A column that rises with the time column is recorded as growing: later values pass.

>>> days = pd.DataFrame({"day": pd.date_range("2024-01-01", periods=30), "booking_id": range(30)})
>>> grown = infer_schema(days, columns=["booking_id"], time="day")
>>> grown.columns["booking_id"].range_check, grown.validate_frame(pd.DataFrame({"booking_id": [500]}))
('growing', [])
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pydantic import BaseModel, Field

from mlsd.errors import SchemaError

__all__ = [
    "GROWTH_MIN_CORRELATION",
    "ColumnSchema",
    "RangeName",
    "RangeRule",
    "Schema",
    "SchemaViolation",
    "infer_schema",
]

DType = Literal["number", "integer", "string", "boolean", "datetime"]
#: How a column's range is checked: both bounds, the lower one only (it grows with time), or not at all
RangeCheck = Literal["bounded", "growing", "none"]
#: The named range rules: no upper bound, or no range check
RangeName = Literal["growing", "none"]
#: A declared range rule of one column: its own tolerance (both bounds), ``"growing"`` or ``"none"``
RangeRule = float | RangeName
#: Spearman correlation with the time column, on the training rows, from which a column "grows"
GROWTH_MIN_CORRELATION = 0.9
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
    range_check: RangeCheck = "bounded"
    range_tolerance: float | None = Field(None, ge=0, description="this column's tolerance, if declared")
    range_note: str = Field("", description="why the range is checked this way (the document shows it)")
    # a derived column the model reads: how it is computed from the request's raw columns
    expression: str | None = Field(None, description="derived columns: the data.derive expression")
    sources: list[str] = Field(default_factory=list, description="derived columns: the raw columns read")

    def bounds(self, tolerance: float) -> tuple[Any, Any] | None:
        """``(low, high)`` a value must lie in (``high`` None: no upper bound), or None: no range check.

        ``tolerance`` (a fraction of the range's width, on each side) applies unless the column
        declares its own. Datetime bounds are naive UTC :class:`pandas.Timestamp` s.

        >>> ColumnSchema(name="x", dtype="number", min=0, max=10).bounds(0.5)
        (-5.0, 15.0)
        >>> ColumnSchema(name="x", dtype="number", min=0, max=10, range_check="growing").bounds(0.5)
        (-5.0, None)
        """
        if self.range_check == "none" or self.min is None or self.max is None:
            return None
        if self.dtype == "datetime":
            lo, hi = pd.Timestamp(self.min), pd.Timestamp(self.max)
            if lo.tzinfo is not None:
                lo, hi = lo.tz_convert("UTC").tz_localize(None), hi.tz_convert("UTC").tz_localize(None)
        else:
            lo, hi = float(self.min), float(self.max)
        margin = (hi - lo) * (tolerance if self.range_tolerance is None else self.range_tolerance)
        return lo - margin, (hi + margin if self.range_check == "bounded" else None)

    def range_text(self, tolerance: float) -> str:
        """What a value of this column is expected to be, as a violation states it."""
        bounds = self.bounds(tolerance)
        if bounds is None:
            return "any value (no range check)"
        lo, hi = bounds
        if hi is None:
            return f"values >= {lo} (no upper bound: the column grows with time)"
        return f"values in [{lo}, {hi}]"


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
    #: ``data.derive`` in order (name -> expression), to compute the columns of ``derived``
    derive: dict[str, str] = Field(default_factory=dict)
    #: derived columns the model reads, checked on their own build range in place of the raw
    #: columns they come from (which then have no range check of their own)
    derived: dict[str, ColumnSchema] = Field(default_factory=dict)

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
        # the derived values the server checks in place of their raw columns, where df has them
        # (a prepared frame does; a request's raw rows do not)
        for name, col in self.derived.items():
            if name in df.columns and (columns is None or set(col.sources) & set(names)):
                found = _check_column(
                    col, df[name], True, range_tolerance, max_missing_rate_increase, min_rows_for_rates
                )
                out.extend(v for v in found if v.kind == "range")
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
    bounds = col.bounds(tol) if values is not None else None
    if values is not None and bounds is not None:
        lo, hi = bounds
        ok = values.notna() & ~bad
        outside = ok & ((values < lo) | (values > hi)) if hi is not None else ok & (values < lo)
        if outside.any():
            out.append(
                SchemaViolation(
                    column=col.name,
                    kind="range",
                    n_rows=int(outside.sum()),
                    received=_examples(s[outside]),
                    expected=col.range_text(tol),
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


def infer_schema(
    df: pd.DataFrame,
    *,
    columns: Iterable[str] | None = None,
    categorical: Iterable[str] | None = None,
    max_categories: int = 200,
    range_margin: float = 0.0,
    hashed: Iterable[str] | None = None,
    time: str | None = None,
    range_rules: Mapping[str, RangeRule] | None = None,
    read_through: Mapping[str, Sequence[str]] | None = None,
    growth_min_correlation: float = GROWTH_MIN_CORRELATION,
) -> Schema:
    """Infer a :class:`Schema` from ``df`` (usually the training features).

    ``allowed`` is recorded for the ``categorical`` columns (whatever their type) and for text
    columns with at most ``max_categories`` distinct values, but never for a ``hashed`` column
    (hashing exists to take values never seen) nor for the ``time`` column; ``range_margin``
    widens every recorded range by that fraction of its width on each side.

    How each number or datetime column's range is checked (``range_check``), first rule that applies:

    1. ``range_rules[column]``: a number is the column's own tolerance (both bounds, growth or
       not), ``"growing"`` drops the upper bound, ``"none"`` the range check;
    2. ``read_through[column]`` names the derived columns through which alone the model reads
       ``column``: no range check (a later date still gives a season the model has seen);
    3. a column whose Spearman correlation with ``time`` on these rows is at least
       ``growth_min_correlation`` grows with time (ids, dates, counters): no upper bound;
    4. otherwise both bounds.
    """
    names = list(df.columns) if columns is None else list(columns)
    declared = set(categorical or [])
    no_allowed = {*(hashed or []), *([time] if time else [])}
    rules = dict(range_rules or {})
    through = dict(read_through or {})
    missing = [c for c in [*names, *declared, *([time] if time else [])] if c not in df.columns]
    missing += [c for c in [*rules, *through] if c not in names]
    if missing:
        raise SchemaError(
            f"column {missing[0]!r} is not in the data",
            field="columns",
            received=missing[0],
            expected="one of: "
            + ", ".join(map(str, (names if missing[0] in [*rules, *through] else df.columns)[:30])),
        )
    for name, given in rules.items():
        number = isinstance(given, int | float) and not isinstance(given, bool) and given >= 0
        if not (number or given in ("growing", "none")):
            raise SchemaError(
                "a range rule is a tolerance, growing or none",
                field=f"range_rules.{name}",
                received=given,
                expected="a number >= 0 (a fraction of the range), 'growing' or 'none'",
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
        if name not in no_allowed and (
            name in declared or (dtype == "string" and (is_cat or info["n_unique"] <= max_categories))
        ):
            keys = _category_keys(s.astype("object") if is_cat else s)
            info["allowed"] = sorted(keys.dropna().unique().tolist())
        out[str(name)] = ColumnSchema(**info)
    growth = _time_correlations(df, [n for n in names if n not in rules and n not in through], out, time)
    for name, col in out.items():
        if name in rules and col.dtype not in ("number", "integer", "datetime"):
            raise SchemaError(  # a rule that would parse and do nothing
                f"column {name!r} holds {col.dtype} values, which have no range to check",
                field=f"range_rules.{name}",
                received=rules[name],
                expected="a range rule on a number or date column (or no rule)",
            )
        if col.min is None:
            continue
        rule = rules.get(name)
        if isinstance(rule, str):
            col.range_check, col.range_note = rule, f"declared {rule}"
        elif rule is not None:
            col.range_tolerance, col.range_note = float(rule), f"declared tolerance {float(rule):g}"
        elif name in through:
            col.range_check = "none"
            col.range_note = "read by the model only through " + ", ".join(through[name])
        elif growth.get(name, 0.0) >= growth_min_correlation:
            col.range_check = "growing"
            col.range_note = f"grows with {time} (Spearman {growth[name]:.2f} on the training rows)"
    return Schema(columns=out)


def _time_correlations(
    df: pd.DataFrame, names: list[str], columns: dict[str, ColumnSchema], time: str | None
) -> dict[str, float]:
    """Spearman correlation of each number or datetime column with ``time`` (pairwise complete rows)."""
    ranged = [n for n in names if columns[n].min is not None]
    if time is None or not ranged:
        return {}
    stamps = _to_datetime(df[time])
    if stamps.notna().sum() < 3:
        return {}
    as_numbers = {
        n: _seconds(_to_datetime(df[n]))
        if columns[n].dtype == "datetime"
        else pd.to_numeric(df[n], errors="coerce").astype("float64")
        for n in ranged
    }
    t = _seconds(stamps)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a constant column has no correlation (NaN)
        rho = pd.DataFrame(as_numbers, index=df.index).corrwith(t, method="spearman")
    return {str(k): float(v) for k, v in rho.items() if np.isfinite(v)}


def _seconds(stamps: pd.Series) -> pd.Series:
    """Datetimes as seconds since 1970 (NaT as NaN), so they correlate like numbers."""
    return (stamps - pd.Timestamp(0)).dt.total_seconds()

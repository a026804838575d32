"""The row validator as it was before it went columnar (pandas Series per column): the reference
the vectorised :meth:`mlsd.serving.validation.RowValidator.check` must agree with, value for value.

Kept verbatim (only its names are private here) so that a property test can feed both the same
hostile rows and compare the typed frames, errors, invalid masks, unseen counts and event times.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mlsd.data import ColumnSchema, evaluate_expression
from mlsd.serving.bodies import LONE_SURROGATE
from mlsd.serving.validation import (
    _EXPECTED,
    _MISSING,
    _OUTSIDE,
    _UNSEEN,
    DATETIME_PATTERN,
    MAX_ABS_NUMBER,
    CheckedRows,
    ColumnErrors,
    RowValidator,
)

__all__ = ["ReferenceValidator"]

_NONE = np.array(None, dtype=object)
_ABSENT, _NULL, _BOOL, _INT, _FLOAT, _STR, _OTHER, _HUGE = range(8)
_KINDS: dict[type, int] = {type(None): _NULL, bool: _BOOL, int: _INT, float: _FLOAT, str: _STR}


def _kind(value: Any) -> int:
    kind = _KINDS.get(type(value), _OTHER)
    if kind == _INT and not -MAX_ABS_NUMBER <= value <= MAX_ABS_NUMBER:
        return _HUGE
    if kind == _FLOAT and not (math.isfinite(value) and abs(value) <= MAX_ABS_NUMBER):
        return _HUGE
    return kind


class ReferenceValidator(RowValidator):
    """:class:`RowValidator` with the pandas-per-column ``check`` it had until issue 13."""

    def check(self, rows: list[dict[str, Any]]) -> CheckedRows:
        """Check a batch of rows: the typed frame (failed values as missing), the failures per column."""
        n = len(rows)
        data: dict[str, Any] = {}
        errors: list[ColumnErrors] = []
        unseen: dict[str, int] = {}
        event_time = None
        for column, spec in self._specs.items():
            values = np.empty(n, dtype=object)
            values[:] = [row.get(column, _MISSING) for row in rows]
            kinds = np.fromiter((_ABSENT if v is _MISSING else _kind(v) for v in values), np.int8, count=n)
            if column in self.optional:
                kinds[kinds == _ABSENT] = _NULL  # not an input: it may be left out
            typed, column_errors = _type_pass(column, spec, values, kinds, self.max_lengths.get(column))
            errors.extend(column_errors)
            if column == self.time_column:
                if spec is not None and spec.dtype == "datetime":
                    event_time = pd.Series(typed)
                else:  # trained on text (a CSV's timestamps): the event time must still parse
                    flagged = np.zeros(n, dtype=bool)  # too long, lone surrogates: reported once
                    for err in column_errors:
                        flagged[err.rows] = True
                    event_time, time_errors = _event_time_of_text(column, values, (kinds == _STR) & ~flagged)
                    errors.extend(time_errors)
            if column in self.optional:
                continue
            data[column] = typed
            if column in self.bounds:
                lo, hi = self.bounds[column]
                x = np.asarray(typed, dtype="float64")
                outside = np.flatnonzero((x < lo) | (x > hi))  # NaN (missing, invalid) compares False
                if outside.size:
                    errors.append(ColumnErrors(column, "range", outside, self._bound_text[column], _OUTSIDE))
            if column in self._allowed:
                allowed, expected = self._allowed[column]
                if spec is not None and spec.dtype == "string":  # the JSON strings are the keys
                    # only strings that passed the type pass (objects are not hashable; a string
                    # refused for its length is not also an unseen category)
                    present = (kinds == _STR) & pd.Series(typed).notna().to_numpy()
                    keys = np.where(present, values, _NONE).tolist()
                else:
                    key_series = _category_keys(pd.Series(typed))
                    present, keys = key_series.notna().to_numpy(), key_series.tolist()
                known = np.fromiter((k in allowed for k in keys), bool, count=n)
                new = np.flatnonzero(present & ~known)
                if new.size and self.reject_unseen_categories:
                    errors.append(ColumnErrors(column, "category", new, expected, _UNSEEN))
                elif new.size:
                    unseen[column] = int(new.size)
        frame = pd.DataFrame(data, index=pd.RangeIndex(n))
        if self._derived_bounds:
            errors.extend(self._derived_errors(frame))
        invalid = np.zeros(n, dtype=bool)
        for err in errors:
            invalid[err.rows] = True
        return CheckedRows(
            frame=frame, errors=errors, invalid=invalid, unseen_categories=unseen, event_time=event_time
        )

    def _derived_errors(self, frame: pd.DataFrame) -> list[ColumnErrors]:
        """Rows whose derived values leave their build range, reported on the raw field they come from."""
        derived = frame.copy()
        try:  # the served pipeline derives the same way; a failure here fails there and is isolated
            for name, expr in self._derive.items():
                derived[name] = evaluate_expression(derived, expr, field=f"data.derive.{name}")
        except Exception:
            return []
        errors = []
        for name, (lo, hi, expected, source) in self._derived_bounds.items():
            x = pd.to_numeric(derived[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            outside = np.flatnonzero((x < lo) | (x > hi))
            if outside.size:
                message = f"gives {name} outside its build range"
                errors.append(ColumnErrors(source, "range", outside, expected, message))
        return errors


def _text_errors(
    column: str, values: np.ndarray, is_text: np.ndarray, max_length: int | None
) -> tuple[np.ndarray, list[ColumnErrors]]:
    """Strings too long or holding lone surrogates (neither can be scored, logged or echoed safely)."""
    bad = np.zeros(len(values), dtype=bool)
    if not is_text.any():
        return bad, []
    text = pd.Series(values[is_text], dtype=object)  # object: pandas' str dtype would encode to UTF-8
    errors = []
    where = np.flatnonzero(is_text)
    if max_length is not None:
        long = where[(text.str.len() > max_length).to_numpy()]
        if long.size:
            bad[long] = True
            errors.append(
                ColumnErrors(column, "length", long, f"at most {max_length} characters", "string too long")
            )
    broken = where[text.str.contains(LONE_SURROGATE, regex=True).to_numpy(dtype=bool)]
    broken = broken[~bad[broken]]
    if broken.size:
        bad[broken] = True
        errors.append(
            ColumnErrors(column, "type", broken, "valid Unicode text (no lone surrogates)", "not valid text")
        )
    return bad, errors


def _type_pass(
    column: str, spec: ColumnSchema | None, values: np.ndarray, kinds: np.ndarray, max_length: int | None
) -> tuple[Any, list[ColumnErrors]]:
    """The typed column (invalid values as missing) and the missing / null / type failures."""
    errors = []
    absent = kinds == _ABSENT
    null = kinds == _NULL
    huge = kinds == _HUGE
    if absent.any():
        errors.append(
            ColumnErrors(column, "missing", np.flatnonzero(absent), "present", "required field is missing")
        )
    if spec is not None and not spec.nullable and null.any():
        errors.append(
            ColumnErrors(
                column, "null", np.flatnonzero(null), "a value (no nulls at build time)", "null not allowed"
            )
        )
    empty = absent | null
    dtype = spec.dtype if spec is not None else None
    if huge.any() and dtype in ("number", "integer", None):
        errors.append(
            ColumnErrors(
                column, "range", np.flatnonzero(huge), "a number in [-1e18, 1e18]", "number too large"
            )
        )
        empty = empty | huge  # reported: not a type error too
    if dtype in ("number", "integer"):
        ok = (kinds == _INT) | (kinds == _FLOAT)
        typed = np.full(len(values), np.nan)
        typed[ok] = values[ok].astype("float64")
        if dtype == "integer":
            fractional = ok & (typed != np.floor(typed))
            ok &= ~fractional
            typed[fractional] = np.nan
        bad = ~ok & ~empty
        typed[bad] = np.nan
        if dtype == "integer" and not np.isnan(typed).any():
            typed = typed.astype("int64")
    elif dtype == "boolean":
        bad = (kinds != _BOOL) & ~empty
        typed = np.where(kinds == _BOOL, values, np.nan)
        if not (bad | empty).any():
            typed = typed.astype(bool)
    elif dtype == "datetime":
        text = pd.Series(np.where(kinds == _STR, values, _NONE), dtype=object)
        shaped = text.str.fullmatch(DATETIME_PATTERN).fillna(False).to_numpy(dtype=bool)
        typed = pd.to_datetime(text.where(shaped), errors="coerce", utc=True, format="ISO8601")
        bad = ~empty & typed.isna().to_numpy()
    elif dtype == "string":
        ok = kinds == _STR
        long, text_errors = _text_errors(column, values, ok, max_length)
        errors.extend(text_errors)
        bad = ~ok & ~empty
        ok &= ~long
        typed = pd.Series(np.where(ok, values, _NONE), dtype="str")
    else:  # a column the schema does not describe: any JSON scalar goes through
        long, text_errors = _text_errors(column, values, kinds == _STR, max_length)
        errors.extend(text_errors)
        bad = (kinds == _OTHER) | ((kinds == _HUGE) & ~empty)
        typed = np.where(bad | empty | long, _NONE, values)
    if bad.any():
        expected = _EXPECTED.get(dtype or "", "a JSON scalar")
        errors.append(ColumnErrors(column, "type", np.flatnonzero(bad), expected, f"not {expected}"))
    return typed, errors


def _event_time_of_text(
    column: str, values: np.ndarray, is_text: np.ndarray
) -> tuple[pd.Series, list[ColumnErrors]]:
    """The event time of a time column the model reads as text, and the rows where it does not parse.

    The model gets the text as it was trained on; the log gets the parsed time. A string that is
    not an ISO 8601 date-time is a 422 (a row is never logged without the event time it sent).
    """
    text = pd.Series(np.where(is_text, values, _NONE), dtype=object)
    shaped = text.str.fullmatch(DATETIME_PATTERN).fillna(False).to_numpy(dtype=bool)
    stamps = pd.to_datetime(text.where(shaped), errors="coerce", utc=True, format="ISO8601")
    bad = np.flatnonzero(is_text & stamps.isna().to_numpy())
    expected = _EXPECTED["datetime"]
    errors = [ColumnErrors(column, "type", bad, expected, f"not {expected}")] if bad.size else []
    return stamps, errors


def _category_keys(values: pd.Series) -> pd.Series:
    """Categories as text, integral floats without ``.0`` (as :func:`mlsd.data.infer_schema` stores them)."""
    if pd.api.types.is_float_dtype(values.dtype):
        x = values.to_numpy(dtype="float64", na_value=np.nan)
        whole = np.isfinite(x) & (x == np.floor(x)) & (np.abs(x) < 2.0**53)
        out = values.astype("str")
        out[whole] = x[whole].astype("int64").astype("str")
        return out.where(values.notna())
    return values.astype("str").where(values.notna())

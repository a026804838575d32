"""Request bodies checked against the schema saved at build time, one error per field per row.

Three steps, from cheap to vectorised:

1. :func:`parse_json` reads the raw bytes (malformed JSON, ``NaN`` or bad UTF-8 -> 400);
2. :func:`parse_predict_body` checks the shape: ``{"inputs": {...}}`` or ``{"inputs": [{...}, ...]}``
   with 1 to ``max_rows`` objects (-> 422 naming ``inputs`` or ``inputs[2]``);
3. :meth:`RowValidator.check` checks a whole micro-batch of rows column by column: the JSON type
   of every value (pandas would coerce ``"12"`` or ``true`` silently), then the ranges and
   categories of the schema (the rules of :meth:`mlsd.data.Schema.validate_frame`, on numpy
   arrays: a micro-batch cannot afford its pandas overhead), and returns the typed frame the
   model reads.

>>> from mlsd.data import infer_schema
>>> import pandas as pd
>>> schema = infer_schema(pd.DataFrame({"distance": [100, 1000], "carrier": ["AA", "UA"]}),
...                       categorical=["carrier"])
>>> v = RowValidator(schema, ["distance", "carrier"], reject_unseen_categories=True)
>>> rows = [{"distance": 500, "carrier": "AA"}, {"distance": "abc", "carrier": "ZZ"}, {"carrier": None}]
>>> checked = v.check(rows)
>>> checked.invalid.tolist()
[False, True, True]
>>> [e["field"] for e in v.field_errors(rows, checked, 0, 3)[0]]
['inputs[1].distance', 'inputs[1].carrier', 'inputs[2].distance', 'inputs[2].carrier']
>>> checked.frame.dtypes["distance"]
dtype('float64')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlsd.data import ColumnSchema, Schema
from mlsd.serving.responses import RequestError

__all__ = [
    "CheckedRows",
    "ColumnErrors",
    "RowValidator",
    "parse_json",
    "parse_predict_body",
]

_MISSING = object()
_NONE = np.array(None, dtype=object)  # None as an np.where operand (numpy's stubs take no bare None)
# JSON value kinds, as small integers so that the checks are array operations
_ABSENT, _NULL, _BOOL, _INT, _FLOAT, _STR, _OTHER = range(7)
_KINDS: dict[type, int] = {type(None): _NULL, bool: _BOOL, int: _INT, float: _FLOAT, str: _STR}
_OUTSIDE = "value outside the range seen at build time"
_UNSEEN = "category never seen at build time"
_EXPECTED = {
    "number": "a number",
    "integer": "a whole number",
    "string": "a string",
    "boolean": "true or false",
    "datetime": "an ISO 8601 date-time string",
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """The JSON value of a body; :class:`RequestError` 400 when it is not JSON (``NaN`` included).

    >>> parse_json(b'{"a": 1}')
    {'a': 1}
    >>> parse_json(b'{"a": NaN}')
    Traceback (most recent call last):
    ...
    mlsd.serving.responses.RequestError: body: the body is not valid JSON: NaN is not valid JSON ...
    """
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise RequestError(
            400,
            "invalid_json",
            f"the body is not valid JSON: {detail}",
            [{"field": "body", "received": None, "expected": "a JSON document"}],
        ) from exc


def _shape_error(message: str, field_name: str, received: Any, expected: str) -> RequestError:
    return RequestError(
        422, "validation_error", message, [{"field": field_name, "received": received, "expected": expected}]
    )


def _describe(value: Any) -> Any:
    """A short JSON-ready stand-in for a received value (big objects are not echoed back)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= 100 else value[:100] + "..."
    return f"<{type(value).__name__} of {len(value)}>" if hasattr(value, "__len__") else repr(value)[:100]


def parse_predict_body(payload: Any, *, max_rows: int) -> tuple[list[dict[str, Any]], bool]:
    """The rows of a predict body and whether it was a single row (``inputs`` an object).

    >>> parse_predict_body({"inputs": {"x": 1}}, max_rows=10)
    ([{'x': 1}], True)
    >>> parse_predict_body({"inputs": []}, max_rows=10)
    Traceback (most recent call last):
    ...
    mlsd.serving.responses.RequestError: inputs: inputs is an empty list (received []; expected 1 to 10 ...)
    """
    expected_body = 'an object {"inputs": {...}} or {"inputs": [{...}, ...]}'
    if not isinstance(payload, dict):
        raise _shape_error("the body must be a JSON object", "body", _describe(payload), expected_body)
    extra = sorted(set(payload) - {"inputs"})
    if extra:
        raise _shape_error(f"unknown field {extra[0]!r} in the body", extra[0], extra[0], expected_body)
    if "inputs" not in payload:
        raise _shape_error("the body has no 'inputs'", "inputs", None, expected_body)
    inputs = payload["inputs"]
    if isinstance(inputs, dict):
        return [inputs], True
    if not isinstance(inputs, list):
        raise _shape_error(
            "inputs must be an object or a list of objects", "inputs", _describe(inputs), expected_body
        )
    if not inputs:
        raise _shape_error("inputs is an empty list", "inputs", [], f"1 to {max_rows} row objects")
    if len(inputs) > max_rows:
        raise _shape_error(
            f"too many rows in one request ({len(inputs)})", "inputs", len(inputs), f"at most {max_rows} rows"
        )
    bad = [i for i, row in enumerate(inputs) if not isinstance(row, dict)]
    if bad:
        errors = [
            {"field": f"inputs[{i}]", "received": _describe(inputs[i]), "expected": "a row object"}
            for i in bad[:100]
        ]
        raise RequestError(
            422, "validation_error", f"{len(bad)} rows are not JSON objects", errors, n_errors=len(bad)
        )
    return inputs, False


@dataclass(frozen=True)
class ColumnErrors:
    """One kind of failure in one column, for the rows (sorted batch positions) where it happened."""

    column: str
    kind: str  # missing | null | type | range | category
    rows: np.ndarray
    expected: str
    message: str


@dataclass
class CheckedRows:
    """What :meth:`RowValidator.check` found: typed frame, failures and the rows they make invalid."""

    frame: pd.DataFrame
    errors: list[ColumnErrors]
    invalid: np.ndarray
    unseen_categories: dict[str, int] = field(default_factory=dict)


class RowValidator:
    """Checks rows (dicts from JSON) against ``schema`` for ``input_columns``, vectorised per column.

    Every input column must be present; ``null`` only where the column is nullable; numbers
    must be JSON numbers (not strings, not booleans), integers whole, datetimes ISO strings.
    Numbers outside the build range widened by ``range_tolerance`` of its width on each side
    are errors, as the schema rules each column (:meth:`mlsd.data.ColumnSchema.bounds`: its own
    tolerance, no upper bound for a growing column, no check for one the model reads only through
    a derived column); datetimes are never range-checked (time moves forward). Unseen categories are
    errors only when ``reject_unseen_categories``; otherwise they are counted.
    """

    def __init__(
        self,
        schema: Schema,
        input_columns: list[str],
        *,
        reject_unseen_categories: bool = False,
        range_tolerance: float = 0.5,
    ) -> None:
        self.schema = schema
        self.input_columns = list(input_columns)
        self.reject_unseen_categories = reject_unseen_categories
        self.range_tolerance = range_tolerance
        self._specs: dict[str, ColumnSchema | None] = {c: schema.columns.get(c) for c in self.input_columns}
        # The bounds and category sets of the schema, checked with numpy: Schema.validate_frame does
        # the same checks but costs ~1.5 ms of pandas overhead per column, too much per micro-batch.
        self._bounds: dict[str, tuple[float, float, str]] = {}
        self._allowed: dict[str, tuple[frozenset[str], str]] = {}
        for column, spec in self._specs.items():
            if spec is None:
                continue
            # the schema's rule per column: its own tolerance, no upper bound if it grows, or none
            bounds = spec.bounds(range_tolerance) if spec.dtype in ("number", "integer") else None
            if bounds is not None:
                lo, hi = bounds
                self._bounds[column] = (lo, np.inf if hi is None else hi, spec.range_text(range_tolerance))
            if spec.allowed is not None:
                shown = ", ".join(spec.allowed[:20]) + (", ..." if len(spec.allowed) > 20 else "")
                self._allowed[column] = (frozenset(spec.allowed), f"one of: {shown}")

    def check(self, rows: list[dict[str, Any]]) -> CheckedRows:
        """Check a batch of rows: the typed frame (failed values as missing), the failures per column."""
        n = len(rows)
        data: dict[str, Any] = {}
        errors: list[ColumnErrors] = []
        unseen: dict[str, int] = {}
        for column, spec in self._specs.items():
            values = np.empty(n, dtype=object)
            values[:] = [row.get(column, _MISSING) for row in rows]
            kinds = np.fromiter(
                (_ABSENT if v is _MISSING else _KINDS.get(type(v), _OTHER) for v in values), np.int8, count=n
            )
            typed, column_errors = _type_pass(column, spec, values, kinds)
            errors.extend(column_errors)
            data[column] = typed
            if column in self._bounds:
                lo, hi, expected = self._bounds[column]
                x = np.asarray(typed, dtype="float64")
                outside = np.flatnonzero((x < lo) | (x > hi))  # NaN (missing, invalid) compares False
                if outside.size:
                    errors.append(ColumnErrors(column, "range", outside, expected, _OUTSIDE))
            if column in self._allowed:
                allowed, expected = self._allowed[column]
                if spec is not None and spec.dtype == "string":  # the JSON strings are the keys
                    present, keys = kinds == _STR, values.tolist()
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
        invalid = np.zeros(n, dtype=bool)
        for err in errors:
            invalid[err.rows] = True
        return CheckedRows(frame=frame, errors=errors, invalid=invalid, unseen_categories=unseen)

    def field_errors(
        self,
        rows: list[dict[str, Any]],
        checked: CheckedRows,
        start: int,
        stop: int,
        *,
        single: bool = False,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], int]:
        """Error-schema entries of rows ``start:stop`` of a checked batch (at most ``limit``) and their count.

        Fields are named relative to the request: ``inputs[i].column`` (``inputs.column`` when
        the request sent one object), ordered by row, then by column order.
        """
        order = {c: i for i, c in enumerate(self.input_columns)}
        found: list[tuple[int, int, ColumnErrors]] = []
        total = 0
        for err in checked.errors:
            lo, hi = np.searchsorted(err.rows, [start, stop])
            total += int(hi - lo)
            found.extend((int(r), order[err.column], err) for r in err.rows[lo : lo + limit])
        found.sort(key=lambda t: (t[0], t[1]))
        out = []
        for r, _, err in found[:limit]:
            where = "inputs" if single else f"inputs[{r - start}]"
            raw = rows[r].get(err.column, _MISSING)
            out.append(
                {
                    "field": f"{where}.{err.column}",
                    "kind": err.kind,
                    "message": err.message,
                    "received": None if raw is _MISSING else _describe(raw),
                    "expected": err.expected,
                }
            )
        return out, total


def _type_pass(
    column: str, spec: ColumnSchema | None, values: np.ndarray, kinds: np.ndarray
) -> tuple[Any, list[ColumnErrors]]:
    """The typed column (invalid values as missing) and the missing / null / type failures."""
    errors = []
    absent = kinds == _ABSENT
    null = kinds == _NULL
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
        typed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        bad = ~empty & typed.isna().to_numpy()
    elif dtype == "string":
        ok = kinds == _STR
        bad = ~ok & ~empty
        typed = pd.Series(np.where(ok, values, _NONE), dtype="str")
    else:  # a column the schema does not describe: any JSON scalar goes through
        bad = kinds == _OTHER
        typed = np.where(bad | empty, _NONE, values)
    if bad.any():
        expected = _EXPECTED.get(dtype or "", "a JSON scalar")
        errors.append(ColumnErrors(column, "type", np.flatnonzero(bad), expected, f"not {expected}"))
    return typed, errors


def _category_keys(values: pd.Series) -> pd.Series:
    """Categories as text, integral floats without ``.0`` (as :func:`mlsd.data.infer_schema` stores them)."""
    if pd.api.types.is_float_dtype(values.dtype):
        x = values.to_numpy(dtype="float64", na_value=np.nan)
        whole = np.isfinite(x) & (x == np.floor(x)) & (np.abs(x) < 2.0**53)
        out = values.astype("str")
        out[whole] = x[whole].astype("int64").astype("str")
        return out.where(values.notna())
    return values.astype("str").where(values.notna())

"""Request bodies checked against the schema saved at build time, one error per field per row.

Three steps, from cheap to vectorised:

1. :func:`~mlsd.serving.bodies.parse_json` reads the raw bytes (malformed JSON, ``NaN`` or bad
   UTF-8 -> 400);
2. :func:`~mlsd.serving.bodies.parse_predict_body` checks the shape: ``{"inputs": {...}}`` or
   ``{"inputs": [{...}, ...]}`` with 1 to ``max_rows`` objects (-> 422 naming ``inputs[2]``);
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
import re
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, cast

import numpy as np
import pandas as pd

from mlsd.data import ColumnSchema, Schema, evaluate_expression
from mlsd.features._arith import derive_numbers
from mlsd.serving.bodies import LONE_SURROGATE, describe_value

__all__ = [
    "DATETIME_PATTERN",
    "MAX_ABS_NUMBER",
    "MIN_BODY_BYTES",
    "CheckedRows",
    "ColumnErrors",
    "RowValidator",
    "body_limit_for",
    "row_bytes",
    "string_limit",
]


class _Absent:
    """The type of :data:`_MISSING`: a field the row does not carry (no JSON value has this type)."""


_MISSING = _Absent()
_NONE = np.array(None, dtype=object)  # None as an np.where operand (numpy's stubs take no bare None)
# pandas' default text dtype ("str", pandas 3) and its array type: a string column is built as this
# array directly, the same values as ``pd.Series(..., dtype="str")`` without a Series per column
_FROM_ARRAYS = getattr(pd.DataFrame, "_from_arrays", None)  # pandas' frame-of-arrays constructor
_TEXT_DTYPE = pd.api.types.pandas_dtype("str")
_TEXT_ARRAY = (
    cast(Any, _TEXT_DTYPE).construct_array_type()
    if isinstance(_TEXT_DTYPE, pd.api.extensions.ExtensionDtype)
    else None  # pandas 2: "str" is numpy's; the Series does the conversion
)
# JSON value kinds, as small integers so that the checks are array operations; _HUGE is a number
# beyond MAX_ABS_NUMBER (float64 and int64 arithmetic in the model break well before 1e309)
_ABSENT, _NULL, _BOOL, _INT, _FLOAT, _STR, _OTHER, _HUGE = range(8)
_KINDS: dict[type, int] = {
    _Absent: _ABSENT,
    type(None): _NULL,
    bool: _BOOL,
    int: _INT,
    float: _FLOAT,
    str: _STR,
}
MAX_ABS_NUMBER = 10**18
"""Largest magnitude of a JSON number the server takes (below int64's 9.2e18, exact in float64 ops)."""
# An ISO 8601 date or date-time: year 1700 to 2199 (pandas holds 1677 to 2262), a real calendar
# day, an optional UTC offset (none: UTC). Every string it matches parses, and the validator takes no
# other, so it is also the published schema's ``pattern`` (no ``format``: JSON Schema's
# ``date-time`` requires the offset, which the build's own rows may lack).
_YEAR = "(?:1[7-9]|2[01])[0-9]{2}"
_MONTH_DAY = (
    "(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
)
_LEAP_DAY = "(?:(?:1[7-9]|2[01])(?:0[48]|[2468][048]|[13579][26])|2000)-02-29"
_TIME = r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
_OFFSET = "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
# A date alone is midnight UTC: daily data (arrival dates, days of ridership) sends no time.
DATETIME_PATTERN = f"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY})(?:{_TIME}{_OFFSET})?$"
_DATETIME = re.compile(DATETIME_PATTERN)
_PLAIN_STAMP_LENGTHS = frozenset((10, 19, 20))  # a date, a time without offset, one with Z
_UTC = pd.DatetimeTZDtype("us", "UTC")
_DATETIME_ARRAY = pd.arrays.DatetimeArray
_SURROGATE = re.compile(LONE_SURROGATE)
# a string's limit: STRING_FACTOR x the longest value seen at build time, within these bounds
STRING_FACTOR, STRING_MIN, STRING_CAP = 4, 256, 10_000
_OUTSIDE = "value outside the range seen at build time"
_UNSEEN = "category never seen at build time"
_EXPECTED = {
    "number": "a number",
    "integer": "a whole number",
    "string": "a string",
    "boolean": "true or false",
    "datetime": "an ISO 8601 date or date-time, e.g. 2024-05-01 or 2024-05-01T12:00:00Z (no offset: UTC), "
    "year 1700 to 2199",
}


def string_limit(spec: ColumnSchema | None, override: int | None = None) -> int:
    """Longest string a field takes: ``override`` (``deployment.max_string_length``) if given, else
    STRING_FACTOR times the longest value seen at build time, at least STRING_MIN, at most STRING_CAP.

    >>> string_limit(None), string_limit(None, 40)
    (256, 40)
    >>> from mlsd.data import ColumnSchema
    >>> string_limit(ColumnSchema(name="note", dtype="string", max_length=900))
    3600
    """
    if override is not None:
        return override
    longest = getattr(spec, "max_length", None) if spec is not None else None
    if longest is None and spec is not None and spec.allowed:
        longest = max(len(a) for a in spec.allowed)  # a schema saved before max_length existed
    return min(STRING_CAP, max(STRING_MIN, STRING_FACTOR * (longest or 0)))


# JSON bytes of one value as a client writes it, by dtype (numbers: a float's longest repr)
_VALUE_BYTES = {"number": 24, "boolean": 5, "datetime": 35}
MIN_BODY_BYTES = 1_000_000
"""The derived ``max_body_bytes`` never goes below this (the 1 MB that earlier versions took)."""


def row_bytes(schema: Schema, columns: list[str]) -> int:
    """JSON size of the largest row seen at build time (``json.dumps`` spacing), from the schema:
    the longest string (or category) per text column, the widest bound per integer column, 24
    bytes per other number, 35 per date-time.

    >>> from mlsd.data import infer_schema
    >>> schema = infer_schema(pd.DataFrame({"n": [7, 1200], "c": ["a", "abc"]}))
    >>> row_bytes(schema, ["n", "c"]), len(json.dumps({"n": 1200, "c": "abc"}))
    (23, 23)
    """
    size = 2  # the braces
    for column in columns:
        spec = schema.columns.get(column)
        value = _VALUE_BYTES["number"]
        if spec is not None and spec.dtype in _VALUE_BYTES:
            value = _VALUE_BYTES[spec.dtype]
        elif spec is not None and spec.dtype == "integer" and spec.min is not None and spec.max is not None:
            value = max(len(str(int(float(b)))) for b in (spec.min, spec.max))
        elif spec is not None and spec.dtype == "string":
            longest = spec.max_length or max((len(a) for a in spec.allowed or []), default=0)
            value = longest + 2
        size += len(json.dumps(column)) + 2 + value + 2  # "name": value,
    return size - 2 * bool(columns)  # no comma after the last field


def body_limit_for(schema: Schema, columns: list[str], max_rows: int) -> int:
    """Smallest body that holds ``max_rows`` rows of the build's largest row (``{"inputs": [...]}``).

    The default ``max_body_bytes`` is this, or 1 MB if that is more: the row limit is reachable.
    """
    return max_rows * (row_bytes(schema, columns) + 2) + len('{"inputs": []}')


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
    """What :meth:`RowValidator.check` found: typed frame, failures and the rows they make invalid.

    ``event_time`` holds the parsed ``time_column`` per row (NaT where absent or null).
    """

    frame: pd.DataFrame
    errors: list[ColumnErrors]
    invalid: np.ndarray
    unseen_categories: dict[str, int] = field(default_factory=dict)
    event_time: pd.Series | None = None


class RowValidator:
    """Checks rows (dicts from JSON) against ``schema`` for ``input_columns``, vectorised per column.

    Every input column must be present; ``null`` only where the column is nullable; numbers
    must be JSON numbers (not strings, not booleans) of magnitude at most :data:`MAX_ABS_NUMBER`,
    integers whole, datetimes ISO 8601 date-times (:data:`DATETIME_PATTERN`), strings at most
    :func:`string_limit` characters and free of lone surrogates. Numbers outside the build range
    widened by ``range_tolerance`` of its width on each side are errors, as the schema rules each
    column (:meth:`mlsd.data.ColumnSchema.bounds`: its own tolerance, no upper bound for a growing
    column, no check for one the model reads only through a derived column); datetimes are never
    range-checked (time moves forward). Unseen categories are errors only when
    ``reject_unseen_categories``; otherwise they are counted. ``time_column`` (the design's
    ``data.time``), when it is not an input column, is optional, but when a row carries it, it must
    be a datetime (a row is never logged with an event time that did not parse).

    The rules are attributes (``bounds``, ``categories``, ``max_lengths``, ``optional``) so that
    the published request schema (:mod:`mlsd.serving.models`) is built from the same numbers.
    """

    def __init__(
        self,
        schema: Schema,
        input_columns: list[str],
        *,
        reject_unseen_categories: bool = False,
        range_tolerance: float = 0.5,
        max_string_length: int | None = None,
        time_column: str | None = None,
    ) -> None:
        self.schema = schema
        self.input_columns = list(input_columns)
        self.reject_unseen_categories = reject_unseen_categories
        self.range_tolerance = range_tolerance
        self.time_column = time_column
        self._specs: dict[str, ColumnSchema | None] = {c: schema.columns.get(c) for c in self.input_columns}
        # the time column is checked as a datetime even when the model does not read it
        self.optional: set[str] = set()
        if time_column is not None and time_column not in self._specs:
            self._specs[time_column] = ColumnSchema(name=time_column, dtype="datetime", nullable=True)
            self.optional.add(time_column)
        # The bounds and category sets of the schema, checked with numpy: Schema.validate_frame does
        # the same checks but costs ~1.5 ms of pandas overhead per column, too much per micro-batch.
        self.bounds: dict[str, tuple[float, float]] = {}
        self._bound_text: dict[str, str] = {}
        self._allowed: dict[str, tuple[frozenset[str], str]] = {}
        self.max_lengths: dict[str, int] = {}
        for column, spec in self._specs.items():
            if spec is None or spec.dtype == "string":
                self.max_lengths[column] = string_limit(spec, max_string_length)
            if spec is None:
                continue
            # the schema's rule per column: its own tolerance, no upper bound if it grows, or none
            bounds = spec.bounds(range_tolerance) if spec.dtype in ("number", "integer") else None
            if bounds is not None:
                lo, hi = bounds
                self.bounds[column] = (float(lo), np.inf if hi is None else float(hi))
                self._bound_text[column] = spec.range_text(range_tolerance)
            if spec.allowed is not None:
                shown = ", ".join(spec.allowed[:20]) + (", ..." if len(spec.allowed) > 20 else "")
                self._allowed[column] = (frozenset(spec.allowed), f"one of: {shown}")

        self._frame_columns: pd.Index | None = None  # the typed frame's column names, built once
        # derived numbers the model reads in place of raw columns without a range check of their own
        self._derive = dict(schema.derive)
        self._derived_bounds: dict[str, tuple[float, float, str, str]] = {}
        for name, spec in schema.derived.items():
            sources = [c for c in spec.sources if c in self._specs]
            bounds = spec.bounds(range_tolerance)
            if bounds is None or not sources:
                continue
            lo, hi = bounds
            expected = f"a value that gives {name} = {spec.expression} in the build range: "
            expected += spec.range_text(range_tolerance)
            self._derived_bounds[name] = (
                float(lo),
                np.inf if hi is None else float(hi),
                expected,
                sources[0],
            )

    @property
    def categories(self) -> dict[str, list[str]]:
        """The categories a column must hold (only when unseen ones are rejected)."""
        if not self.reject_unseen_categories:
            return {}
        return {c: sorted(allowed) for c, (allowed, _) in self._allowed.items()}

    def spec(self, column: str) -> ColumnSchema | None:
        return self._specs.get(column)

    @property
    def columns(self) -> list[str]:
        """Every checked field: the input columns, then the optional time column."""
        return list(self._specs)

    def check(self, rows: list[dict[str, Any]]) -> CheckedRows:
        """Check a batch of rows: the typed frame (failed values as missing), the failures per column.

        One pass per column over the JSON values with numpy: the kinds from the values' types, the
        numbers converted in one call, string lengths with ``map(len)``, the surrogate regex only on
        strings that are not ASCII, the date-time pattern and parse only for date-time columns.
        """
        n = len(rows)
        data: dict[str, Any] = {}
        errors: list[ColumnErrors] = []
        unseen: dict[str, int] = {}
        event_time = None
        for column, spec in self._specs.items():
            raw = [row.get(column, _MISSING) for row in rows]
            values = np.empty(n, dtype=object)
            values[:] = raw
            kinds = _kinds(raw)
            if column in self.optional:
                kinds[kinds == _ABSENT] = _NULL  # not an input: it may be left out
            typed, column_errors, passed = _type_pass(
                column, spec, values, kinds, self.max_lengths.get(column)
            )
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
                    where = np.flatnonzero(passed)
                    known = np.fromiter(map(allowed.__contains__, values[where].tolist()), bool, where.size)
                    new = where[~known]
                else:
                    key_series = _category_keys(pd.Series(typed))
                    present, keys = key_series.notna().to_numpy(), key_series.tolist()
                    known = np.fromiter((k in allowed for k in keys), bool, count=n)
                    new = np.flatnonzero(present & ~known)
                if new.size and self.reject_unseen_categories:
                    errors.append(ColumnErrors(column, "category", new, expected, _UNSEEN))
                elif new.size:
                    unseen[column] = int(new.size)
        frame = self._frame(data, n)
        if self._derived_bounds:
            errors.extend(self._derived_errors(frame, data))
        invalid = np.zeros(n, dtype=bool)
        for err in errors:
            invalid[err.rows] = True
        return CheckedRows(
            frame=frame, errors=errors, invalid=invalid, unseen_categories=unseen, event_time=event_time
        )

    def _frame(self, data: dict[str, Any], n: int) -> pd.DataFrame:
        """The typed frame of the checked columns (each a fresh 1-D array or Series of ``n`` values).

        pandas' constructor from arrays, with the column names built once: the dict constructor
        re-checks every column and infers the names' dtype, more than the rest of a small batch's
        checks. The same frame either way (the equivalence test compares dtypes too).
        """
        index = pd.RangeIndex(n)
        if _FROM_ARRAYS is None:  # pragma: no cover - a pandas without it
            return pd.DataFrame(data, index=index, copy=False)
        if self._frame_columns is None or self._frame_columns.tolist() != list(data):
            self._frame_columns = pd.Index(list(data))
        # a Series' own array; an object array through a Series, which infers its dtype as the
        # dict constructor does (all strings: pandas' str)
        arrays = [
            v.array
            if isinstance(v, pd.Series)
            else pd.Series(v, copy=False).array
            if isinstance(v, np.ndarray) and v.dtype == object
            else v
            for v in data.values()
        ]
        return _FROM_ARRAYS(arrays, columns=self._frame_columns, index=index, verify_integrity=False)

    def _derived_errors(self, frame: pd.DataFrame, data: dict[str, Any]) -> list[ColumnErrors]:
        """Rows whose derived values leave their build range, reported on the raw field they come from."""
        numbers = derive_numbers(self._derive, data)  # plain arithmetic on number columns: numpy's
        if numbers is not None and not all(name in numbers for name in self._derived_bounds):
            numbers = None
        derived: Any = numbers
        if numbers is None:
            # the columns as Series over the frame's own arrays, the derived ones added to this dict:
            # what evaluate_expression reads (df[name], df.columns, df.index) without copying the frame
            derived = _Columns(frame)
            try:  # the served pipeline derives the same way; a failure here fails there and is isolated
                for name, expr in self._derive.items():
                    derived[name] = evaluate_expression(
                        cast(pd.DataFrame, derived), expr, field=f"data.derive.{name}"
                    )
            except Exception:
                return []
        errors = []
        for name, (lo, hi, expected, source) in self._derived_bounds.items():
            if numbers is not None and name in numbers:
                x = numbers[name].astype("float64")
            else:
                x = pd.to_numeric(derived[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            outside = np.flatnonzero((x < lo) | (x > hi))
            if outside.size:
                message = f"gives {name} outside its build range"
                errors.append(ColumnErrors(source, "range", outside, expected, message))
        return errors

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

        Only rows ``start:stop`` are read: the other rows of a micro-batch belong to other requests.
        Fields are named relative to the request: ``inputs[i].column`` (``inputs.column`` when
        the request sent one object), ordered by row, then by column order.
        """
        order = {c: i for i, c in enumerate(self._specs)}
        found: list[tuple[int, int, ColumnErrors]] = []
        total = 0
        for err in checked.errors:
            lo, hi = np.searchsorted(err.rows, [start, stop])
            total += int(hi - lo)
            found.extend((int(r), order[err.column], err) for r in err.rows[lo : min(hi, lo + limit)])
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
                    "received": None if raw is _MISSING else describe_value(raw),
                    "expected": err.expected,
                }
            )
        return out, total


class _Columns:
    """The part of a DataFrame :func:`mlsd.data.evaluate_expression` reads (``df[name]``,
    ``df.columns``, ``df.index``), where a new column is a dict entry: no copy of the frame."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.index = frame.index
        self._series: dict[str, pd.Series] = {}
        self._frame = frame

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys([*map(str, self._frame.columns), *self._series]))

    def __getitem__(self, name: str) -> pd.Series:
        if name not in self._series:
            self._series[name] = self._frame[name]
        return self._series[name]

    def __setitem__(self, name: str, values: pd.Series) -> None:
        self._series[name] = values


def _kinds(values: list[Any]) -> np.ndarray:
    """The JSON kind of each value, by its exact type (``bool`` is not a number), then magnitudes
    beyond :data:`MAX_ABS_NUMBER` (and non-finite floats) as ``_HUGE``, in one numpy call per type."""
    n = len(values)
    kinds = np.fromiter(map(_KINDS.get, map(type, values), repeat(_OTHER, n)), np.int8, count=n)
    ints = np.flatnonzero(kinds == _INT)
    if ints.size:
        picked = [values[i] for i in ints.tolist()]
        try:
            x = np.array(picked, dtype=np.int64)
            big = (x < -MAX_ABS_NUMBER) | (x > MAX_ABS_NUMBER)
        except OverflowError:  # beyond int64: Python compares them exactly
            big = np.fromiter((not -MAX_ABS_NUMBER <= v <= MAX_ABS_NUMBER for v in picked), bool, ints.size)
        kinds[ints[big]] = _HUGE
    floats = np.flatnonzero(kinds == _FLOAT)
    if floats.size:
        f = np.array([values[i] for i in floats.tolist()], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            big = ~(np.abs(f) <= MAX_ABS_NUMBER)  # NaN and infinities too
        kinds[floats[big]] = _HUGE
    return kinds


def _text_errors(
    column: str, values: np.ndarray, is_text: np.ndarray, max_length: int | None
) -> tuple[np.ndarray, list[ColumnErrors]]:
    """Strings too long or holding lone surrogates (neither can be scored, logged or echoed safely)."""
    bad = np.zeros(len(values), dtype=bool)
    where = np.flatnonzero(is_text)
    if not where.size:
        return bad, []
    text = values[where].tolist()
    errors = []
    if max_length is not None:
        long = where[np.fromiter(map(len, text), np.int64, where.size) > max_length]
        if long.size:
            bad[long] = True
            errors.append(
                ColumnErrors(column, "length", long, f"at most {max_length} characters", "string too long")
            )
    # a surrogate is not ASCII: the regex runs only on the (rare) strings that are not
    wide = np.flatnonzero(~np.fromiter(map(str.isascii, text), bool, where.size))
    if wide.size:
        hits = np.fromiter((_SURROGATE.search(text[i]) is not None for i in wide.tolist()), bool, wide.size)
        broken = where[wide[hits]]
        broken = broken[~bad[broken]]
        if broken.size:
            bad[broken] = True
            errors.append(
                ColumnErrors(
                    column, "type", broken, "valid Unicode text (no lone surrogates)", "not valid text"
                )
            )
    return bad, errors


def _parse_datetimes(values: np.ndarray, is_text: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    """The strings at ``is_text`` that match :data:`DATETIME_PATTERN`, parsed as UTC (NaT elsewhere),
    and where the result is NaT.

    pandas' ISO 8601 parser costs ~150 us a call; when every matching string is a plain date or a
    ``YYYY-MM-DDTHH:MM:SS`` time (optionally ``Z``), the common form, numpy parses them instead.
    The result is pandas' own (``datetime64[us, UTC]``), as the property test checks.
    """
    where = np.flatnonzero(is_text)
    shaped = np.zeros(len(values), dtype=bool)
    if where.size:
        text = values[where].tolist()
        shaped[where] = np.fromiter((m is not None for m in map(_DATETIME.fullmatch, text)), bool, where.size)
        picked = values[shaped].tolist()
        # a matching string of 10 characters is a date, of 19 a time without offset, of 20 one with Z
        if picked and all(len(s) in _PLAIN_STAMP_LENGTHS for s in picked):
            stamps = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[us]")
            stamps[shaped] = np.array([s[:19] for s in picked], dtype="datetime64[us]")
            # naive stamps read as UTC: what DatetimeIndex(stamps).tz_localize("UTC") gives
            return pd.Series(_DATETIME_ARRAY._from_sequence(stamps, dtype=_UTC), copy=False), ~shaped
    text_or_nan = pd.Series(np.where(shaped, values, np.nan), dtype=object)
    parsed = pd.to_datetime(text_or_nan, errors="coerce", utc=True, format="ISO8601")
    return parsed, parsed.isna().to_numpy()


def _type_pass(
    column: str, spec: ColumnSchema | None, values: np.ndarray, kinds: np.ndarray, max_length: int | None
) -> tuple[Any, list[ColumnErrors], np.ndarray]:
    """The typed column (invalid values as missing), the missing / null / type failures, and the
    rows whose value passed as a string (a category key) for string columns."""
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
    ok = kinds == _STR
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
        typed, nat = _parse_datetimes(values, ok)
        bad = ~empty & nat
    elif dtype == "string":
        long, text_errors = _text_errors(column, values, ok, max_length)
        errors.extend(text_errors)
        bad = ~ok & ~empty
        ok = ok & ~long
        text = np.where(ok, values, _NONE)
        if _TEXT_ARRAY is not None:
            typed = _TEXT_ARRAY._from_sequence(text, dtype=_TEXT_DTYPE)
        else:  # pragma: no cover - pandas 2
            typed = pd.Series(text, dtype="str")
    else:  # a column the schema does not describe: any JSON scalar goes through
        long, text_errors = _text_errors(column, values, ok, max_length)
        errors.extend(text_errors)
        bad = (kinds == _OTHER) | ((kinds == _HUGE) & ~empty)
        typed = np.where(bad | empty | long, _NONE, values)
    if bad.any():
        expected = _EXPECTED.get(dtype or "", "a JSON scalar")
        errors.append(ColumnErrors(column, "type", np.flatnonzero(bad), expected, f"not {expected}"))
    return typed, errors, ok


def _event_time_of_text(
    column: str, values: np.ndarray, is_text: np.ndarray
) -> tuple[pd.Series, list[ColumnErrors]]:
    """The event time of a time column the model reads as text, and the rows where it does not parse.

    The model gets the text as it was trained on; the log gets the parsed time. A string that is
    not an ISO 8601 date-time is a 422 (a row is never logged without the event time it sent).
    """
    stamps, nat = _parse_datetimes(values, is_text)
    bad = np.flatnonzero(is_text & nat)
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

"""Rows of the prediction log -> pandas, and pandas -> parquet (private to :mod:`mlsd.store`).

Everything here is column-wise: the JSON texts of a column are joined into ONE JSON array
and decoded by one ``json.loads`` call (C code), then handed to pandas at once. The logged
inputs (one JSON object a row) are parsed by Arrow's JSON reader into typed columns without a
Python dict per row (3x faster on a million flights, and the dicts were most of the memory);
where Arrow would type a value differently than ``json.loads`` + pandas (a timestamp-like
string, an integer beyond 64 bits, nested values, mixed types) it re-reads or falls back.

>>> decode_json_column(['{"a":1}', '{"a":2,"b":"x"}'], frame=True)
   a    b
0  1  NaN
1  2    x
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import pandas as pd

from mlsd.errors import LogError

__all__ = [
    "META_COLUMNS",
    "REQUEST_COLUMNS",
    "decode_json_column",
    "micros_to_utc",
    "ndjson_table",
    "objects_frame_from_ndjson",
    "parquet_safe",
    "predictions_frame",
    "requests_frame",
    "typed_frame",
    "write_parquet_atomically",
]

META_COLUMNS: tuple[str, ...] = (
    "request_id",
    "logged_at",
    "event_time",
    "model_name",
    "model_version",
    "variant",
    "score",
    "decision",
    "latency_ms",
    "outcome",
    "feedback_at",
    "assigned_variant",
    "propensity",
    "unit",
    "assignment",
    "fallback",
    "scoring_ms",
)
REQUEST_COLUMNS: tuple[str, ...] = ("logged_at", "route", "status", "n_rows", "latency_ms", "error")
# object columns pyarrow converts as they are; anything else (e.g. ints mixed with strings) -> str
_PARQUET_OK = {"empty", "string", "boolean", "integer", "floating", "mixed-integer-float", "decimal", "bytes"}


def micros_to_utc(values: Sequence[int | None]) -> pd.Series:
    """Integer UTC microseconds (None -> NaT) as a tz-aware ``datetime64[us, UTC]`` series."""
    return pd.Series(pd.to_datetime(pd.array(values, dtype="Int64"), unit="us", utc=True))


# 19+ digits may be an integer beyond int64, which Arrow would read as a float and pandas keeps
_LONG_DIGITS = re.compile(rb"\d{19,}")
_ARROW_BLOCK_BYTES = 1 << 22  # one JSON row must fit in a block (a request body is far smaller); 4 MB
# blocks parse ~15 % faster than 64 MB ones (cache), and types still merge across blocks
_SCHEMA_SAMPLE_BYTES = 1 << 20  # rows whose inferred types the rest is read against


def _objects_frame_via_arrow(texts: Sequence[str]) -> pd.DataFrame | None:
    """The frame ``pd.DataFrame.from_records([json.loads(t) for t in texts])`` would give, read by
    Arrow's JSON reader; None where Arrow's typing would differ from that."""
    return objects_frame_from_ndjson("\n".join(texts).encode(), len(texts))


def objects_frame_from_ndjson(data: bytes | memoryview, n_rows: int, take: Any = None) -> pd.DataFrame | None:
    """``n_rows`` JSON objects, one a line, as :func:`_objects_frame_via_arrow` reads them; rows
    ``take`` (positions, e.g. a sort order) if given. None where ``json.loads`` must decide."""
    import pyarrow as pa

    table = ndjson_table(data, n_rows)
    if table is None:
        return None
    if take is not None:
        table = table.take(pa.array(take))
    return table.to_pandas()


def ndjson_table(data: bytes | memoryview, n_rows: int) -> Any:
    """The Arrow table of :func:`objects_frame_from_ndjson` (before ``to_pandas``), or None."""
    import pyarrow as pa
    import pyarrow.compute  # pa.compute below
    import pyarrow.json as pa_json

    # a text spread over several lines fails to parse or changes the row count: json.loads decides
    options = pa_json.ReadOptions(use_threads=False, block_size=_ARROW_BLOCK_BYTES)
    try:
        table = _read_typed_by_sample(data, options)
        if table is None:
            table = pa_json.read_json(pa.BufferReader(data), read_options=options)
        # Arrow types an ISO date/time string as a timestamp; json.loads keeps the string
        stamps = [f.name for f in table.schema if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)]
        if stamps:
            as_text = pa.schema([(name, pa.string()) for name in stamps])
            parse = pa_json.ParseOptions(explicit_schema=as_text, unexpected_field_behavior="infer")
            order = table.schema.names
            table = pa_json.read_json(pa.BufferReader(data), read_options=options, parse_options=parse)
            table = table.select(order)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # mixed types in a field, NaN tokens, ...: json.loads decides
    if table.num_rows != n_rows:
        return None
    if any(pa.types.is_nested(f.type) for f in table.schema):
        return None  # lists and objects stay Python values, as json.loads makes them
    # a field that is null throughout, or booleans with gaps: pandas tells a JSON null (None)
    # from an absent key (NaN) there, which Arrow's columns no longer know
    if any(
        pa.types.is_null(f.type) or (pa.types.is_boolean(f.type) and table.column(f.name).null_count)
        for f in table.schema
    ):
        return None
    # an integer beyond int64 becomes a float of magnitude >= 2**63: only then scan the texts
    # (a float written as 1e+20 is a float for pandas too)
    big = [
        f.name
        for f in table.schema
        if pa.types.is_floating(f.type)
        and (pa.compute.max(pa.compute.abs(table.column(f.name))).as_py() or 0) >= 2**63
    ]
    if big and _LONG_DIGITS.search(data):
        return None
    return table


def _read_typed_by_sample(data: bytes | memoryview, options: Any) -> Any:
    """The rows read against the types Arrow infers from the first ``_SCHEMA_SAMPLE_BYTES`` of
    them (inferring every block costs a fifth of the parse); None when the data is smaller,
    or a later row does not fit those types (then the caller infers throughout, as before).

    Every type that could differ from full inference is left to it: a field null in the sample
    is inferred, a date/time one is read as text (as the caller re-reads those anyway), and a
    sample with nested values is not used. Columns keep the order full inference gives them.
    """
    import pyarrow as pa
    import pyarrow.json as pa_json

    if len(data) <= _SCHEMA_SAMPLE_BYTES:
        return None
    view = memoryview(data)
    cut = bytes(view[_SCHEMA_SAMPLE_BYTES : _SCHEMA_SAMPLE_BYTES + (1 << 20)]).find(b"\n")
    if cut < 0:
        return None
    head = pa_json.read_json(pa.BufferReader(view[: _SCHEMA_SAMPLE_BYTES + cut]), read_options=options)
    if any(pa.types.is_nested(f.type) for f in head.schema):
        return None
    fields = [
        pa.field(f.name, pa.string()) if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type) else f
        for f in head.schema
        if not pa.types.is_null(f.type)
    ]
    names = head.schema.names
    order: list[str] = []
    for _ in range(2):  # a date/time field first met after the sample: once more, as text
        parse = pa_json.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="infer")
        try:
            table = pa_json.read_json(pa.BufferReader(data), read_options=options, parse_options=parse)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        # the order full inference gives (first appearance), which the first read has
        got = table.schema.names
        order = order or [*(n for n in names if n in got), *(n for n in got if n not in names)]
        late = [f.name for f in table.schema if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)]
        if not late:
            return table.select(order)
        fields = [*fields, *(pa.field(name, pa.string()) for name in late)]
    return None


def decode_json_column(texts: Sequence[str | None], *, frame: bool = False) -> Any:
    """Decode many JSON texts at once (None -> None); a DataFrame of objects if ``frame``."""
    if frame and texts and None not in texts:
        fast = _objects_frame_via_arrow(cast("Sequence[str]", texts))
        if fast is not None:
            return fast
    if None in texts:
        joined = ",".join("null" if t is None else t for t in texts)
    else:
        joined = ",".join(cast("Sequence[str]", texts))
    values = json.loads(f"[{joined}]")
    if frame:
        return (
            pd.DataFrame.from_records(values, index=pd.RangeIndex(len(values))) if values else pd.DataFrame()
        )
    return pd.Series(values, dtype=object if not values else None)


ColumnKind = Literal["str", "object", "int", "float", "time", "json"]


def _typed(values: Sequence[Any], kind: ColumnKind) -> pd.Series:
    if kind == "time":
        return micros_to_utc(values)
    if kind == "json":
        return pd.Series(decode_json_column(values), dtype=object)
    dtype = {"str": "str", "object": object, "int": "int64", "float": "float64"}[kind]
    return pd.Series(values, dtype=dtype)


def typed_frame(rows: Sequence[Sequence[Any]], columns: Sequence[tuple[str, ColumnKind]]) -> pd.DataFrame:
    """Rows of a SELECT -> a frame, column by column: ``time`` micros -> UTC, ``json`` decoded,
    ``object`` keeps None (nullable text), ``float`` None -> NaN.

    >>> typed_frame([(1_000_000, '{"a":1}', None)], [("at", "time"), ("d", "json"), ("v", "object")])
                             at         d     v
    0 1970-01-01 00:00:01+00:00  {'a': 1}  None
    """
    values: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    return pd.DataFrame(
        {name: _typed(column, kind) for (name, kind), column in zip(columns, values, strict=True)},
        index=pd.RangeIndex(len(rows)),
    )


def predictions_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows of (META_COLUMNS..., inputs) -> the frame documented by ``read_predictions``."""
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * (len(META_COLUMNS) + 1)
    (request_id, logged_at, event_time, name, version, variant, score, decision, latency, outcome,
     feedback_at, assigned, propensity, unit, assignment, fallback, scoring, inputs) = columns  # fmt: skip
    meta = pd.DataFrame(
        {
            "request_id": pd.Series(request_id, dtype="str"),
            "logged_at": micros_to_utc(logged_at),
            "event_time": micros_to_utc(event_time),
            "model_name": pd.Series(name, dtype="str"),
            "model_version": pd.Series(version, dtype="int64"),
            "variant": pd.Series(variant, dtype="str"),
            "score": pd.Series(score, dtype="float64"),
            "decision": decode_json_column(decision),
            "latency_ms": pd.Series(latency, dtype="float64"),
            "outcome": decode_json_column(outcome),
            "feedback_at": micros_to_utc(feedback_at),
            "assigned_variant": pd.Series(assigned, dtype=object),
            "propensity": pd.Series(propensity, dtype="float64"),
            "unit": pd.Series(unit, dtype=object),
            "assignment": pd.Series(assignment, dtype=object),
            "fallback": pd.Series(fallback, dtype=object),
            "scoring_ms": pd.Series(scoring, dtype="float64"),
        }
    )
    expanded = decode_json_column(inputs, frame=True)
    expanded.columns = [f"input_{c}" if c in META_COLUMNS else str(c) for c in expanded.columns]
    return pd.concat([meta, expanded], axis=1) if len(expanded.columns) else meta


def requests_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows of REQUEST_COLUMNS -> a frame with tz-aware UTC ``logged_at``."""
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * len(REQUEST_COLUMNS)
    logged_at, route, status, n_rows, latency, error = columns
    return pd.DataFrame(
        {
            "logged_at": micros_to_utc(logged_at),
            "route": pd.Series(route, dtype="str"),
            "status": pd.Series(status, dtype="int64"),
            "n_rows": pd.Series(n_rows, dtype="int64"),
            "latency_ms": pd.Series(latency, dtype="float64"),
            "error": pd.Series(error, dtype="str"),
        }
    )


def parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast object columns that parquet cannot type (e.g. ints mixed with strings) to strings."""
    out = frame.copy(deep=False)
    for column in out.columns[out.dtypes.eq(object).to_numpy()]:
        values = out[column]
        if pd.api.types.infer_dtype(values, skipna=True) not in _PARQUET_OK:
            # nested values (lists, dicts) keep their JSON form rather than Python's repr
            text = values.map(
                lambda v: v if isinstance(v, str) else json.dumps(v, default=str), na_action="ignore"
            )
            out[column] = text.where(values.notna(), None).astype("str")
    return out


def write_parquet_atomically(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``frame`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            frame.to_parquet(handle, engine="pyarrow", index=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise LogError(
            f"cannot write the parquet export ({type(exc).__name__}: {exc})",
            field="path",
            received=str(target),
            expected="a writable file path, e.g. predictions.parquet",
        ) from exc

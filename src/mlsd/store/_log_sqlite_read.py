"""A column-wise read of a window of a SQLite prediction log (private to :mod:`mlsd.store`).

:meth:`PredictionLog.read_predictions` over SQLAlchemy builds one Row of 18 Python objects per
prediction, then transposes them; on a million rows that was 16 s of CPU and 2.3 GB of memory
for a 380 MB frame. On SQLite it reads the same window in two statements of one read
transaction (one snapshot, so both see the same rows), on the driver's own cursor:

- the prediction's own columns as plain tuples (no join), in the table's order, fetched
  ``_BATCH`` rows at a time and turned into NumPy / Arrow arrays per batch, so no list of a
  million tuples is ever held; then sorted into the window's order (time, then request id) by
  Arrow, which is cheaper than SQLite walking its time index and seeking each row;
- the JSON columns and the feedback aggregated by SQLite itself, per range of rowids: the
  inputs as one newline-delimited text (parsed by Arrow's JSON reader, no Python string per
  row), the decisions, outcomes and feedback times as one JSON array each (one ``json.loads``),
  with the rowids that align them with the tuples (an aggregate's row order is SQLite's, so
  it is never assumed).

Floats are read as tuples rather than as text: SQLite 3.40 prints a REAL with 15 significant
digits, which would not give the stored score back. The cyclic garbage collector is paused
while the tuples are built (they hold no cycles; its full passes over a million fresh tuples
were a third of the fetch). The result equals the generic path's frame column for column
(tests/store/test_log_sqlite_read.py).
"""

from __future__ import annotations

import contextlib
import gc
import io
import itertools
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from mlsd.store._log_frames import META_COLUMNS, decode_json_column, ndjson_table

__all__ = ["read_sqlite_predictions"]

_BATCH = 10_000  # tuples converted at a time
_ROWID_SPAN = 250_000  # rowids per aggregate: bounds one aggregated text (~100 MB at 400 B a row)
_NULL_INT = np.iinfo(np.int64).min  # NULL times come back as this, which datetime64 reads as NaT

# (select expression, kind): the tuple statement's columns after the rowid
_META = (
    ("p.request_id", "str"),
    ("p.logged_at", "time"),
    (f"ifnull(p.event_time, {_NULL_INT})", "time"),
    ("p.model_name", "str"),
    ("p.model_version", "int"),
    ("p.variant", "str"),
    ("p.score", "float"),
    ("p.latency_ms", "float"),
    ("p.assigned_variant", "object"),
    ("p.propensity", "float"),
    ("p.unit", "object"),
    ("p.assignment", "object"),
    ("p.fallback", "object"),
    ("p.scoring_ms", "float"),
)
_META_NAMES = (
    "request_id", "logged_at", "event_time", "model_name", "model_version", "variant", "score",
    "latency_ms", "assigned_variant", "propensity", "unit", "assignment", "fallback",
    "scoring_ms",
)  # fmt: skip
_JOIN = "FROM predictions AS p LEFT JOIN feedback AS f ON f.request_id = p.request_id"


@contextmanager
def _snapshot(dbapi: sqlite3.Connection) -> Iterator[None]:
    """One read transaction around the statements (WAL: a consistent snapshot, no writer blocked)."""
    owned = not dbapi.in_transaction
    if owned:
        dbapi.execute("BEGIN")
    try:
        yield
    finally:
        if owned and dbapi.in_transaction:
            dbapi.rollback()


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _column(values: tuple[Any, ...], kind: str) -> Any:
    # each batch's Python objects become arrays at once, so a million of them never coexist
    if kind in ("time", "int"):
        return np.array(values, dtype=np.int64)
    if kind == "float":
        return np.array(values, dtype=np.float64)  # None -> NaN
    if kind == "str":
        return pd.array(values, dtype="str")
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _meta(
    dbapi: sqlite3.Connection, where: str, params: list[int], axis: str
) -> tuple[np.ndarray, list[Any]]:
    """The rowids and meta columns of the window, in the window's order (time, then request id).

    Read in the table's order and sorted here by Arrow (milliseconds): SQLite's ORDER BY walks
    the time index and seeks every row in the table, a quarter of the fetch."""
    import pyarrow as pa
    import pyarrow.compute as pc

    select = ", ".join(expr for expr, _ in _META)
    # no join: the feedback columns come with the aggregates, which join anyway
    cursor = dbapi.execute(f"SELECT p.rowid, {select} FROM predictions AS p {where}", params)
    parts: list[list[Any]] = [[] for _ in range(len(_META) + 1)]
    with _gc_paused():
        while batch := cursor.fetchmany(_BATCH):
            columns = list(zip(*batch, strict=True))
            del batch
            parts[0].append(np.array(columns[0], dtype=np.int64))
            for i, (_, kind) in enumerate(_META, start=1):
                parts[i].append(_column(columns[i], kind))
    out: list[Any] = []
    for (_, kind), chunks in zip((("", "int"), *_META), parts, strict=True):
        if kind == "str":
            out.append(pd.concat([pd.Series(c) for c in chunks], ignore_index=True) if chunks else [])
        elif chunks:
            out.append(np.concatenate(chunks))
        else:
            out.append(np.empty(0, {"float": np.float64, "object": object}.get(kind, np.int64)))
    if not len(out[0]):
        return out[0], out[1:]
    named: dict[str, Any] = dict(zip(_META_NAMES, out[1:], strict=True))
    when = named["logged_at"]
    if axis.startswith("coalesce"):  # event time, else the logging time
        when = np.where(named["event_time"] == _NULL_INT, when, named["event_time"])
    keys = pa.table({"t": when, "id": pa.array(named["request_id"])})
    # SQLite's BINARY collation and Arrow's string order are both the bytes' order
    order = pc.sort_indices(keys, sort_keys=[("t", "ascending"), ("id", "ascending")]).to_numpy()
    if (order == np.arange(order.size)).all():
        return out[0], out[1:]
    return out[0][order], [
        v.take(order).reset_index(drop=True) if isinstance(v, pd.Series) else v[order] for v in out[1:]
    ]


def _aggregates(
    dbapi: sqlite3.Connection,
    where: str,
    params: list[int],
    rowids_seen: np.ndarray,
    separator: str = "char(10)",
) -> tuple[np.ndarray, list[Any], list[Any], np.ndarray, io.BytesIO, int]:
    """Rowids, decisions, outcomes, feedback times and the inputs' texts of the window, in
    SQLite's row order; only the rowid span ``rowids_seen`` covers is scanned (a day of a year's
    log is a short span: rows are appended in time order)."""
    if not len(rowids_seen):
        return np.empty(0, np.int64), [], [], np.empty(0, np.int64), io.BytesIO(), 0
    lo, hi = int(rowids_seen.min()), int(rowids_seen.max())
    rowids: list[np.ndarray] = []
    decisions: list[Any] = []
    outcomes: list[Any] = []
    received: list[np.ndarray] = []
    inputs = io.BytesIO()
    n = 0
    clause = f"{where} AND" if where else "WHERE"
    for start in range(lo, hi + 1, _ROWID_SPAN):
        count, ids, decision, outcome, received_at, texts = dbapi.execute(
            "SELECT count(*), '[' || group_concat(p.rowid, ',') || ']', "
            "'[' || group_concat(p.decision, ',') || ']', "
            "'[' || group_concat(ifnull(f.outcome, 'null'), ',') || ']', "
            f"'[' || group_concat(ifnull(f.received_at, {_NULL_INT}), ',') || ']', "
            f"CAST(group_concat(p.inputs, {separator}) AS BLOB) "
            f"{_JOIN} {clause} p.rowid >= ? AND p.rowid < ?",
            [*params, start, start + _ROWID_SPAN],
        ).fetchone()
        if not count:
            continue
        rowids.append(np.array(json.loads(ids), dtype=np.int64))
        decisions.extend(json.loads(decision))
        outcomes.extend(json.loads(outcome))
        received.append(np.array(json.loads(received_at), dtype=np.int64))
        if n:
            inputs.write(b"\n" if separator == "char(10)" else b",")
        inputs.write(texts)
        n += count
    ids = np.concatenate(rowids) if rowids else np.empty(0, np.int64)
    feedback_at = np.concatenate(received) if received else np.empty(0, np.int64)
    return ids, decisions, outcomes, feedback_at, inputs, n


def _release(buffer: io.BytesIO) -> None:
    """Free the texts now if nothing still views them (else they go with their last view)."""
    with contextlib.suppress(BufferError):
        buffer.close()


def _times(micros: np.ndarray) -> pd.Series:
    return pd.Series(micros.view("datetime64[us]")).dt.tz_localize("UTC")


def read_sqlite_predictions(
    dbapi: sqlite3.Connection, axis: str, since_us: int | None, until_us: int | None
) -> pd.DataFrame | None:
    """The frame ``predictions_frame`` gives for the window ``[since_us, until_us)`` on ``axis``
    (a SQL expression over ``p``), read column-wise; None if the two reads disagree (then the
    caller reads it the generic way)."""
    conditions, params = [], []
    if since_us is not None:
        conditions.append(f"{axis} >= ?")
        params.append(since_us)
    if until_us is not None:
        conditions.append(f"{axis} < ?")
        params.append(until_us)
    where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
    with _snapshot(dbapi):
        order_ids, meta = _meta(dbapi, where, params, axis)
        stream_ids, decisions, outcomes, feedback_at, inputs, n = _aggregates(dbapi, where, params, order_ids)
        # the aggregates' rows in the window's order: each tuple row's rowid found among them
        by_id = np.argsort(stream_ids, kind="stable")
        pos = np.searchsorted(stream_ids[by_id], order_ids)
        if n != len(order_ids) or (
            n and not np.array_equal(stream_ids[by_id][np.minimum(pos, n - 1)], order_ids)
        ):
            return None
        take = by_id[pos]
        identity = bool((take == np.arange(n)).all())  # rowid order is time order in most logs
        table = ndjson_table(inputs.getbuffer(), n) if n else None
        if table is not None:
            if not identity:  # Arrow ordered the columns as it met the rows: in rowid order
                table = table.take(take)
                table = table.select(_first_seen_order(table.column_names, inputs.getbuffer(), take))
            _release(inputs)  # the texts go before the frame is made: they are the largest part
            expanded = table.to_pandas(self_destruct=True)
            del table
        elif not n:
            expanded = pd.DataFrame()
        else:  # json.loads decides (mixed types, nested values, ...), as in predictions_frame
            _release(inputs)
            _, _, _, _, inputs, _ = _aggregates(dbapi, where, params, order_ids, separator="','")
            values = json.loads(b"[" + inputs.getvalue() + b"]")
            inputs.close()
            # rows in the window's order first: from_records orders the columns as it meets them
            ordered = values if identity else pd.Series(values, dtype=object).take(take).tolist()
            del values
            expanded = pd.DataFrame.from_records(ordered, index=pd.RangeIndex(n))
            del ordered
    columns: dict[str, Any] = dict(zip(_META_NAMES, meta, strict=True))
    frame = pd.DataFrame(
        {
            "request_id": pd.Series(columns["request_id"], dtype="str"),
            "logged_at": _times(columns["logged_at"]),
            "event_time": _times(columns["event_time"]),
            "model_name": pd.Series(columns["model_name"], dtype="str"),
            "model_version": pd.Series(columns["model_version"], dtype="int64"),
            "variant": pd.Series(columns["variant"], dtype="str"),
            "score": pd.Series(columns["score"], dtype="float64"),
            "decision": _reordered(decisions, take, identity),
            "latency_ms": pd.Series(columns["latency_ms"], dtype="float64"),
            "outcome": _reordered(outcomes, take, identity),
            "feedback_at": _times(feedback_at if identity else feedback_at[take]),
            "assigned_variant": pd.Series(columns["assigned_variant"], dtype=object),
            "propensity": pd.Series(columns["propensity"], dtype="float64"),
            "unit": pd.Series(columns["unit"], dtype=object),
            "assignment": pd.Series(columns["assignment"], dtype=object),
            "fallback": pd.Series(columns["fallback"], dtype=object),
            "scoring_ms": pd.Series(columns["scoring_ms"], dtype="float64"),
        },
        index=pd.RangeIndex(n),
    )
    expanded.columns = [f"input_{c}" if c in META_COLUMNS else str(c) for c in expanded.columns]
    return pd.concat([frame, expanded], axis=1) if len(expanded.columns) else frame


def _first_seen_order(names: list[str], texts: memoryview, take: np.ndarray) -> list[str]:
    """The input columns in the order the generic read makes them when the window's order is not
    the rowid order Arrow met the rows in: the order in which the window's rows, in turn, first
    carry each key (a key with a null value counts, as it does for Arrow and ``from_records``).

    The rows are read from the window's start in growing batches until every column has been
    met: one batch of 16 rows when the first rows carry every field, as they usually do.
    """
    if len(names) < 2 or not len(take):
        return names
    raw = np.frombuffer(texts, dtype=np.uint8)
    step = 1 << 24  # newlines found 16 MB at a time: no mask as large as the texts
    breaks = [np.flatnonzero(raw[i : i + step] == ord("\n")) + i for i in range(0, raw.size, step)]
    starts = np.concatenate([[0], *(b + 1 for b in breaks)])
    ends = np.concatenate([starts[1:] - 1, [raw.size]])
    seen: dict[str, None] = {}
    wanted = set(names)
    lo, size = 0, 16
    while lo < len(take) and not wanted.issubset(seen):
        rows = take[lo : lo + size]
        batch = b"[" + b",".join(bytes(raw[starts[r] : ends[r]]) for r in rows.tolist()) + b"]"
        seen.update(dict.fromkeys(str(k) for k in itertools.chain.from_iterable(json.loads(batch))))
        lo, size = lo + size, size * 16
    return [k for k in seen if k in wanted] + [c for c in names if c not in seen]


def _reordered(values: list[Any], take: np.ndarray, identity: bool) -> pd.Series:
    """A decoded JSON column (typed as ``decode_json_column`` types it) in the window's order."""
    series = decode_json_column([]) if not values else pd.Series(values)
    return series if identity or not len(values) else series.take(take).reset_index(drop=True)

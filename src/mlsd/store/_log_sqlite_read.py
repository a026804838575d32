"""A column-wise read of a window of a SQLite prediction log (private to :mod:`mlsd.store`).

:meth:`PredictionLog.read_predictions` over SQLAlchemy builds one Row of 18 Python objects per
prediction, then transposes them; on a million rows that was 16 s of CPU and 2.3 GB of memory
for a 380 MB frame. On SQLite it reads the same window in two statements of one read
transaction (one snapshot, so both see the same rows), on the driver's own cursor:

- the four REAL columns (and the rowid) as plain tuples (no join), fetched ``_BATCH`` rows at a
  time and turned into one float matrix per batch, so no list of a million tuples is held;
- every other column aggregated by SQLite itself, per range of rowids, in one statement: the
  inputs as one newline-delimited text (parsed by Arrow's JSON reader, no Python string per
  row), the integer columns as one decimal list each (parsed by NumPy in C), the text columns
  as their bytes back to back plus each value's byte length (an Arrow string array built on
  those buffers: no Python string per row either), the decisions and outcomes as one JSON array
  each (one ``json.loads``), with the rowids that align them with the tuples (an aggregate's row
  order is SQLite's, so it is never assumed); then sorted into the window's order (time, then
  request id) by Arrow, which is cheaper than SQLite walking its time index and seeking each row.

On the benchmark's million flights the other columns as tuples were half of the read's CPU
(tuples, then Python strings, then Arrow strings). Floats stay tuples: SQLite 3.40 prints a
REAL with 15 significant digits, which would not give the stored score back. The cyclic
garbage collector is paused while the tuples are built (they hold no cycles; its full passes
over a million fresh tuples were a third of the fetch). A text column holding bytes that are
no UTF-8 sends the window to the generic read (see ``_aggregates``). The result equals the
generic path's frame column for column (tests/store/test_log_sqlite_read.py).
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
# rowids per aggregate: ~8 MB of texts at 400 B a row, under glibc's 32 MB mmap threshold, so each
# range reuses the memory of the last (250,000 rows: 100 MB each, faulted in afresh; a million
# rows took 270,000 page faults, now 150,000, and clearing pages is most of the kernel's time)
_ROWID_SPAN = 20_000
_NULL_INT = np.iinfo(np.int64).min  # NULL times come back as this, which datetime64 reads as NaT

# the REAL columns, read as tuples (see the module's docstring), after the rowid
_FLOATS = ("score", "latency_ms", "propensity", "scoring_ms")
# integer columns aggregated as one decimal list each (a NULL time as _NULL_INT)
_INTS = (
    ("logged_at", "p.logged_at"),
    ("event_time", f"ifnull(p.event_time, {_NULL_INT})"),
    ("model_version", "p.model_version"),
)
# text columns aggregated as their bytes back to back plus each one's byte length (-1: NULL),
# which become Arrow string arrays without a Python string per row
_TEXTS = ("request_id", "model_name", "variant", "assigned_variant", "unit", "assignment", "fallback")
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


def _meta(dbapi: sqlite3.Connection, where: str, params: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The rowids and the REAL columns of the window (rows x 4, None -> NaN), in SQLite's order.

    The only per-row tuples of the read: a REAL printed as text by SQLite 3.40 keeps 15
    significant digits, which would not give the stored value back. Each batch of tuples becomes
    one float matrix at once (rowids < 2**53 are exact in a double)."""
    select = ", ".join(f"p.{name}" for name in _FLOATS)
    # no join: the feedback columns come with the aggregates, which join anyway
    cursor = dbapi.execute(f"SELECT p.rowid, {select} FROM predictions AS p {where}", params)
    parts: list[np.ndarray] = []
    with _gc_paused():
        while batch := cursor.fetchmany(_BATCH):
            parts.append(np.array(batch, dtype=np.float64))
            del batch
    values = np.concatenate(parts) if parts else np.empty((0, len(_FLOATS) + 1))
    return values[:, 0].astype(np.int64), values[:, 1:]


def _ints(text: str, count: int) -> np.ndarray:
    """A comma-separated list of ``count`` decimal integers (SQLite's) -> int64, parsed in C."""
    if not count:
        return np.empty(0, np.int64)
    out = np.fromstring(text, dtype=np.int64, sep=",")  # raises on a token that is no integer
    if out.size != count:
        raise ValueError(f"{out.size} integers in an aggregate of {count} rows")
    return out


class _Texts:
    """One text column of the window being aggregated: its bytes and each row's length."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.lengths: list[str] = ["0"]  # the offsets' leading 0
        self.count = 0

    def add(self, data: bytes | None, lengths: str, count: int) -> None:
        self.data.append(data or b"")
        self.lengths.append(lengths)
        self.count += count

    def array(self) -> Any:
        """A ``large_string`` Arrow array (NULL where the length is -1), validated as UTF-8.

        The lengths are parsed once, behind a leading 0, and summed in place into the offsets:
        no other array of a million integers is made (fresh memory costs its page faults)."""
        import pyarrow as pa

        offsets = _ints(",".join(self.lengths), self.count + 1)
        null = offsets < 0
        n_null = int(null.sum())
        if n_null:
            np.maximum(offsets, 0, out=offsets)
        np.cumsum(offsets, out=offsets)
        mask = pa.py_buffer(np.packbits(~null[1:], bitorder="little")) if n_null else None
        out = pa.LargeStringArray.from_buffers(
            self.count, pa.py_buffer(offsets), pa.py_buffer(b"".join(self.data)), mask, n_null
        )
        out.validate(full=True)  # lengths and bytes agree, and the bytes are UTF-8
        return out


def _aggregates(
    dbapi: sqlite3.Connection,
    where: str,
    params: list[int],
    rowids_seen: np.ndarray,
    separator: str = "char(10)",
) -> tuple[np.ndarray, dict[str, Any], list[Any], list[Any], np.ndarray, io.BytesIO, int] | None:
    """Rowids, the integer and text columns, decisions, outcomes, feedback times and the inputs'
    texts of the window, in SQLite's row order; only the rowid span ``rowids_seen`` covers is
    scanned (a day of a year's log is a short span: rows are appended in time order).

    None if a text column holds bytes that are no UTF-8 (a BLOB, which the generic read keeps
    as bytes). A BLOB that is valid UTF-8 reads as text here: telling it apart costs a
    ``typeof`` per value (0.5 s a million rows), for values mlsd's writer never stores (it binds
    every text column as text)."""
    from pyarrow import ArrowInvalid

    columns: dict[str, Any] = {name: [] for name, _ in _INTS}
    texts = {name: _Texts() for name in _TEXTS}
    if not len(rowids_seen):
        empty = {name: np.empty(0, np.int64) for name, _ in _INTS} | {n: t.array() for n, t in texts.items()}
        return np.empty(0, np.int64), empty, [], [], np.empty(0, np.int64), io.BytesIO(), 0
    lo, hi = int(rowids_seen.min()), int(rowids_seen.max())
    rowids: list[np.ndarray] = []
    decisions: list[Any] = []
    outcomes: list[Any] = []
    received: list[np.ndarray] = []
    inputs = io.BytesIO()
    n = 0
    clause = f"{where} AND" if where else "WHERE"
    ints = "".join(f"group_concat({expr}, ','), " for _, expr in _INTS)
    text_parts = "".join(
        f"CAST(group_concat(p.{name}, '') AS BLOB), "
        f"group_concat(ifnull(length(CAST(p.{name} AS BLOB)), -1), ','), "
        for name in _TEXTS
    )
    for start in range(lo, hi + 1, _ROWID_SPAN):
        row = dbapi.execute(
            f"SELECT count(*), group_concat(p.rowid, ','), {ints}{text_parts}"
            "'[' || group_concat(p.decision, ',') || ']', "
            "'[' || group_concat(ifnull(f.outcome, 'null'), ',') || ']', "
            f"group_concat(ifnull(f.received_at, {_NULL_INT}), ','), "
            f"CAST(group_concat(p.inputs, {separator}) AS BLOB) "
            f"{_JOIN} {clause} p.rowid >= ? AND p.rowid < ?",
            [*params, start, start + _ROWID_SPAN],
        ).fetchone()
        count, ids = row[0], row[1]
        if not count:
            continue
        rowids.append(_ints(ids, count))
        at = 2
        for name, _ in _INTS:
            columns[name].append(_ints(row[at], count))
            at += 1
        for name in _TEXTS:
            texts[name].add(row[at], row[at + 1], count)
            at += 2
        decision, outcome, received_at, inputs_text = row[at:]
        decisions.extend(json.loads(decision))
        outcomes.extend(json.loads(outcome))
        received.append(_ints(received_at, count))
        if n:
            inputs.write(b"\n" if separator == "char(10)" else b",")
        inputs.write(inputs_text)
        n += count
    ids = np.concatenate(rowids) if rowids else np.empty(0, np.int64)
    feedback_at = np.concatenate(received) if received else np.empty(0, np.int64)
    out = {name: np.concatenate(parts) if parts else np.empty(0, np.int64) for name, parts in columns.items()}
    try:
        out |= {name: t.array() for name, t in texts.items()}
    except ArrowInvalid:  # bytes that are no UTF-8: a BLOB, which the driver returns as bytes
        return None
    return ids, out, decisions, outcomes, feedback_at, inputs, n


def _release(buffer: io.BytesIO) -> None:
    """Free the texts now if nothing still views them (else they go with their last view)."""
    with contextlib.suppress(BufferError):
        buffer.close()


def _times(micros: np.ndarray) -> pd.Series:
    return pd.Series(micros.view("datetime64[us]")).dt.tz_localize("UTC")


def _window_order(axis: str, columns: dict[str, Any]) -> np.ndarray:
    """Positions of the aggregated rows in the window's order: time on ``axis``, then request id.

    SQLite's BINARY collation and Arrow's string order are both the bytes' order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    when = columns["logged_at"]
    if axis.startswith("coalesce"):  # event time, else the logging time
        when = np.where(columns["event_time"] == _NULL_INT, when, columns["event_time"])
    if (when[1:] > when[:-1]).all():  # times strictly increasing (no ties): already in order
        return np.arange(len(when))
    keys = pa.table({"t": when, "id": columns["request_id"]})
    return pc.sort_indices(keys, sort_keys=[("t", "ascending"), ("id", "ascending")]).to_numpy()


def _text_series(values: Any, nullable: bool) -> pd.Series:
    if not nullable:
        return pd.Series(pd.array(values, dtype="str"))
    return pd.Series(values.to_numpy(zero_copy_only=False), dtype=object)  # None stays None


def read_sqlite_predictions(
    dbapi: sqlite3.Connection, axis: str, since_us: int | None, until_us: int | None
) -> pd.DataFrame | None:
    """The frame ``predictions_frame`` gives for the window ``[since_us, until_us)`` on ``axis``
    (a SQL expression over ``p``), read column-wise; None if the two reads disagree or a value
    is not what the column-wise read can type (then the caller reads it the generic way)."""
    conditions, params = [], []
    if since_us is not None:
        conditions.append(f"{axis} >= ?")
        params.append(since_us)
    if until_us is not None:
        conditions.append(f"{axis} < ?")
        params.append(until_us)
    where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
    with _snapshot(dbapi):
        float_ids, floats = _meta(dbapi, where, params)
        aggregated = _aggregates(dbapi, where, params, float_ids)
        if aggregated is None:
            return None
        stream_ids, columns, decisions, outcomes, feedback_at, inputs, n = aggregated
        # the float tuples' rows found among the aggregates' (both in SQLite's order, which
        # need not be the same order, though it usually is): each aggregated row's floats
        if not np.array_equal(float_ids, stream_ids):
            by_id = np.argsort(float_ids, kind="stable")
            pos = np.searchsorted(float_ids[by_id], stream_ids)
            if n != len(float_ids) or (
                n and not np.array_equal(float_ids[by_id][np.minimum(pos, n - 1)], stream_ids)
            ):
                return None
            floats = floats[by_id[pos]] if n else floats
        take = _window_order(axis, columns) if n else np.empty(0, np.int64)
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
            again = _aggregates(dbapi, where, params, float_ids, separator="','")
            if again is None:
                return None
            inputs = again[5]
            values = json.loads(b"[" + inputs.getvalue() + b"]")
            inputs.close()
            # rows in the window's order first: from_records orders the columns as it meets them
            ordered = values if identity else pd.Series(values, dtype=object).take(take).tolist()
            del values
            expanded = pd.DataFrame.from_records(ordered, index=pd.RangeIndex(n))
            del ordered
    if not identity:
        columns = {k: v.take(take) if hasattr(v, "to_numpy") else v[take] for k, v in columns.items()}
        floats, feedback_at = floats[take], feedback_at[take]
    score, latency, propensity, scoring = floats.T
    frame = pd.DataFrame(
        {
            "request_id": _text_series(columns["request_id"], False),
            "logged_at": _times(columns["logged_at"]),
            "event_time": _times(columns["event_time"]),
            "model_name": _text_series(columns["model_name"], False),
            "model_version": pd.Series(columns["model_version"], dtype="int64"),
            "variant": _text_series(columns["variant"], False),
            "score": pd.Series(score, dtype="float64"),
            "decision": _reordered(decisions, take, identity),
            "latency_ms": pd.Series(latency, dtype="float64"),
            "outcome": _reordered(outcomes, take, identity),
            "feedback_at": _times(feedback_at),
            "assigned_variant": _text_series(columns["assigned_variant"], True),
            "propensity": pd.Series(propensity, dtype="float64"),
            "unit": _text_series(columns["unit"], True),
            "assignment": _text_series(columns["assignment"], True),
            "fallback": _text_series(columns["fallback"], True),
            "scoring_ms": pd.Series(scoring, dtype="float64"),
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

"""Many scored rows of one request as columns, encoded as ``predictions`` rows in one pass.

:class:`~mlsd.store.PredictionRecord` is one object per row, each encoded on its own
(:func:`~mlsd.store._log_tables.encode_prediction`): for a 100-row request that is 100 objects,
100 rounds of the same checks and 200 ``json.dumps`` calls. A :class:`PredictionBatch` holds the
same fields as columns (one value where all rows share it); :func:`encode_batch` checks each
column once, converts the numeric ones with numpy and writes the JSON with orjson. The rows are
the ones ``encode_prediction`` gives for :meth:`PredictionBatch.records`, with the JSON texts
equal as JSON (orjson writes non-ASCII as UTF-8 and ``1e-05`` as ``1e-5``; tests/store/
test_log_batch.py checks it), so every reader of the log reads both alike.

>>> from datetime import UTC, datetime
>>> batch = PredictionBatch(
...     request_id=["r-1", "r-2"], logged_at=datetime(2024, 5, 1, tzinfo=UTC), model_name="m",
...     latency_ms=2.5, model_version=[3, 3], variant=["champion", "champion"],
...     inputs=[{"city": "Zürich"}, {"city": None}], score=np.array([0.25, np.nan]),
...     decision=[False, None])
>>> [(r["request_id"], r["inputs"], r["score"], r["decision"]) for r in encode_batch(batch)]
[('r-1', '{"city":"Zürich"}', 0.25, 'false'), ('r-2', '{"city":null}', None, 'null')]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from mlsd.errors import LogError
from mlsd.store._log_records import PredictionRecord
from mlsd.store._log_tables import (
    _ASSIGNMENTS,
    ID_MAX,
    encode_prediction,
    predictions,
    to_json_fast,
    to_micros,
)

__all__ = ["PREDICTION_COLUMNS", "SMALL_BATCH", "PredictionBatch", "encode_batch"]

#: the keys of an encoded row, in the table's column order
PREDICTION_COLUMNS: tuple[str, ...] = tuple(c.name for c in predictions.columns)
#: up to this many rows, each is encoded as its record (the columns' checks cost more than they save)
SMALL_BATCH = 2
_LARGEST = float(np.finfo(np.float64).max)  # a duration's bound: any finite number


@dataclass(frozen=True, slots=True)
class PredictionBatch:
    """The :class:`~mlsd.store.PredictionRecord` fields of ``n`` rows as columns.

    ``logged_at``, ``model_name`` and ``latency_ms`` are the request's, shared by its rows;
    every other field is a sequence (or array) of ``n`` values, or None where no row records
    it. ``event_time`` may be a ``datetime64`` array (NaT: none), read as UTC.
    """

    request_id: Sequence[str]
    logged_at: datetime
    model_name: str
    latency_ms: float
    model_version: Sequence[int] | np.ndarray
    variant: Sequence[str] | np.ndarray
    inputs: Sequence[dict[str, Any]]
    score: Sequence[float] | np.ndarray
    decision: Sequence[Any]
    event_time: Sequence[datetime | None] | np.ndarray | None = None
    assigned_variant: Sequence[str | None] | None = None
    propensity: Sequence[float] | np.ndarray | None = None
    unit: Sequence[str | None] | None = None
    assignment: Sequence[str | None] | None = None
    fallback: Sequence[str | None] | None = None
    scoring_ms: Sequence[float] | np.ndarray | None = None
    abstain_reason: Sequence[str | None] | None = None
    confidence: Sequence[float] | np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.request_id)

    def records(self) -> list[Any]:
        """The same rows as :class:`~mlsd.store.PredictionRecord` objects (NaN: None)."""

        n = len(self)
        event = self.event_time
        if isinstance(event, np.ndarray):  # datetime64[us].tolist(): naive datetimes (UTC), NaT None
            event = event.astype("datetime64[us]").tolist()
        columns = zip(
            self.request_id,
            _values(event, n),
            _listed(self.model_version),
            _listed(self.variant),
            self.inputs,
            _listed(self.score),
            self.decision,
            _values(self.assigned_variant, n),
            _values(_listed(self.propensity), n),
            _values(self.unit, n),
            _values(self.assignment, n),
            _values(self.fallback, n),
            _values(_listed(self.scoring_ms), n),
            _values(self.abstain_reason, n),
            _values(_listed(self.confidence), n),
            strict=True,
        )
        return [
            PredictionRecord(
                rid,
                self.logged_at,
                at,
                self.model_name,
                int(version),
                str(variant),
                inputs,
                float(score),
                decision,
                self.latency_ms,
                assigned,
                _nan_none(propensity),
                unit,
                assignment,
                fallback,
                _nan_none(scoring_ms),
                reason,
                _nan_none(confidence),
            )
            for (
                rid,
                at,
                version,
                variant,
                inputs,
                score,
                decision,
                assigned,
                propensity,
                unit,
                assignment,
                fallback,
                scoring_ms,
                reason,
                confidence,
            ) in columns
        ]


def _listed(column: Any) -> Any:
    return column.tolist() if isinstance(column, np.ndarray) else column


def _values(column: Any, n: int) -> Sequence[Any]:
    return [None] * n if column is None else column


def _nan_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _length(column: Any, n: int, field: str) -> None:
    if column is not None and len(column) != n:
        raise LogError(
            "a column of the batch has another length than its request ids",
            field=field,
            received=len(column),
            expected=f"{n} values, one per request id",
        )


def _floats(column: Any, n: int, field: str, *, low: float, high: float) -> list[Any]:
    """A float column as Python floats with NaN as None; LogError past [low, high] or on inf."""
    if column is None:
        return [None] * n
    try:
        values = np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LogError(
            "not a number", field=field, received=type(column).__name__, expected="floats"
        ) from exc
    if ((values >= low) & (values <= high)).all():  # the usual case: no NaN, none out of range
        return values.tolist()
    nan = np.isnan(values)
    bad = ~nan & ~((values >= low) & (values <= high) & np.isfinite(values))
    if bad.any():
        raise LogError(
            "a number out of range",
            field=field,
            received=float(values[bad][0]),
            expected=f"a finite float >= {low} or None"
            if high == _LARGEST
            else f"a finite float in [{low}, {high}] or None",
        )
    return _nan_as_none(values, nan)


def _nan_as_none(values: np.ndarray, nan: np.ndarray) -> list[Any]:
    out: list[Any] = values.tolist()
    for i in np.flatnonzero(nan).tolist():
        out[i] = None
    return out


def _texts(column: Any, n: int, field: str, limit: int | None = 255) -> list[Any]:
    """A column of strings or None, each at most ``limit`` characters."""
    if column is None:
        return [None] * n
    values = column.tolist() if isinstance(column, np.ndarray) else list(column)
    present = [v for v in values if v is not None]
    wrong = [v for v in present if not isinstance(v, str) or (limit is not None and len(v) > limit)]
    if wrong:
        value = wrong[0]
        shown = value if not isinstance(value, str) else f"{value[:40]}... ({len(value)} chars)"
        expected = "a string or None" if limit is None else f"a string of at most {limit} chars or None"
        raise LogError("not a short string", field=field, received=shown, expected=expected)
    return values


def _event_micros(column: Any, n: int) -> list[Any]:
    if column is None:
        return [None] * n
    if isinstance(column, np.ndarray) and column.dtype.kind == "M":  # vectorised: no datetime per row
        micros = column.astype("datetime64[us]")
        missing = np.isnat(micros)
        return (
            _nan_as_none(micros.view(np.int64), missing) if missing.any() else micros.view(np.int64).tolist()
        )
    return [to_micros(t, field="event_time") for t in column]


def encode_batch(batch: PredictionBatch) -> list[dict[str, Any]]:
    """The batch as rows of ``predictions`` (LogError naming the first invalid column)."""
    n = len(batch)
    if n <= SMALL_BATCH:
        return [encode_prediction(record) for record in batch.records()]
    for name in PredictionBatch.__slots__:
        if name not in ("request_id", "logged_at", "model_name", "latency_ms"):
            _length(getattr(batch, name), n, name)
    ids = list(batch.request_id)
    wrong_ids = [r for r in ids if not isinstance(r, str) or not r or len(r) > ID_MAX]
    if wrong_ids:
        raise LogError(
            "invalid request id",
            field="request_id",
            received=wrong_ids[0],
            expected=f"a string of 1-{ID_MAX} chars",
        )
    not_dicts = [type(x).__name__ for x in batch.inputs if not isinstance(x, dict)]
    if not_dicts:
        raise LogError(
            "inputs must be one JSON object per row",
            field="inputs",
            received=not_dicts[0],
            expected="a dict of column -> value",
        )
    assignment = _texts(batch.assignment, n, "assignment")
    unknown = set(assignment) - {None, *_ASSIGNMENTS}
    if unknown:
        raise LogError(
            "unknown assignment",
            field="assignment",
            received=sorted(map(str, unknown))[0],
            expected=" | ".join(_ASSIGNMENTS),
        )
    try:
        versions = np.asarray(batch.model_version).astype(np.int64, casting="unsafe").tolist()
    except (TypeError, ValueError, OverflowError) as exc:
        raise LogError("not a number", field="model_version", received=None, expected="an int") from exc
    latency = _scores([batch.latency_ms])[0]
    logged_at = to_micros(batch.logged_at, field="logged_at")
    inputs = [to_json_fast(x, field="inputs") for x in batch.inputs]
    decisions = [to_json_fast(d, field="decision") for d in batch.decision]
    columns = zip(
        ids,
        [logged_at] * n,
        _event_micros(batch.event_time, n),
        [str(batch.model_name)] * n,
        versions,
        _texts(batch.variant, n, "variant", None),
        inputs,
        _scores(batch.score),
        decisions,
        [latency] * n,
        _texts(batch.assigned_variant, n, "assigned_variant"),
        _floats(batch.propensity, n, "propensity", low=0.0, high=1.0),
        _texts(batch.unit, n, "unit", ID_MAX),
        assignment,
        _texts(batch.fallback, n, "fallback", None),
        _floats(batch.scoring_ms, n, "scoring_ms", low=0.0, high=_LARGEST),
        strict=True,
    )
    return [dict(zip(PREDICTION_COLUMNS, row, strict=True)) for row in columns]


def _scores(column: Any) -> list[Any]:
    """Floats, NaN as None (an unscored row); inf is kept, as ``encode_prediction`` keeps it."""
    try:
        values = np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LogError(
            "not a number", field="score", received=type(column).__name__, expected="floats"
        ) from exc
    nan = np.isnan(values)
    return _nan_as_none(values, nan) if nan.any() else values.tolist()

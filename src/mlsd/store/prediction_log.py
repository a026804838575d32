"""The durable prediction + feedback log: every scored row, every HTTP call, every outcome.

Three tables (SQLAlchemy Core, any SQLAlchemy URL; SQLite in WAL mode with
``synchronous=FULL`` by default, at ``<workspace>/predictions.db``): ``predictions`` (one row
per scored row, keyed by request id), ``feedback`` (the observed outcome of a prediction,
joined by request id) and ``requests`` (one row per HTTP call, rejected ones included, for
SLOs). Times are stored as UTC microseconds, so windows sort and filter the same everywhere.

For rollouts (docs/prediction-log.md) each prediction also records how it was routed, and
three more tables hold shadow answers (``shadow_predictions``), the state every server process
shares (``rollout_state``, changed by compare-and-set: :meth:`PredictionLog.write_state`) and
the rollout's audit trail (``rollout_events``). A log written before them gains them on open.
Their reads and writes are in :mod:`mlsd.store._rollout_log`, a mixin of :class:`PredictionLog`.

Writes use group commit: :meth:`PredictionLog.submit` returns a future that is done only
after the record is COMMITTED, together with the records of other requests that arrived
meanwhile (one transaction, one fsync). A server answers only once that future is done, so
every answered prediction is in the log even if the process is killed right after.

>>> from datetime import UTC, datetime
>>> record = PredictionRecord(
...     request_id="r-1", logged_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC), event_time=None,
...     model_name="flight-delay", model_version=3, variant="champion",
...     inputs={"distance": 1200, "carrier": "UA"}, score=0.81, decision=True, latency_ms=4.2)
>>> with PredictionLog("sqlite://") as log:  # in memory; for_workspace(path) in real use
...     log.write_sync([record], RequestRecord(record.logged_at, "/v1/predict", 200, 1, 4.2))
...     log.add_feedback("r-1", True)
...     log.add_feedback("r-1", True)
...     frame = log.read_predictions()
'created'
'unchanged'
>>> frame[["request_id", "model_version", "score", "decision", "outcome", "distance", "carrier"]]
  request_id  model_version  score  decision  outcome  distance carrier
0        r-1              3   0.81      True     True      1200      UA
>>> str(frame["logged_at"].dtype)
'datetime64[us, UTC]'
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from mlsd.errors import LogError
from mlsd.store._log_batch import PredictionBatch, encode_batch
from mlsd.store._log_frames import (
    decode_json_column,
    micros_to_utc,
    parquet_safe,
    predictions_frame,
    requests_frame,
    write_parquet_atomically,
)
from mlsd.store._log_records import PredictionRecord, RequestRecord
from mlsd.store._log_sqlite_read import read_sqlite_predictions
from mlsd.store._log_tables import (
    METADATA,
    PREDICTION_ROLLOUT_COLUMNS,
    URL_EXPECTED,
    add_missing_columns,
    create_log_engine,
    encode_prediction,
    encode_request,
    feedback,
    feedback_corrections,
    predictions,
    requests,
    to_json,
    to_micros,
)
from mlsd.store._log_writer import GroupCommitWriter, Submission, public_reason
from mlsd.store._rollout_log import RolloutLog, ShadowRecord
from mlsd.store.files import create_private_file
from mlsd.store.review_queue import encode_review, review_frame, review_select

__all__ = ["PredictionBatch", "PredictionLog", "PredictionRecord", "RequestRecord", "ShadowRecord"]

TimeAxis = Literal["event_time", "logged_at"]
FeedbackStatus = Literal["created", "unchanged", "corrected"]
_TIME_AXES = ("event_time", "logged_at")


def _float_or_none(value: Any) -> float | None:
    return None if value is None or value != value else float(value)


class PredictionLog(RolloutLog):
    """Durable log of predictions, feedback and requests behind any SQLAlchemy URL.

    ``max_batch`` caps the rows of one group commit; ``max_delay_ms`` is how long the writer
    waits for more submissions after the first one of a batch (0: commit whatever is queued).
    Use as a context manager, or call :meth:`start` and :meth:`close`. Thread-safe.
    """

    def __init__(self, url: str | URL, *, max_batch: int = 1024, max_delay_ms: float = 2.0) -> None:
        if not isinstance(max_batch, int) or max_batch < 1:
            raise LogError(
                "invalid batch size", field="max_batch", received=max_batch, expected="an int >= 1"
            )
        if not isinstance(max_delay_ms, int | float) or not max_delay_ms >= 0:
            raise LogError(
                "invalid delay", field="max_delay_ms", received=max_delay_ms, expected="a number >= 0"
            )
        self._db = create_log_engine(url)
        self.url = self._db.engine.url.render_as_string(hide_password=True)
        self.max_batch = max_batch
        self.max_delay_ms = float(max_delay_ms)
        self._writer = GroupCommitWriter(self._db, max_batch=max_batch, max_delay_s=max_delay_ms / 1000)
        self._lifecycle = threading.Lock()
        self._tables_lock = threading.Lock()
        self._started = False
        self._tables_ready = False

    @classmethod
    def for_workspace(cls, workspace: Path | str, url: str | None = None, **kwargs: Any) -> PredictionLog:
        """The log of a workspace: ``url`` if given, else ``sqlite:///<workspace>/predictions.db``."""
        if url is not None:
            return cls(url, **kwargs)
        path = Path(workspace).expanduser().resolve() / "predictions.db"
        create_private_file(path)  # raw inputs: 0600 before SQLite opens it (-wal/-shm follow)
        return cls(URL.create("sqlite", database=os.fspath(path)), **kwargs)

    def __repr__(self) -> str:
        return f"PredictionLog({self.url!r}, started={self._started}, closed={self._writer.closed})"

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> PredictionLog:
        """Create the tables if needed and start the writer thread (idempotent)."""
        with self._lifecycle:
            if self._writer.closed:
                raise LogError("the prediction log is closed", field="start", expected="a new PredictionLog")
            self._ensure_tables()
            if not self._started:
                self._writer.start()
                self._started = True
        return self

    def close(self) -> None:
        """Commit everything already submitted, stop the writer and release connections."""
        with self._lifecycle:
            self._writer.close()
            if not self._db.in_memory:  # disposing would drop an in-memory database
                self._db.engine.dispose()

    def __enter__(self) -> PredictionLog:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _ensure_tables(self) -> None:
        if self._tables_ready:
            return
        with self._tables_lock:
            if self._tables_ready:
                return
            try:
                self._create_tables()
            except SQLAlchemyError as exc:
                raise LogError(
                    f"cannot open the prediction log ({type(exc).__name__}: {exc})".splitlines()[0],
                    field="url",
                    received=self.url,
                    expected=URL_EXPECTED,
                ) from exc
            self._tables_ready = True

    def _create_tables(self) -> None:
        # Processes opening one new (or old) database at once race between "does the table
        # exist" and CREATE TABLE; the loser's next attempt finds what the winner created, and
        # each lost race is one more table created, so the attempts are bounded by the tables.
        attempts = 2 * len(METADATA.tables) + 2
        for attempt in range(attempts):
            try:
                with self._connect() as conn:
                    with conn.begin():
                        METADATA.create_all(conn, checkfirst=True)
                    add_missing_columns(conn)  # a log written before the rollout columns
                return
            except (OperationalError, ProgrammingError, IntegrityError):
                if attempt == attempts - 1:
                    raise

    @contextlib.contextmanager
    def _connect(self) -> Iterator[Connection]:
        lock = self._db.lock if self._db.lock is not None else contextlib.nullcontext()
        with lock, self._db.engine.connect() as conn:
            yield conn

    # -- writes --------------------------------------------------------------------------
    def submit(
        self, predictions: Sequence[PredictionRecord], request: RequestRecord | None = None
    ) -> Future[None]:
        """Queue records for the next group commit; the future is done once they are committed.

        It fails with :class:`~mlsd.errors.ConflictError` if a request id is already logged
        and with :class:`~mlsd.errors.LogError` if the database cannot be written.
        """
        rows = [encode_prediction(record) for record in predictions]  # encode in the caller's thread
        reviews = [r for r in map(encode_review, rows, predictions) if r is not None]
        return self._submit_rows(rows, request, reviews)

    def submit_batch(self, batch: PredictionBatch, request: RequestRecord | None = None) -> Future[None]:
        """:meth:`submit` for the rows of a :class:`PredictionBatch`: the same rows, committed
        alike, encoded once per column instead of once per record."""
        rows = encode_batch(batch)  # in the caller's thread, as submit does
        reviews: list[dict[str, Any]] = []
        if batch.abstain_reason is not None:  # models.abstain: the declined rows are queued
            confidence = batch.confidence
            reviews = [
                {
                    "request_id": rows[i]["request_id"],
                    "queued_at": rows[i]["logged_at"],
                    "confidence": None if confidence is None else _float_or_none(confidence[i]),
                    "reason": str(reason)[:2000],
                }
                for i, reason in enumerate(batch.abstain_reason)
                if reason is not None
            ]
        return self._submit_rows(rows, request, reviews)

    async def write_batch(self, batch: PredictionBatch, request: RequestRecord | None = None) -> None:
        """:meth:`submit_batch` and await the commit without blocking the event loop."""
        await asyncio.wrap_future(self.submit_batch(batch, request))

    def _submit_rows(
        self, rows: list[dict[str, Any]], request: RequestRecord | None, reviews: list[dict[str, Any]]
    ) -> Future[None]:
        calls = [] if request is None else [encode_request(request)]
        if self._writer.closed:
            raise LogError(
                "the prediction log is closed",
                field="submit",
                received=self.url,
                expected="submit before close()",
            )
        if not self._started:
            raise LogError(
                "the prediction log is not started",
                field="submit",
                received=self.url,
                expected="PredictionLog.start() or `with PredictionLog(...) as log:` first",
            )
        item = Submission(rows, calls, reviews=reviews)
        if not item.size:
            item.future.set_result(None)
            return item.future
        return self._writer.submit(item)

    async def write(
        self, predictions: Sequence[PredictionRecord], request: RequestRecord | None = None
    ) -> None:
        """Submit and await the commit without blocking the event loop."""
        await asyncio.wrap_future(self.submit(predictions, request))

    def write_sync(
        self, predictions: Sequence[PredictionRecord], request: RequestRecord | None = None
    ) -> None:
        """Submit and block until committed (raises what the future raises)."""
        future = self.submit(predictions, request)
        self._writer.wait(future, what="predictions", received=[r.request_id for r in predictions[:5]])

    def submit_feedback(
        self, request_id: str, outcome: Any, *, received_at: datetime | None = None, correct: bool = False
    ) -> Future[FeedbackStatus]:
        """Queue an outcome for the next group commit (the log must be started).

        The future gives ``"created"``, ``"unchanged"`` or (``correct``) ``"corrected"``, or fails
        with :class:`~mlsd.errors.NotFoundError` / :class:`~mlsd.errors.ConflictError` as
        :meth:`add_feedback` raises them.
        """
        row = self._feedback_row(request_id, outcome, received_at, correct)
        if not self._started or self._writer.closed:
            raise LogError(
                "the prediction log is not running",
                field="submit_feedback",
                received=self.url,
                expected="PredictionLog.start() first (add_feedback works without it)",
            )
        return self._writer.submit(Submission([], [], [row]))

    async def record_feedback(
        self, request_id: str, outcome: Any, *, received_at: datetime | None = None, correct: bool = False
    ) -> FeedbackStatus:
        """:meth:`submit_feedback` and await its commit without blocking the event loop."""
        future = self.submit_feedback(request_id, outcome, received_at=received_at, correct=correct)
        return await asyncio.wrap_future(future)

    @staticmethod
    def _feedback_row(
        request_id: str, outcome: Any, received_at: datetime | None, correct: bool
    ) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "outcome": to_json(outcome, field="outcome"),
            "received_at": to_micros(received_at or datetime.now(UTC), field="received_at"),
            "correct": bool(correct),
        }

    def add_feedback(
        self, request_id: str, outcome: Any, *, received_at: datetime | None = None, correct: bool = False
    ) -> FeedbackStatus:
        """Record the observed outcome of a logged prediction (idempotent, first write wins).

        Unknown ``request_id`` -> :class:`~mlsd.errors.NotFoundError`; the same outcome again
        -> ``"unchanged"``; a different outcome than the one stored -> ConflictError, unless
        ``correct``: then it replaces the stored one (``"corrected"``) and the replacement is kept
        in :meth:`read_corrections`. A started log group-commits it with the predictions;
        otherwise it is its own transaction.
        """
        if self._started and not self._writer.closed:
            future = self.submit_feedback(request_id, outcome, received_at=received_at, correct=correct)
            return self._writer.wait(future, what="feedback", received=request_id)
        item = Submission([], [], [self._feedback_row(request_id, outcome, received_at, correct)])
        try:
            self._ensure_tables()
            with self._connect() as conn:
                try:
                    with conn.begin():
                        status = GroupCommitWriter._record_feedback(conn, [item])[id(item)]
                except IntegrityError:  # another caller stored feedback for it in between
                    with conn.begin():
                        status = GroupCommitWriter._record_feedback(conn, [item])[id(item)]
        except SQLAlchemyError as exc:
            raise LogError(
                f"cannot store feedback ({type(exc).__name__})",
                field="request_id",
                received=request_id,
                expected="a reachable, writable prediction log",
            ) from exc
        if isinstance(status, BaseException):
            raise status
        return cast(FeedbackStatus, status)

    # -- health --------------------------------------------------------------------------
    def is_healthy(self) -> bool:
        """Started, not closed, its writer thread alive and its last commit attempt successful."""
        w = self._writer
        return self._started and not w.closed and w.alive and not w.failing

    @property
    def failing(self) -> bool:
        """The last commit attempt failed (disk full, database locked or gone); the next success clears it."""
        return self._writer.failing

    @property
    def last_write_error(self) -> str | None:
        """Why the most recent failed commit failed (kept after recovery, for the operator)."""
        return self._writer.last_error

    @property
    def last_write_problem(self) -> str | None:
        """:attr:`last_write_error` as a client may read it: a fixed phrase without hosts or paths."""
        error = self._writer.last_error
        return None if error is None else public_reason(error)

    @property
    def n_write_failures(self) -> int:
        """Submissions that could not be committed since the log started."""
        return self._writer.n_failures

    # -- reads ---------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Rows (predictions, request records, feedback, shadows) submitted but not yet committed."""
        return self._writer.pending

    @property
    def n_commits(self) -> int:
        """Transactions the writer committed (far fewer than records when batching works)."""
        return self._writer.n_commits

    def _scalar(self, stmt: sa.Select[Any]) -> Any:
        self._ensure_tables()
        try:
            with self._connect() as conn:
                return conn.execute(stmt).scalar_one()
        except SQLAlchemyError as exc:
            raise self._read_error(exc) from exc

    def _read_error(self, exc: SQLAlchemyError) -> LogError:
        reason = f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}".splitlines()[0]
        return LogError(
            f"cannot read the prediction log ({reason})",
            field="url",
            received=self.url,
            expected="a readable prediction log",
        )

    def count_predictions(self) -> int:
        return int(self._scalar(sa.select(sa.func.count()).select_from(predictions)))

    def count_feedback(self) -> int:
        return int(self._scalar(sa.select(sa.func.count()).select_from(feedback)))

    def read_review_queue(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        """The abstained predictions queued for review in ``[since, until)`` of their queueing time,
        oldest first, with their inputs and any outcome received since (:mod:`mlsd.store.review_queue`)."""
        since_us = None if since is None else to_micros(since, field="since")
        until_us = None if until is None else to_micros(until, field="until")
        return review_frame(self._rows(review_select(since_us, until_us)))

    def read_corrections(self) -> pd.DataFrame:
        """The audit trail of replaced outcomes, oldest first: request_id, old_outcome,
        new_outcome, old_received_at, new_received_at (tz-aware UTC)."""
        c = feedback_corrections.c
        stmt = sa.select(
            c.request_id, c.old_outcome, c.new_outcome, c.old_received_at, c.new_received_at
        ).order_by(c.id)
        rows = self._rows(stmt)
        frame = pd.DataFrame(
            {
                "request_id": pd.Series([r.request_id for r in rows], dtype=object),
                "old_outcome": pd.Series(decode_json_column([r.old_outcome for r in rows]), dtype=object),
                "new_outcome": pd.Series(decode_json_column([r.new_outcome for r in rows]), dtype=object),
                "old_received_at": micros_to_utc([r.old_received_at for r in rows]),
                "new_received_at": micros_to_utc([r.new_received_at for r in rows]),
            }
        )
        return frame

    def _rows(self, stmt: sa.Select) -> Sequence[Any]:  # any number of columns
        self._ensure_tables()
        try:
            with self._connect() as conn:
                return conn.execute(stmt).all()
        except SQLAlchemyError as exc:
            raise self._read_error(exc) from exc

    @staticmethod
    def _window(stmt: sa.Select, column: Any, since: Any, until: Any) -> sa.Select:
        if since is not None:
            stmt = stmt.where(column >= to_micros(since, field="since"))
        if until is not None:
            stmt = stmt.where(column < to_micros(until, field="until"))
        return stmt

    def read_predictions(
        self, since: datetime | None = None, until: datetime | None = None, *, time: TimeAxis = "event_time"
    ) -> pd.DataFrame:
        """Predictions in ``[since, until)`` on ``time``, joined with their feedback, oldest first.

        ``event_time`` falls back to ``logged_at`` where a row has none. Columns: request_id,
        logged_at, event_time, model_name, model_version, variant, score, decision,
        latency_ms, outcome, feedback_at, assigned_variant, propensity, unit, assignment,
        fallback, scoring_ms (None where not recorded), then one per input field (``input_<name>`` when a
        field is called like one of those). Datetimes are tz-aware UTC.
        """
        if time not in _TIME_AXES:
            raise LogError(
                "unknown time axis", field="time", received=time, expected="event_time or logged_at"
            )
        if self._db.engine.dialect.name == "sqlite":
            frame = self._read_sqlite(since, until, time)
            if frame is not None:
                return frame
        p = predictions.c
        axis = sa.func.coalesce(p.event_time, p.logged_at) if time == "event_time" else p.logged_at
        f = feedback.c
        meta = (p.request_id, p.logged_at, p.event_time, p.model_name, p.model_version, p.variant)
        result = (p.score, p.decision, p.latency_ms, f.outcome, f.received_at.label("feedback_at"))
        rollout = [p[name] for name in PREDICTION_ROLLOUT_COLUMNS]
        stmt = sa.select(*meta, *result, *rollout, p.inputs).select_from(
            predictions.outerjoin(feedback, f.request_id == p.request_id)
        )
        stmt = self._window(stmt, axis, since, until).order_by(axis, p.request_id)
        return predictions_frame(self._rows(stmt))

    def _read_sqlite(self, since: datetime | None, until: datetime | None, time: str) -> pd.DataFrame | None:
        """:meth:`read_predictions` on SQLite, column-wise (:mod:`mlsd.store._log_sqlite_read`)."""
        axis = "coalesce(p.event_time, p.logged_at)" if time == "event_time" else "p.logged_at"
        since_us = None if since is None else to_micros(since, field="since")
        until_us = None if until is None else to_micros(until, field="until")
        self._ensure_tables()
        try:
            with self._connect() as conn:
                dbapi = conn.connection.driver_connection
                if not isinstance(dbapi, sqlite3.Connection):  # another SQLite driver: the generic read
                    return None
                return read_sqlite_predictions(dbapi, axis, since_us, until_us)
        except (SQLAlchemyError, sqlite3.Error) as exc:
            wrapped = exc if isinstance(exc, SQLAlchemyError) else sa.exc.DBAPIError(None, None, exc)
            raise self._read_error(wrapped) from exc

    def iter_request_ids(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        time: TimeAxis = "event_time",
        chunk_rows: int = 50_000,
    ) -> Iterator[pd.DataFrame]:
        """The request ids of the predictions in ``[since, until)`` on ``time``, ``chunk_rows`` at a time.

        Each chunk is one ``SELECT ... WHERE request_id > <last id> ORDER BY request_id LIMIT n``
        (keyset pagination on the primary key): the database walks its index from where the
        previous chunk stopped, so a log of any size is read in bounded memory and in one pass,
        and no chunk is re-read when rows are appended meanwhile. Chunks are one-column frames
        (``request_id``), in id order; :meth:`read_predictions_by_id` reads the full rows.
        """
        if not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise LogError(
                "invalid chunk size", field="chunk_rows", received=chunk_rows, expected="an int >= 1"
            )
        axis = self._axis(time)
        p = predictions.c
        last: str | None = None
        while True:
            stmt = self._window(sa.select(p.request_id), axis, since, until)
            if last is not None:
                stmt = stmt.where(p.request_id > last)
            rows = self._rows(stmt.order_by(p.request_id).limit(chunk_rows))
            if not rows:
                return
            ids = [r[0] for r in rows]
            last = ids[-1]
            yield pd.DataFrame({"request_id": pd.Series(ids, dtype=object)})
            if len(rows) < chunk_rows:
                return

    def read_predictions_by_id(
        self, request_ids: Sequence[str], *, time: TimeAxis = "event_time", batch: int = 500
    ) -> pd.DataFrame:
        """The predictions of ``request_ids`` (ids the log does not hold are skipped), as
        :meth:`read_predictions` returns them: feedback joined, ordered by ``time`` then id.

        Read ``batch`` ids per query (``IN (...)``; SQLite's older builds allow 999 parameters).
        """
        p, f = predictions.c, feedback.c
        axis = self._axis(time)
        meta = (p.request_id, p.logged_at, p.event_time, p.model_name, p.model_version, p.variant)
        result = (p.score, p.decision, p.latency_ms, f.outcome, f.received_at.label("feedback_at"))
        rollout = [p[name] for name in PREDICTION_ROLLOUT_COLUMNS]
        base = sa.select(axis.label("_axis"), *meta, *result, *rollout, p.inputs).select_from(
            predictions.outerjoin(feedback, f.request_id == p.request_id)
        )
        ids = list(dict.fromkeys(str(i) for i in request_ids))
        rows: list[Any] = []
        for start in range(0, len(ids), batch):
            rows.extend(self._rows(base.where(p.request_id.in_(ids[start : start + batch]))))
        rows.sort(key=lambda r: (r[0], r[1]))  # the order read_predictions gives
        return predictions_frame([r[1:] for r in rows])

    def _axis(self, time: str) -> Any:
        if time not in _TIME_AXES:
            raise LogError(
                "unknown time axis", field="time", received=time, expected="event_time or logged_at"
            )
        p = predictions.c
        return sa.func.coalesce(p.event_time, p.logged_at) if time == "event_time" else p.logged_at

    def read_requests(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        """HTTP calls in ``[since, until)`` of ``logged_at``: logged_at, route, status, n_rows,
        latency_ms, error."""
        r = requests.c
        stmt = sa.select(r.logged_at, r.route, r.status, r.n_rows, r.latency_ms, r.error)
        stmt = self._window(stmt, r.logged_at, since, until).order_by(r.logged_at, r.id)
        return requests_frame(self._rows(stmt))

    def export(
        self,
        path: str | os.PathLike[str],
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        time: TimeAxis = "event_time",
    ) -> int:
        """Write :meth:`read_predictions` of the window to parquet (atomically); rows written."""
        return self.write_parquet(self.read_predictions(since, until, time=time), path)

    @staticmethod
    def write_parquet(frame: pd.DataFrame, path: str | os.PathLike[str]) -> int:
        """Write a frame read from a log (e.g. a sample of it) to parquet, atomically; rows written."""
        write_parquet_atomically(parquet_safe(frame), path)
        return len(frame)

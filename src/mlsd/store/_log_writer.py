"""Group commit for the prediction log: one writer thread, one transaction per batch.

Callers put a :class:`Submission` (rows already encoded, plus a future) on a queue. The
writer takes the first one, gathers more until it holds ``max_batch`` rows or ``max_delay``
seconds passed, INSERTs them with ``executemany`` in ONE transaction, commits, and only then
resolves every future of the batch. One fsync thus covers many HTTP requests.

Feedback goes through the same writer: in the batch's transaction, after the batch's
predictions are inserted, each outcome is checked against the stored prediction and any
stored outcome (unknown id -> :class:`~mlsd.errors.NotFoundError`, a different outcome ->
:class:`~mlsd.errors.ConflictError` unless it asks to ``correct`` the stored one, the same one
-> ``"unchanged"``) and the new ones are inserted (corrections update the outcome and add a row
to ``feedback_corrections``), so feedback is group-committed too and its future says what
happened.

Shadow predictions (what a challenger answered for a request it did not serve) go through it
too, inserted after the batch's predictions since each refers to its primary's row; a shadow row
whose primary is not logged fails its own submission only (NotFoundError), like a duplicate.
Nobody waits for a shadow row, so the writer puts answers first: a submission of shadow rows
only waits aside while answers are queued, then rides in a later transaction with at most
:data:`MAX_SHADOW_ROWS_PER_COMMIT` of its kind, or is committed alone when the queue is empty.
A backlog of shadow rows thus never stands between an answer and its commit.

When the batch hits an ``IntegrityError`` (a duplicate request id), it is retried one
submission per transaction so only the offending submission fails (with a
:class:`~mlsd.errors.ConflictError`); any other database error fails the batch's futures
with a :class:`~mlsd.errors.LogError` and the writer keeps serving later batches.

The writer also says whether the log is *failing*: set by a batch that could not commit (disk
full, database locked or gone), cleared by the next one that commits. The server reads it for
``/readyz``, so a load balancer stops sending traffic the log cannot keep, and every later
commit, a readiness probe's included, tells whether space came back.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import operator
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mlsd.errors import ConflictError, LogError, NotFoundError
from mlsd.store._log_tables import (
    LogEngine,
    feedback,
    feedback_corrections,
    predictions,
    requests,
    shadow_predictions,
)
from mlsd.store.review_queue import review_queue

__all__ = ["MAX_SHADOW_ROWS_PER_COMMIT", "GroupCommitWriter", "Submission", "insert_rows", "public_reason"]

_logger = logging.getLogger(__name__)
_STOP = object()
_SHOWN_IDS = 5
#: shadow rows one transaction takes at most (a submission larger than this goes alone)
MAX_SHADOW_ROWS_PER_COMMIT = 256
# A blocking caller (write_sync, add_feedback) re-checks the writer this often, and gives up with
# a LogError after MAX_WAIT_S: SQLite's own busy timeout is far shorter, so a commit that takes
# this long is a writer that will not answer.
WAIT_POLL_S = 1.0
MAX_WAIT_S = 120.0


@dataclass(slots=True)
class Submission:
    """Encoded rows of one ``submit`` call and the future resolved after their commit."""

    predictions: list[dict[str, Any]]
    requests: list[dict[str, Any]]
    feedback: list[dict[str, Any]] = field(default_factory=list)
    shadows: list[dict[str, Any]] = field(default_factory=list)
    future: Future[Any] = field(default_factory=Future)
    # review_queue rows of this submission's abstained predictions (models.abstain): same commit
    reviews: list[dict[str, Any]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.predictions) + len(self.requests) + len(self.feedback) + len(self.shadows)

    @property
    def shadow_only(self) -> bool:
        """Nobody waits for it: it may be committed after answers queued behind it."""
        return bool(self.shadows) and not (self.predictions or self.requests or self.feedback)

    def ids(self) -> list[str]:
        return [row["request_id"] for row in (*self.predictions, *self.feedback, *self.shadows)]


# the driver's placeholder for each DB-API paramstyle that takes positional parameters
_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@functools.lru_cache(maxsize=64)
def _insert_sql(dialect: Dialect, table: sa.Table, columns: tuple[str, ...]) -> str | None:
    mark = _MARKS.get(dialect.paramstyle)
    if mark is None:
        return None
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    return f"INSERT INTO {quote(table.name)} ({names}) VALUES ({', '.join([mark] * len(columns))})"


def insert_rows(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """``INSERT`` the rows with one ``executemany`` of positional tuples on the driver's cursor.

    ``conn.execute(sa.insert(table), rows)`` processes every row's dict of parameters in Python
    before the driver sees it: about as much CPU per row as SQLite's own insert. The rows of a
    submission all have the keys their encoder writes; a row lacking a key of the first one, or
    a driver with named placeholders, goes through SQLAlchemy's insert (which says what is missing).
    """
    columns = tuple(rows[0])
    sql = _insert_sql(conn.dialect, table, columns)
    if sql is None:
        conn.execute(sa.insert(table), rows)
        return
    values = operator.itemgetter(*columns)
    try:
        params = [values(row) for row in rows]
    except KeyError:  # a row with other keys than the first one's
        conn.execute(sa.insert(table), rows)
        return
    if len(columns) == 1:  # itemgetter of one key gives the value, not a tuple
        params = [(p,) for p in params]
    conn.exec_driver_sql(sql, params)


def _describe(ids: list[str]) -> list[str] | str:
    if not ids:
        return "a request record"
    return ids if len(ids) <= _SHOWN_IDS else [*ids[:_SHOWN_IDS], f"... {len(ids) - _SHOWN_IDS} more"]


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {orig}".splitlines()[0]


def public_reason(reason: str) -> str:
    """What a client may be told of a failed commit: a fixed phrase, never the driver's text.

    A PostgreSQL driver's message names the database host, address and port.

    >>> public_reason('OperationalError: connection to server at "db.internal" (10.0.0.5) failed')
    'the database is unreachable'
    >>> public_reason("OperationalError: database or disk is full")
    'the disk is full'
    """
    text = reason.lower()
    if "full" in text or "no space" in text:
        return "the disk is full"
    if "locked" in text or "busy" in text:
        return "the database is locked"
    if "i/o" in text or "readonly" in text or "read-only" in text:
        return "the disk cannot be written"
    return "the database is unreachable"


class GroupCommitWriter:
    """The single writer thread of a :class:`~mlsd.store.PredictionLog`."""

    def __init__(self, db: LogEngine, *, max_batch: int, max_delay_s: float) -> None:
        self._db = db
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._state_lock = threading.Lock()
        self._closed = False
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None
        self.n_commits = 0
        self.n_batches = 0
        self.n_rows = 0
        self.n_failures = 0  # batches or submissions that could not be committed
        self.failing = False  # the last commit attempt failed (cleared by the next success)
        self.last_error: str | None = None

    # -- caller side ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mlsd-prediction-log-writer", daemon=True)
        self._thread.start()

    def submit(self, item: Submission) -> Future[Any]:
        # RUNNING futures cannot be cancelled: a client that goes away must not un-log its rows.
        item.future.set_running_or_notify_cancel()
        with self._state_lock:
            if self._closed:
                raise LogError(
                    "the prediction log is closed",
                    field="submit",
                    received=_describe(item.ids()),
                    expected="submit before close()",
                )
            self._pending += item.size
            self._queue.put(item)  # under the lock, so close()'s stop marker comes after it
        return item.future

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def alive(self) -> bool:
        """The writer thread runs (a thread that died would leave every future unresolved)."""
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float | None = None) -> None:
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)

    def wait(self, future: Future[Any], *, what: str, received: Any) -> Any:
        """``future.result()`` for a blocking caller, bounded: a writer that stopped answering
        (its thread died, or the database hangs) gives a LogError instead of a hung caller."""
        waited = 0.0
        while True:
            try:
                return future.result(timeout=WAIT_POLL_S)
            except FutureTimeout:
                waited += WAIT_POLL_S
                if not self.alive or waited >= MAX_WAIT_S:
                    state = "has stopped" if not self.alive else f"has not committed for {waited:.0f} s"
                    raise LogError(
                        f"the prediction log's writer {state}; {what} is not known to be committed",
                        field=what,
                        received=received,
                        expected=f"a writer thread that commits within {MAX_WAIT_S:.0f} s",
                    ) from None

    # -- writer thread -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a dead writer must not leave callers waiting for ever
            _logger.exception("prediction log: the writer thread stopped")
            self.last_error = _reason(exc)
            self.failing = True
            with self._state_lock:
                self._closed = True  # nothing more is accepted
            self._fail_queued(exc)

    def _fail_queued(self, exc: BaseException) -> None:
        while (item := self._next_nowait()) is not None:
            if item is not _STOP and not item.future.done():
                self._fail(item, self._write_error(item, exc, f"{item.size} rows"))

    def _loop(self) -> None:
        carry: Any = None
        aside: collections.deque[Submission] = collections.deque()  # shadow rows, after answers
        stop = False
        while not stop:
            if carry is not None:
                first, carry = carry, None
            elif aside:  # shadow rows wait: take an answer if one is queued, else commit them
                first = self._next_nowait()
            else:
                first = self._queue.get()
            while first is not None and first is not _STOP and first.shadow_only:
                aside.append(first)  # and look for an answer queued behind it
                first = self._next_nowait()
            batch: list[Submission] = []
            if first is _STOP:
                stop = True
            elif first is not None:
                batch, carry, stop = self._gather(first, aside)
            if stop:  # everything queued before close() is committed, shadow rows included
                if batch:
                    self._commit_batch(batch)
                while aside:
                    self._commit_batch(self._shadow_rows(aside, []))
            elif batch or aside:
                self._commit_batch(self._shadow_rows(aside, batch))
        self._drop_connection()

    def _next_nowait(self) -> Any:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def _gather(
        self, first: Submission, aside: collections.deque[Submission]
    ) -> tuple[list[Submission], Any, bool]:
        """``first`` and what else is queued within ``max_delay`` and ``max_batch`` rows: the
        batch, the submission that did not fit (or None), whether close() was asked for."""
        batch, size = [first], first.size
        deadline = time.monotonic() + self._max_delay_s
        while size < self._max_batch:
            try:
                remaining = deadline - time.monotonic()
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, None, True
            if item.shadow_only:
                aside.append(item)
            elif size + item.size > self._max_batch:
                return batch, item, False
            else:
                batch.append(item)
                size += item.size
        return batch, None, False

    @staticmethod
    def _shadow_rows(aside: collections.deque[Submission], batch: list[Submission]) -> list[Submission]:
        """``batch`` and the oldest shadow submissions set aside, up to MAX_SHADOW_ROWS_PER_COMMIT
        rows of them (one submission at least, when the batch has no answer)."""
        rows = 0
        while aside and (not batch or rows + aside[0].size <= MAX_SHADOW_ROWS_PER_COMMIT):
            item = aside.popleft()
            batch.append(item)
            rows += item.size
        return batch

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        if self._db.lock is not None:  # in-memory SQLite: borrow the one connection per batch
            with self._db.lock, self._db.engine.connect() as conn:
                yield conn
            return
        if self._conn is None:
            self._conn = self._db.engine.connect()
        yield self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _insert(self, batch: list[Submission]) -> dict[int, Any]:
        """One transaction for the batch; returns what each feedback submission's future gets."""
        rows = [row for item in batch for row in item.predictions]
        calls = [row for item in batch for row in item.requests]
        shadows = [row for item in batch for row in item.shadows]
        outcomes: dict[int, Any] = {}
        with self._connection() as conn, conn.begin():
            if rows:
                insert_rows(conn, predictions, rows)
            if calls:
                insert_rows(conn, requests, calls)
            reviews = [row for item in batch for row in item.reviews]
            if reviews:  # after the predictions they queue (models.abstain)
                conn.execute(sa.insert(review_queue), reviews)
            if shadows:  # after the predictions: a shadow row refers to its primary's row
                conn.execute(sa.insert(shadow_predictions), shadows)
            notes = [item for item in batch if item.feedback]
            if notes:
                outcomes = self._record_feedback(conn, notes)
        self.n_commits += 1
        self.n_rows += len(rows) + len(calls) + len(shadows)
        self.failing = False
        return outcomes

    @staticmethod
    def _record_feedback(conn: Connection, items: list[Submission]) -> dict[int, Any]:
        """Outcomes checked against what is stored; ``correct`` rows replace a different outcome
        (UPDATE + one row in ``feedback_corrections``), others conflict with it."""
        ids = list({row["request_id"] for item in items for row in item.feedback})
        query = (
            sa.select(predictions.c.request_id, feedback.c.outcome, feedback.c.received_at)
            .select_from(predictions.outerjoin(feedback, feedback.c.request_id == predictions.c.request_id))
            .where(predictions.c.request_id.in_(ids))
        )
        stored: dict[str, tuple[str | None, int | None]] = {
            r.request_id: (r.outcome, r.received_at) for r in conn.execute(query)
        }
        new_rows: list[dict[str, Any]] = []
        corrections: list[dict[str, Any]] = []
        replaced: dict[str, dict[str, Any]] = {}  # request id -> its latest replacement in this batch
        outcomes: dict[int, Any] = {}
        for item in items:
            row = item.feedback[0]  # one outcome per submission (PredictionLog.submit_feedback)
            rid, correct = row["request_id"], bool(row.get("correct"))
            record = {k: row[k] for k in ("request_id", "outcome", "received_at")}
            if rid not in stored:
                outcomes[id(item)] = NotFoundError(
                    "no prediction with this request id",
                    field="request_id",
                    received=rid,
                    expected="a request_id returned by POST /v1/predict",
                )
                continue
            previous, previous_at = stored[rid]
            if previous is None:
                stored[rid] = (record["outcome"], record["received_at"])  # a second outcome compares with it
                new_rows.append(record)
                outcomes[id(item)] = "created"
            elif json.loads(previous) == json.loads(record["outcome"]):
                outcomes[id(item)] = "unchanged"
            elif correct:
                corrections.append(
                    {
                        "request_id": rid,
                        "old_outcome": previous,
                        "new_outcome": record["outcome"],
                        "old_received_at": previous_at,
                        "new_received_at": record["received_at"],
                    }
                )
                stored[rid] = (record["outcome"], record["received_at"])
                replaced[rid] = record
                outcomes[id(item)] = "corrected"
            else:
                outcomes[id(item)] = ConflictError(
                    f"this prediction already has a different outcome ({previous})",
                    field="outcome",
                    received=json.loads(record["outcome"]),
                    expected=f"the stored outcome {previous}, or correct: true to replace it (audited)",
                )
        fresh = {r["request_id"]: r for r in new_rows}
        for rid, record in replaced.items():
            if rid in fresh:  # created and corrected in the same batch: insert the latest outcome
                fresh[rid].update(outcome=record["outcome"], received_at=record["received_at"])
        if fresh:
            conn.execute(sa.insert(feedback), list(fresh.values()))
        updates = [
            {"rid": rid, "new_outcome": r["outcome"], "new_at": r["received_at"]}
            for rid, r in replaced.items()
            if rid not in fresh
        ]
        if updates:
            stmt = (
                sa.update(feedback)
                .where(feedback.c.request_id == sa.bindparam("rid"))
                .values(outcome=sa.bindparam("new_outcome"), received_at=sa.bindparam("new_at"))
            )
            conn.execute(stmt, updates)
        if corrections:
            conn.execute(sa.insert(feedback_corrections), corrections)
        return outcomes

    def _commit_batch(self, batch: list[Submission]) -> None:
        self.n_batches += 1
        try:
            outcomes = self._insert(batch)
        except IntegrityError:
            self._retry_one_by_one(batch)
            return
        except Exception as exc:  # the writer must outlive any database error
            self._drop_connection()
            n = sum(item.size for item in batch)
            for item in batch:
                self._fail(item, self._write_error(item, exc, f"a batch of {n} rows"))
            return
        for item in batch:
            self._settle(item, outcomes.get(id(item)))

    def _retry_one_by_one(self, batch: list[Submission]) -> None:
        for item in batch:
            try:
                outcomes = self._insert([item])
            except IntegrityError as exc:
                self._fail(item, self._integrity_error(item, exc))
            except Exception as exc:
                self._drop_connection()
                self._fail(item, self._write_error(item, exc, f"{item.size} rows"))
            else:
                self._settle(item, outcomes.get(id(item)))

    def _write_error(self, item: Submission, exc: BaseException, what: str) -> LogError:
        _logger.warning("prediction log: could not commit %s: %s", what, _reason(exc))
        self.n_failures += 1
        self.failing = True
        self.last_error = _reason(exc)
        return LogError(
            f"could not commit {what} to the prediction log ({_reason(exc)})",
            field="predictions",
            received=_describe(item.ids()),
            expected="a reachable, writable database with the prediction-log tables",
        )

    def _shadow_error(self, item: Submission) -> LogError:
        """A shadow submission that broke a constraint: its primary is not logged, or it is a
        second answer of the same variant. Not a failure of the log (``failing`` stays)."""
        ids = sorted({row["request_id"] for row in item.shadows})
        query = sa.select(predictions.c.request_id).where(predictions.c.request_id.in_(ids))
        known: set[str] = set(ids)
        with contextlib.suppress(SQLAlchemyError), self._connection() as conn, conn.begin():
            known = set(conn.execute(query).scalars())
        unknown = [i for i in ids if i not in known]
        if unknown:
            return NotFoundError(
                "shadow predictions of requests that are not logged",
                field="request_id",
                received=_describe(unknown),
                expected="the request id of a logged prediction, submitted before its shadows",
            )
        return ConflictError(
            "shadow predictions already logged for this request and variant",
            field="request_id",
            received=_describe(ids),
            expected="one shadow answer per request id and variant",
        )

    def _integrity_error(self, item: Submission, exc: IntegrityError) -> LogError:
        if item.shadows and not item.predictions and not item.feedback:
            return self._shadow_error(item)
        ids = item.ids()
        duplicated = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
        if not duplicated and ids:
            query = sa.select(predictions.c.request_id).where(predictions.c.request_id.in_(ids))
            with contextlib.suppress(SQLAlchemyError), self._connection() as conn, conn.begin():
                duplicated = sorted(conn.execute(query).scalars())
        if duplicated:
            return ConflictError(
                "request ids already logged (each scored row needs its own id)",
                field="request_id",
                received=_describe(duplicated),
                expected="request ids not already in the prediction log",
            )
        return self._write_error(item, exc, f"{item.size} rows")

    def _settle(self, item: Submission, outcome: Any) -> None:
        if isinstance(outcome, BaseException):
            self._fail(item, outcome)
            return
        with self._state_lock:
            self._pending -= item.size
        item.future.set_result(outcome)

    def _fail(self, item: Submission, exc: BaseException) -> None:
        with self._state_lock:
            self._pending -= item.size
        item.future.set_exception(exc)

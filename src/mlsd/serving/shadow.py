"""The shadow: a challenger scores copies of answered requests where it cannot slow the answers.

A shadow that scores in the server's own threads competes with the answers twice: for the core
and for the GIL (a low-priority thread holding the GIL stalls the answers behind it, the
classic priority inversion). So the shadow model runs in a **process of its own**, at the
lowest priority (nice 19): when the server has work, the kernel gives it the core; when it is
idle, the shadow catches up. Its budget is what the answers leave.

Where the server leaves a core free, ``mlsd serve --shadow-cpus`` puts the process there.
What the shadow still costs the server's own core is kept small and per batch:

- :meth:`ShadowScorer.submit` (the request path, after the answer is committed) only appends the
  request's rows, the JSON objects the server already parsed and checked, to a queue bounded in
  rows; past :data:`MAX_SHADOW_PENDING_ROWS` the rows are dropped and counted
  (``mlsd_shadow_dropped_total``), never waited for;
- one thread drains the queue: it lets rows gather for :data:`SHADOW_LINGER_S`, then sends
  everything waiting, up to :data:`MAX_SHADOW_BATCH_ROWS`, in **one message**; the process
  checks the rows with the server's own validator (so it builds the very frame the champion
  scored) and scores them in one call, and a backlog costs one call instead of one per request;
- the process gets the model and the validator once, and the model again only when the alias
  moved to another version;
  a crashed process is started again for the next batch, and the rows it lost are logged with
  their error; after :data:`PROCESS_FAILURES` crashes in a row (a model that cannot be
  unpickled there, say) no process is started for :data:`PROCESS_COOLDOWN_S`, and the rows of
  that time are logged with the reason instead of restarting a process per batch;
- every row's :class:`~mlsd.store.prediction_log.ShadowRecord` keeps its own request's id and
  time; ``latency_ms`` is the process's time to score the batch the row was in.

>>> MAX_SHADOW_BATCH_ROWS <= MAX_SHADOW_PENDING_ROWS
True
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np

from mlsd.errors import ServingError
from mlsd.serving.breaker import CircuitBreaker
from mlsd.store.prediction_log import ShadowRecord

__all__ = [
    "MAX_SHADOW_BATCH_ROWS",
    "MAX_SHADOW_PENDING_ROWS",
    "PROCESS_COOLDOWN_S",
    "PROCESS_FAILURES",
    "SHADOW_LINGER_S",
    "SHADOW_NICENESS",
    "SHADOW_ROWS_PER_SUBMISSION",
    "ShadowProcessError",
    "ShadowScorer",
    "parse_cpus",
]

_log = logging.getLogger("mlsd.serving")

#: shadow rows waiting at most; more are dropped (and counted). About half a minute of a busy
#: server's single-row traffic: a backlog this long means the shadow cannot keep up at all.
MAX_SHADOW_PENDING_ROWS = 20_000
#: rows the shadow scores in one call at most (bounds one message's and one frame's memory)
MAX_SHADOW_BATCH_ROWS = 2_000
#: how long the drain thread lets rows gather before it sends them: nobody waits for a shadow,
#: and each call has a fixed cost in the server (a message each way, a log submission)
SHADOW_LINGER_S = 0.05
#: the shadow process's nice value: the lowest priority, the answers come first
SHADOW_NICENESS = 19
#: shadow rows handed to the log writer in one submission at most
SHADOW_ROWS_PER_SUBMISSION = 256
#: crashes of the shadow process in a row before it rests, and how long it rests
PROCESS_FAILURES, PROCESS_COOLDOWN_S = 3, 30.0


def parse_cpus(text: str) -> frozenset[int]:
    """The cores ``mlsd serve --shadow-cpus`` names (``"0"``, ``"2,3"``), checked against the machine.

    >>> sorted(parse_cpus("0"))
    [0]
    >>> parse_cpus("x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlsd.errors.ServingError: --shadow-cpus: not a list of core numbers (received 'x'; expected ...)
    """
    cores = os.cpu_count() or 1
    expected = f"comma-separated core numbers from 0 to {cores - 1}"
    try:
        cpus = frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ServingError(
            "not a list of core numbers", field="--shadow-cpus", received=text, expected=expected
        ) from None
    if not cpus or not all(0 <= c < cores for c in cpus):
        raise ServingError(
            "no such core on this machine", field="--shadow-cpus", received=text, expected=expected
        )
    return cpus


# -- in the shadow process ---------------------------------------------------------------------
def _shadow_main(conn: Any, niceness: int, cpus: frozenset[int] | None) -> None:
    """The shadow process: load the (validator, model) it is sent, score the rows it is sent."""
    # the server decides when this process ends (it drains the queue on shutdown first): a
    # SIGTERM or Ctrl-C sent to the whole process group must not kill it in the middle
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(niceness)
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError as exc:  # the server's start-up checked the set; a changed machine is logged
            _log.warning("the shadow process could not move to cpus %s: %s", sorted(cpus), exc)
    validator: Any = None
    model: Any = None
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):  # the server closed the pipe (or went away): stop
            return
        try:
            if kind == "model":
                validator, model = pickle.loads(payload)
                conn.send(("ok", None))
                continue
            checked = validator.check(payload)
            if checked.invalid.any():  # the server answered these rows: they passed there
                raise ValueError(f"{int(checked.invalid.sum())} rows failed the request checks here")
            start = time.perf_counter()
            pred = model.predict_frame(checked.frame)
            if len(pred) != len(payload):
                raise ValueError(f"{len(pred)} answers for {len(payload)} rows")
            latency_ms = (time.perf_counter() - start) * 1000
            scores = pred["score"].to_numpy(dtype="float64")
            conn.send(("scored", (scores, pred["decision"].tolist(), latency_ms)))
        except Exception as exc:  # the model's failure, reported as the batch's error
            conn.send(("error", f"{type(exc).__name__}: {str(exc)[:200]}"))


class ShadowProcessError(RuntimeError):
    """The shadow process died, or could not load the model it was sent."""


class _ShadowProcess:
    """One spawned shadow process and its pipe; :meth:`call` sends one message, waits for the reply.

    A dedicated process and pipe rather than a ``ProcessPoolExecutor``: the pool adds two
    threads (a queue feeder and a manager) that wake for every call, and each wake-up needs the
    GIL the answers need too.
    """

    def __init__(self, niceness: int, cpus: frozenset[int] | None) -> None:
        # spawn: the server has threads (event loop, log writer), which fork would copy mid-state
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_shadow_main, args=(child, niceness, cpus), name="mlsd-shadow", daemon=True
        )
        self.process.start()
        child.close()  # the child's end lives in the child: EOF reaches us when it dies
        self.model: Any = None  # the model the process holds (compared by identity)

    def call(self, kind: str, payload: Any) -> Any:
        try:
            self._conn.send((kind, payload))
            status, answer = self._conn.recv()
        except (EOFError, OSError) as exc:
            self.process.join(5)  # it is gone or going: its exit code says how
            code = self.process.exitcode
            raise ShadowProcessError(
                f"the shadow process stopped (exit code {code})"
                if code is not None
                else f"the shadow process stopped answering ({type(exc).__name__}: {exc})"
            ) from exc
        if status == "error":
            raise ShadowProcessError(answer) if kind == "model" else RuntimeError(answer)
        return answer

    def load(self, validator: Any, model: Any) -> None:
        if self.model is not model:
            blob = pickle.dumps((validator, model), protocol=pickle.HIGHEST_PROTOCOL)
            try:
                self.call("model", blob)
            except ShadowProcessError as exc:
                raise ShadowProcessError(f"the shadow process could not load the model: {exc}") from None
            self.model = model

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()  # EOF: the process returns
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


# -- in the server ------------------------------------------------------------------------------
_Item = tuple[list[Any], list[str], datetime]  # rows, their request ids, when they were logged


class ShadowScorer:
    """The shadow of one server (see the module docstring).

    ``variant`` returns the shadow's current :class:`~mlsd.serving.routing.Variant` (an alias
    reload swaps it); ``log`` is the running prediction log; ``dropped(rows)`` counts rows the
    full queue refused; ``cpus`` (``mlsd serve --shadow-cpus``) are the cores the shadow process
    may run on, where the server leaves some free (by default it shares the server's).
    """

    def __init__(
        self,
        variant: Callable[[], Any],
        log: Any,
        model_name: str,
        dropped: Callable[[int], None],
        *,
        cpus: frozenset[int] | None = None,
    ) -> None:
        self._variant, self._log, self._name, self._dropped = variant, log, model_name, dropped
        self._cpus = cpus
        self._queue: collections.deque[_Item] = collections.deque()
        self._pending = 0  # rows in the queue
        self._ready = threading.Condition()
        self._closing = False
        self._shadow: _ShadowProcess | None = None
        self._validator: Any = None  # the server's RowValidator (warm gives it)
        self._crashes = CircuitBreaker(PROCESS_FAILURES, PROCESS_COOLDOWN_S)
        self._thread = threading.Thread(target=self._drain, name="mlsd-shadow", daemon=True)
        self._thread.start()

    def submit(self, rows: list[Any], request_ids: list[str], logged_at: datetime) -> None:
        """Queue ``rows`` (request rows already answered and logged) for the shadow; never waits."""
        if not rows:
            return
        with self._ready:
            if self._closing or self._pending + len(rows) > MAX_SHADOW_PENDING_ROWS:
                self._dropped(len(rows))
                return
            self._queue.append((rows, request_ids, logged_at))
            before, self._pending = self._pending, self._pending + len(rows)
            # the drain thread sleeps on an empty queue, or lingers until a batch is full: wake
            # it for those only, not once per request (each wake-up takes the GIL)
            if before == 0 or (before < MAX_SHADOW_BATCH_ROWS <= self._pending):
                self._ready.notify()

    def warm(self, rows: list[Any], validator: Any) -> None:
        """Start the process and hand it ``validator`` (the server's
        :class:`~mlsd.serving.validation.RowValidator`) and the model now, scoring ``rows`` (an
        example request), so that the first requests do not share the core with its start."""
        self._validator = validator
        try:
            self._call(self._variant().model, rows)
        except Exception as exc:  # the first batch tries again, and logs what goes wrong
            _log.warning("warming the shadow process failed: %s: %s", type(exc).__name__, exc)

    def close(self) -> None:
        """Score what is queued, hand it to the log writer, then stop the process."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join()
        if self._shadow is not None:
            self._shadow.close()

    def _take(self) -> list[_Item] | None:
        with self._ready:
            while not self._queue and not self._closing:
                self._ready.wait()
            if not self._queue:
                return None  # closing, and nothing left
            deadline = time.monotonic() + SHADOW_LINGER_S
            while not self._closing and self._pending < MAX_SHADOW_BATCH_ROWS:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            batch = [self._queue.popleft()]
            rows = len(batch[0][0])
            while self._queue and rows + len(self._queue[0][0]) <= MAX_SHADOW_BATCH_ROWS:
                batch.append(self._queue.popleft())
                rows += len(batch[-1][0])
            self._pending -= rows
            return batch

    def _drain(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._score(self._variant(), batch)
            except Exception:  # outside the model (the log closed, a bad row): the next batch tries again
                _log.exception("shadow scoring failed")

    def _call(self, model: Any, rows: list[Any]) -> tuple[np.ndarray, list[Any], float]:
        """Score ``rows`` in the shadow process (started, and sent ``model``, when needed)."""
        if self._validator is None:
            raise RuntimeError("the shadow has no request validator yet (Routing.warm gives it)")
        if self._shadow is None:
            self._shadow = _ShadowProcess(SHADOW_NICENESS, self._cpus)
        try:
            self._shadow.load(self._validator, model)
            return self._shadow.call("score", rows)
        except ShadowProcessError:  # dead, or unable to load the model: a new process next batch
            broken, self._shadow = self._shadow, None
            broken.close()
            raise

    def _score(self, variant: Any, batch: list[_Item]) -> None:
        rows = [row for item_rows, _, _ in batch for row in item_rows]
        ids = [rid for _, request_ids, _ in batch for rid in request_ids]
        stamps = [at for item_rows, _, at in batch for _ in range(len(item_rows))]
        error, latency_ms = None, None
        scores: list[Any] = [None] * len(ids)
        decisions: list[Any] = [None] * len(ids)
        if not self._crashes.allow():
            error = (
                f"the shadow process failed {PROCESS_FAILURES} times in a row; "
                f"resting {PROCESS_COOLDOWN_S:g} s before another"
            )
        else:
            try:
                score, decided, latency_ms = self._call(variant.model, rows)
                scores, decisions = score.tolist(), decided
                self._crashes.record_success()
            except ShadowProcessError as exc:
                _log.error("%s; starting another for the next batch", exc)
                self._crashes.record_failure()
                error = f"ShadowProcessError: {str(exc)[:200]}"
            except Exception as exc:  # the model raised in the process, which stays up
                self._crashes.record_success()
                error = str(exc)[:250]
        records = [
            ShadowRecord(rid, at, variant.alias, self._name, variant.version, s, d, latency_ms, error)
            for rid, at, s, d in zip(ids, stamps, scores, decisions, strict=True)
        ]
        # in small submissions: the log writer commits answers before shadow rows, and a small
        # shadow submission never holds an answer's commit for long (mlsd.store._log_writer)
        for start in range(0, len(records), SHADOW_ROWS_PER_SUBMISSION):
            self._log.submit_shadow(records[start : start + SHADOW_ROWS_PER_SUBMISSION])

"""The shadow: a challenger scores copies of answered requests where it cannot slow the answers.

A shadow that scores in the server's own threads competes with the answers twice: for the core
and for the GIL (a low-priority thread holding the GIL stalls the answers behind it, the
classic priority inversion). So the shadow model runs in a **process of its own**, at the
lowest priority (nice 19): when the server has work, the kernel gives it the core; when it is
idle, the shadow catches up. Its budget is what the answers leave.

- :meth:`ShadowScorer.submit` (the request path, after the answer is committed) only appends to
  a queue bounded in rows; past :data:`MAX_SHADOW_PENDING_ROWS` the rows are dropped and counted
  (``mlsd_shadow_dropped_total``), never waited for;
- one thread drains the queue: everything waiting, up to :data:`MAX_SHADOW_BATCH_ROWS`, is
  scored in **one call**, so a backlog costs one model call instead of one per request;
- the process gets the model once, and again only when the alias moved to another version;
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
import pandas as pd

from mlsd.errors import ServingError
from mlsd.serving.breaker import CircuitBreaker
from mlsd.store.prediction_log import ShadowRecord

__all__ = [
    "MAX_SHADOW_BATCH_ROWS",
    "MAX_SHADOW_PENDING_ROWS",
    "PROCESS_COOLDOWN_S",
    "PROCESS_FAILURES",
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
#: rows the shadow scores in one call at most (bounds one concatenated frame's memory)
MAX_SHADOW_BATCH_ROWS = 2_000
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
    """The shadow process: load the model it is sent, score each frame it is sent, until EOF."""
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
    model: Any = None
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):  # the server closed the pipe (or went away): stop
            return
        try:
            if kind == "model":
                model = pickle.loads(payload)
                conn.send(("ok", None))
                continue
            start = time.perf_counter()
            pred = model.predict_frame(payload)
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

    def load(self, model: Any) -> None:
        if self.model is not model:
            blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
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
_Item = tuple[pd.DataFrame, list[str], datetime]


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
        self._crashes = CircuitBreaker(PROCESS_FAILURES, PROCESS_COOLDOWN_S)
        self._thread = threading.Thread(target=self._drain, name="mlsd-shadow", daemon=True)
        self._thread.start()

    def submit(self, frame: pd.DataFrame, request_ids: list[str], logged_at: datetime) -> None:
        """Queue ``frame``'s rows (already answered and logged) for the shadow; never waits."""
        if not len(frame):
            return
        with self._ready:
            if self._closing or self._pending + len(frame) > MAX_SHADOW_PENDING_ROWS:
                self._dropped(len(frame))
                return
            self._queue.append((frame, request_ids, logged_at))
            self._pending += len(frame)
            self._ready.notify()

    def warm(self, example: pd.DataFrame) -> None:
        """Start the process and hand it the model now, scoring ``example`` (a checked request
        frame), so that the first requests do not share the core with its start. Best effort."""
        try:
            self._call(self._variant().model, example)
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
            except Exception:  # outside the model (the log closed, a bad frame): the next batch tries again
                _log.exception("shadow scoring failed")

    def _call(self, model: Any, frame: pd.DataFrame) -> tuple[np.ndarray, list[Any], float]:
        """Score ``frame`` in the shadow process (started, and sent ``model``, when needed)."""
        if self._shadow is None:
            self._shadow = _ShadowProcess(SHADOW_NICENESS, self._cpus)
        try:
            self._shadow.load(model)
            return self._shadow.call("score", frame)
        except ShadowProcessError:  # dead, or unable to load the model: a new process next batch
            broken, self._shadow = self._shadow, None
            broken.close()
            raise

    def _score(self, variant: Any, batch: list[_Item]) -> None:
        frame = batch[0][0] if len(batch) == 1 else pd.concat([f for f, _, _ in batch], ignore_index=True)
        ids = [rid for _, request_ids, _ in batch for rid in request_ids]
        stamps = [at for f, _, at in batch for _ in range(len(f))]
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
                score, decided, latency_ms = self._call(variant.model, frame)
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

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
import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from mlsd.serving.breaker import CircuitBreaker
from mlsd.store.prediction_log import ShadowRecord

__all__ = [
    "MAX_SHADOW_BATCH_ROWS",
    "MAX_SHADOW_PENDING_ROWS",
    "PROCESS_COOLDOWN_S",
    "PROCESS_FAILURES",
    "SHADOW_NICENESS",
    "ShadowScorer",
]

_log = logging.getLogger("mlsd.serving")

#: shadow rows waiting at most; more are dropped (and counted). About half a minute of a busy
#: server's single-row traffic: a backlog this long means the shadow cannot keep up at all.
MAX_SHADOW_PENDING_ROWS = 20_000
#: rows the shadow scores in one call at most (bounds one concatenated frame's memory)
MAX_SHADOW_BATCH_ROWS = 2_000
#: the shadow process's nice value: the lowest priority, the answers come first
SHADOW_NICENESS = 19
#: crashes of the shadow process in a row before it rests, and how long it rests
PROCESS_FAILURES, PROCESS_COOLDOWN_S = 3, 30.0

# -- in the shadow process ---------------------------------------------------------------------
_MODEL: list[Any] = []  # the model this process scores with (sent once per version)


def _start_shadow_process(niceness: int) -> None:
    # the server decides when this process ends (it drains the queue on shutdown first): a
    # SIGTERM or Ctrl-C sent to the whole process group must not kill it in the middle
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(niceness)


def _score_in_shadow_process(model: Any, frame: pd.DataFrame) -> tuple[np.ndarray, list[Any], float]:
    if model is not None:
        _MODEL[:] = [model]
    start = time.perf_counter()
    pred = _MODEL[0].predict_frame(frame)
    if len(pred) != len(frame):
        raise ValueError(f"{len(pred)} answers for {len(frame)} rows")
    latency_ms = (time.perf_counter() - start) * 1000
    return pred["score"].to_numpy(dtype="float64"), pred["decision"].tolist(), latency_ms


# -- in the server ------------------------------------------------------------------------------
_Item = tuple[pd.DataFrame, list[str], datetime]


class ShadowScorer:
    """The shadow of one server (see the module docstring).

    ``variant`` returns the shadow's current :class:`~mlsd.serving.routing.Variant` (an alias
    reload swaps it); ``log`` is the running prediction log; ``dropped(rows)`` counts rows the
    full queue refused.
    """

    def __init__(
        self, variant: Callable[[], Any], log: Any, model_name: str, dropped: Callable[[int], None]
    ) -> None:
        self._variant, self._log, self._name, self._dropped = variant, log, model_name, dropped
        self._queue: collections.deque[_Item] = collections.deque()
        self._pending = 0  # rows in the queue
        self._ready = threading.Condition()
        self._closing = False
        self._pool: cf.ProcessPoolExecutor | None = None
        self._sent: Any = None  # the model the process holds (compared by identity)
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
        variant = self._variant()
        try:
            self._process().submit(_score_in_shadow_process, variant.model, example).result()
            self._sent = variant.model
        except Exception as exc:  # the first batch tries again, and logs what goes wrong
            _log.warning("warming the shadow process failed: %s: %s", type(exc).__name__, exc)
            if isinstance(exc, cf.process.BrokenProcessPool):
                broken, self._pool = self._pool, None
                if broken is not None:
                    broken.shutdown(wait=False)

    def close(self) -> None:
        """Score what is queued, hand it to the log writer, then stop the process."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

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

    def _process(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            # spawn: the server has threads (event loop, log writer), which fork would copy mid-state
            self._pool = cf.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_shadow_process,
                initargs=(SHADOW_NICENESS,),
            )
            self._sent = None
        return self._pool

    def _score(self, variant: Any, batch: list[_Item]) -> None:
        frame = batch[0][0] if len(batch) == 1 else pd.concat([f for f, _, _ in batch], ignore_index=True)
        ids = [rid for _, request_ids, _ in batch for rid in request_ids]
        stamps = [at for f, _, at in batch for _ in range(len(f))]
        error, latency_ms = None, None
        scores: list[Any] = [None] * len(ids)
        decisions: list[Any] = [None] * len(ids)
        try:
            if not self._crashes.allow():
                raise RuntimeError(
                    f"the shadow process crashed {PROCESS_FAILURES} times in a row; "
                    f"resting {PROCESS_COOLDOWN_S:g} s before another"
                )
            model = None if self._sent is variant.model else variant.model
            job = self._process().submit(_score_in_shadow_process, model, frame)
            score, decided, latency_ms = job.result()
            self._sent = variant.model
            self._crashes.record_success()
            scores, decisions = score.tolist(), decided
        except cf.process.BrokenProcessPool as exc:  # the process died: a new one next batch
            _log.error("the shadow process stopped (%s); starting another for the next batch", exc)
            self._crashes.record_failure()
            broken, self._pool, self._sent = self._pool, None, None
            if broken is not None:
                broken.shutdown(wait=False)
            error = f"BrokenProcessPool: {str(exc)[:200]}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        self._log.submit_shadow(
            [
                ShadowRecord(rid, at, variant.alias, self._name, variant.version, s, d, latency_ms, error)
                for rid, at, s, d in zip(ids, stamps, scores, decisions, strict=True)
            ]
        )

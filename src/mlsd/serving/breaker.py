"""A circuit breaker per served variant: after ``failures`` consecutive failures it opens for
``cooldown_s``, then lets one trial batch through (half-open); a success closes it again.

A variant whose model keeps failing or timing out would otherwise cost every one of its
requests the timeout before the fallback answers.

>>> now = [0.0]
>>> breaker = CircuitBreaker(failures=2, cooldown_s=10, clock=lambda: now[0])
>>> breaker.record_failure(); breaker.allow()
True
>>> breaker.record_failure(); breaker.allow(), breaker.state
(False, 'open')
>>> now[0] = 11.0
>>> breaker.allow(), breaker.allow()  # one trial after the cooldown, not two
(True, False)
>>> breaker.record_success(); breaker.state
'closed'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Thread-safe: variants are scored in worker threads."""

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial = False  # a half-open trial is in flight
        self.times_opened = 0

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half_open" if self._clock() - self._opened_at >= self.cooldown_s else "open"

    def allow(self) -> bool:
        """May the variant score the next batch?"""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._clock() - self._opened_at < self.cooldown_s or self._trial:
                return False
            self._trial = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._consecutive, self._opened_at, self._trial = 0, None, False

    def record_failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._trial or self._consecutive >= self.failures:
                if self._opened_at is None or self._trial:
                    self.times_opened += 1
                self._opened_at, self._trial = self._clock(), False

"""A transformer that burns CPU before passing its rows on: a real model made slow, for rollout tests.

Put in front of a fitted pipeline it adds ``delay_s`` seconds of computation to every call of
``transform`` (so to every ``predict_proba`` of the pipeline) and changes nothing else. It
computes rather than sleeps because the canary's latency gate judges the CPU time of a model call
(``scoring_ms``, serving/routing.py), as a slow model is: a sleep would cost no CPU at all. It
lives in ``tests/`` so that a server subprocess started with ``tests`` on its ``PYTHONPATH`` can
unpickle a registered model holding it (pickle stores the class as ``slow_model.BusyTransformer``).

>>> import pandas as pd
>>> rows = pd.DataFrame({"x": [1.0, 2.0]})
>>> BusyTransformer(0.0).transform(rows) is rows
True
"""

from __future__ import annotations

import time
from typing import Any

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

__all__ = ["BusyTransformer", "slowed"]


class BusyTransformer(TransformerMixin, BaseEstimator):
    """Spends ``delay_s`` seconds of its thread's CPU time per call, then returns its input (stateless)."""

    def __init__(self, delay_s: float = 0.08) -> None:
        self.delay_s = delay_s

    def fit(self, X: Any, y: Any = None) -> BusyTransformer:
        return self

    def transform(self, X: Any) -> Any:
        end = time.thread_time() + self.delay_s
        while time.thread_time() < end:
            sum(range(1000))  # work, so the thread's CPU clock advances
        return X

    def __sklearn_is_fitted__(self) -> bool:
        return True  # nothing to learn


def slowed(pipeline: Any, delay_s: float) -> Pipeline:
    """``pipeline`` (fitted) behind a :class:`BusyTransformer`: same answers, ``delay_s`` of CPU later."""
    return Pipeline([("busy", BusyTransformer(delay_s)), ("model", pipeline)])

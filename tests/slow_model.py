"""A transformer that sleeps before passing its rows on: a real model made slow, for rollout tests.

Put in front of a fitted pipeline it adds ``delay_s`` to every call of ``transform`` (so to
every ``predict_proba`` of the pipeline) and changes nothing else. It lives in ``tests/`` so that a
server subprocess started with ``tests`` on its ``PYTHONPATH`` can unpickle a registered
model holding it (pickle stores the class as ``slow_model.SleepTransformer``).

>>> import pandas as pd
>>> rows = pd.DataFrame({"x": [1.0, 2.0]})
>>> SleepTransformer(0.0).transform(rows) is rows
True
"""

from __future__ import annotations

import time
from typing import Any

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

__all__ = ["SleepTransformer", "slowed"]


class SleepTransformer(TransformerMixin, BaseEstimator):
    """Sleeps ``delay_s`` seconds per call, then returns its input unchanged (stateless)."""

    def __init__(self, delay_s: float = 0.08) -> None:
        self.delay_s = delay_s

    def fit(self, X: Any, y: Any = None) -> SleepTransformer:
        return self

    def transform(self, X: Any) -> Any:
        time.sleep(self.delay_s)
        return X

    def __sklearn_is_fitted__(self) -> bool:
        return True  # nothing to learn


def slowed(pipeline: Any, delay_s: float) -> Pipeline:
    """``pipeline`` (fitted) behind a :class:`SleepTransformer`: same answers, ``delay_s`` later."""
    return Pipeline([("sleep", SleepTransformer(delay_s)), ("model", pipeline)])

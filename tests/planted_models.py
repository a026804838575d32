"""Planted faulty models for the rollout tests: importable by name, so that a model pickled
into another process (the shadow's) is unpickled there too."""

from __future__ import annotations

import os
import time
from typing import Any

__all__ = ["Exiting", "Failing", "Slow"]


class Failing:
    """A fitted pipeline whose scoring raises (a planted broken challenger)."""

    def __init__(self, pipeline: Any) -> None:
        self.classes_ = pipeline.classes_

    def predict_proba(self, rows: Any) -> Any:
        raise RuntimeError("planted failure")


class Slow:
    """A fitted pipeline that sleeps before it answers (a challenger past its timeout)."""

    def __init__(self, pipeline: Any, seconds: float) -> None:
        self.pipeline, self.seconds, self.classes_ = pipeline, seconds, pipeline.classes_

    def predict_proba(self, rows: Any) -> Any:
        time.sleep(self.seconds)
        return self.pipeline.predict_proba(rows)


class Exiting:
    """A fitted pipeline whose scoring ends the process it runs in (a planted crash)."""

    def __init__(self, pipeline: Any) -> None:
        self.classes_ = pipeline.classes_

    def predict_proba(self, rows: Any) -> Any:
        os._exit(3)

"""Business costs of a binary decision and the threshold that minimises them.

A :class:`CostMatrix` prices each outcome (type-1 error = false positive, type-2 = false
negative). :func:`optimal_threshold` evaluates every candidate threshold at once (one sort,
cumulative sums) and returns the cheapest, with the whole cost curve for plotting. A row is
predicted positive when ``score >= threshold``.

>>> import numpy as np
>>> y = np.array([0, 0, 1, 0, 1, 1])
>>> p = np.array([0.1, 0.3, 0.35, 0.6, 0.7, 0.9])
>>> choice = optimal_threshold(y, p, CostMatrix(false_positive=1, false_negative=4))
>>> choice.threshold, choice.confusion, round(choice.cost_per_1000, 1)
(0.35, (2, 1, 0, 3), 166.7)
>>> confusion_at(y, p, 0.5)
(2, 1, 1, 2)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from mlsd.errors import DataError, DesignError

__all__ = ["CostMatrix", "ThresholdChoice", "confusion_at", "expected_cost_per_1000", "optimal_threshold"]


@dataclasses.dataclass(frozen=True)
class CostMatrix:
    """Cost of each outcome, in the design's unit; negative values are gains.

    >>> CostMatrix(false_positive=1, false_negative=float("nan"))
    Traceback (most recent call last):
    ...
    mlsd.errors.DesignError: goals.costs.false_negative: a cost must be a finite number \
(received nan; expected e.g. 1 or 4.5)
    """

    false_positive: float
    false_negative: float
    true_positive: float = 0.0
    true_negative: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            if not ok:
                raise DesignError(
                    "a cost must be a finite number",
                    field=f"goals.costs.{f.name}",
                    received=v,
                    expected="e.g. 1 or 4.5",
                )
            object.__setattr__(self, f.name, float(v))

    @classmethod
    def from_spec(cls, spec: Any) -> CostMatrix:
        """From any object or mapping with the four cost fields (e.g. ``design.goals.costs``)."""
        get = spec.get if isinstance(spec, dict) else (lambda k, d=None: getattr(spec, k, d))
        return cls(
            false_positive=get("false_positive", 1.0),
            false_negative=get("false_negative", 1.0),
            true_positive=get("true_positive", 0.0),
            true_negative=get("true_negative", 0.0),
        )

    def total(self, tn: Any, fp: Any, fn: Any, tp: Any) -> Any:
        """Total cost of confusion counts (scalars or arrays)."""
        return (
            tn * self.true_negative
            + fp * self.false_positive
            + fn * self.false_negative
            + tp * self.true_positive
        )


@dataclasses.dataclass(frozen=True)
class ThresholdChoice:
    """The cheapest threshold, its cost per 1000 decisions, its confusion and the whole curve."""

    threshold: float
    cost_per_1000: float
    confusion: tuple[int, int, int, int]  # (tn, fp, fn, tp)
    curve: tuple[np.ndarray, np.ndarray]  # (thresholds ascending, cost_per_1000)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        tn, fp, fn, tp = self.confusion
        return {
            "threshold": self.threshold,
            "cost_per_1000": self.cost_per_1000,
            "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
            "curve": {"thresholds": self.curve[0].tolist(), "cost_per_1000": self.curve[1].tolist()},
        }


def _binary(y_true: Any, field: str = "y_true") -> np.ndarray:
    y = np.asarray(y_true)
    if y.dtype == bool:
        return y.astype(np.int64)
    if y.size and not np.isin(y, [0, 1]).all():
        bad = np.unique(y[~np.isin(y, [0, 1])])[:5].tolist()
        raise DataError(
            "binary labels must be 0/1 or bool", field=field, received=bad, expected="0, 1, True, False"
        )
    return y.astype(np.int64)


def _check_lengths(y: np.ndarray, other: np.ndarray, field: str) -> None:
    if y.shape[0] != other.shape[0]:
        raise DataError("lengths differ", field=field, received=other.shape[0], expected=f"{y.shape[0]} rows")


def confusion_at(y_true: Any, y_score: Any, threshold: float) -> tuple[int, int, int, int]:
    """``(tn, fp, fn, tp)`` when predicting positive for ``score >= threshold``."""
    y = _binary(y_true)
    pred = np.asarray(y_score) >= threshold
    _check_lengths(y, pred, "y_score")
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    return int(y.size - tp - fp - fn), fp, fn, tp


def expected_cost_per_1000(y_true: Any, y_pred: Any, costs: CostMatrix) -> float:
    """Average cost of 1000 decisions given hard predictions ``y_pred`` (0/1 or bool).

    >>> expected_cost_per_1000([0, 1, 1, 0], [1, 1, 0, 0], CostMatrix(false_positive=1, false_negative=4))
    1250.0
    """
    y = _binary(y_true)
    pred = _binary(y_pred, "y_pred")
    _check_lengths(y, pred, "y_pred")
    if y.size == 0:
        return float("nan")
    tn, fp, fn, tp = confusion_at(y, pred, 1)
    return float(costs.total(tn, fp, fn, tp) * 1000.0 / y.size)


def optimal_threshold(y_true: Any, y_score: Any, costs: CostMatrix) -> ThresholdChoice:
    """The threshold with the lowest expected cost, among all that change a decision.

    Candidates are every distinct score plus one just above the highest (nobody positive). Ties
    in cost go to the highest threshold (fewest positive predictions).
    """
    y = _binary(y_true)
    s = np.asarray(y_score, dtype=float)
    _check_lengths(y, s, "y_score")
    if y.size == 0:
        raise DataError(
            "no rows to choose a threshold from", field="y_true", received=0, expected="at least one row"
        )
    if not np.isfinite(s).all():
        raise DataError(
            "scores must be finite", field="y_score", received="NaN or inf", expected="finite numbers"
        )
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], y[order]
    # The last row of each run of equal scores: thresholding at that score admits the whole run.
    last = np.flatnonzero(np.concatenate([s_desc[1:] != s_desc[:-1], [True]]))
    tp = np.concatenate([[0], np.cumsum(y_desc)[last]])
    fp = np.concatenate([[0], (last + 1) - tp[1:]])
    thresholds = np.concatenate([[np.nextafter(s_desc[0], np.inf)], s_desc[last]])
    n_pos = int(y.sum())
    fn = n_pos - tp
    tn = (y.size - n_pos) - fp
    cost = costs.total(tn, fp, fn, tp) * 1000.0 / y.size
    best = int(np.argmin(cost))  # first minimum in descending-threshold order = highest threshold
    return ThresholdChoice(
        threshold=float(thresholds[best]),
        cost_per_1000=float(cost[best]),
        confusion=(int(tn[best]), int(fp[best]), int(fn[best]), int(tp[best])),
        curve=(thresholds[::-1].copy(), cost[::-1].copy()),
    )

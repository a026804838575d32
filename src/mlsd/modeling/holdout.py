"""Challenger against champion on the same newest holdout, with a paired bootstrap interval.

``mlsd retrain`` registers a challenger only when it beats the champion on labelled traffic
neither was trained on. Both models score the same rows; the difference of their metric is
resampled with the same row indices for both (a paired bootstrap), so the interval reflects
how much the two disagree, not how hard the rows are.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 2, 2000)
>>> good, poor = y + rng.normal(0, 0.8, 2000), y + rng.normal(0, 2.0, 2000)
>>> c = compare_on_holdout(y, good, poor, metric="roc_auc", task="binary", min_improvement=0.0)
>>> c.passed, round(c.challenger, 3), round(c.champion, 3), c.low > 0
(True, 0.817, 0.632, True)
>>> compare_on_holdout(y, poor, good, metric="roc_auc", task="binary").passed
False
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy import stats

from mlsd.errors import MlsdError
from mlsd.goals.metrics import compute_metric, get_task_metric

__all__ = [
    "CostComparison",
    "HoldoutComparison",
    "compare_decision_costs",
    "compare_on_holdout",
    "model_scores",
]


@dataclasses.dataclass(frozen=True)
class HoldoutComparison:
    """The metric of both models on the holdout and the challenger's gain, larger is better."""

    metric: str
    n_rows: int
    challenger: float
    champion: float
    gain: float  # challenger - champion, signed so that > 0 is better
    low: float  # 95% paired bootstrap interval of the gain
    high: float
    min_improvement: float
    passed: bool

    def describe(self) -> str:
        verdict = "beats" if self.passed else "does not beat"
        return (
            f"the challenger {verdict} the champion on the newest {self.n_rows:,} labelled rows: "
            f"{self.metric} {self.challenger:.4f} vs {self.champion:.4f}, gain {self.gain:+.4f} "
            f"[{self.low:+.4f}, {self.high:+.4f}] (needed at least {self.min_improvement:+g})"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def model_scores(model: Any, rows: Any, task: str, classes: list[Any] | None = None) -> np.ndarray:
    """What :func:`~mlsd.goals.metrics.compute_metric` reads: the positive-class probability
    (binary), the probability matrix (multiclass) or the prediction (regression)."""
    if task == "regression":
        return np.asarray(model.predict(rows), dtype=float)
    proba = np.asarray(model.predict_proba(rows), dtype=float)
    if task == "binary":
        fitted = np.asarray(model.classes_).tolist()
        return proba[:, fitted.index(classes[1]) if classes else 1]
    return proba


def compare_on_holdout(
    y: Any,
    challenger_scores: Any,
    champion_scores: Any,
    *,
    metric: str,
    task: str,
    min_improvement: float = 0.0,
    n_resamples: int = 200,
    seed: int = 0,
    classes: list[Any] | None = None,
    thresholds: tuple[float, float] = (0.5, 0.5),
) -> HoldoutComparison:
    """Both models' ``metric`` on the same rows; passed when the gain is at least ``min_improvement``.

    The gain's sign follows the metric's direction (log loss lower is better: its gain is
    champion − challenger). ``thresholds`` (challenger, champion) decide label metrics on binary
    scores, each model at its own. Resamples where the metric is undefined (one class) are skipped.
    """
    m = get_task_metric(metric, task)
    y = np.asarray(y)
    a, b = np.asarray(challenger_scores), np.asarray(champion_scores)
    sign = 1.0 if m.greater_is_better else -1.0

    def value(rows: Any) -> tuple[float, float]:
        return (
            compute_metric(m, y[rows], a[rows], thresholds[0], classes=classes),
            compute_metric(m, y[rows], b[rows], thresholds[1], classes=classes),
        )

    n = len(y)
    challenger, champion = value(slice(None))
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(n_resamples):  # a loop over resamples, each vectorised over the rows
        rows = rng.integers(0, n, n)
        with np.errstate(all="ignore"):
            try:
                x, z = value(rows)
            except (ValueError, MlsdError):  # one class in the resample
                continue
        if np.isfinite(x) and np.isfinite(z):
            gains.append(sign * (x - z))
    gain = sign * (challenger - champion)
    low, high = np.percentile(gains, [2.5, 97.5]) if gains else (np.nan, np.nan)
    return HoldoutComparison(
        metric=metric,
        n_rows=n,
        challenger=float(challenger),
        champion=float(champion),
        gain=float(gain),
        low=float(low),
        high=float(high),
        min_improvement=min_improvement,
        passed=bool(gain >= min_improvement),
    )


@dataclasses.dataclass(frozen=True)
class CostComparison:
    """The two models' mean decision cost on the holdout, each at its own threshold, and whether
    the challenger is shown no costlier than the canary's margin allows (lower is better)."""

    n_rows: int
    challenger: float  # mean cost per decision, goals.costs' unit
    champion: float
    difference: float  # challenger - champion
    upper: float  # one-sided upper bound at `confidence`
    margin: float
    confidence: float
    passed: bool

    def describe(self) -> str:
        verdict = "is shown" if self.passed else "is not shown"
        return (
            f"the challenger {verdict} no costlier than the canary's margin on the newest {self.n_rows:,} "
            f"labelled rows: cost per decision {self.challenger:.4f} vs {self.champion:.4f}, difference "
            f"{self.difference:+.4f}, at {self.confidence:.0%} confidence at most {self.upper:+.4f} "
            f"(margin {self.margin:.4g})"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare_decision_costs(
    positive: Any,
    challenger_scores: Any,
    champion_scores: Any,
    *,
    thresholds: tuple[float, float],
    costs: Any,
    margin: float,
    confidence: float = 0.95,
) -> CostComparison:
    """The canary's advance rule on the holdout, before anything is registered.

    With ``goals.costs`` a binary canary judges the cost of each decision and advances only when
    the challenger's extra cost is at most ``margin`` at ``confidence`` (rollout/canary.py). A
    retrained challenger that is better by ``goals.metric`` but decides worse at its own threshold
    would be registered, start a canary and be rolled back: the flights simulation did this three
    times. Here both models decide the same rows, so the bound is on the paired differences
    ``cost_challenger - cost_champion`` (normal approximation, one-sided), tighter than the
    canary's two-sample bound on disjoint traffic.

    >>> y = np.array([True, False] * 50)
    >>> same = np.where(y, 0.9, 0.1)
    >>> c = compare_decision_costs(y, same, same, thresholds=(0.5, 0.5),
    ...                            costs={"false_positive": 1, "false_negative": 4}, margin=0.08)
    >>> c.passed, c.difference
    (True, 0.0)
    >>> worse = np.full(100, 0.0)  # never warns: every delay is a missed one
    >>> compare_decision_costs(y, worse, same, thresholds=(0.5, 0.5),
    ...     costs={"false_positive": 1, "false_negative": 4}, margin=0.08).passed
    False
    """
    from mlsd.goals.costs import CostMatrix

    m = CostMatrix.from_spec(costs)
    truth = np.asarray(positive, dtype=bool)

    def cost(scores: Any, threshold: float) -> np.ndarray:
        said = np.asarray(scores, dtype=float) >= threshold  # goals/costs.py's decision rule
        return np.where(
            truth,
            np.where(said, m.true_positive, m.false_negative),
            np.where(said, m.false_positive, m.true_negative),
        )

    a, b = cost(challenger_scores, thresholds[0]), cost(champion_scores, thresholds[1])
    d = a - b
    n = len(d)
    diff = float(d.mean()) if n else float("nan")
    se = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    upper = diff + float(stats.norm.ppf(confidence)) * se
    return CostComparison(
        n_rows=n,
        challenger=float(a.mean()) if n else float("nan"),
        champion=float(b.mean()) if n else float("nan"),
        difference=diff,
        upper=upper,
        margin=float(margin),
        confidence=float(confidence),
        passed=bool(upper <= margin),
    )

"""Confidence intervals for any registered metric: the bootstrap, and DeLong's for ROC AUC.

:func:`bootstrap_ci` returns a :class:`MetricEstimate`: the metric on all rows plus a percentile
bootstrap interval. ROC AUC, the usual primary metric, is computed for all resamples at once
from one sort and per-resample row counts (a weighted rank statistic), which is ~20x faster than
calling :func:`sklearn.metrics.roc_auc_score` per resample; other metrics are recomputed on each
resample.

:func:`delong_roc_auc` gives ROC AUC with DeLong's interval instead: the variance of the AUC
(a two-sample U-statistic) from its structural components (DeLong, DeLong & Clarke-Pearson
1988), computed from midranks in O(n log n) (Sun & Xu 2014), and a normal interval around the
AUC clipped to [0, 1], as R's pROC ``ci.auc(method = "delong")`` does. No resampling: it costs
one sort, where the bootstrap costs a few hundred weighted passes, and it is deterministic.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 2, 2_000)
>>> p = np.clip(0.3 * y + 0.7 * rng.random(2_000), 0, 1)
>>> est = bootstrap_ci("roc_auc", y, p, n_resamples=100)
>>> est.low < est.value < est.high, est.n
(True, 2000)
>>> str(MetricEstimate(0.7421, 0.7353, 0.7494, 100))
'0.742 [0.735, 0.749]'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlsd.errors import DesignError
from mlsd.goals.metrics import Metric, _encode, compute_metric, get_metric

__all__ = ["MetricEstimate", "bootstrap_ci", "delong_roc_auc", "weighted_roc_auc"]

_CHUNK_CELLS = 4_000_000  # resamples x rows handled per vectorised block (bounds memory to ~100 MB)


@dataclasses.dataclass(frozen=True)
class MetricEstimate:
    """A metric value on ``n`` rows, with a confidence interval ``[low, high]`` when one was computed."""

    value: float
    low: float | None = None
    high: float | None = None
    n: int = 0

    def __str__(self) -> str:
        if self.low is None or self.high is None:
            return f"{self.value:.3f}"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes ``None``)."""
        return {k: _json_float(v) for k, v in dataclasses.asdict(self).items()}


def _json_float(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def _sorted_groups(y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort order and the start of each run of tied scores in sorted order."""
    order = np.argsort(y_score, kind="stable")
    s = np.asarray(y_score)[order]
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    return order, starts


def _auc_sorted(y_sorted: np.ndarray, starts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    # Per tie-group positive/negative weight; a positive beats every lighter negative, ties count half.
    pos = np.add.reduceat(weights * y_sorted, starts, axis=1)
    neg = np.add.reduceat(weights * ~y_sorted, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def weighted_roc_auc(y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC for each row of ``weights`` (shape ``(B, n)``, e.g. bootstrap counts), ties counted half.

    With all weights 1 this equals :func:`sklearn.metrics.roc_auc_score`; rows holding one class
    only give NaN.

    >>> weighted_roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]), np.ones((1, 4)))
    array([0.75])
    """
    order, starts = _sorted_groups(np.asarray(y_score))
    y_sorted = np.asarray(y_true).astype(bool)[order]
    return _auc_sorted(y_sorted, starts, np.atleast_2d(np.asarray(weights, dtype=float))[:, order])


def delong_roc_auc(y_true: Any, y_score: Any, *, confidence: float = 0.95) -> MetricEstimate:
    """ROC AUC (ties counted half) with DeLong's ``confidence`` interval; NaN without both classes.

    The structural components are ``V10_i = P(score_neg < score_i) + P(=)/2`` for each positive
    and ``V01_j = P(score_pos > score_j) + P(=)/2`` for each negative; the AUC is their mean and
    its variance ``var(V10) / m + var(V01) / n`` (``m`` positives, ``n`` negatives). The interval
    is ``AUC +- z * sqrt(variance)``, clipped to [0, 1]; with a single positive or negative (no
    variance to estimate) it is NaN.

    >>> est = delong_roc_auc([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    >>> round(est.value, 4), round(est.low, 4), round(est.high, 4), est.n
    (0.8889, 0.5809, 1.0, 6)
    """
    from scipy.stats import norm, rankdata

    if not 0.0 < confidence < 1.0:
        raise DesignError(
            "confidence must be in (0, 1)", field="confidence", received=confidence, expected="e.g. 0.95"
        )
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(y_score, dtype=float)
    if y.shape != s.shape or y.ndim != 1:
        raise DesignError(
            "y_true and y_score must be 1-d and of one length",
            field="y_score",
            received=f"shapes {y.shape} and {s.shape}",
            expected="one score per outcome",
        )
    n_rows = int(y.size)
    pos, neg = s[y], s[~y]
    m, n = pos.size, neg.size
    if m == 0 or n == 0:
        return MetricEstimate(float("nan"), float("nan"), float("nan"), n_rows)
    # midranks: in the pooled sample, and within each class; their difference counts the other
    # class's scores below (ties half), which is what the structural components are
    pooled = rankdata(s)  # method="average": midranks
    rank_pos = pooled[y]
    v10 = (rank_pos - rankdata(pos)) / n
    v01 = 1.0 - (pooled[~y] - rankdata(neg)) / m
    auc = float(v10.mean())
    if m < 2 or n < 2:
        return MetricEstimate(auc, float("nan"), float("nan"), n_rows)
    variance = float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    half = float(norm.ppf(0.5 + confidence / 2.0)) * math.sqrt(max(variance, 0.0))
    return MetricEstimate(auc, max(0.0, auc - half), min(1.0, auc + half), n_rows)


def _resampled_auc(
    y: np.ndarray, s: np.ndarray, n_resamples: int, m: int, rng: np.random.Generator
) -> np.ndarray:
    n = y.shape[0]
    order, starts = _sorted_groups(s)
    y_sorted = y.astype(bool)[order]
    per_chunk = max(1, _CHUNK_CELLS // n)
    out = []
    for start in range(0, n_resamples, per_chunk):
        b = min(per_chunk, n_resamples - start)
        # Rows are drawn directly as positions in sorted order: a uniform draw either way.
        idx = rng.integers(0, n, size=(b, m)) + n * np.arange(b)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(float)
        out.append(_auc_sorted(y_sorted, starts, counts))
    return np.concatenate(out)


def bootstrap_ci(
    metric: Metric | str,
    y_true: Any,
    y_score: Any,
    *,
    n_resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    max_rows: int = 100_000,
    threshold: float = 0.5,
    classes: Sequence[Any] | None = None,
) -> MetricEstimate:
    """The metric on all rows and its percentile bootstrap interval.

    Beyond ``max_rows`` rows each resample draws ``m = max_rows`` rows (with replacement) and
    the percentiles' distances from the full-data value are shrunk by ``sqrt(m / n)`` (an
    m-out-of-n bootstrap), so the cost stays bounded. That rescaling assumes the metric's error
    shrinks like ``1 / sqrt(n)``: true of the smooth metrics (ROC AUC, log loss, Brier,
    accuracy, RMSE, ...), only approximate for binned or thresholded ones (ECE, F1), whose
    interval is then indicative. Resamples where the metric is undefined (one class only) are
    skipped, so the interval is conditional on the metric being defined. ``n_resamples=0``
    gives the point value only.
    """
    if isinstance(metric, str):
        metric = get_metric(metric)
    if not 0.0 < confidence < 1.0:
        raise DesignError(
            "confidence must be in (0, 1)", field="confidence", received=confidence, expected="e.g. 0.95"
        )
    if n_resamples < 0:
        raise DesignError(
            "n_resamples cannot be negative", field="n_resamples", received=n_resamples, expected=">= 0"
        )
    if isinstance(max_rows, bool) or not isinstance(max_rows, int | np.integer) or max_rows < 1:
        raise DesignError(
            "max_rows must be a positive row count", field="max_rows", received=max_rows, expected=">= 1"
        )
    y = np.asarray(y_true)
    s = np.asarray(y_score)
    n = int(y.shape[0])
    value = compute_metric(metric, y, s, threshold, classes=classes)
    if s.ndim == 2:
        # Encode once with the full data's columns: a resample may lack a rare class, and then
        # classes=None could no longer tell the columns apart.
        y = _encode(y, np.unique(y).tolist() if classes is None else classes, "y_true")
        classes = range(s.shape[1])
    if n_resamples == 0 or n == 0:
        return MetricEstimate(value, None, None, n)
    rng = np.random.default_rng(seed)
    m = min(n, max_rows)
    if metric.name == "roc_auc" and s.ndim == 1:
        stats = _resampled_auc(y, s, n_resamples, m, rng)
    else:
        stats = np.empty(n_resamples)
        for b in range(n_resamples):  # one index row at a time: n_resamples x max_rows would not fit
            idx = rng.integers(0, n, size=m)
            stats[b] = compute_metric(metric, y[idx], s[idx], threshold, classes=classes)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0 or not math.isfinite(value):
        return MetricEstimate(value, float("nan"), float("nan"), n)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    scale = math.sqrt(m / n)
    return MetricEstimate(value, float(value + scale * (lo - value)), float(value + scale * (hi - value)), n)

"""Curves of one model on one split, computed on every row: ROC, precision-recall, reliability.

The design document draws these; it computes nothing itself. Each curve is computed on the
whole split with scikit-learn and only then thinned to at most ``max_points`` points for
drawing (the points kept lie on the exact curve, and the areas are the split's).

>>> import numpy as np
>>> y = np.array([0, 0, 1, 1]); s = np.array([0.1, 0.4, 0.35, 0.8])
>>> c = classification_curves(y, s)
>>> round(c["roc_auc"], 2), round(c["average_precision"], 2), c["n_rows"]
(0.75, 0.83, 4)
>>> r = reliability_bins(y, s, n_bins=2)
>>> r["count"], r["fraction_positive"]
([3, 1], [0.3333333333333333, 1.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlsd.goals.metrics import expected_calibration_error

__all__ = ["classification_curves", "reliability_bins", "thin"]

MAX_POINTS = 400


def thin(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    """At most ``max_points`` evenly spaced points of a curve, its first and last kept."""
    n = len(x)
    keep = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int)) if n else np.arange(0)
    return np.asarray(x, float)[keep].tolist(), np.asarray(y, float)[keep].tolist()


def classification_curves(y_true: Any, score: Any, max_points: int = MAX_POINTS) -> dict[str, Any]:
    """ROC and PR curves of positive-class scores over every row; ``None`` curves with one class."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    y = np.asarray(y_true).astype(int)
    s = np.asarray(score, dtype=float)
    out: dict[str, Any] = {
        "n_rows": int(y.size),
        "roc": None,
        "roc_auc": None,
        "pr": None,
        "average_precision": None,
    }
    if y.size == 0 or np.unique(y).size < 2:
        return out  # neither curve is defined on one class
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    x, yy = thin(fpr, tpr, max_points)
    out["roc"], out["roc_auc"] = {"x": x, "y": yy}, float(roc_auc_score(y, s))
    x, yy = thin(recall[::-1], precision[::-1], max_points)
    out["pr"], out["average_precision"] = {"x": x, "y": yy}, float(average_precision_score(y, s))
    return out


def reliability_bins(y_true: Any, score: Any, n_bins: int = 10) -> dict[str, Any]:
    """Mean score, observed positive rate and count per equal-width bin (empty bins left out).

    The bins are those of :func:`mlsd.goals.metrics.expected_calibration_error`, whose value is
    returned as ``ece``, so the figure and the table agree.
    """
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(score, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], s)
    count = np.bincount(bins, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)
    sum_s = np.bincount(bins, weights=s, minlength=n_bins)
    used = count > 0
    return {
        "mean_score": (sum_s[used] / count[used]).tolist(),
        "fraction_positive": (sum_y[used] / count[used]).tolist(),
        "count": count[used].astype(int).tolist(),
        "ece": expected_calibration_error(y, s, n_bins) if y.size else None,
    }

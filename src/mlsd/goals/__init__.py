"""Segment 1, business goals and metrics: what "good" means for the system, in numbers.

The metric registry (what each ML metric needs from a model, whether greater is better),
bootstrap confidence intervals for any metric, and the cost matrix of a binary decision with
the threshold that minimises its expected cost (type-1 vs type-2 errors).
"""

from __future__ import annotations

from mlsd.goals.bootstrap import MetricEstimate, bootstrap_ci, weighted_roc_auc
from mlsd.goals.costs import (
    CostMatrix,
    ThresholdChoice,
    confusion_at,
    expected_cost_per_1000,
    optimal_threshold,
)
from mlsd.goals.metrics import (
    Metric,
    compute_metric,
    expected_calibration_error,
    get_metric,
    get_task_metric,
    list_metrics,
    mape_nonzero,
)

__all__ = [
    "CostMatrix",
    "Metric",
    "MetricEstimate",
    "ThresholdChoice",
    "bootstrap_ci",
    "compute_metric",
    "confusion_at",
    "expected_calibration_error",
    "expected_cost_per_1000",
    "get_metric",
    "get_task_metric",
    "list_metrics",
    "mape_nonzero",
    "optimal_threshold",
    "weighted_roc_auc",
]

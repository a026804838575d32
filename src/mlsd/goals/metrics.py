"""The metric registry: every ML metric a design can name, with what it needs from a model.

A :class:`Metric` says whether greater is better and what it consumes: ``"score"`` (the
positive-class probability for binary, the probability matrix for multiclass), ``"label"`` (a
hard label: a thresholded score for binary, the arg-max class for multiclass) or ``"value"``
(a regression prediction). :func:`compute_metric` turns a model's scores into what the metric
needs, so callers always pass the model's raw output.

>>> import numpy as np
>>> y = np.array([0, 0, 1, 1])
>>> p = np.array([0.1, 0.6, 0.4, 0.9])
>>> compute_metric(get_metric("roc_auc"), y, p)
0.75
>>> compute_metric(get_metric("accuracy"), y, p, threshold=0.5)
0.5
>>> get_metric("precision_at_0.3").name, get_metric("recall_at", threshold=0.8).threshold
('precision_at_0.3', 0.8)
>>> "rmse" in list_metrics("regression")
True
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlsd.errors import DataError, DesignError

__all__ = [
    "Metric",
    "compute_metric",
    "expected_calibration_error",
    "get_metric",
    "get_task_metric",
    "list_metrics",
    "mape_nonzero",
]

Needs = Literal["score", "label", "value"]
_CLASSIFICATION = ("binary", "multiclass")


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric: ``func(y_true, y_pred) -> float`` plus how to read and feed it.

    ``threshold`` is set only for label metrics on binary scores whose threshold was fixed
    when the metric was requested (``precision_at_0.3``); otherwise the caller's threshold
    applies.
    """

    name: str
    func: Callable[[np.ndarray, np.ndarray], float]
    greater_is_better: bool
    needs: Needs
    tasks: tuple[str, ...]
    description: str
    threshold: float | None = None


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins of the positive-class probability.

    The weighted mean over bins of ``|observed rate - mean predicted probability|``; bins are
    those of :func:`sklearn.calibration.calibration_curve` with ``strategy="uniform"``.

    >>> round(expected_calibration_error(np.array([0, 1, 1, 1]), np.array([0.05, 0.95, 0.95, 0.95])), 6)
    0.05
    """
    y_true = np.asarray(y_true, dtype=float)
    y_prob = np.asarray(y_prob, dtype=float)
    if y_true.size == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], y_prob)
    sum_true = np.bincount(bins, weights=y_true, minlength=n_bins)
    sum_prob = np.bincount(bins, weights=y_prob, minlength=n_bins)
    # |sum_true - sum_prob| / n == sum over bins of (n_b / n) * |rate_b - mean_prob_b|
    return float(np.abs(sum_true - sum_prob).sum() / y_true.size)


def mape_nonzero(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute percentage error (a fraction, 0.1 = 10 %), ignoring rows where ``y_true == 0``.

    Rows with a zero target have no defined percentage error, so they are dropped rather than
    divided by a tiny epsilon (which is what sklearn does and which makes the number explode).
    Returns NaN when every target is zero.

    >>> mape_nonzero(np.array([0.0, 100.0, 200.0]), np.array([5.0, 110.0, 180.0]))
    0.1
    """
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    keep = y_true != 0
    if not keep.any():
        return float("nan")
    return float(np.mean(np.abs((y_true[keep] - y_pred[keep]) / y_true[keep])))


def _log_loss(y_true: np.ndarray, y_score: np.ndarray) -> float:
    # Labels are fixed so a resample holding one class still has a defined loss.
    k = 2 if y_score.ndim == 1 else y_score.shape[1]
    return float(skm.log_loss(y_true, y_score, labels=np.arange(k)))


def _average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    # Undefined without positives (sklearn returns 0.0): NaN, like ROC AUC, so bootstrap resamples skip it.
    if not np.any(y_true == 1):
        return float("nan")
    return float(skm.average_precision_score(y_true, y_score))


def _zero_div(fn: Callable[..., float], **kw: Any) -> Callable[[np.ndarray, np.ndarray], float]:
    def metric(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(fn(y_true, y_pred, zero_division=0, **kw))

    return metric


def _as_float(fn: Callable[..., Any]) -> Callable[[np.ndarray, np.ndarray], float]:
    def metric(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(fn(y_true, y_pred))

    return metric


_REGISTRY: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric(
            "roc_auc", _as_float(skm.roc_auc_score), True, "score", ("binary",), "area under the ROC curve"
        ),
        Metric(
            "pr_auc",
            _average_precision,
            True,
            "score",
            ("binary",),
            "area under the precision-recall curve (average precision)",
        ),
        Metric("log_loss", _log_loss, False, "score", _CLASSIFICATION, "cross-entropy of the probabilities"),
        Metric(
            "brier",
            _as_float(skm.brier_score_loss),
            False,
            "score",
            ("binary",),
            "mean squared error of the positive-class probability",
        ),
        Metric(
            "ece",
            expected_calibration_error,
            False,
            "score",
            ("binary",),
            "expected calibration error, 10 equal-width bins",
        ),
        Metric("f1", _zero_div(skm.f1_score), True, "label", ("binary",), "F1 of the positive class"),
        Metric(
            "f1_macro",
            _zero_div(skm.f1_score, average="macro"),
            True,
            "label",
            _CLASSIFICATION,
            "unweighted mean of per-class F1",
        ),
        Metric("precision", _zero_div(skm.precision_score), True, "label", ("binary",), "precision (PPV)"),
        Metric("recall", _zero_div(skm.recall_score), True, "label", ("binary",), "recall (TPR)"),
        Metric(
            "accuracy",
            _as_float(skm.accuracy_score),
            True,
            "label",
            _CLASSIFICATION,
            "share of correct labels",
        ),
        Metric(
            "precision_at",
            _zero_div(skm.precision_score),
            True,
            "label",
            ("binary",),
            "precision at an explicit threshold (precision_at_<t>)",
        ),
        Metric(
            "recall_at",
            _zero_div(skm.recall_score),
            True,
            "label",
            ("binary",),
            "recall at an explicit threshold (recall_at_<t>)",
        ),
        Metric(
            "rmse",
            _as_float(skm.root_mean_squared_error),
            False,
            "value",
            ("regression",),
            "root mean squared error",
        ),
        Metric(
            "mae", _as_float(skm.mean_absolute_error), False, "value", ("regression",), "mean absolute error"
        ),
        Metric(
            "mape",
            mape_nonzero,
            False,
            "value",
            ("regression",),
            "mean absolute percentage error, rows with a zero target ignored",
        ),
        Metric("r2", _as_float(skm.r2_score), True, "value", ("regression",), "coefficient of determination"),
    ]
}
_NEEDS_THRESHOLD = {"precision_at", "recall_at"}
_AT = re.compile(r"^(precision_at|recall_at)_([0-9]*\.?[0-9]+)$")


def list_metrics(task: str | None = None) -> list[str]:
    """Names of the registered metrics usable for ``task`` (all of them when ``None``).

    >>> list_metrics("multiclass")
    ['log_loss', 'f1_macro', 'accuracy']
    """
    return [n for n, m in _REGISTRY.items() if task is None or task in m.tasks]


def _threshold(value: Any, field: str) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = float("nan")
    if not 0.0 <= t <= 1.0:
        raise DesignError(
            "a decision threshold must be a probability", field=field, received=value, expected="0 <= t <= 1"
        )
    return t


def get_metric(name: str, *, field: str = "metric", **params: Any) -> Metric:
    """Look a metric up by name; ``threshold=`` fixes the threshold of a label metric.

    ``precision_at_0.3`` is shorthand for ``get_metric("precision_at", threshold=0.3)``.
    ``field`` names the design path in errors.

    >>> get_metric("roc_acu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlsd.errors.DesignError: metric: unknown metric; did you mean roc_auc? \
(received 'roc_acu'; expected one of: ...
    """
    if not isinstance(name, str):
        raise DesignError("a metric name must be a string", field=field, received=name, expected="a name")
    m = _AT.match(name)
    if m:
        if "threshold" in params:
            raise DesignError(
                "the threshold is given twice",
                field=field,
                received=name,
                expected=f"{m.group(1)} + threshold",
            )
        name, params = m.group(1), {**params, "threshold": m.group(2)}
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        known = ", ".join([*_REGISTRY, "precision_at_<t>", "recall_at_<t>"])
        raise DesignError(f"unknown metric{hint}", field=field, received=name, expected=f"one of: {known}")
    metric = _REGISTRY[name]
    unknown = set(params) - {"threshold"}
    if unknown or ("threshold" in params and metric.needs != "label"):
        raise DesignError(
            f"metric {name} takes no such parameter",
            field=field,
            received=sorted(params),
            expected="threshold (label metrics only)" if metric.needs == "label" else "no parameters",
        )
    if name in _NEEDS_THRESHOLD and "threshold" not in params:
        raise DesignError(
            f"{name} needs an explicit threshold",
            field=field,
            received=name,
            expected=f"{name}_<t>, e.g. {name}_0.5",
        )
    if "threshold" in params:
        t = _threshold(params["threshold"], f"{field}.threshold")
        new_name = f"{name}_{t:g}" if name in _NEEDS_THRESHOLD else name
        metric = dataclasses.replace(metric, name=new_name, threshold=t)
    return metric


def _encode(y_true: np.ndarray, classes: Sequence[Any], field: str) -> np.ndarray:
    codes = pd.Index(classes).get_indexer(y_true)
    if (codes < 0).any():
        bad = sorted({str(v) for v in y_true[codes < 0].tolist()})[:5]
        raise DataError(
            "labels the model has never seen", field=field, received=bad, expected=f"one of {list(classes)}"
        )
    return codes


def get_task_metric(name: str, task: str, *, field: str = "metric") -> Metric:
    """:func:`get_metric`, and the metric must apply to ``task`` (what a design can optimise).

    >>> get_task_metric("rmse", "regression").greater_is_better
    False
    >>> get_task_metric("rmse", "binary", field="goals.metric")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlsd.errors.DesignError: goals.metric: metric rmse does not apply to a binary task \
(received 'rmse'; expected a binary metric, one of: roc_auc, ...
    """
    metric = get_metric(name, field=field)
    if task not in metric.tasks:
        known = [n if n not in _NEEDS_THRESHOLD else f"{n}_<t>" for n in list_metrics(task)]
        raise DesignError(
            f"metric {name} does not apply to a {task} task",
            field=field,
            received=name,
            expected=f"a {task} metric, one of: {', '.join(known)}",
        )
    return metric


def compute_metric(
    metric: Metric | str,
    y_true: Any,
    y_score: Any,
    threshold: float = 0.5,
    *,
    classes: Sequence[Any] | None = None,
) -> float:
    """Compute ``metric`` from a model's raw output.

    ``y_score`` is the positive-class probability (binary, ``y_true`` in {0, 1} or bool), the
    ``(n, k)`` probability matrix (multiclass, columns ordered as ``classes``, which default
    to the sorted labels of ``y_true`` when all ``k`` appear) or the predicted value
    (regression). Label metrics on binary scores predict positive when ``score >= threshold``.

    >>> compute_metric("log_loss", ["a", "b"], np.array([[0.9, 0.1], [0.2, 0.8]]), classes=["a", "b"])
    0.164252033486018
    """
    if isinstance(metric, str):
        metric = get_metric(metric)
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score)
    if y_true.shape[0] != y_score.shape[0]:
        raise DataError(
            "y_true and y_score have different lengths",
            field="y_score",
            received=y_score.shape[0],
            expected=f"{y_true.shape[0]} rows",
        )
    # A NaN score would silently count as a negative in label metrics (and as a bin in ECE).
    if y_score.dtype.kind in "biuf" and not np.isfinite(y_score).all():
        raise DataError(
            "scores must be finite",
            field="y_score",
            received=f"{int(np.sum(~np.isfinite(y_score)))} NaN or infinite values",
            expected="finite model outputs",
        )
    if y_score.ndim == 2:
        if classes is None:
            present = np.unique(y_true)
            if len(present) != y_score.shape[1]:
                raise DataError(
                    "cannot tell which column is which class; pass classes=",
                    field="classes",
                    received=present.tolist(),
                    expected=f"{y_score.shape[1]} class labels in column order",
                )
            classes = present.tolist()
        y_true = _encode(y_true, classes, "y_true")
        y_pred = np.argmax(y_score, axis=1) if metric.needs == "label" else y_score
        return float(metric.func(y_true, y_pred))
    if metric.needs == "value":
        return float(metric.func(y_true.astype(float), y_score.astype(float)))
    if y_true.dtype == bool:
        y_true = y_true.astype(np.int64)
    if metric.needs == "label":
        t = threshold if metric.threshold is None else metric.threshold
        return float(metric.func(y_true, (y_score >= t).astype(np.int64)))
    return float(metric.func(y_true, y_score.astype(float)))

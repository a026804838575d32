"""What the design document shows of the decided models, computed once on whole splits.

:func:`assess` takes the evaluations (whose scores are already computed) and returns an
:class:`Assessment`: ROC/PR curves of every model on the test split, the champion's
reliability (before and after calibration), its confusion matrix with each cell's cost at its
threshold, and the primary metric per slice value. Every number is the split's: curves are
thinned for drawing only, and a regression scatter says how many rows it samples.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import MlsdError
from mlsd.goals.costs import CostMatrix, confusion_at
from mlsd.goals.metrics import compute_metric, get_metric
from mlsd.modeling.curves import classification_curves, reliability_bins
from mlsd.modeling.evaluation import model_scores
from mlsd.modeling.slices import one_hot, per_row_errors, simpson_check, worst_slices

__all__ = ["Assessment", "assess", "confusion_with_costs", "find_slices", "slice_metrics"]

MIN_SLICE_ROWS = 50
MAX_SLICE_VALUES = 25
MAX_SCATTER_ROWS = 2_000  # a scatter of more points shows nothing more


@dataclasses.dataclass
class Assessment:
    curves: dict[str, dict[str, Any]]
    calibration: dict[str, Any] | None
    confusion: dict[str, Any] | None
    slices: list[dict[str, Any]]
    slice_finding: dict[str, Any] | None = None  # SliceLine's worst slices of the champion
    simpson: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # one per comparison


def confusion_with_costs(y_true: Any, score: Any, threshold: float, costs: CostMatrix) -> dict[str, Any]:
    """``[[TN, FP], [FN, TP]]`` at ``threshold`` over every row, each cell's cost and the cost per 1,000.

    >>> c = confusion_with_costs([0, 1, 1, 0], [0.9, 0.8, 0.1, 0.2], 0.5, CostMatrix(1, 4))
    >>> c["counts"], c["total_cost"], c["cost_per_1000"]
    ([[1, 1], [1, 1]], 5.0, 1250.0)
    """
    tn, fp, fn, tp = confusion_at(y_true, score, threshold)
    unit = np.array(
        [[costs.true_negative, costs.false_positive], [costs.false_negative, costs.true_positive]]
    )
    counts = np.array([[tn, fp], [fn, tp]])
    cell = counts * unit
    n = int(counts.sum())
    return {
        "threshold": float(threshold),
        "counts": counts.astype(int).tolist(),
        "cell_costs": cell.astype(float).tolist(),
        "total_cost": float(cell.sum()),
        "cost_per_1000": float(cell.sum() * 1000.0 / n) if n else float("nan"),
        "n_rows": n,
    }


def slice_metrics(
    frame: pd.DataFrame,
    columns: list[str],
    y: np.ndarray,
    score: np.ndarray,
    *,
    task: str,
    metric: str,
    threshold: float = 0.5,
    classes: Any = None,
) -> list[dict[str, Any]]:
    """``metric`` per value of each slice column (values with enough rows, largest first).

    ``score`` is what the evaluation measured with (a probability matrix for multiclass, whose
    columns are ``classes``); label metrics use the model's ``threshold``.
    """
    m = get_metric(metric)
    out = []
    for column in columns:
        values = frame[column].astype(str).to_numpy()
        counts = pd.Series(values).value_counts()
        for value, n in counts[counts >= MIN_SLICE_ROWS].head(MAX_SLICE_VALUES).items():
            mask = values == value
            try:
                mv: float | None = float(compute_metric(m, y[mask], score[mask], threshold, classes=classes))
            except (ValueError, ZeroDivisionError, MlsdError):
                mv = None  # e.g. AUC of a slice with one class only
            out.append(
                {
                    "column": column,
                    "value": value,
                    "n": int(n),
                    "label_rate": float(y[mask].mean()) if task == "binary" else None,
                    "metric": metric,
                    "metric_value": mv if mv is not None and np.isfinite(mv) else None,
                }
            )
    return out


def assess(
    modeling: Any,
    winner: str,
    test: pd.DataFrame,
    y_test: np.ndarray,
    *,
    task: str,
    metric: str,
    slices: list[str],
    calibration_method: str = "none",
    seed: int = 0,
    slice_finding: Any = None,
    slice_columns: list[str] | None = None,
) -> Assessment:
    """Curves of every model, and the champion's calibration, confusion and slices, on the test split."""
    evaluations = {e.name: e for e in modeling.table}
    curves: dict[str, dict[str, Any]] = {}
    for name, e in evaluations.items():
        s = e.scores["test"]
        if task == "binary":
            curves[name] = {"split": "test", **classification_curves(y_test, s)}
        elif task == "regression":
            rows = _sample(len(s), MAX_SCATTER_ROWS, seed)
            curves[name] = {
                "split": "test",
                "n_rows": len(s),
                "y_true": y_test[rows],
                "value": s[rows],
                "n_sampled": len(rows),
            }
    champion = evaluations[winner]
    score = champion.scores["test"]
    calibration = confusion = None
    if task == "binary":
        calibration = {
            "split": "test",
            "n_rows": len(score),
            "n_bins": 10,
            "method": None,
            "calibrated": reliability_bins(y_test, score),
        }
        inner = _uncalibrated(modeling.fitted[winner])
        if inner is not None:  # the model before calibration: scored here, it is a different model
            raw, _ = model_scores(inner, test, task)
            calibration |= {"method": calibration_method, "uncalibrated": reliability_bins(y_test, raw)}
        if modeling.costs is not None:
            confusion = {
                "split": "test",
                **confusion_with_costs(y_test, score, modeling.thresholds[winner], modeling.costs),
            }
    classes = getattr(modeling.fitted[winner], "classes_", None) if task == "multiclass" else None
    found: dict[str, Any] | None = None
    simpson: list[dict[str, Any]] = []
    if slice_finding is not None and slice_finding.enabled and slice_columns:
        found, simpson = find_slices(
            modeling,
            winner,
            test,
            y_test,
            task=task,
            metric=metric,
            spec=slice_finding,
            columns=slice_columns,
            classes=classes,
        )
    return Assessment(
        slice_finding=found,
        simpson=simpson,
        curves=curves,
        calibration=calibration,
        confusion=confusion,
        slices=slice_metrics(
            test,
            slices,
            y_test,
            score,
            task=task,
            metric=metric,
            threshold=modeling.thresholds[winner],
            classes=classes,
        ),
    )


def find_slices(
    modeling: Any,
    winner: str,
    test: pd.DataFrame,
    y_test: np.ndarray,
    *,
    task: str,
    metric: str,
    spec: Any,
    columns: list[str],
    classes: Any = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """SliceLine's worst slices of the champion's test errors, and the Simpson check of the
    champion against the best baseline and the runner-up candidate (best on valid by ``metric``).

    ``spec`` is :class:`mlsd.design.SliceFindingSpec`; the Simpson check slices by the same
    one-hot values (numeric columns in their quantile bins).
    """
    evaluations = {e.name: e for e in modeling.table}
    champion = evaluations[winner]
    errors = per_row_errors(
        y_test, champion.scores["test"], task=task, threshold=modeling.thresholds[winner], classes=classes
    )
    found = worst_slices(
        test,
        columns,
        errors,
        k=spec.top_k,
        max_level=spec.max_level,
        min_support=spec.min_support,
        alpha=spec.alpha,
        bins=spec.bins,
        binary_errors=task != "regression",
    )
    oh = one_hot(test, columns, bins=spec.bins)
    groups = {c: oh.codes[:, f] for f, c in enumerate(oh.features)}
    names = dict.fromkeys(oh.features, oh.labels)
    m = get_metric(metric)
    simpson = []
    sign = 1.0 if m.greater_is_better else -1.0
    for role, other in _rivals(modeling.table, winner, metric, m.greater_is_better):
        a, b = champion.scores["test"], evaluations[other].scores["test"]
        ta, tb = modeling.thresholds[winner], modeling.thresholds[other]

        def diff(rows: np.ndarray, a: Any = a, b: Any = b, ta: float = ta, tb: float = tb) -> float:
            try:  # positive: the champion is better on these rows
                ma = compute_metric(m, y_test[rows], a[rows], ta, classes=classes)
                mb = compute_metric(m, y_test[rows], b[rows], tb, classes=classes)
            except MlsdError:
                return float("nan")
            return sign * float(ma - mb)

        checks = simpson_check(groups, diff, n_rows=len(y_test), min_rows=spec.simpson_min_rows, labels=names)
        simpson.append(
            {
                "champion": winner,
                "other": other,
                "role": role,
                "metric": metric,
                "columns": checks,
                "reversed": [c["column"] for c in checks if c["reversed"]],
            }
        )
    return found, simpson


def _rivals(table: Any, winner: str, metric: str, greater: bool) -> list[tuple[str, str]]:
    """(role, name) of the best baseline and the best other candidate on valid by ``metric``."""

    def value(e: Any) -> float:
        est = e.metrics.get("valid", {}).get(metric)
        v = float("nan") if est is None else float(est.value)
        return -np.inf if not np.isfinite(v) else (v if greater else -v)

    out = []
    for role, pool in (("best baseline", table.baselines), ("runner-up", table.candidates)):
        rivals = [e for e in pool if e.name != winner]
        if rivals:
            out.append((role, max(rivals, key=value).name))
    return out


def _sample(n: int, k: int, seed: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


def _uncalibrated(model: Any) -> Any:
    cals = getattr(model, "calibrated_classifiers_", None)
    if not cals:
        return None
    inner = cals[0].estimator
    return getattr(inner, "estimator", inner)  # FrozenEstimator wraps the fitted pipeline

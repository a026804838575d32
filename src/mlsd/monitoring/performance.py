"""Model performance on the logged predictions that received feedback (``outcome`` not null).

:func:`performance` measures, on the labelled rows of a window:

- **label drift** (binary): the positive rate against the reference label rate, with an exact
  binomial test (the reference rate is treated as known: it comes from far more rows than a
  window) and Cohen's h, ``2 asin(sqrt(p)) - 2 asin(sqrt(p_ref))``, as effect size (0.2 small,
  0.5 medium);
- **discrimination**: ROC AUC with DeLong's 95 % interval (:func:`mlsd.goals.bootstrap.delong_roc_auc`:
  the AUC's variance from its structural components, O(n log n), no resampling; it agrees with
  a large bootstrap, see tests/goals/test_delong.py);
- **calibration**: expected calibration error (10 equal-width bins), mean score vs observed rate;
- **decisions**: accuracy of the logged decision and, with a cost matrix, the cost per 1000;
- **regression**: MAE and RMSE of the logged prediction (``score``), and the mean prediction
  (``mean_score_labelled``) against the mean outcome (``outcome_mean``) of the labelled rows.

``n_labelled`` and ``label_coverage`` (labelled / predictions) say how much of it to trust.
Without any labelled row every label-based field is ``None``.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> y = rng.random(2_000) < 0.3
>>> score = np.clip(0.3 + 0.3 * (y - 0.3) + rng.normal(0, 0.1, 2_000), 0, 1)
>>> frame = pd.DataFrame({"score": score, "decision": score >= 0.5, "outcome": np.where(y, 1.0, 0.0)})
>>> frame.loc[:999, "outcome"] = np.nan
>>> p = labelled_performance(frame, task="binary", reference_label_rate=0.3)
>>> p.n_labelled, p.label_coverage, p.roc_auc > 0.9, p.label_drift_p_value > 0.01
(1000, 0.5, True, True)
>>> labelled_performance(frame.assign(outcome=np.nan), task="binary").roc_auc is None
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlsd.errors import DataError, DesignError
from mlsd.goals import CostMatrix, compute_metric, expected_calibration_error
from mlsd.goals import expected_cost_per_1000 as _cost_per_1000
from mlsd.goals.bootstrap import delong_roc_auc
from mlsd.monitoring._json import finite_or_none

__all__ = ["PerformanceResult", "cohens_h", "label_drift_test", "labelled_performance"]

_USED = ("score", "decision", "outcome")
_TRUE = {"true", "1", "yes", "t", "y", "1.0"}
_FALSE = {"false", "0", "no", "f", "n", "0.0"}


@dataclasses.dataclass
class PerformanceResult:
    """Label-based measurements of one window; label fields are ``None`` without labelled rows."""

    task: str
    n_predictions: int
    n_labelled: int
    label_coverage: float | None
    score_mean: float | None = None
    label_rate: float | None = None
    reference_label_rate: float | None = None
    label_drift_p_value: float | None = None
    label_drift_effect: float | None = None
    roc_auc: float | None = None
    roc_auc_low: float | None = None
    roc_auc_high: float | None = None
    ece: float | None = None
    mean_score_labelled: float | None = None
    accuracy: float | None = None
    cost_per_1000: float | None = None
    mae: float | None = None
    rmse: float | None = None
    outcome_mean: float | None = None  # regression: the mean outcome of the labelled rows

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (v if isinstance(v, str | int) else finite_or_none(v))
            for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PerformanceResult:
        return cls(**dict(data))


def cohens_h(p: float, p_ref: float) -> float:
    """Cohen's h between two proportions (signed: positive when ``p > p_ref``).

    >>> round(cohens_h(0.5, 0.2), 3)
    0.644
    """
    return float(2 * math.asin(math.sqrt(p)) - 2 * math.asin(math.sqrt(p_ref)))


def label_drift_test(n_positive: int, n: int, reference_rate: float) -> tuple[float, float]:
    """Exact two-sided binomial test p-value of ``n_positive / n`` against ``reference_rate``, and h.

    >>> p, h = label_drift_test(300, 1000, 0.2)
    >>> p < 1e-10, round(h, 3)
    (True, 0.232)
    """
    if n == 0:
        return float("nan"), float("nan")
    p_value = float(stats.binomtest(int(n_positive), int(n), float(reference_rate)).pvalue)
    return p_value, cohens_h(n_positive / n, reference_rate)


def _as_binary(
    values: pd.Series, positive_class: Any, field: str, *, prefer_bool: bool = False
) -> np.ndarray:
    """Outcomes/decisions as 0/1: equal to ``positive_class`` when given, else read as booleans.

    ``prefer_bool`` (decisions, logged as booleans for a binary task) reads booleans first and
    compares with ``positive_class`` only when the values are not booleans.
    """
    # booleans, also in an object column (outcomes decoded from JSON): no text round trip, which
    # on a million outcomes was most of this function; each of True / False is compared once
    booleans = pd.api.types.is_bool_dtype(values.dtype) or (
        values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "boolean"
    )
    if (
        prefer_bool
        and positive_class is not None
        and (booleans or values.astype("str").str.strip().str.lower().isin(_TRUE | _FALSE).all())
    ):
        positive_class = None
    if positive_class is not None:
        if booleans:
            # what the elementwise test below gives a True and a False
            hit_true, hit_false = (
                v == positive_class or str(v) == str(positive_class) for v in (True, False)
            )
            flags = values.to_numpy(dtype=bool)
            return np.where(flags, int(hit_true), int(hit_false)).astype(np.int64)
        hit = values == positive_class
        # JSON may hand back "1" for 1 or "True" for True: compare the text forms as well
        return (hit | (values.astype("str") == str(positive_class))).to_numpy(dtype=np.int64)
    if booleans:
        return values.to_numpy(dtype=np.int64)
    text = values.astype("str").str.strip().str.lower()
    is_true, is_false = text.isin(_TRUE), text.isin(_FALSE)
    bad = ~(is_true | is_false)
    if bad.any():
        raise DataError(
            "binary outcomes must read as true/false or 0/1 (or pass positive_class=)",
            field=field,
            received=values[bad].drop_duplicates().head(5).tolist(),
            expected="true, false, 1, 0 or the positive class label",
        )
    return is_true.to_numpy(dtype=np.int64)


def labelled_performance(
    window: pd.DataFrame,
    *,
    task: str,
    reference_label_rate: float | None = None,
    positive_class: Any = None,
    costs: CostMatrix | None = None,
    n_resamples: int = 200,
    seed: int = 0,
) -> PerformanceResult:
    """Performance of one window of logged predictions (columns ``score``, ``decision``, ``outcome``).

    ``task`` is ``binary``, ``multiclass`` or ``regression``; ``positive_class`` names the positive
    outcome of a binary task when outcomes are labels rather than booleans / 0-1. The ROC AUC
    interval is DeLong's (``n_resamples=0``: the point value only; any other value asks for the
    interval, kept for callers written when it was a bootstrap; ``seed`` is unused since).
    """
    if task not in ("binary", "multiclass", "regression"):
        raise DesignError(
            "unknown task", field="goals.task", received=task, expected="binary, multiclass or regression"
        )
    for col in ("score", "outcome"):
        if col not in window.columns:
            raise DataError(
                "the prediction frame lacks a column",
                field=col,
                received=list(window.columns)[:12],
                expected="the columns of PredictionLog.read_predictions",
            )
    n = len(window)
    score_all = pd.to_numeric(window["score"], errors="coerce")
    # only the columns read here: the window may carry every logged input
    labelled = window.loc[window["outcome"].notna().to_numpy(), [c for c in _USED if c in window.columns]]
    k = len(labelled)
    out = PerformanceResult(
        task=task,
        n_predictions=n,
        n_labelled=k,
        label_coverage=k / n if n else None,
        score_mean=finite_or_none(score_all.mean()) if n else None,
        reference_label_rate=finite_or_none(reference_label_rate),
    )
    if k == 0:
        return out
    score = pd.to_numeric(labelled["score"], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(score)
    if task == "regression":
        y = pd.to_numeric(labelled["outcome"], errors="coerce").to_numpy(dtype=float)
        ok = finite & np.isfinite(y)
        if ok.any():
            # a regression has no label rate: the mean prediction against the mean outcome says
            # whether the model runs high or low, MAE and RMSE how far off it is
            out.outcome_mean = finite_or_none(y[ok].mean())
            out.mean_score_labelled = finite_or_none(score[ok].mean())
            out.mae = finite_or_none(compute_metric("mae", y[ok], score[ok]))
            out.rmse = finite_or_none(compute_metric("rmse", y[ok], score[ok]))
        return out
    if task == "multiclass":
        if "decision" in labelled.columns:
            same = labelled["decision"].astype("str") == labelled["outcome"].astype("str")
            out.accuracy = finite_or_none(same.mean())
        return out
    y = _as_binary(labelled["outcome"], positive_class, "outcome")
    out.label_rate = float(y.mean())
    if reference_label_rate is not None and 0.0 < reference_label_rate < 1.0:
        p_value, h = label_drift_test(int(y.sum()), k, reference_label_rate)
        out.label_drift_p_value, out.label_drift_effect = finite_or_none(p_value), finite_or_none(h)
    if finite.any():
        ys, ss = y[finite], score[finite]
        out.mean_score_labelled = float(ss.mean())
        out.ece = finite_or_none(expected_calibration_error(ys, np.clip(ss, 0.0, 1.0)))
        if 0 < ys.sum() < ys.size:
            est = delong_roc_auc(ys, ss)
            out.roc_auc = finite_or_none(est.value)
            if n_resamples:
                out.roc_auc_low, out.roc_auc_high = finite_or_none(est.low), finite_or_none(est.high)
    if "decision" in labelled.columns and labelled["decision"].notna().all():
        decision = _as_binary(labelled["decision"], positive_class, "decision", prefer_bool=True)
        out.accuracy = float((decision == y).mean())
        if costs is not None:
            out.cost_per_1000 = finite_or_none(_cost_per_1000(y, decision, costs))
    return out

"""Confidence, the coverage–risk curve and the abstention policy that travels with a model.

A classifier answers every row; ``models.abstain`` lets it decline the rows it is least sure of,
which then go to a person (docs/abstention.md). What "sure" means:

* **multiclass** — the top-class probability (the score the server returns);
* **binary** — the distance of the positive-class score ``p`` from the decision threshold ``t``
  (the cost-optimal one), as a share of the way to certainty on that side:
  ``(p - t) / (1 - t)`` above it, ``(t - p) / t`` below it. 0 at the threshold, 1 at a score of
  0 or 1. A cost-derived threshold is rarely 0.5, and the max class probability would then call
  a score sitting right on the threshold (where one point flips the decision) "confident";
  scaling by the room on each side keeps a confidence bound meaningful on both sides.

A row is abstained on when its confidence is below ``min_confidence``; for a binary model that
is the band ``(t - min_confidence * t, t + min_confidence * (1 - t))`` of scores.

:func:`coverage_risk_curve` gives, for every confidence bound a split allows, the share of rows
answered (coverage) and the risk among them (error rate, and cost per 1,000 with costs), from one
sort and cumulative sums. :func:`threshold_for_coverage` is the bound that answers a target share.

>>> import numpy as np
>>> conf = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
>>> wrong = np.array([0, 0, 1, 1, 1])
>>> curve = coverage_risk_curve(conf, wrong)
>>> curve.thresholds.tolist(), curve.coverage.tolist(), curve.risk.round(3).tolist()
([0.9, 0.8, 0.3, 0.1], [0.2, 0.6, 0.8, 1.0], [0.0, 0.333, 0.5, 0.6])
>>> threshold_for_coverage(conf, 0.5)  # 0.8 answers 3 of 5 rows: ties are never split
0.8
>>> policy = AbstentionPolicy(task="binary", min_confidence=0.5, threshold=0.2)
>>> policy.band()
(0.1, 0.6)
>>> policy.abstains(np.array([0.05, 0.15, 0.3, 0.7])).tolist()
[False, True, True, False]
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from mlsd.errors import DesignError, ModelError

__all__ = [
    "AbstentionPolicy",
    "CoverageRisk",
    "abstention_report",
    "abstention_summary",
    "binary_confidence",
    "binary_row_costs",
    "confidence",
    "coverage_risk_curve",
    "row_errors",
    "threshold_for_coverage",
]

ABSTAIN_TASKS = ("binary", "multiclass")


def binary_confidence(score: Any, threshold: float) -> np.ndarray:
    """Distance of each positive-class score from ``threshold``, as a share of the room on its side.

    >>> binary_confidence([0.0, 0.1, 0.2, 0.6, 1.0], 0.2).round(3).tolist()
    [1.0, 0.5, 0.0, 0.5, 1.0]
    """
    p = np.asarray(score, dtype=float)
    t = float(threshold)
    above = p >= t
    room = np.where(above, 1.0 - t, t)
    # a threshold of 0 or 1 leaves no room on one side: every score there is as far as it can be
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(room > 0, np.abs(p - t) / np.where(room > 0, room, 1.0), 1.0)
    return np.clip(share, 0.0, 1.0)


def confidence(scores: Any, task: str, threshold: float | None = None) -> np.ndarray:
    """Each row's confidence: binary from the positive-class score and the threshold, multiclass
    the top-class probability (of a probability matrix, or the served top-class score)."""
    if task == "binary":
        return binary_confidence(scores, 0.5 if threshold is None else threshold)
    if task == "multiclass":
        s = np.asarray(scores, dtype=float)
        return s.max(axis=1) if s.ndim == 2 else s
    raise ModelError(
        "confidence is defined for classifiers only",
        field="task",
        received=task,
        expected="binary or multiclass",
    )


def row_errors(
    y: Any, scores: Any, task: str, *, threshold: float | None = None, classes: Any = None
) -> np.ndarray:
    """1 where the model's decision is wrong. Binary: ``y`` is 0/1 (1 the positive class) and the
    decision ``score >= threshold``; multiclass: the arg-max of the probability matrix among
    ``classes`` against the label."""
    if task == "binary":
        decided = np.asarray(scores, dtype=float) >= (0.5 if threshold is None else threshold)
        return (decided != (np.asarray(y).astype(int) == 1)).astype(float)
    proba = np.asarray(scores, dtype=float)
    labels = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    return (labels != np.asarray(y, dtype=object)).astype(float)


def binary_row_costs(y: Any, scores: Any, threshold: float, costs: Any) -> np.ndarray:
    """Each row's cost as decided at ``threshold`` (``costs`` a :class:`~mlsd.goals.costs.CostMatrix`).

    >>> from mlsd.goals.costs import CostMatrix
    >>> binary_row_costs([0, 1, 1, 0], [0.9, 0.8, 0.1, 0.2], 0.5, CostMatrix(1, 4)).tolist()
    [1.0, 0.0, 4.0, 0.0]
    """
    positive = np.asarray(scores, dtype=float) >= threshold
    actual = np.asarray(y).astype(int) == 1
    return np.where(
        positive,
        np.where(actual, costs.true_positive, costs.false_positive),
        np.where(actual, costs.false_negative, costs.true_negative),
    ).astype(float)


@dataclasses.dataclass(frozen=True)
class CoverageRisk:
    """The coverage–risk curve of one split, one point per distinct confidence (highest first).

    Answering the rows with confidence ``>= thresholds[i]`` covers ``coverage[i]`` of them with
    error rate ``risk[i]`` among those answered; with costs, ``cost_per_1000[i]`` is their cost per
    1,000 answered rows and ``cost_with_review_per_1000[i]`` that of all rows, the declined ones
    costed at ``review_cost``.
    """

    thresholds: np.ndarray
    coverage: np.ndarray
    risk: np.ndarray
    n_rows: int
    cost_per_1000: np.ndarray | None = None
    cost_with_review_per_1000: np.ndarray | None = None
    review_cost: float | None = None

    def thinned(self, max_points: int = 400) -> dict[str, Any]:
        """JSON-ready, at most ``max_points`` points (the first and last kept), for drawing."""
        n = len(self.coverage)
        keep = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int)) if n else np.arange(0)
        out: dict[str, Any] = {
            "n_rows": self.n_rows,
            "thresholds": self.thresholds[keep].tolist(),
            "coverage": self.coverage[keep].tolist(),
            "risk": self.risk[keep].tolist(),
        }
        if self.cost_per_1000 is not None:
            out["cost_per_1000"] = self.cost_per_1000[keep].tolist()
        if self.cost_with_review_per_1000 is not None:
            out["cost_with_review_per_1000"] = self.cost_with_review_per_1000[keep].tolist()
            out["review_cost"] = self.review_cost
        return out


def coverage_risk_curve(
    conf: Any, errors: Any, row_costs: Any = None, review_cost: float | None = None
) -> CoverageRisk:
    """Coverage and risk at every confidence bound (rows answered when confidence >= the bound).

    One stable sort by confidence, highest first, and cumulative sums; a bound never splits rows
    of equal confidence (a served threshold cannot), so each point ends a group of ties.
    ``row_costs`` (each row's cost as decided) adds the cost curves; ``review_cost`` the cost of
    all rows with the declined ones reviewed.
    """
    c = np.asarray(conf, dtype=float)
    e = np.asarray(errors, dtype=float)
    if c.shape != e.shape or c.ndim != 1:
        raise ModelError(
            "confidences and errors must be two vectors of one length",
            field="errors",
            received=list(e.shape),
            expected=f"shape {list(c.shape)}",
        )
    n = c.size
    order = np.argsort(-c, kind="stable")
    ranked = c[order]
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True]) if n else np.arange(0)
    answered = ends + 1
    cost = cost_review = None
    if row_costs is not None:
        cum_cost = np.cumsum(np.asarray(row_costs, dtype=float)[order])[ends]
        cost = cum_cost / answered * 1000.0
        if review_cost is not None:
            cost_review = (cum_cost + float(review_cost) * (n - answered)) / max(n, 1) * 1000.0
    return CoverageRisk(
        thresholds=ranked[ends],
        coverage=answered / max(n, 1),
        risk=np.cumsum(e[order])[ends] / answered,
        n_rows=int(n),
        cost_per_1000=cost,
        cost_with_review_per_1000=cost_review,
        review_cost=None if review_cost is None else float(review_cost),
    )


def threshold_for_coverage(conf: Any, coverage: float) -> float:
    """The highest confidence bound that answers at least ``coverage`` of the rows.

    Rows of equal confidence are answered together, so with ties the coverage reached can be
    a little above the target (never below). ``coverage`` 1 answers every row (bound 0).
    """
    if not (isinstance(coverage, int | float) and 0 < coverage <= 1):
        raise DesignError(
            "a target coverage is a share of the rows answered",
            field="models.abstain.coverage",
            received=coverage,
            expected="a number in (0, 1]",
        )
    c = np.sort(np.asarray(conf, dtype=float))[::-1]
    if c.size == 0:
        raise ModelError("no rows to choose a confidence bound on", field="valid", received=0)
    if coverage >= 1:
        return 0.0
    k = max(1, math.ceil(coverage * c.size - 1e-9))
    return float(c[k - 1])


@dataclasses.dataclass(frozen=True)
class AbstentionPolicy:
    """When a served model declines to answer: confidence below ``min_confidence``.

    ``threshold`` is the binary decision threshold the confidence is measured from (None for
    multiclass); ``target_coverage`` the validation coverage ``min_confidence`` was chosen for, if
    it was. Saved in the packaged model's metadata (:meth:`to_dict`), so the bound travels with
    the model and every server process of a version declines the same rows.
    """

    task: str
    min_confidence: float
    threshold: float | None = None
    target_coverage: float | None = None
    review_cost: float | None = None

    def __post_init__(self) -> None:
        if self.task not in ABSTAIN_TASKS:
            raise ModelError(
                "abstention needs a confidence, which only classifiers have",
                field="models.abstain",
                received=self.task,
                expected="a binary or multiclass task",
            )
        if not 0 <= self.min_confidence <= 1:
            raise ModelError(
                "a confidence bound is a share",
                field="models.abstain.below_confidence",
                received=self.min_confidence,
                expected="a number in [0, 1]",
            )

    def confidence(self, score: Any) -> np.ndarray:
        """The confidence of served scores (positive-class or top-class probability)."""
        return confidence(score, self.task, self.threshold)

    def abstains(self, score: Any) -> np.ndarray:
        """True where the model declines: confidence below the bound (a NaN score is not scored
        here: the server already refused it)."""
        conf = self.confidence(score)
        return np.asarray(conf < self.min_confidence) & np.isfinite(conf)

    def band(self) -> tuple[float, float] | None:
        """Binary: the scores declined, ``(low, high)`` (open interval); None for multiclass."""
        if self.task != "binary" or self.threshold is None:
            return None
        t, m = self.threshold, self.min_confidence
        return (round(t - m * t, 12), round(t + m * (1 - t), 12))

    def reason(self, score: float) -> str:
        """Why a row was declined, in one sentence for the caller and the review queue."""
        conf = float(self.confidence(np.array([score]))[0])
        if self.task == "binary":
            low, high = self.band() or (0.0, 1.0)
            return (
                f"confidence {conf:.3f} below {self.min_confidence:.3f}: score {score:.4f} is in the "
                f"uncertain band ({low:.4f}, {high:.4f}) around the decision threshold {self.threshold:.4f}"
            )
        bound = self.min_confidence
        return f"confidence {conf:.3f} below {bound:.3f}: no class is that likely (top-class probability)"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        band = self.band()
        out["band"] = list(band) if band is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AbstentionPolicy | None:
        """The policy saved by :meth:`to_dict` (None: the model answers every row)."""
        if not data:
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def abstention_summary(
    policy: AbstentionPolicy,
    conf: Any,
    errors: Any,
    row_costs: Any = None,
) -> dict[str, Any]:
    """What ``policy`` does on one split: coverage, error among answered rows and overall, and
    with costs the cost per 1,000 of all rows without and with abstention (declined rows at
    ``policy.review_cost``)."""
    c, e = np.asarray(conf, dtype=float), np.asarray(errors, dtype=float)
    answered = c >= policy.min_confidence
    n, k = c.size, int(answered.sum())
    out: dict[str, Any] = {
        "n_rows": int(n),
        "answered": k,
        "abstained": int(n - k),
        "coverage": k / n if n else None,
        "risk": float(e[answered].mean()) if k else None,
        "risk_without_abstention": float(e.mean()) if n else None,
    }
    if row_costs is not None and n:
        rc = np.asarray(row_costs, dtype=float)
        out["cost_per_1000_without_abstention"] = float(rc.sum() / n * 1000.0)
        out["cost_per_1000_answered"] = float(rc[answered].sum() / k * 1000.0) if k else None
        if policy.review_cost is not None:
            total = rc[answered].sum() + policy.review_cost * (n - k)
            out["cost_per_1000_with_review"] = float(total / n * 1000.0)
    return out


def abstention_report(
    spec: Any,
    task: str,
    *,
    valid: tuple[Any, Any],
    test: tuple[Any, Any],
    threshold: float | None = None,
    classes: Any = None,
    costs: Any = None,
) -> tuple[AbstentionPolicy, dict[str, Any]]:
    """The champion's policy for ``models.abstain`` (``spec``) and what the document shows of it.

    ``valid`` and ``test`` are ``(labels, scores)`` as the evaluation scored them (binary: the
    positive-class probability; multiclass: the probability matrix). A target coverage chooses
    the confidence bound on the validation rows; the curve and the summary are on test, where
    nothing was chosen. ``costs`` (a CostMatrix, binary) adds the cost curves.
    """

    def prepared(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        y = np.asarray(labels)
        if task == "binary":
            y = (y == np.asarray(classes, dtype=object)[1]).astype(int) if classes is not None else y
        conf = confidence(scores, task, threshold)
        errors = row_errors(y, scores, task, threshold=threshold, classes=classes)
        cut = 0.5 if threshold is None else float(threshold)
        row_costs = binary_row_costs(y, scores, cut, costs) if costs is not None else None
        return conf, errors, row_costs

    valid_conf, valid_errors, _ = prepared(*valid)
    bound = (
        threshold_for_coverage(valid_conf, spec.coverage)
        if spec.coverage is not None
        else float(spec.below_confidence)
    )
    policy = AbstentionPolicy(
        task=task,
        min_confidence=bound,
        threshold=float(threshold) if task == "binary" and threshold is not None else None,
        target_coverage=spec.coverage,
        review_cost=spec.review_cost,
    )
    conf, errors, row_costs = prepared(*test)
    curve = coverage_risk_curve(conf, errors, row_costs, policy.review_cost)
    report = {
        "policy": policy.to_dict(),
        "valid": abstention_summary(policy, valid_conf, valid_errors),
        "test": abstention_summary(policy, conf, errors, row_costs),
        "curve": curve.thinned(),
        "confidence": "binary: distance of the score from the decision threshold, as a share of the "
        "room on its side"
        if task == "binary"
        else "top-class probability",
    }
    return policy, report

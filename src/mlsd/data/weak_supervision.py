"""Weak supervision: labelling functions vote, their votes are analysed and combined into labels.

A labelling function is an expression over columns (:mod:`mlsd.data.expressions`) that votes a
class where it holds and abstains elsewhere. :func:`vote_matrix` applies them all to a frame and
returns the ``n x m`` vote matrix (``-1`` = abstain, else the class index). From it:

- :func:`analyse_votes` computes what Snorkel 0.10's ``LFAnalysis.lf_summary`` does, with the
  same definitions: per function its polarity (the classes it ever votes), coverage (share of rows
  it votes on), overlaps (share of rows it votes on that another function votes on too),
  conflicts (share of rows it votes on where some function votes another class) and, against
  gold labels, correct / incorrect counts and the empirical accuracy among its votes;
- :func:`majority_vote` is Snorkel's ``MajorityLabelVoter``: each row's share of votes per
  class, the tied classes sharing equally; the hard label is ``-1`` where classes tie (Snorkel's
  default ``tie_break_policy="abstain"``) or no function voted;
- :func:`fit_label_model` fits a Dawid–Skene model over the functions by EM: a class prior and,
  per function, a confusion matrix ``P(vote | true class)`` whose outcomes include abstaining
  (as Snorkel's label model does: a function that only fires on one class says something by
  staying silent). It starts from the majority vote, so class indices keep their meaning, and
  returns a :class:`LabelModel` whose :meth:`~LabelModel.predict_proba` gives the probabilistic
  labels. Every step is a numpy array operation over all rows at once.

>>> import numpy as np
>>> L = np.array([[0, 0, -1], [-1, 0, 1], [1, -1, 0], [-1, -1, -1], [1, 1, 1]])
>>> a = analyse_votes(L, y=np.array([0, 0, 1, 1, 1]))
>>> a.coverage.tolist(), a.overlaps.tolist(), a.conflicts.tolist()
([0.6, 0.6, 0.6], [0.6, 0.6, 0.6], [0.2, 0.2, 0.4])
>>> a.polarity, a.accuracy.round(3).tolist()
([[0, 1], [0, 1], [0, 1]], [1.0, 1.0, 0.333])
>>> majority_vote(L, 2).tolist()
[0, -1, -1, -1, 1]
>>> model = fit_label_model(L, 2, seed=0)
>>> model.predict(L).tolist()
[0, 0, 1, -1, 1]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlsd.data.expressions import parse_expression
from mlsd.errors import DesignError

__all__ = [
    "ABSTAIN",
    "LabelModel",
    "VoteAnalysis",
    "WeakLabels",
    "analyse_votes",
    "fit_label_model",
    "majority_vote",
    "majority_vote_proba",
    "vote_matrix",
    "weak_labels",
    "wilson_interval",
]

#: the vote of a function that does not apply to a row
ABSTAIN = -1
# two class probabilities closer than this are a tie (Snorkel's probs_to_preds uses the same tol)
_TIE_TOL = 1e-5


def vote_matrix(
    frame: pd.DataFrame,
    functions: Mapping[str, tuple[str, int]],
    *,
    field_prefix: str = "data.labels.functions",
) -> np.ndarray:
    """The ``n x m`` votes of ``functions`` ({name: (expression, class index)}) on ``frame``.

    A function votes its class where its expression is true, and abstains (``-1``) where it is
    false or missing. An expression that cannot run raises :class:`~mlsd.errors.DesignError`
    naming ``<field_prefix>.<name>.when``.

    >>> frame = pd.DataFrame({"text": ["Sad!", "see https://t.co/x", None]})
    >>> vote_matrix(frame, {"sad": ("text.str.contains('Sad')", 1), "link": ("text.str.contains('t.co')", 0)})
    array([[ 1, -1],
           [-1,  0],
           [-1, -1]])
    """
    votes = np.full((len(frame), len(functions)), ABSTAIN, dtype=np.int64)
    for j, (name, (expr, vote)) in enumerate(functions.items()):
        field = f"{field_prefix}.{name}.when"
        fires = parse_expression(expr, field=field).evaluate(frame)
        # a missing text (NaN) gives a missing match: the function does not apply there
        known = fires.dropna()
        if len(known) and pd.api.types.infer_dtype(known, skipna=True) != "boolean":
            raise DesignError(
                f"a labelling function's expression must be true or false on each row, not {fires.dtype}",
                field=field,
                received=expr,
                expected="a condition, e.g. text.str.contains('Sad') or retweet_count > 1000",
            )
        votes[fires.fillna(False).astype(bool).to_numpy(), j] = vote
    return votes


# --- LF analysis ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoteAnalysis:
    """Per-function statistics of a vote matrix, as Snorkel's ``LFAnalysis`` defines them.

    ``coverage``, ``overlaps`` and ``conflicts`` are shares of all rows (not of the function's
    votes), like Snorkel's defaults. ``correct``, ``incorrect`` and ``accuracy`` exist when gold
    labels were given; the accuracy of a function that never votes is 0, as in Snorkel.
    """

    names: list[str]
    n_rows: int
    polarity: list[list[int]]
    coverage: np.ndarray
    overlaps: np.ndarray
    conflicts: np.ndarray
    label_coverage: float  # share of rows at least one function votes on
    label_overlap: float  # share of rows two or more functions vote on
    label_conflict: float  # share of rows with two different votes
    correct: np.ndarray | None = None
    incorrect: np.ndarray | None = None
    accuracy: np.ndarray | None = None

    def to_records(self, classes: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """One plain dict per function (``polarity`` as class names when ``classes`` are given)."""
        rows = []
        for j, name in enumerate(self.names):
            polarity = [classes[c] if classes is not None else c for c in self.polarity[j]]
            row: dict[str, Any] = {
                "name": name,
                "polarity": [p.item() if isinstance(p, np.generic) else p for p in polarity],
                "coverage": float(self.coverage[j]),
                "overlaps": float(self.overlaps[j]),
                "conflicts": float(self.conflicts[j]),
            }
            if self.accuracy is not None:
                assert self.correct is not None and self.incorrect is not None
                row |= {
                    "correct": int(self.correct[j]),
                    "incorrect": int(self.incorrect[j]),
                    "accuracy": float(self.accuracy[j]),
                }
            rows.append(row)
        return rows


def analyse_votes(
    L: np.ndarray, y: np.ndarray | None = None, names: Sequence[str] | None = None
) -> VoteAnalysis:
    """Coverage, overlaps, conflicts, polarity and (with gold ``y``) accuracy of each function.

    ``y`` holds class indices, ``-1`` where a row has no gold label: such rows are left out of
    the correct / incorrect counts and the accuracy (Snorkel would count them as incorrect), and
    still count in coverage, overlaps and conflicts. With a gold label on every row the numbers
    are Snorkel's exactly.
    """
    L = np.asarray(L)
    n, m = L.shape
    voted = L != ABSTAIN
    per_row = voted.sum(axis=1)
    overlapped = per_row > 1
    # a row conflicts when its votes are not all the same class: its highest vote differs from its lowest
    high = np.where(voted, L, -np.inf).max(axis=1, initial=-np.inf)
    low = np.where(voted, L, np.inf).min(axis=1, initial=np.inf)
    conflicted = (per_row > 1) & (high != low)
    analysis: dict[str, Any] = {
        "names": list(names) if names is not None else [str(j) for j in range(m)],
        "n_rows": n,
        "polarity": [sorted(int(c) for c in np.unique(L[voted[:, j], j])) for j in range(m)],
        "coverage": voted.mean(axis=0) if n else np.zeros(m),
        "overlaps": (voted & overlapped[:, None]).mean(axis=0) if n else np.zeros(m),
        "conflicts": (voted & conflicted[:, None]).mean(axis=0) if n else np.zeros(m),
        "label_coverage": float((per_row > 0).mean()) if n else 0.0,
        "label_overlap": float(overlapped.mean()) if n else 0.0,
        "label_conflict": float(conflicted.mean()) if n else 0.0,
    }
    if y is not None:
        y = np.asarray(y).reshape(-1)
        judged = voted & (y != ABSTAIN)[:, None]
        correct, votes = (judged & (y[:, None] == L)).sum(axis=0), judged.sum(axis=0)
        analysis |= {
            "correct": correct,
            "incorrect": votes - correct,
            "accuracy": np.divide(correct, votes, out=np.zeros(m), where=votes > 0),
        }
    return VoteAnalysis(**analysis)


# --- majority vote ----------------------------------------------------------------------------


def _counts(L: np.ndarray, k: int) -> np.ndarray:
    """Votes per row and class, ``n x k``."""
    L = np.asarray(L)
    voted = L != ABSTAIN
    counts = np.zeros((L.shape[0], k))
    rows = np.broadcast_to(np.arange(L.shape[0])[:, None], L.shape)
    np.add.at(counts, (rows[voted], L[voted]), 1)
    return counts


def majority_vote_proba(L: np.ndarray, k: int) -> np.ndarray:
    """Snorkel's ``MajorityLabelVoter.predict_proba``: the most voted classes share the row's mass
    equally; a row without votes is uniform (every class ties at zero).

    >>> majority_vote_proba(np.array([[0, 0, -1], [-1, 0, 1], [1, -1, 0]]), 2)
    array([[1. , 0. ],
           [0.5, 0.5],
           [0.5, 0.5]])
    """
    counts = _counts(L, k)
    top = (counts == counts.max(axis=1, keepdims=True)).astype(float)
    return top / top.sum(axis=1, keepdims=True)


def majority_vote(L: np.ndarray, k: int) -> np.ndarray:
    """The most voted class per row; ``-1`` where classes tie or no function voted (Snorkel's
    ``MajorityLabelVoter.predict`` with its default ``tie_break_policy="abstain"``)."""
    return _hard(majority_vote_proba(L, k), np.asarray(L), rng=None)


def _hard(proba: np.ndarray, L: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Argmax per row; ties abstain (``rng`` None) or go to a random tied class; unvoted rows -1."""
    tied = np.abs(proba - proba.max(axis=1, keepdims=True)) < _TIE_TOL
    label = np.argmax(proba, axis=1)
    several = tied.sum(axis=1) > 1
    if rng is None:
        label[several] = ABSTAIN
    elif several.any():
        # a random tied class: the tied classes get uniform keys, the others -1, the largest wins
        keys = np.where(tied[several], rng.random(tied[several].shape), -1.0)
        label[several] = np.argmax(keys, axis=1)
    label[(L == ABSTAIN).all(axis=1)] = ABSTAIN
    return label


# --- the label model: Dawid–Skene over the functions -------------------------------------------


@dataclass(frozen=True)
class LabelModel:
    """A fitted Dawid–Skene model of the functions' votes.

    ``confusion[j, c, o]`` is ``P(function j's outcome is o | true class c)`` where outcome 0 is
    abstaining and outcome ``v + 1`` is voting class ``v``; ``prior[c]`` the class balance.
    """

    confusion: np.ndarray  # m x k x (k + 1)
    prior: np.ndarray  # k
    iterations: int
    converged: bool
    log_likelihood: float  # mean per row, at the last iteration
    seed: int = 0

    @property
    def k(self) -> int:
        return int(self.prior.shape[0])

    @property
    def accuracies(self) -> np.ndarray:
        """Per function, the estimated probability that a vote of it is right:
        ``sum_c prior_c P(vote c | c) / sum_c prior_c P(votes | c)``."""
        k = self.k
        right = (self.prior[None, :] * self.confusion[:, np.arange(k), np.arange(k) + 1]).sum(axis=1)
        votes = (self.prior[None, :] * (1 - self.confusion[:, :, 0])).sum(axis=1)
        return np.divide(right, votes, out=np.zeros_like(right), where=votes > 0)

    def log_joint(self, L: np.ndarray) -> np.ndarray:
        """``log P(class c, votes of row i)``, ``n x k``."""
        L = np.asarray(L)
        m = L.shape[1]
        log_conf = np.log(self.confusion)
        # log_conf[j, :, L[i, j] + 1] for every row and function at once: n x m x k
        per_vote = log_conf[np.arange(m)[None, :], :, L + 1]
        return np.log(self.prior)[None, :] + per_vote.sum(axis=1)

    def predict_proba(self, L: np.ndarray) -> np.ndarray:
        """The probabilistic labels: ``P(class | votes)`` per row, ``n x k``."""
        joint = self.log_joint(L)
        joint -= joint.max(axis=1, keepdims=True)
        p = np.exp(joint)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, L: np.ndarray) -> np.ndarray:
        """The most probable class; exact ties go to a class drawn with ``seed``, and a row no
        function voted on is ``-1`` (nothing to learn from: it is dropped from training)."""
        L = np.asarray(L)
        return _hard(self.predict_proba(L), L, rng=np.random.default_rng(self.seed))


def fit_label_model(
    L: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    max_iter: int = 200,
    tol: float = 1e-6,
    smoothing: float = 1.0,
    class_prior: Literal["estimate", "uniform"] | np.ndarray = "estimate",
) -> LabelModel:
    """Dawid–Skene EM over the functions' votes ``L`` (class indices ``0..k-1``, ``-1`` abstain).

    E step: each row's posterior over classes given its votes. M step: each function's confusion
    matrix (``smoothing`` added to every cell, so an outcome never seen keeps a small probability)
    and, with ``class_prior="estimate"``, the class balance; ``"uniform"`` or an array hold it fixed.
    The posteriors start from the majority vote, so class ``c`` keeps meaning class ``c`` (EM
    cannot swap the classes of functions that are mostly right). Stops when the mean
    log-likelihood improves by less than ``tol``, or after ``max_iter`` iterations.
    """
    L = np.asarray(L, dtype=np.int64)
    n, m = L.shape
    outcomes = np.zeros((n, m, k + 1))
    outcomes[np.arange(n)[:, None], np.arange(m)[None, :], L + 1] = 1.0
    fixed = None
    if isinstance(class_prior, str):
        if class_prior == "uniform":
            fixed = np.full(k, 1.0 / k)
    else:
        fixed = np.asarray(class_prior, dtype=float)
        fixed = fixed / fixed.sum()
    posterior = majority_vote_proba(L, k)
    previous, converged, it = -np.inf, False, 0
    model = None
    for it in range(1, max_iter + 1):
        # M step: counts of each outcome per function and true class, weighted by the posteriors
        counts = np.einsum("ic,ijo->jco", posterior, outcomes) + smoothing
        confusion = counts / counts.sum(axis=2, keepdims=True)
        prior = fixed if fixed is not None else (posterior.sum(axis=0) + smoothing) / (n + k * smoothing)
        model = LabelModel(
            confusion=confusion, prior=prior, iterations=it, converged=False, log_likelihood=0.0
        )
        # E step
        joint = model.log_joint(L)
        top = joint.max(axis=1, keepdims=True)
        log_evidence = top[:, 0] + np.log(np.exp(joint - top).sum(axis=1))
        posterior = np.exp(joint - log_evidence[:, None])
        likelihood = float(log_evidence.mean()) if n else 0.0
        if likelihood - previous < tol:
            converged = True
            break
        previous = likelihood
    assert model is not None  # max_iter >= 1
    return LabelModel(
        confusion=model.confusion,
        prior=model.prior,
        iterations=it,
        converged=converged,
        log_likelihood=likelihood,
        seed=seed,
    )


# --- the whole stage ----------------------------------------------------------------------------


def wilson_interval(correct: int, n: int, alpha: float = 0.05) -> tuple[float | None, float | None]:
    """The Wilson score interval of ``correct / n`` (statsmodels' ``proportion_confint``).

    >>> [round(x, 4) for x in wilson_interval(80, 100)]
    [0.7112, 0.8666]
    """
    if n == 0:
        return None, None
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(correct, n, alpha=alpha, method="wilson")
    return float(low), float(high)


@dataclass
class WeakLabels:
    """What weak supervision computed on one split: votes, their analysis, both label sources.

    ``labels[source]`` holds each row's hard label as a class index (``-1``: none) for
    ``label_model`` and ``majority_vote``; ``accuracy`` compares each with the gold labels on the
    rows it labels, with 95% Wilson intervals, and on the rows both label (``n_both``,
    ``accuracy_both``: the majority vote leaves ties unlabelled, the label model rarely does).
    """

    names: list[str]
    classes: list[Any]
    votes: np.ndarray = field(repr=False)
    analysis: VoteAnalysis = field(repr=False)
    model: LabelModel = field(repr=False)
    proba: np.ndarray = field(repr=False)  # the label model's P(class | votes), n x k
    labels: dict[str, np.ndarray] = field(repr=False)
    accuracy: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        a = self.analysis
        functions = a.to_records(self.classes)
        for row, estimated in zip(functions, self.model.accuracies.tolist(), strict=True):
            row["estimated_accuracy"] = estimated
        return {
            "classes": [c.item() if isinstance(c, np.generic) else c for c in self.classes],
            "rows": a.n_rows,
            "label_coverage": a.label_coverage,
            "label_overlap": a.label_overlap,
            "label_conflict": a.label_conflict,
            "functions": functions,
            "label_model": {
                "iterations": self.model.iterations,
                "converged": self.model.converged,
                "log_likelihood": self.model.log_likelihood,
                "prior": dict(zip(map(str, self.classes), self.model.prior.tolist(), strict=True)),
            },
            "accuracy": self.accuracy,
        }


def weak_labels(
    L: np.ndarray,
    classes: Sequence[Any],
    *,
    names: Sequence[str],
    gold: np.ndarray | None = None,
    seed: int = 0,
    max_iter: int = 200,
    tol: float = 1e-6,
    smoothing: float = 1.0,
    class_prior: Literal["estimate", "uniform"] | np.ndarray = "estimate",
) -> WeakLabels:
    """Analyse the votes ``L``, fit the label model and take the majority vote, once.

    ``gold`` (class indices, ``-1`` where unknown) gives the functions' empirical accuracies and
    each label source's accuracy on the rows that have gold labels.

    >>> L = np.array([[0, -1], [0, 0], [1, 1], [-1, 1], [-1, -1]])
    >>> w = weak_labels(L, [False, True], names=["a", "b"], gold=np.array([0, 0, 1, 0, 1]))
    >>> w.labels["label_model"].tolist(), w.accuracy["majority_vote"]["n"]
    ([0, 0, 1, 1, -1], 4)
    """
    L = np.asarray(L)
    k = len(classes)
    known = np.ones(len(L), dtype=bool) if gold is None else np.asarray(gold) != ABSTAIN
    analysis = analyse_votes(L, gold, names)
    model = fit_label_model(
        L, k, seed=seed, max_iter=max_iter, tol=tol, smoothing=smoothing, class_prior=class_prior
    )
    labels = {"label_model": model.predict(L), "majority_vote": majority_vote(L, k)}
    accuracy: dict[str, dict[str, Any]] = {}
    if gold is not None:
        gold = np.asarray(gold)
        # the majority vote leaves ties unlabelled: each source is also judged on the rows both label
        both = known & (labels["label_model"] != ABSTAIN) & (labels["majority_vote"] != ABSTAIN)
        for source, label in labels.items():
            judged = known & (label != ABSTAIN)
            n, correct = int(judged.sum()), int((label[judged] == gold[judged]).sum())
            low, high = wilson_interval(correct, n)
            n_both, correct_both = int(both.sum()), int((label[both] == gold[both]).sum())
            accuracy[source] = {
                "n": n,
                "correct": correct,
                "accuracy": correct / n if n else None,
                "low": low,
                "high": high,
                "n_both": n_both,
                "accuracy_both": correct_both / n_both if n_both else None,
            }
    return WeakLabels(
        names=list(names),
        classes=list(classes),
        votes=L,
        analysis=analysis,
        model=model,
        proba=model.predict_proba(L),
        labels=labels,
        accuracy=accuracy,
    )

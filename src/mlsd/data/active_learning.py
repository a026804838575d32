"""Active learning: which unlabelled rows to annotate next (docs/active-learning.md).

A strategy scores every row of the pool from the model's predicted class probabilities (higher =
more worth a label); :func:`select_batch` takes the ``batch`` best, optionally spread out over
the feature space (``diverse``: k-center greedy over a shortlist of the best-scored rows, so one
batch is not fifty near-copies of the same confusing tweet). Everything is vectorised numpy and
deterministic for a given ``seed`` (ties are broken by a seeded permutation, not by row order).

Strategies (:data:`STRATEGIES`):

- ``uncertainty``: least confidence, ``1 - max_k p_k``;
- ``margin``: ``1 - (p_(1) - p_(2))``, one minus the gap between the two likeliest classes;
- ``entropy``: ``-sum_k p_k log p_k``;
- ``committee``: vote entropy over a committee (``proba`` of shape members x rows x classes,
  e.g. a bootstrap committee from :func:`bootstrap_committee`, or the design's candidates);
- ``random``: uniform scores, the baseline every other strategy must beat.

>>> import numpy as np
>>> proba = np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [0.2, 0.8]])
>>> score("margin", proba).round(2).tolist()
[0.2, 1.0, 0.8, 0.4]
>>> picked = select_batch("uncertainty", proba, 2)
>>> picked.indices.tolist(), picked.scores.round(2).tolist()
([1, 2], [0.5, 0.4])
>>> committee = np.stack([proba, proba[::-1]])  # two members that disagree on rows 0 and 3
>>> score("committee", committee).round(3).tolist()
[0.693, 0.0, 0.0, 0.693]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlsd.errors import MlsdError

__all__ = [
    "STRATEGIES",
    "Selection",
    "Strategy",
    "bootstrap_committee",
    "k_center_greedy",
    "score",
    "select_batch",
]

_EPS = 1e-12


def _proba(proba: Any, *, committee: bool) -> np.ndarray:
    p = np.asarray(proba, dtype=float)
    want = 3 if committee else 2
    if p.ndim == 1 and not committee:  # a binary model's P(positive)
        p = np.column_stack([1.0 - p, p])
    if p.ndim != want or p.shape[-1] < 2 or not np.isfinite(p).all():
        shape = "members x rows x classes" if committee else "rows x classes"
        raise MlsdError(
            "not a matrix of class probabilities",
            field="proba",
            received=f"an array of shape {p.shape}",
            expected=f"finite probabilities of shape {shape} (at least 2 classes)",
        )
    return p


def _least_confidence(p: np.ndarray) -> np.ndarray:
    return 1.0 - p.max(axis=1)


def _margin(p: np.ndarray) -> np.ndarray:
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])


def _entropy(p: np.ndarray) -> np.ndarray:
    return 0.0 - (p * np.log(np.clip(p, _EPS, 1.0))).sum(axis=1)  # 0.0 - x: no -0.0


def _vote_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy of the members' hard votes per row (Dagan & Engelson's vote entropy)."""
    members, rows, classes = p.shape
    votes = p.argmax(axis=2)  # members x rows
    counts = np.zeros((rows, classes))
    np.add.at(counts, (np.broadcast_to(np.arange(rows), votes.shape), votes), 1.0)
    share = counts / members
    return 0.0 - (share * np.log(np.clip(share, _EPS, 1.0))).sum(axis=1)


@dataclass(frozen=True)
class Strategy:
    """A named scoring rule; ``committee`` strategies read members x rows x classes."""

    name: str
    scorer: Callable[[np.ndarray], np.ndarray] | None
    committee: bool = False
    description: str = ""


#: the registry of strategies, by the name a design or ``mlsd label --strategy`` uses
STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("uncertainty", _least_confidence, description="least confidence, 1 - max p"),
        Strategy("margin", _margin, description="1 - (p1 - p2), the two likeliest classes"),
        Strategy("entropy", _entropy, description="entropy of the predicted distribution"),
        Strategy("committee", _vote_entropy, committee=True, description="vote entropy over a committee"),
        Strategy("random", None, description="uniform at random, the baseline"),
    )
}


def _strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise MlsdError(
            "unknown active-learning strategy",
            field="strategy",
            received=name,
            expected=" | ".join(STRATEGIES),
        )
    return STRATEGIES[name]


def score(strategy: str, proba: Any, *, seed: int = 0) -> np.ndarray:
    """Each pool row's score under ``strategy`` (higher = more worth a label)."""
    s = _strategy(strategy)
    p = _proba(proba, committee=s.committee)
    rows = p.shape[1] if s.committee else p.shape[0]
    if s.scorer is None:
        return np.random.default_rng(seed).random((rows,))
    return s.scorer(p)


def k_center_greedy(features: Any, k: int, *, first: int = 0) -> np.ndarray:
    """``k`` row positions of ``features``, each the farthest from those already chosen.

    Starts at row ``first`` (the best-scored one when the rows are sorted by score); a loop over
    the ``k`` picks, each one vectorised over all rows (Sener & Savarese's core-set greedy).

    >>> k_center_greedy(np.array([[0.0], [0.1], [5.0], [10.0]]), 3).tolist()
    [0, 3, 2]
    """
    x = _dense(features)
    n = x.shape[0]
    k = min(int(k), n)
    chosen = np.empty(k, dtype=np.int64)
    if k == 0:
        return chosen
    chosen[0] = first
    nearest = ((x - x[first]) ** 2).sum(axis=1)
    for i in range(1, k):
        chosen[i] = int(np.argmax(nearest))
        nearest = np.minimum(nearest, ((x - x[chosen[i]]) ** 2).sum(axis=1))
    return chosen


def _dense(features: Any) -> np.ndarray:
    if hasattr(features, "toarray"):  # a sparse TF-IDF matrix: the shortlist is small
        features = features.toarray()
    x = np.asarray(features, dtype=float)
    return x.reshape(len(x), -1)


@dataclass(frozen=True)
class Selection:
    """The rows chosen for annotation, best first: positions in the pool and their scores."""

    strategy: str
    diverse: bool
    indices: np.ndarray
    scores: np.ndarray
    pool_size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "diverse": self.diverse,
            "pool_size": self.pool_size,
            "indices": self.indices.tolist(),
            "scores": self.scores.tolist(),
        }


def select_batch(
    strategy: str,
    proba: Any,
    batch: int,
    *,
    features: Any = None,
    diverse: bool = False,
    shortlist: int = 3,
    seed: int = 0,
) -> Selection:
    """The ``batch`` rows to annotate next under ``strategy``.

    With ``diverse``, the ``shortlist * batch`` best-scored rows are thinned to ``batch`` by
    :func:`k_center_greedy` over their ``features`` (rows x dims, dense or sparse), starting
    from the best one: informative and spread out.
    """
    if batch < 1:
        raise MlsdError("a batch needs a row", field="batch", received=batch, expected="an int >= 1")
    scores = score(strategy, proba, seed=seed)
    n = scores.shape[0]
    # ties (many rows at p=0.5, or every row under "random") break by a seeded permutation
    perm = np.random.default_rng(seed).permutation(n)
    order = perm[np.argsort(-scores[perm], kind="stable")]
    if diverse:
        if features is None:
            raise MlsdError(
                "a diverse batch needs the rows' feature vectors",
                field="diverse",
                received="no features",
                expected="features: rows x dims for the pool",
            )
        rows = features.shape[0] if hasattr(features, "shape") else len(features)
        if rows != n:
            raise MlsdError(
                "features and probabilities describe different pools",
                field="features",
                received=f"{rows} rows",
                expected=f"{n} rows, one per pool row",
            )
        short = order[: max(batch, int(shortlist) * batch)]
        picked = short[k_center_greedy(features[short], batch)]
    else:
        picked = order[:batch]
    return Selection(strategy, diverse, picked, scores[picked], n)


def bootstrap_committee(
    estimator: Any, x: Any, y: Any, pool: Any, *, members: int = 5, seed: int = 0
) -> np.ndarray:
    """``members`` clones of ``estimator`` fitted on bootstrap resamples of (``x``, ``y``):
    their ``predict_proba`` on ``pool``, members x rows x classes (input of ``committee``).

    A resample that misses a class is drawn again (stratified by class), so every member
    predicts every class in the same column order.
    """
    from sklearn.base import clone

    y = np.asarray(y)
    classes, codes = np.unique(y, return_inverse=True)
    rng = np.random.default_rng(seed)
    # a stratified bootstrap: each class resampled within itself keeps every class present
    groups = [np.flatnonzero(codes == c) for c in range(len(classes))]
    out = []
    for _ in range(members):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        model = clone(estimator).fit(x[idx], y[idx])
        out.append(model.predict_proba(pool))
    return np.stack(out)

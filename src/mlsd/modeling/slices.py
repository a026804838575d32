"""Where a model errs most (SliceLine) and whether a comparison of two models reverses within slices.

:func:`slice_line` is SliceLine (Sagadeeva & Boehm, SIGMOD 2021) on a one-hot matrix: slices
are conjunctions ``feature = value AND ...`` of up to ``max_level`` distinct features, scored by

    score = alpha * (slice error / average error - 1) - (1 - alpha) * (n / |slice| - 1)

so a slice ranks high when its mean error is well above average and it is not tiny. The lattice
is enumerated level by level with sparse matrix products; a candidate is dropped when it is
smaller than ``min_sup`` rows, has no error, lacks one of its parents, or when the upper bound
of its (and its descendants') score cannot beat the current top-K. :func:`one_hot` builds the
matrix from a frame (numeric columns in quantile bins, categorical columns' top values + other)
and :func:`worst_slices` runs both on a model's per-row errors and adds each slice's Wilson 95%
interval. :func:`simpson_check` compares two models per value of a column.

>>> X = sparse.csr_matrix(np.array([[1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1]] * 25))
>>> errors = np.array([1.0, 0.0, 0.0, 0.0] * 25)
>>> top = slice_line(X, errors, feature_of=np.array([0, 0, 1, 1]), k=2, max_level=2, min_sup=5)
>>> [(list(s.columns), s.size, round(s.error, 2), round(s.score, 3)) for s in top]
[([0, 2], 25, 1.0, 2.7), ([0], 50, 0.5, 0.9)]
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from statsmodels.stats.proportion import proportion_confint

from mlsd.errors import DataError

__all__ = [
    "OneHot",
    "Slice",
    "brute_force_slices",
    "one_hot",
    "per_row_errors",
    "simpson_check",
    "slice_line",
    "worst_slices",
]


@dataclasses.dataclass(frozen=True)
class Slice:
    """One slice: its one-hot ``columns``, its row count, total and mean error, and score."""

    columns: tuple[int, ...]
    size: int
    error_sum: float
    score: float

    @property
    def error(self) -> float:
        return self.error_sum / self.size


@dataclasses.dataclass(frozen=True)
class OneHot:
    """A sparse 0/1 matrix, which feature each column belongs to, and each column's label."""

    matrix: sparse.csr_matrix
    feature_of: np.ndarray
    features: list[str]
    labels: list[str]  # "carrier = UA", "temp in [50.0, 61.0)"
    codes: np.ndarray  # n x features: each row's column (index into labels) per feature


def _scores(size: np.ndarray, error_sum: np.ndarray, n: int, mean_error: float, alpha: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = alpha * ((error_sum / size) / mean_error - 1) - (1 - alpha) * (n / size - 1)
    return np.where(size > 0, sc, -np.inf)


def _score_upper_bound(
    size_ub: np.ndarray,
    error_ub: np.ndarray,
    max_error_ub: np.ndarray,
    n: int,
    mean: float,
    alpha: float,
    min_sup: int,
) -> np.ndarray:
    """The paper's bound on the score of a slice (and of every slice below it in the lattice).

    A descendant has at most ``size_ub`` rows, total error ``<= error_ub`` and per-row error
    ``<= max_error_ub``; over sizes in ``[min_sup, size_ub]`` the score is largest at one of
    the three points SystemDS evaluates: ``min_sup``, ``error_ub / max_error_ub``, ``size_ub``.
    """
    points = [np.full_like(size_ub, float(min_sup)), error_ub / np.maximum(max_error_ub, 1e-300), size_ub]
    best = np.full(size_ub.shape, -np.inf)
    for ss in points:
        ss = np.clip(ss, min_sup, np.maximum(size_ub, min_sup))
        se = np.minimum(error_ub, ss * max_error_ub)
        best = np.maximum(best, alpha * ((se / ss) / mean - 1) - (1 - alpha) * (n / ss - 1))
    return best


def _evaluate(
    X: sparse.csr_matrix, S: sparse.csr_matrix, level: int, errors: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Size, total error and max error of each slice (row of ``S``), in chunks of slices."""
    sizes, sums, maxes = [], [], []
    for start in range(0, S.shape[0], 512):  # bounds the n x chunk indicator's memory
        hit = (X @ S[start : start + 512].T).tocsc()
        hit.data = (hit.data == level).astype(np.float64)
        hit.eliminate_zeros()
        sizes.append(np.asarray(hit.sum(axis=0)).ravel())
        sums.append(hit.T @ errors)
        hit.data = hit.data * errors[hit.indices]
        maxes.append(np.asarray(hit.max(axis=0).todense()).ravel())
    return np.concatenate(sizes), np.concatenate(sums), np.concatenate(maxes)


def slice_line(
    X: sparse.spmatrix,
    errors: np.ndarray,
    *,
    feature_of: np.ndarray,
    k: int = 5,
    max_level: int = 3,
    min_sup: int = 32,
    alpha: float = 0.95,
) -> list[Slice]:
    """The top-``k`` slices by score (only slices scoring above 0), best first.

    ``X`` is ``n x m`` 0/1 (one column per feature value, exactly one value per feature and row
    or none); ``feature_of[j]`` is the feature of column ``j``; ``errors`` are non-negative.
    """
    X = sparse.csr_matrix(X, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    n, m = X.shape
    mean = float(errors.mean()) if n else 0.0
    if n == 0 or mean <= 0:
        return []
    top: list[Slice] = []

    def keep(S: sparse.csr_matrix, size: np.ndarray, esum: np.ndarray) -> None:
        sc = _scores(size, esum, n, mean, alpha)
        ok = np.flatnonzero((size >= min_sup) & (sc > 0))
        for i in ok:
            top.append(
                Slice(
                    tuple(S.indices[S.indptr[i] : S.indptr[i + 1]].tolist()),
                    int(size[i]),
                    float(esum[i]),
                    float(sc[i]),
                )
            )
        top.sort(key=lambda s: (-s.score, s.columns))
        del top[k:]

    def threshold() -> float:  # a candidate must be able to beat the current K-th slice
        return top[-1].score if len(top) == k else 0.0

    # level 1: every feature value
    S = sparse.identity(m, format="csr", dtype=np.float64)
    size, esum, emax = _evaluate(X, S, 1, errors)
    keep(S, size, esum)
    alive = (size >= min_sup) & (esum > 0)
    S, size, esum, emax = S[alive], size[alive], esum[alive], emax[alive]
    feature_of = np.asarray(feature_of)
    for level in range(2, max_level + 1):
        if S.shape[0] < 2:
            break
        # pairs of level-1 slices sharing level-2 columns (for level 2, every pair)
        if level == 2:
            i, j = np.triu_indices(S.shape[0], k=1)
        else:
            shared = sparse.triu(S @ S.T, k=1).tocoo()
            hit = shared.data == level - 2
            i, j = shared.row[hit], shared.col[hit]
        if len(i) == 0:
            break
        C = (S[i] + S[j]).tocsr()
        C.data[:] = 1.0
        C.sort_indices()
        cols = C.indices.reshape(-1, level)  # each union has exactly ``level`` columns
        distinct = np.all(np.diff(np.sort(feature_of[cols], axis=1), axis=1) > 0, axis=1)
        # bounds from the pair; a slice generated from fewer than C(level, 2) pairs lacks a parent
        s_ub = np.minimum(size[i], size[j])
        e_ub = np.minimum(esum[i], esum[j])
        m_ub = np.minimum(emax[i], emax[j])
        cols, s_ub, e_ub, m_ub = cols[distinct], s_ub[distinct], e_ub[distinct], m_ub[distinct]
        if len(cols) == 0:
            break
        uniq, inverse, counts = np.unique(cols, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        n_u = len(uniq)
        su, eu, mu = np.full(n_u, np.inf), np.full(n_u, np.inf), np.full(n_u, np.inf)
        np.minimum.at(su, inverse, s_ub)
        np.minimum.at(eu, inverse, e_ub)
        np.minimum.at(mu, inverse, m_ub)
        ub = _score_upper_bound(su, eu, mu, n, mean, alpha, min_sup)
        ok = (counts == level * (level - 1) // 2) & (su >= min_sup) & (eu > 0) & (ub > threshold())
        uniq = uniq[ok]
        if len(uniq) == 0:
            break
        S = sparse.csr_matrix(
            (np.ones(uniq.size), uniq.ravel(), np.arange(0, uniq.size + 1, level)), shape=(len(uniq), m)
        )
        size, esum, emax = _evaluate(X, S, level, errors)
        keep(S, size, esum)
        alive = (size >= min_sup) & (esum > 0)
        S, size, esum, emax = S[alive], size[alive], esum[alive], emax[alive]
    return top


def brute_force_slices(
    X: sparse.spmatrix,
    errors: np.ndarray,
    *,
    feature_of: np.ndarray,
    k: int,
    max_level: int,
    min_sup: int,
    alpha: float,
) -> list[Slice]:
    """Every slice of up to ``max_level`` distinct features scored, top-``k`` kept (small data; tests)."""
    from itertools import combinations

    dense = np.asarray(sparse.csr_matrix(X).todense()) > 0
    errors = np.asarray(errors, dtype=float)
    n, m = dense.shape
    mean = errors.mean()
    found = []
    for level in range(1, max_level + 1):
        for cols in combinations(range(m), level):
            if len({int(feature_of[c]) for c in cols}) < level:
                continue
            rows = dense[:, list(cols)].all(axis=1)
            size = int(rows.sum())
            if size < min_sup:
                continue
            esum = float(errors[rows].sum())
            sc = float(_scores(np.array([size]), np.array([esum]), n, mean, alpha)[0])
            if sc > 0:
                found.append(Slice(cols, size, esum, sc))
    found.sort(key=lambda s: (-s.score, s.columns))
    return found[:k]


def one_hot(frame: pd.DataFrame, columns: list[str], *, bins: int = 5, top_values: int = 10) -> OneHot:
    """Columns one-hot: numeric ones in ``bins`` quantile bins (missing values their own value),
    others as their ``top_values`` most frequent values plus ``other``.

    >>> f = pd.DataFrame({"c": ["a", "a", "b", "z"], "x": [1.0, 2.0, 3.0, 4.0]})
    >>> oh = one_hot(f, ["c", "x"], bins=2, top_values=2)
    >>> oh.labels
    ['c = a', 'c = b', 'c = other', 'x in [1, 2.5)', 'x in [2.5, 4]']
    >>> oh.matrix.toarray().astype(int).tolist()[3]
    [0, 0, 1, 0, 1]
    """
    codes, labels, feature_of = [], [], []
    offset = 0
    for f, column in enumerate(columns):
        values = frame[column]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        edges = np.zeros(0)
        if numeric and values.nunique() > bins:
            x = values.to_numpy(dtype=float)
            edges = np.unique(np.nanquantile(x, np.linspace(0, 1, bins + 1)))
        if len(edges) > 2:  # at least two bins; one (a column mostly 0, say) is sliced by value instead
            code = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
            names = [
                f"{column} in [{edges[b]:.4g}, {edges[b + 1]:.4g}{']' if b == len(edges) - 2 else ')'}"
                for b in range(len(edges) - 1)
            ]
            missing = np.isnan(x)
            if missing.any():
                code = np.where(missing, len(names), code)
                names.append(f"{column} missing")
        else:
            text = values.astype(str).to_numpy()
            kept = pd.Series(text).value_counts().index[:top_values].tolist()
            code = pd.Index(kept).get_indexer(text).astype(np.int64)  # -1: not a top value
            names = [f"{column} = {v}" for v in kept]
            if (code < 0).any():
                code = np.where(code < 0, len(names), code)
                names.append(f"{column} = other")
        codes.append(code + offset)
        labels += names
        feature_of += [f] * len(names)
        offset += len(names)
    n = len(frame)
    col = np.stack(codes, axis=1).ravel() if codes else np.zeros(0, dtype=np.int64)
    row = np.repeat(np.arange(n), len(codes))
    matrix = sparse.csr_matrix((np.ones(len(col)), (row, col)), shape=(n, offset))
    stacked = np.stack(codes, axis=1) if codes else np.zeros((n, 0), dtype=np.int64)
    return OneHot(matrix, np.asarray(feature_of, dtype=np.int64), list(columns), labels, stacked)


def per_row_errors(
    y: np.ndarray, score: np.ndarray, *, task: str, threshold: float = 0.5, classes: Any = None
) -> np.ndarray:
    """Per-row error: 0/1 misclassification at the model's decision ``threshold`` (binary; argmax
    for multiclass), squared error for regression.

    >>> per_row_errors(np.array([1, 0, 1]), np.array([0.9, 0.6, 0.2]), task="binary", threshold=0.5).tolist()
    [0.0, 1.0, 1.0]
    """
    y = np.asarray(y)
    score = np.asarray(score)
    if task == "binary":
        return ((score >= threshold).astype(int) != y.astype(int)).astype(float)
    if task == "multiclass":
        labels = np.asarray(classes if classes is not None else np.unique(y))
        return (labels[np.argmax(score, axis=1)] != y).astype(float)
    if task == "regression":
        return (y.astype(float) - score.astype(float)) ** 2
    raise DataError(
        "unknown task", field="goals.task", received=task, expected="binary, multiclass or regression"
    )


def worst_slices(
    frame: pd.DataFrame,
    columns: list[str],
    errors: np.ndarray,
    *,
    k: int = 5,
    max_level: int = 2,
    min_support: float = 0.01,
    alpha: float = 0.95,
    bins: int = 5,
    binary_errors: bool = True,
) -> dict[str, Any]:
    """SliceLine's top-``k`` slices of ``frame`` by per-row ``errors``, as the document shows them.

    ``min_support`` is a share of the rows. Each slice has its rows, mean error and 95% interval:
    Wilson for 0/1 errors (``binary_errors``), the normal interval of the mean otherwise.
    """
    oh = one_hot(frame, columns, bins=bins)
    n = len(errors)
    min_sup = max(1, int(np.ceil(min_support * n)))
    top = slice_line(
        oh.matrix, errors, feature_of=oh.feature_of, k=k, max_level=max_level, min_sup=min_sup, alpha=alpha
    )
    rows = []
    for s in top:
        if binary_errors:
            low, high = proportion_confint(round(s.error_sum), s.size, alpha=0.05, method="wilson")
        else:
            member = np.asarray(oh.matrix[:, list(s.columns)].sum(axis=1) == len(s.columns)).ravel()
            half = 1.96 * errors[member].std(ddof=1) / np.sqrt(s.size)
            low, high = s.error - half, s.error + half
        rows.append(
            {
                "slice": " AND ".join(oh.labels[c] for c in s.columns),
                "rows": s.size,
                "error": s.error,
                "ci_low": float(low),
                "ci_high": float(high),
                "score": s.score,
            }
        )
    return {
        "columns": list(columns),
        "n_rows": n,
        "overall_error": float(np.mean(errors)) if n else None,
        "error_kind": "0/1 error at the decision threshold" if binary_errors else "squared error",
        "k": k,
        "max_level": max_level,
        "min_support": min_support,
        "min_rows": min_sup,
        "alpha": alpha,
        "slices": rows,
    }


def simpson_check(
    groups: dict[str, np.ndarray],
    metric: Callable[[np.ndarray], float],
    *,
    n_rows: int,
    min_rows: int = 50,
    majority: float = 0.5,
    labels: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Flag a Simpson reversal of ``metric(rows)`` = (model A's metric - model B's) per column.

    ``groups`` maps a column to its per-row slice codes; ``metric`` takes row indices and returns
    the difference of the two models (positive: A better); ``labels[column][code]`` names a slice
    (integer codes group much faster than strings). A column is flagged when the overall
    difference is non-zero and the slices with at least ``min_rows`` rows whose difference has the
    opposite sign hold more than ``majority`` of those slices' rows.

    >>> g = {"s": np.array([0] * 60 + [1] * 60)}
    >>> diff = {0: -1.0, 1: -2.0}
    >>> out = simpson_check(g, lambda r: 1.0 if len(r) == 120 else diff[int(g["s"][r[0]])], n_rows=120)
    >>> out[0]["reversed"], out[0]["reversed_share"]
    (True, 1.0)
    """
    everything = np.arange(n_rows)
    overall = float(metric(everything))
    out = []
    for column, codes in groups.items():
        codes = np.asarray(codes)
        values, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(counts)])
        per: list[dict[str, Any]] = []
        for v, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            if hi - lo < min_rows:
                continue
            try:
                d = float(metric(order[lo:hi]))
            except (ValueError, ZeroDivisionError):
                continue  # e.g. AUC of a slice with one class
            if np.isfinite(d):
                name = labels[column][values[v]] if labels and column in labels else values[v]
                per.append({"value": str(name), "rows": int(hi - lo), "diff": d})
        weight = sum(p["rows"] for p in per)
        against = sum(p["rows"] for p in per if np.sign(p["diff"]) == -np.sign(overall) != 0)
        share = against / weight if weight else 0.0
        out.append(
            {
                "column": column,
                "overall_diff": overall,
                "slices": per,
                "reversed_share": share,
                "reversed": bool(overall != 0 and weight > 0 and share > majority),
            }
        )
    return out

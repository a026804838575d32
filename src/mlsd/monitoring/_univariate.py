"""The two-sample statistics behind :mod:`mlsd.monitoring.drift`, on sorted arrays and count tables.

Each function matches scipy on the same data (the tests check it): ``ks_statistic`` +
``ks_p_values`` = ``scipy.stats.ks_2samp(method="asymp")``; ``wasserstein`` =
``scipy.stats.wasserstein_distance``; ``chi2_tables`` = ``scipy.stats.chi2_contingency(correction=False)``
on the reference-vs-window table; ``jensen_shannon`` = ``scipy.spatial.distance.jensenshannon(base=2)``.
Count tables are padded 2-D arrays (one row per column compared); cells empty on both sides are ignored.

>>> ref, win = np.array([0.0, 1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0, 5.0])
>>> float(ks_statistic(ref, win)), float(wasserstein(ref, win))
(0.5, 2.0)
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.spatial import distance

__all__ = [
    "PSI_EPSILON",
    "balanced_cramers_v",
    "chi2_tables",
    "jensen_shannon",
    "ks_p_values",
    "ks_statistic",
    "psi",
    "reference_steps",
    "wasserstein",
]

PSI_EPSILON = 1e-4  # a share of 0 becomes 1e-4 in PSI, whose log ratio is infinite otherwise


def reference_steps(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference CDF just before and at each of its sorted points (worth caching per column)."""
    n1 = len(ref)
    return np.searchsorted(ref, ref, "left") / n1, np.searchsorted(ref, ref, "right") / n1


def ks_statistic(
    ref: np.ndarray, win: np.ndarray, steps: tuple[np.ndarray, np.ndarray] | None = None
) -> float:
    """Two-sided KS statistic of two sorted, non-empty, NaN-free samples.

    Only evaluated at the reference points: between two of them the reference CDF is flat, so
    ``F_ref - F_win`` peaks at a reference point and ``F_win - F_ref`` just before one. That is
    two binary searches of the (small) reference into the (large) window instead of a merge.
    ``steps`` is :func:`reference_steps` of ``ref``, if already known.
    """
    n2 = len(win)
    before1, at1 = steps if steps is not None else reference_steps(ref)
    d_plus = np.max(at1 - np.searchsorted(win, ref, "right") / n2)
    d_minus = np.max(np.searchsorted(win, ref, "left") / n2 - before1)
    return float(np.clip(max(d_plus, d_minus), 0.0, 1.0))


def ks_p_values(d: np.ndarray, n1: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """Two-sided p-values as ``ks_2samp(method="asymp")``: ``kstwo.sf(D, round(n1 n2 / (n1 + n2)))``.

    The exact method of ``ks_2samp`` costs O(n1 n2) and is what its ``auto`` picks below 10,000
    rows; monitoring windows and the reference sample are usually larger, so asymp throughout.

    Where ``kstwo.sf`` takes its ``2 * smirnov(n, D)`` branch (n > 140, ``2.2 <= n D² < 370``:
    every drifted column, p below ~0.025) scipy's ``smirnov`` costs ~8 ms at n = 10,000 (a
    scalar sum over n terms); there the same sum is evaluated here as one vector
    (:func:`_smirnov_sf`), equal to scipy's to ~1e-12 relative (tests/monitoring/test_drift.py).
    Every other point is scipy's own ``kstwo.sf``. See docs/monitoring.md.
    """
    n1, n2 = np.asarray(n1, dtype="float64"), np.asarray(n2, dtype="float64")
    en = np.round(n1 * n2 / (n1 + n2))
    d, en = (np.atleast_1d(a).astype("float64") for a in np.broadcast_arrays(np.asarray(d, "float64"), en))
    # the branch test as scipy's _kolmogn writes it (t = n x, then t x), so the split is the same
    t = en * d
    nx2 = t * d
    summed = (en > 140) & (t > 1.0) & (t < en - 1) & (d < 0.5) & (nx2 >= 2.2) & (nx2 < 370.0)
    out = np.empty_like(d)
    rest = ~summed
    if rest.any():
        out[rest] = stats.kstwo.sf(d[rest], en[rest])
    for i in np.flatnonzero(summed):  # one vector sum per test (a few per window), not per row
        out[i] = 2.0 * _smirnov_sf(int(en[i]), float(d[i]))
    return np.clip(out, 0.0, 1.0)


def _smirnov_sf(n: int, x: float) -> float:
    """``scipy.special.smirnov(n, x)``, P(D+_n >= x), by Birnbaum & Tingey's sum as one vector:
    ``x Σ_j C(n, j) (x + j/n)^(j-1) (1 - x - j/n)^(n-j)`` over ``j = 0 .. floor(n (1 - x))``.

    Each term is ``x / p_j * binom.pmf(j, n, p_j)`` with ``p_j = x + j/n``: every term is positive
    (no cancellation) and scipy's binomial pmf is accurate to a few ulps, so the sum holds
    ~1e-13 relative; a term below ~1e-308 underflows to 0, as for p < 1e-300 scipy's own does not.
    """
    j = np.arange(int(np.floor(n * (1.0 - x))) + 1, dtype="float64")
    p = np.minimum(x + j / n, 1.0)
    return float(np.sum(x / p * stats.binom.pmf(j, n, p)))


def wasserstein(ref: np.ndarray, win: np.ndarray) -> float:
    """1-Wasserstein distance ``∫ |F_ref - F_win| dx`` of two sorted, non-empty, NaN-free samples.

    The two sorted samples are merged by placing the reference at ``searchsorted + arange``
    (linear, no second sort); tied values are zero-width steps, so their order does not matter.
    """
    n1, n2 = len(ref), len(win)
    pos = np.searchsorted(win, ref, "left") + np.arange(n1)
    is_ref = np.zeros(n1 + n2, dtype=bool)
    is_ref[pos] = True
    merged = np.empty(n1 + n2, dtype="float64")
    merged[pos] = ref
    merged[~is_ref] = win
    c1 = np.cumsum(is_ref)[:-1]
    c2 = np.arange(1, n1 + n2) - c1
    return float(np.abs(c1 / n1 - c2 / n2) @ np.diff(merged))


def _shares(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts, dtype="float64"), where=totals > 0)


def psi(ref_counts: np.ndarray, win_counts: np.ndarray) -> np.ndarray:
    """Population stability index per row: ``Σ (q - p) ln(q / p)`` with shares floored at ``PSI_EPSILON``."""
    p = np.maximum(_shares(ref_counts), PSI_EPSILON)
    q = np.maximum(_shares(win_counts), PSI_EPSILON)
    used = (ref_counts + win_counts) > 0
    return np.where(used, (q - p) * np.log(q / p), 0.0).sum(axis=1)


def jensen_shannon(ref_counts: np.ndarray, win_counts: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2, in [0, 1]) per row; empty bins need no epsilon (0 log 0 = 0)."""
    return np.asarray(distance.jensenshannon(_shares(ref_counts), _shares(win_counts), axis=1, base=2))


def chi2_tables(ref_counts: np.ndarray, win_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson chi-squared of each 2 x k table (reference row, window row): statistic, dof, p-value.

    Categories empty in both rows are dropped, as a table with an all-zero column has no expected
    count; a table left with one category has dof 0 and p = 1 (scipy's convention).
    """
    observed = np.stack([ref_counts, win_counts], axis=1).astype("float64")  # (columns, 2, k)
    col_tot = observed.sum(axis=1, keepdims=True)
    row_tot = observed.sum(axis=2, keepdims=True)
    total = row_tot.sum(axis=1, keepdims=True)
    expected = row_tot * col_tot / np.where(total > 0, total, 1.0)
    used = np.broadcast_to(col_tot > 0, observed.shape)
    terms = np.divide((observed - expected) ** 2, expected, out=np.zeros_like(observed), where=used)
    statistic = terms.sum(axis=(1, 2))
    dof = (col_tot[:, 0, :] > 0).sum(axis=1) - 1
    p = np.where(dof > 0, stats.chi2.sf(statistic, np.maximum(dof, 1)), 1.0)
    return np.where(dof > 0, statistic, 0.0), dof, p


def balanced_cramers_v(ref_counts: np.ndarray, win_counts: np.ndarray) -> np.ndarray:
    """Cramér's V of the 2 x k table with both rows scaled to the same total: ``sqrt(½ Σ (p-q)² / (p+q))``.

    The plain V shrinks as the window outgrows the reference (it carries the row weights), so it
    would rank the same shift lower on a busy day; this form depends on the shares only.
    """
    p, q = _shares(ref_counts), _shares(win_counts)
    s = p + q
    terms = np.divide((p - q) ** 2, s, out=np.zeros_like(s), where=s > 0)
    return np.sqrt(0.5 * terms.sum(axis=1))

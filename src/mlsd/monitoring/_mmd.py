"""Maximum mean discrepancy: does a window of embeddings come from the reference's distribution?

MMD compares two samples of vectors through a kernel: with the RBF kernel
``k(a, b) = exp(-|a - b|² / (2 σ²))``, ``MMD² = mean k(X, X') + mean k(Y, Y') - 2 mean k(X, Y)``
is 0 exactly when the distributions are equal (Gretton et al., 2012, "A kernel two-sample test").

- **bandwidth**: the median heuristic, ``σ`` = the median distance between distinct points of
  the pooled sample, so the kernel adapts to the encoder's scale (TF-IDF rows, MiniLM vectors);
- **statistic**: the biased (V-statistic) ``MMD²``, the quadratic form ``w' K w`` of the pooled
  kernel matrix with ``w = 1/n`` on the reference and ``-1/m`` on the window;
- **p-value**: a permutation test: the pooled labels are shuffled ``n_permutations`` times (seeded)
  and ``p = (1 + #{permuted >= observed}) / (1 + n_permutations)``, as
  ``scipy.stats.permutation_test`` computes it for a randomised test (the tests check it). All
  permutations are one matrix product ``W K`` with ``W`` the ``(permutations, n + m)`` weights;
- **effect size**: ``sqrt(max(MMD²_u, 0))`` with the *unbiased* estimate (diagonals left out),
  whose mean is 0 under no change whatever the sample sizes, so one threshold serves windows of
  any size (the biased statistic grows as the samples shrink).

>>> rng = np.random.default_rng(0)
>>> same = mmd_test(rng.normal(size=(200, 5)), rng.normal(size=(150, 5)), n_permutations=200)
>>> moved = mmd_test(rng.normal(size=(200, 5)), rng.normal(0.5, 1, size=(150, 5)), n_permutations=200)
>>> same.p_value > 0.05, moved.p_value < 0.01, moved.effect > same.effect
(True, True, True)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mlsd.errors import DataError

__all__ = ["MMDResult", "median_bandwidth", "mmd2", "mmd_test", "rbf_kernel"]


@dataclasses.dataclass(frozen=True)
class MMDResult:
    """The test of one window: biased MMD² (the test statistic), its p-value, the effect size."""

    statistic: float
    p_value: float
    effect: float
    bandwidth: float
    n_reference: int
    n_window: int
    n_permutations: int


def _squared_distances(z: np.ndarray) -> np.ndarray:
    norms = np.einsum("ij,ij->i", z, z)
    d2 = norms[:, None] + norms[None, :] - 2.0 * (z @ z.T)
    np.maximum(d2, 0.0, out=d2)  # rounding makes tiny negatives
    np.fill_diagonal(d2, 0.0)
    return d2


def median_bandwidth(d2: np.ndarray) -> float:
    """``σ`` of the median heuristic from squared distances: the median distance of distinct pairs.

    A sample of identical points has no spread; ``σ = 1`` then (every kernel value is 1 anyway).
    """
    upper = d2[np.triu_indices_from(d2, k=1)]
    positive = upper[upper > 0]
    return float(np.sqrt(np.median(positive))) if len(positive) else 1.0


def rbf_kernel(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> tuple[np.ndarray, float]:
    """The RBF kernel matrix of the pooled sample ``[x; y]`` and the bandwidth used."""
    z = np.vstack([np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")])
    d2 = _squared_distances(z)
    sigma = median_bandwidth(d2) if bandwidth is None else float(bandwidth)
    return np.exp(-d2 / (2.0 * sigma**2)), sigma


def mmd2(kernel: np.ndarray, n: int, *, unbiased: bool = False) -> float:
    """MMD² of the first ``n`` rows of the pooled kernel matrix against the rest."""
    m = len(kernel) - n
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    if not unbiased:
        return float(kxx.mean() + kyy.mean() - 2.0 * kxy.mean())
    xx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(xx + yy - 2.0 * kxy.mean())


def mmd_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_permutations: int = 500,
    seed: int = 0,
    bandwidth: float | None = None,
    chunk: int = 100,
) -> MMDResult:
    """Permutation test of ``MMD²`` between ``x`` (reference rows) and ``y`` (window rows)."""
    x, y = np.asarray(x), np.asarray(y)
    n, m = len(x), len(y)
    if n < 2 or m < 2 or x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise DataError(
            "MMD needs two samples of vectors of one dimension, at least 2 rows each",
            field="embeddings",
            received=f"{x.shape} and {y.shape}",
            expected="(n >= 2, d) and (m >= 2, d)",
        )
    kernel, sigma = rbf_kernel(x, y, bandwidth)
    observed = mmd2(kernel, n)
    rng = np.random.default_rng(seed)
    base = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    exceed = 0
    # the permutations in chunks: W K W' row by row is (chunk, n+m) @ (n+m, n+m), no Python loop over rows
    for start in range(0, n_permutations, chunk):
        k = min(chunk, n_permutations - start)
        weights = rng.permuted(np.tile(base, (k, 1)), axis=1)
        null = np.einsum("ij,ij->i", weights @ kernel, weights)
        # scipy's tolerance: a permuted value equal to the observed one up to rounding counts
        exceed += int(np.sum(null >= observed - 100 * np.finfo(float).eps * abs(observed)))
    return MMDResult(
        statistic=observed,
        p_value=(exceed + 1) / (n_permutations + 1),
        effect=float(np.sqrt(max(mmd2(kernel, n, unbiased=True), 0.0))),
        bandwidth=sigma,
        n_reference=n,
        n_window=m,
        n_permutations=n_permutations,
    )

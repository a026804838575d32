"""Sample ratio mismatch: are the served counts what the weights intended?

A small p-value means the split is broken (a router bug, a variant failing into the fallback,
bots on one arm), so the experiment's comparison cannot be trusted. Pearson's chi-square of the
counts against the weights (scipy.stats.chisquare), over the variants of weight > 0; a variant
served despite weight 0 is left out here (the caller sees it in the counts).

>>> round(sample_ratio_mismatch({"a": 500, "b": 500}, {"a": 1, "b": 1}), 3)
1.0
>>> sample_ratio_mismatch({"a": 600, "b": 400}, {"a": 1, "b": 1}) < 1e-9
True
>>> sample_ratio_mismatch({"a": 10}, {"a": 1}) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import stats

__all__ = ["sample_ratio_mismatch"]


def sample_ratio_mismatch(counts: Mapping[str, int], weights: Mapping[str, float]) -> float | None:
    """The chi-square p-value of ``counts`` against ``weights``.

    None with fewer than 2 variants of weight > 0, or no traffic on them.
    """
    names = [k for k, w in weights.items() if np.isfinite(w) and w > 0]
    if len(names) < 2:
        return None
    observed = np.array([float(counts.get(k, 0)) for k in names])
    total = observed.sum()
    if total <= 0:
        return None
    w = np.array([float(weights[k]) for k in names])
    expected = w / w.sum() * total
    return float(stats.chisquare(observed, expected).pvalue)

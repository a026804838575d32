"""Deterministic assignment of units to variants: the same unit gets the same variant everywhere.

:func:`unit_hash` maps (seed, unit) to a uniform number in [0, 1) with BLAKE2b, never Python's
``hash()`` (salted per process), so every server process and machine agrees on a unit's variant.
:func:`choose` turns uniform numbers into variants by the cumulative normalised weights, in the
mapping's order (so a fixed order of ``traffic`` keeps every unit where it was).

>>> u = unit_hash(0, ["alice", "bob", "alice"])
>>> bool(u[0] == u[2]), bool(0 <= u.min() and u.max() < 1)
(True, True)
>>> choose({"champion": 50, "challenger": 50}, np.array([0.1, 0.5, 0.99])).tolist()
['champion', 'challenger', 'challenger']
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from mlsd.errors import DesignError

__all__ = ["choose", "normalised", "unit_hash"]

_BITS = 53  # a float64 holds 53 bits exactly: every value k / 2**53 is representable and < 1


def unit_hash(seed: int | str, units: Sequence[str]) -> np.ndarray:
    """Uniform numbers in [0, 1), one per unit, identical in every process for the same seed.

    The top 53 bits of BLAKE2b(f"{seed}\\x00{unit}") over 2**53: the NUL separator keeps
    (1, "23") and (12, "3") apart. A string ``seed`` salts a second, independent hash of the
    same units (the shadow share uses ``f"{seed}/shadow"``).

    >>> unit_hash(7, ["u1"])[0] == unit_hash(7, ["u1"])[0], unit_hash(7, ["u1"])[0] == unit_hash(8, ["u1"])[0]
    (np.True_, np.False_)
    """
    out = np.empty(len(units), dtype=np.float64)
    # hashlib has no vectorised form; one digest per unit is the cheap part of a request
    for i, unit in enumerate(units):
        digest = hashlib.blake2b(f"{seed}\x00{unit}".encode(), digest_size=8).digest()
        out[i] = (int.from_bytes(digest, "big") >> (64 - _BITS)) / float(2**_BITS)
    return out


def normalised(weights: Mapping[str, float], *, field: str = "deployment.traffic") -> dict[str, float]:
    """Weights scaled to sum to 1, in the mapping's order.

    >>> normalised({"a": 1, "b": 3})
    {'a': 0.25, 'b': 0.75}
    >>> normalised({"a": 0})
    Traceback (most recent call last):
    ...
    mlsd.errors.DesignError: deployment.traffic: weights must be finite, non-negative and not all \
zero (received {'a': 0}; expected e.g. {'champion': 90, 'challenger': 10})
    """
    w = np.asarray(list(weights.values()), dtype=float)
    if w.size == 0 or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise DesignError(
            "weights must be finite, non-negative and not all zero",
            field=field,
            received=dict(weights),
            expected="e.g. {'champion': 90, 'challenger': 10}",
        )
    return dict(zip(weights, (w / w.sum()).tolist(), strict=True))


def choose(weights: Mapping[str, float], u: np.ndarray) -> np.ndarray:
    """The variant of each uniform number ``u``: the first whose cumulative weight exceeds it.

    A variant of weight 0 is never chosen (its cumulative bound equals the previous one).

    >>> choose({"a": 0, "b": 1}, np.array([0.0, 0.7])).tolist()
    ['b', 'b']
    """
    share = normalised(weights)
    names = np.array(list(share), dtype=object)
    bounds = np.cumsum(list(share.values()))
    bounds[-1] = 1.0  # rounding must not leave u close to 1 past the last bound
    idx = np.searchsorted(bounds, np.asarray(u, dtype=float), side="right")
    return names[np.minimum(idx, len(names) - 1)]

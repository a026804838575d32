"""Self-training over the unlabelled pool: scikit-learn's ``SelfTrainingClassifier`` on raw rows.

:class:`PoolSelfTraining` wraps a candidate's pipeline (features -> estimator). Its ``fit``
receives the labelled rows as usual; the pool's unanswered rows are handed to it beforehand
(:meth:`PoolSelfTraining.with_pool`, by the training stage). The feature steps are fitted on the
labelled rows only (an encoder that reads the label must not see the sentinel ``-1``), both kinds
of rows are transformed, and ``SelfTrainingClassifier(estimator, threshold, max_iter)`` fits on
them with ``-1`` marking the unlabelled ones. The pool is dropped after the fit, so the registered
model holds none of its raw rows; ``n_unlabelled_`` and ``n_pseudo_labelled_`` say what it used.

>>> import numpy as np, pandas as pd
>>> from sklearn.linear_model import LogisticRegression
>>> from sklearn.pipeline import Pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> rng = np.random.default_rng(0)
>>> x = pd.DataFrame({"a": np.r_[rng.normal(-2, 1, 100), rng.normal(2, 1, 100)]})
>>> y = np.r_[np.zeros(100, int), np.ones(100, int)]
>>> pipe = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())])
>>> model = PoolSelfTraining(pipe, threshold=0.9).with_pool(x.iloc[10:190]).fit(
...     x.iloc[np.r_[0:10, 190:200]], y[np.r_[0:10, 190:200]])
>>> model.n_unlabelled_, model.n_pseudo_labelled_ > 100, model.pool is None
(180, True, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone

__all__ = ["PoolSelfTraining"]


class PoolSelfTraining(ClassifierMixin, BaseEstimator):
    """``pipeline`` (features -> estimator) self-trained on the pool's rows."""

    def __init__(self, pipeline: Any, threshold: float = 0.9, max_iter: int = 10, pool: Any = None) -> None:
        self.pipeline = pipeline
        self.threshold = threshold
        self.max_iter = max_iter
        self.pool = pool

    def with_pool(self, pool: pd.DataFrame | None) -> PoolSelfTraining:
        self.pool = pool
        return self

    def fit(self, X: pd.DataFrame, y: Any) -> PoolSelfTraining:
        from sklearn.pipeline import Pipeline
        from sklearn.semi_supervised import SelfTrainingClassifier

        steps = clone(self.pipeline).steps
        features = Pipeline(steps[:-1]) if len(steps) > 1 else None
        y = np.asarray(y)
        pool = self.pool if self.pool is not None else X.iloc[:0]
        if features is not None:
            features.fit(X, y)
            z = features.transform(X)
            z_pool = features.transform(pool.reindex(columns=X.columns)) if len(pool) else None
        else:
            z, z_pool = X, (pool.reindex(columns=X.columns) if len(pool) else None)
        if z_pool is not None:
            import scipy.sparse as sp

            stack = sp.vstack if sp.issparse(z) else np.vstack
            z_all = stack([z, z_pool])
            y_all = np.concatenate([y, np.full(z_pool.shape[0], -1, dtype=y.dtype)])
        else:
            z_all, y_all = z, y
        model = SelfTrainingClassifier(
            steps[-1][1], threshold=self.threshold, max_iter=self.max_iter, criterion="threshold"
        ).fit(z_all, y_all)
        self.features_, self.model_ = features, model
        self.classes_ = model.classes_
        self.n_unlabelled_ = 0 if z_pool is None else int(z_pool.shape[0])
        labelled_iter = np.asarray(model.labeled_iter_)[len(y) :]
        self.n_pseudo_labelled_ = int((labelled_iter > 0).sum())
        self.pool = None  # no raw pool rows in the registered artefact
        return self

    def _z(self, X: pd.DataFrame) -> Any:
        return X if self.features_ is None else self.features_.transform(X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict_proba(self._z(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict(self._z(X))

"""Derived columns as the first step of the served pipeline.

A design's ``data.derive`` (e.g. ``sched_dep_hour: "sched_dep_time // 100"``) is computed
inside the registered model, so a request carries the raw columns and serving derives
exactly what training derived.

>>> import pandas as pd
>>> step = DeriveColumns({"sched_dep_hour": "sched_dep_time // 100"})
>>> step = step.fit(pd.DataFrame({"sched_dep_time": [515]}))
>>> step.transform(pd.DataFrame({"sched_dep_time": [515, 1930]}))["sched_dep_hour"].tolist()
[5, 19]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["DeriveColumns"]


class DeriveColumns(TransformerMixin, BaseEstimator):
    """Add columns computed by safe expressions over the input columns (stateless).

    Parameters
    ----------
    expressions : dict of str to str, default=None
        New column name -> expression (see :mod:`mlsd.data.expressions`). Applied in order,
        so a later expression may use an earlier derived column. ``None`` passes rows through.
    """

    def __init__(self, expressions: dict[str, str] | None = None) -> None:
        self.expressions = expressions

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values pass through to the expressions
        return tags

    def fit(self, X: Any, y: Any = None) -> DeriveColumns:
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = X.columns.to_numpy(dtype=object)
            self.n_features_in_ = X.shape[1]
        else:
            validate_data(self, X, reset=True, ensure_all_finite=False)
        return self

    def transform(self, X: Any) -> Any:
        check_is_fitted(self, "n_features_in_")
        if not self.expressions:
            if not isinstance(X, pd.DataFrame):
                return validate_data(self, X, reset=False, ensure_all_finite=False)
            return X
        from mlsd.data.expressions import evaluate_expression

        frame = X.copy() if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
        for name, expr in self.expressions.items():
            frame[name] = evaluate_expression(frame, expr, field=f"data.derive.{name}")
        return frame

    def get_feature_names_out(self, input_features: Any = None) -> Any:
        check_is_fitted(self, "n_features_in_")
        names = list(getattr(self, "feature_names_in_", [f"x{i}" for i in range(self.n_features_in_)]))
        extra = [n for n in (self.expressions or {}) if n not in names]
        return np.asarray(names + extra, dtype=object)

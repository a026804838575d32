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

from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from mlsd.features._arith import derive_numbers

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

    def transform_columns(self, arrays: Mapping[str, Any], index: pd.Index) -> dict[str, Any] | None:
        """:meth:`transform` for rows given as one array per column (``index`` their rows): the
        arrays with the derived columns added, no frame copied or grown. Plain arithmetic on
        number columns is numpy's (:func:`mlsd.features._arith.derive_numbers`), any other
        expression :func:`mlsd.data.evaluate_expression`'s on Series over the arrays. None when
        an expression fails: :meth:`transform` on a frame then raises the error it always did."""
        if not hasattr(self, "n_features_in_"):
            return None  # not fitted: transform says so
        if not self.expressions:
            return dict(arrays)
        numbers = derive_numbers(self.expressions, arrays)
        if numbers is not None:
            return {**arrays, **numbers}
        from mlsd.data.expressions import evaluate_expression

        view = _Arrays(arrays, index)
        try:
            for name, expr in self.expressions.items():
                view[name] = evaluate_expression(cast(pd.DataFrame, view), expr, field=f"data.derive.{name}")
        except Exception:
            return None
        return view.arrays()

    def get_feature_names_out(self, input_features: Any = None) -> Any:
        check_is_fitted(self, "n_features_in_")
        names = list(getattr(self, "feature_names_in_", [f"x{i}" for i in range(self.n_features_in_)]))
        extra = [n for n in (self.expressions or {}) if n not in names]
        return np.asarray(names + extra, dtype=object)


class _Arrays:
    """What :func:`mlsd.data.evaluate_expression` reads of a frame (``df[name]``, ``df.columns``,
    ``df.index``) over a dict of column arrays, a new column a dict entry: no frame built."""

    def __init__(self, arrays: Mapping[str, Any], index: pd.Index) -> None:
        self.index = index
        self._arrays = dict(arrays)
        self._series: dict[str, pd.Series] = {}

    @property
    def columns(self) -> list[str]:
        return list(self._arrays)

    def __getitem__(self, name: str) -> pd.Series:
        if name not in self._series:
            self._series[name] = pd.Series(self._arrays[name], index=self.index, copy=False)
        return self._series[name]

    def __setitem__(self, name: str, values: pd.Series) -> None:
        # as ``frame[name] = values`` stores it: the values aligned on the rows, in their own dtype
        values = values.reindex(self.index) if not values.index.equals(self.index) else values
        self._series[name] = values
        self._arrays[name] = values.to_numpy() if isinstance(values.dtype, np.dtype) else values.array

    def arrays(self) -> dict[str, Any]:
        return self._arrays

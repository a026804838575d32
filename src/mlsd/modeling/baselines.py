"""Baselines: the simplest models a candidate must beat, all fitted on the raw rows.

Every baseline accepts the raw DataFrame (the dummy ones ignore its columns, a rule reads them
through :func:`mlsd.data.expressions.evaluate_expression`), so the orchestrator fits baselines on
raw rows and candidates as ``Pipeline([("features", ...), ("model", ...)])`` and evaluates both
the same way.

>>> import pandas as pd
>>> df = pd.DataFrame({"dep_hour": [6, 9, 18, 21], "distance": [200, 1500, 700, 2400]})
>>> rule = make_baseline({"rule": "dep_hour >= 17"}, "binary").fit(df, [0, 0, 1, 1])
>>> rule.predict_proba(df)[:, 1].tolist()
[0.0, 0.0, 1.0, 1.0]
>>> make_baseline("majority", "binary").fit(df, [0, 0, 0, 1]).predict_proba(df)[0].tolist()
[0.75, 0.25]
>>> long_haul = make_baseline({"rule": "distance > 1000"}, "regression")
>>> long_haul.fit(df, [1.0, 3.0, 2.0, 5.0]).predict(df).tolist()
[1.5, 4.0, 1.5, 4.0]
>>> baseline_name({"rule": "dep_hour >= 17"})
'rule: dep_hour >= 17'

"Predict this column" (regression): the value of a column known at prediction time, such as
the previous rate; a row where it is missing gets the training mean.

>>> make_baseline({"column": "distance"}, "regression").fit(df, [1.0, 3.0, 2.0, 5.0]).predict(df).tolist()
[200.0, 1500.0, 700.0, 2400.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.utils import assert_all_finite
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d, validate_data

from mlsd.errors import DesignError

__all__ = [
    "ColumnRegressor",
    "RuleBaseline",
    "RuleRegressor",
    "baseline_name",
    "list_baselines",
    "make_baseline",
]

_CLASSIFIER_SPECS = {
    "majority": "predicts the class prior (the majority label)",
    "prior": "same as majority",
    "stratified": "random labels drawn with the class frequencies (seeded)",
}
_REGRESSOR_SPECS = {"mean": "predicts the training mean", "median": "predicts the training median"}
_RULE_KEYS = {"rule", "score_if_true", "score_if_false"}
_COLUMN_KEYS = {"column"}


class _RawRowsMixin:
    """Shared input handling: raw DataFrames pass through; arrays get columns ``x0 .. x{n-1}``."""

    def _frame(self, X: Any, *, reset: bool) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame) and all(isinstance(c, str) for c in X.columns):
            validate_data(self, X, reset=reset, skip_check_array=True)
            if X.shape[0] == 0:
                raise ValueError(f"{type(self).__name__} needs at least one row; got 0 rows")
            return X
        # Arrays carry no column types, so they must be numeric; raw mixed rows come as DataFrames.
        arr = validate_data(self, X, reset=reset, ensure_all_finite=False)
        names = getattr(self, "feature_names_in_", None)
        # Fitted on named columns and given an array of the same width: keep reading the rule by name.
        cols = list(names) if names is not None else [f"x{i}" for i in range(arr.shape[1])]
        return pd.DataFrame(arr, columns=cols)


class _RuleMixin(_RawRowsMixin):
    """A rule (a true/false expression) read over raw rows."""

    expression: str

    def _rule(self, df: pd.DataFrame) -> np.ndarray:
        from mlsd.data.expressions import evaluate_expression  # lazy: modeling must not need data at import

        out = pd.Series(evaluate_expression(df, self.expression, field="models.baseline.rule"))
        if not pd.api.types.is_bool_dtype(out.dtype):
            raise DesignError(
                "a rule baseline needs a true/false expression",
                field="models.baseline.rule",
                received=f"{self.expression} (gives {out.dtype})",
                expected="a condition, e.g. 'dep_hour >= 17'",
            )
        # A missing (NA) outcome of a nullable boolean counts as "the rule does not fire".
        return out.fillna(False).to_numpy(dtype=bool)


class RuleBaseline(_RuleMixin, ClassifierMixin, BaseEstimator):
    """Binary classifier from a rule over raw columns: positive-class probability ``score_if_true``
    where ``expression`` holds, ``score_if_false`` elsewhere.

    Given a numpy array, the columns are named ``x0 .. x{n-1}`` (or the names seen in ``fit``).
    """

    def __init__(self, expression: str, score_if_true: float = 1.0, score_if_false: float = 0.0) -> None:
        self.expression = expression
        self.score_if_true = score_if_true
        self.score_if_false = score_if_false

    def fit(self, X: Any, y: Any) -> RuleBaseline:
        for name in ("score_if_true", "score_if_false"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
                raise DesignError(
                    "a rule baseline's score is a probability",
                    field=f"models.baseline.{name}",
                    received=v,
                    expected="a number in [0, 1]",
                )
        df = self._frame(X, reset=True)
        if y is None:
            raise ValueError("RuleBaseline requires y to be passed, but the target y is None")
        y = column_or_1d(y, warn=True)
        check_consistent_length(df, y)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            n = len(self.classes_)
            raise ValueError(
                f"Only binary classification is supported by RuleBaseline; got {n} class{'es' * (n != 1)}"
            )
        self._rule(df)  # fail at fit time, not at the first prediction, on a bad rule or column
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "classes_")
        fired = self._rule(self._frame(X, reset=False))
        p = np.where(fired, float(self.score_if_true), float(self.score_if_false))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        positive = self.predict_proba(X)[:, 1] >= 0.5  # first: it checks the model is fitted
        return self.classes_[positive.astype(np.int64)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # raw rows have gaps; a comparison with NaN is simply False
        tags.classifier_tags.multi_class = False
        tags.classifier_tags.poor_score = True  # a fixed rule cannot learn sklearn's synthetic problems
        return tags


class RuleRegressor(_RuleMixin, RegressorMixin, BaseEstimator):
    """Regressor from a rule: ``score_if_true`` where ``expression`` holds, ``score_if_false`` elsewhere.

    A score left as ``None`` is learnt: the mean target of the training rows on that side of the
    rule (the overall mean when that side is empty).
    """

    def __init__(
        self, expression: str, score_if_true: float | None = None, score_if_false: float | None = None
    ) -> None:
        self.expression = expression
        self.score_if_true = score_if_true
        self.score_if_false = score_if_false

    def fit(self, X: Any, y: Any) -> RuleRegressor:
        df = self._frame(X, reset=True)
        if y is None:
            raise ValueError("RuleRegressor requires y to be passed, but the target y is None")
        y = column_or_1d(y, warn=True).astype(float)
        assert_all_finite(y, input_name="y")
        check_consistent_length(df, y)
        fired = self._rule(df)
        overall = float(np.mean(y))
        learnt = {
            True: float(np.mean(y[fired])) if fired.any() else overall,
            False: float(np.mean(y[~fired])) if (~fired).any() else overall,
        }
        self.value_if_true_ = learnt[True] if self.score_if_true is None else float(self.score_if_true)
        self.value_if_false_ = learnt[False] if self.score_if_false is None else float(self.score_if_false)
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "value_if_true_")
        fired = self._rule(self._frame(X, reset=False))
        return np.where(fired, self.value_if_true_, self.value_if_false_)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.regressor_tags.poor_score = True
        return tags


class ColumnRegressor(_RawRowsMixin, RegressorMixin, BaseEstimator):
    """Regressor that predicts the value of one column as it is (e.g. the previous rate).

    Where the column is missing (or not a number) the prediction is ``fallback_``, the mean
    training target: the baseline then says what a system knowing only that column would do.
    """

    def __init__(self, column: str) -> None:
        self.column = column

    def _values(self, df: pd.DataFrame) -> np.ndarray:
        if self.column not in df.columns:
            raise DesignError(
                "the baseline's column is not in the data",
                field="models.baseline.column",
                received=self.column,
                expected="one of: " + ", ".join(map(str, list(df.columns)[:25])),
            )
        s = df[self.column]
        if not (pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)):
            raise DesignError(
                "a column baseline predicts a numeric column",
                field="models.baseline.column",
                received=f"{self.column} ({s.dtype})",
                expected="a numeric column on the scale of the label, e.g. the previous value",
            )
        return s.to_numpy(dtype="float64", na_value=np.nan)

    def fit(self, X: Any, y: Any) -> ColumnRegressor:
        df = self._frame(X, reset=True)
        if y is None:
            raise ValueError("ColumnRegressor requires y to be passed, but the target y is None")
        y = column_or_1d(y, warn=True).astype(float)
        assert_all_finite(y, input_name="y")
        check_consistent_length(df, y)
        self._values(df)  # fail at fit time on a missing or non-numeric column
        self.fallback_ = float(np.mean(y))
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "fallback_")
        values = self._values(self._frame(X, reset=False))
        return np.where(np.isfinite(values), values, self.fallback_)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing previous value gets the fallback
        tags.regressor_tags.poor_score = True  # one fixed column cannot fit sklearn's synthetic problems
        return tags


def list_baselines(task: str) -> list[str]:
    """Baseline specs usable for ``task``: names, ``{rule: ...}`` (binary and regression) and
    ``{column: ...}`` (regression).

    >>> list_baselines("regression")
    ['mean', 'median', '{rule: <expression>}', '{column: <column>}']
    """
    if task == "regression":
        return [*_REGRESSOR_SPECS, "{rule: <expression>}", "{column: <column>}"]
    names = list(_CLASSIFIER_SPECS)
    return [*names, "{rule: <expression>}"] if task == "binary" else names


def baseline_name(spec: str | dict[str, Any]) -> str:
    """A readable name for a baseline spec (used in the trade-off table)."""
    if isinstance(spec, dict) and "rule" in spec:
        return f"rule: {spec['rule']}"
    if isinstance(spec, dict) and "column" in spec:
        return f"column: {spec['column']}"
    return str(spec)


def make_baseline(
    spec: str | dict[str, Any], task: str, *, seed: int = 0, field: str = "models.baseline"
) -> BaseEstimator:
    """An unfitted baseline for ``task`` from a design spec: a name, ``{"rule": "<expression>"}``
    or ``{"column": "<column>"}``."""
    options = ", ".join(list_baselines(task))
    if isinstance(spec, dict) and "column" in spec:
        return _column_baseline(spec, task, field, options)
    if isinstance(spec, dict):
        unknown = set(spec) - _RULE_KEYS
        if "rule" not in spec or unknown:
            raise DesignError(
                "a rule baseline is a mapping with a `rule`, a column baseline one with a `column`",
                field=field,
                received=spec,
                expected=f"keys {sorted(_RULE_KEYS)} or {sorted(_COLUMN_KEYS)}; or one of: {options}",
            )
        kw = {k: spec[k] for k in ("score_if_true", "score_if_false") if k in spec}
        for k, v in kw.items():  # float("high") would fail with a bare ValueError naming nothing
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise DesignError(
                    "a rule baseline's score is a number",
                    field=f"{field}.{k}",
                    received=v,
                    expected="e.g. 0.8",
                )
        if task == "binary":
            return RuleBaseline(spec["rule"], **kw)
        if task == "regression":
            return RuleRegressor(spec["rule"], **kw)
        raise DesignError(
            f"rule baselines are not available for {task}", field=field, received=spec, expected=options
        )
    if task in ("binary", "multiclass"):
        if spec in ("majority", "prior"):
            return DummyClassifier(strategy="prior")
        if spec == "stratified":
            return DummyClassifier(strategy="stratified", random_state=seed)
    elif task == "regression" and spec in _REGRESSOR_SPECS:
        return DummyRegressor(strategy=spec)
    raise DesignError(
        f"unknown baseline for task {task}", field=field, received=spec, expected=f"one of: {options}"
    )


def _column_baseline(spec: dict[str, Any], task: str, field: str, options: str) -> ColumnRegressor:
    unknown = sorted(set(spec) - _COLUMN_KEYS)
    if unknown:
        raise DesignError(
            "a column baseline has only the key `column`",
            field=f"{field}.{unknown[0]}",
            received=unknown[0],
            expected="{column: <column>}",
        )
    column = spec["column"]
    if not isinstance(column, str) or not column:
        raise DesignError(
            "a column baseline names one column",
            field=f"{field}.column",
            received=column,
            expected="a column name",
        )
    if task != "regression":
        raise DesignError(
            f"column baselines predict a value: not available for {task}",
            field=field,
            received=spec,
            expected=options,
        )
    return ColumnRegressor(column)

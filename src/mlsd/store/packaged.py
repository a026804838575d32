"""The packaged model: what mlsd registers, loads and serves.

A :class:`PackagedModel` wraps one fitted scikit-learn pipeline that goes from RAW input
rows (the columns the design reads, before any feature engineering) to predictions, and
carries what serving needs next to it: the task, the cost-optimal decision threshold, the
input columns, the data schema saved at build time, the class labels and free metadata.
It is a plain picklable object (no MLflow here), so the server and batch scoring can use
it without importing MLflow.

>>> import pandas as pd
>>> from sklearn.linear_model import LogisticRegression
>>> X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
>>> clf = LogisticRegression().fit(X, [0, 0, 1, 1])
>>> model = PackagedModel(pipeline=clf, task="binary", threshold=0.5, input_columns=["x"], classes=[0, 1])
>>> model.predict_frame(pd.DataFrame({"x": [0.0, 3.0], "extra": ["a", "b"]}))["decision"].tolist()
[False, True]
>>> model.predict_frame(pd.DataFrame({"y": [1.0]}))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
mlsd.errors.SchemaError: x: input rows lack 1 column the model needs (received ['y']; expected all of: x)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from mlsd.errors import ModelError, SchemaError

__all__ = ["TASKS", "PackagedModel"]

TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")
_UNSET = object()

Task = Literal["binary", "multiclass", "regression"]


@dataclass
class PackagedModel:
    """A fitted raw-rows -> prediction pipeline plus what serving needs to use it.

    ``pipeline`` is any fitted scikit-learn estimator (usually a ``Pipeline`` of features +
    model, possibly wrapped in ``CalibratedClassifierCV``) whose input is the raw rows.
    For ``binary``, ``classes`` is ``[negative, positive]`` and the score is the probability
    of ``classes[1]``; when ``classes`` is empty it is taken from ``pipeline.classes_``.
    """

    pipeline: Any
    task: Task
    threshold: float | None = None
    input_columns: list[str] = field(default_factory=list)
    schema: dict[str, Any] = field(default_factory=dict)
    classes: list[Any] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ModelError(
                "unknown task", field="task", received=self.task, expected=f"one of: {', '.join(TASKS)}"
            )
        try:
            check_is_fitted(self.pipeline)
        except (NotFittedError, TypeError) as exc:
            raise ModelError(
                "the pipeline must be a fitted scikit-learn estimator",
                field="pipeline",
                received=type(self.pipeline).__name__,
                expected="a fitted estimator",
            ) from exc
        self.input_columns = [str(c) for c in self.input_columns]
        if not self.input_columns:
            seen = getattr(self.pipeline, "feature_names_in_", None)
            if seen is None:
                raise ModelError(
                    "input_columns is empty and the pipeline does not record its input columns",
                    field="input_columns",
                    received=[],
                    expected="the raw column names the pipeline was fitted on",
                )
            self.input_columns = [str(c) for c in seen]
        if self.task == "regression":
            self.threshold = None
            return
        if not hasattr(self.pipeline, "predict_proba"):
            raise ModelError(
                "a classification pipeline must have predict_proba",
                field="pipeline",
                received=type(self.pipeline).__name__,
                expected="an estimator with predict_proba",
            )
        if not self.classes:
            self.classes = list(self.pipeline.classes_)
        self.classes = [c.item() if isinstance(c, np.generic) else c for c in self.classes]
        fitted = np.asarray(self.pipeline.classes_).tolist()
        unknown = [c for c in self.classes if c not in fitted]
        if unknown:
            # caught here, not as a bare ValueError from list.index at the first prediction
            raise ModelError(
                f"{unknown} not among the pipeline's fitted classes",
                field="classes",
                received=self.classes,
                expected=f"labels from pipeline.classes_ {fitted}",
            )
        if self.task == "binary":
            if len(self.classes) != 2:
                raise ModelError(
                    "a binary model needs exactly two classes",
                    field="classes",
                    received=self.classes,
                    expected="[negative, positive]",
                )
            if self.threshold is None:
                self.threshold = 0.5
            if not 0.0 <= float(self.threshold) <= 1.0:
                raise ModelError(
                    "the decision threshold is a probability",
                    field="threshold",
                    received=self.threshold,
                    expected="a number in [0, 1]",
                )
            self.threshold = float(self.threshold)
        else:
            self.threshold = None

    @property
    def positive_class(self) -> Any:
        """The class whose probability is the binary score (``None`` for other tasks)."""
        return self.classes[1] if self.task == "binary" else None

    def check_columns(self, df: pd.DataFrame) -> None:
        """Raise :class:`SchemaError` naming every input column that ``df`` lacks."""
        if not isinstance(df, pd.DataFrame):
            raise SchemaError(
                "input rows must be a pandas DataFrame",
                field="rows",
                received=type(df).__name__,
                expected="a DataFrame with columns " + ", ".join(self.input_columns),
            )
        missing = [c for c in self.input_columns if c not in df.columns]
        if missing:
            raise SchemaError(
                f"input rows lack {len(missing)} column{'s' if len(missing) > 1 else ''} the model needs",
                field=", ".join(missing),
                received=[str(c) for c in df.columns][:20],
                expected="all of: " + ", ".join(self.input_columns),
            )

    def predict_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """Predict from raw rows: a frame with ``score`` and ``decision``, indexed like ``df``.

        ``score`` is the positive-class probability (binary), the top-class probability
        (multiclass) or the predicted value (regression); ``decision`` is
        ``score >= threshold`` (binary), the arg-max label (multiclass) or the value.
        """
        self.check_columns(df)
        booster = self._direct_booster()
        if booster is not None:  # the pipeline's own features, then LightGBM's booster itself
            features, trees = booster
            matrix: Any = _through_columns(features, df, self.input_columns)
            if matrix is None:  # the frame path: the steps' own transform, their own errors
                matrix = self._rows(df)
                for step in features:
                    matrix = step.transform(matrix)
            if isinstance(matrix, np.ndarray):
                out = np.asarray(trees.predict(matrix, num_threads=1), dtype=float)
                if self.task == "regression":
                    return _answers(out, out, df.index)
                proba = out if out.ndim == 2 else np.column_stack([1.0 - out, out])
                return self._classified(proba, df.index)
            # features that are not a dense matrix (sparse output): the wrapper from now on, so
            # they are not transformed twice on every call
            self.__dict__["_booster"] = None
        rows = self._rows(df)
        if self.task == "regression":
            value = np.asarray(self.pipeline.predict(rows), dtype=float)
            return pd.DataFrame({"score": value, "decision": value}, index=df.index)
        return self._classified(np.asarray(self.pipeline.predict_proba(rows), dtype=float), df.index)

    def _rows(self, df: pd.DataFrame) -> pd.DataFrame:
        # a served batch already holds exactly the input columns: selecting them again costs a copy
        return df if df.columns.tolist() == self.input_columns else df.loc[:, self.input_columns]

    def _classified(self, proba: np.ndarray, index: pd.Index) -> pd.DataFrame:
        fitted_classes = np.asarray(self.pipeline.classes_).tolist()
        if self.task == "binary":
            score = proba[:, fitted_classes.index(self.classes[1])]
            return _answers(score, score >= self.threshold, index)
        top = proba.argmax(axis=1)
        labels = np.asarray(fitted_classes, dtype=object)[top]
        return _answers(proba[np.arange(len(top)), top], labels, index)

    def _direct_booster(self) -> tuple[list[Any], Any] | None:
        """(the pipeline without its last step, the LightGBM booster) when the pipeline ends in a
        LightGBM model the booster can score alone, else None; found once, then cached.

        LightGBM's scikit-learn wrapper spends most of a small batch's call outside the trees
        (``get_params``, a deep copy of its parameters, input checks): ~1.7 ms of 2.1 ms on 32
        rows. The booster gives the same numbers (tests/serving/test_fast_paths.py checks it).
        Only plain models qualify: no custom objective, no pandas categoricals, and the features
        must come out as a numpy matrix (checked on the first call; anything else takes the wrapper).
        """
        cached = self.__dict__.get("_booster", _UNSET)
        if cached is not _UNSET:
            return cached
        found = None
        steps: list[Any] = getattr(self.pipeline, "steps", None) or []
        final = steps[-1][1] if steps else None
        if final is not None and type(final).__module__.startswith("lightgbm"):
            plain = getattr(final, "objective", None) is None or isinstance(final.objective, str)
            trees = final.booster_
            if plain and not trees.pandas_categorical:
                # the transforming steps as Pipeline.predict_proba runs them ("passthrough" skipped)
                found = ([s for _, s in steps[:-1] if s is not None and s != "passthrough"], trees)
        self.__dict__["_booster"] = found
        return found

    def __getstate__(self) -> dict[str, Any]:
        # the cached booster is a view into the pipeline: not pickled (a reload finds it again)
        return {k: v for k, v in self.__dict__.items() if k != "_booster"}

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (no pipeline): task, threshold, columns, classes, metadata."""
        return {
            "task": self.task,
            "threshold": self.threshold,
            "input_columns": list(self.input_columns),
            "classes": list(self.classes),
            "metadata": dict(self.metadata),
        }


def _through_columns(steps: list[Any], df: pd.DataFrame, columns: list[str]) -> np.ndarray | None:
    """The feature matrix by the steps' ``transform_columns`` (mlsd's feature steps: derived columns,
    then the compiled features), the input columns handed over as arrays, no frame copied or grown;
    None when a step has no such path or declines (the caller then runs ``transform`` on the frame).

    ~0.3 ms of a small batch went to frame copies, column insertions and per-column Series; the
    arrays are the frame's own (never written to: every kernel copies what it converts).
    """
    if not steps or not all(hasattr(s, "transform_columns") for s in steps):
        return None
    if not df.columns.is_unique:
        return None
    arrays = _arrays(df, columns)
    data: Any = arrays
    for step in steps:
        data = step.transform_columns(data, df.index)
        if data is None:
            return None
    return data if isinstance(data, np.ndarray) else None


def _arrays(df: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    """The columns' arrays (numpy, or pandas' extension arrays), as the frame holds them."""
    get = getattr(df, "_get_column_array", None)  # pandas' own accessor: no Series per column
    position = df.columns.get_loc
    if get is None:  # pragma: no cover - a pandas without it: the public, slower way
        return {
            c: df[c].array if not isinstance(df[c].dtype, np.dtype) else df[c].to_numpy() for c in columns
        }
    return {c: get(position(c)) for c in columns}


_ANSWER_COLUMNS = pd.Index(["score", "decision"])
_FROM_ARRAYS = getattr(pd.DataFrame, "_from_arrays", None)


def _answers(score: np.ndarray, decision: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """The ``score`` / ``decision`` frame. pandas' own constructor from arrays when it has one: the
    dict constructor infers the column names' dtype and copies, ~50 us of a small batch's call."""
    if _FROM_ARRAYS is None:  # pragma: no cover - a pandas without it
        return pd.DataFrame({"score": score, "decision": decision}, index=index)
    return _FROM_ARRAYS([score, decision], columns=_ANSWER_COLUMNS, index=index)

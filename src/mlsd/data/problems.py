"""Data problems a build would otherwise meet deep inside a stage, found where the data is read.

An all-missing or constant feature, infinities, text in a numeric feature, a label with one class
or with nothing to read: each would surface in the feature pipeline or a model as a traceback
(``window shape cannot be larger than input array shape``, ``Input X contains infinity``). Here
each is a :class:`~mlsd.errors.DataError` naming the column, the design field (and its line) that
names it, what was found and what is expected. :func:`check_frame` runs on the prepared table and
:func:`check_split` on its split; both are called by :mod:`mlsd.data.preparation`, so
``mlsd validate`` reports what ``mlsd build`` would stop on. All checks are column-wise
vectorised.

>>> import pandas as pd
>>> from mlsd.design import Design
>>> d = Design.model_validate({"name": "demo", "goals": {"task": "binary", "metric": "roc_auc"},
...     "data": {"source": "x.csv", "label": "y > 0", "split": {"by": "random"}},
...     "features": {"numeric": ["a"]},
...     "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]}})
>>> frame = pd.DataFrame({"a": [1.0, float("inf"), 2.0], "y": [1, 0, 1], "label": [1, 0, 1]})
>>> check_frame(d, frame, [("features.numeric[0]", "a")])
Traceback (most recent call last):
...
mlsd.errors.DataError: features.numeric[0]: column 'a' holds infinite values (received '1 of 3 rows, \
e.g. inf'; expected finite numbers or missing values (filter the rows or derive a clipped column))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from mlsd.data.expressions import parse_expression
from mlsd.data.splits import DataSplit
from mlsd.design import Design
from mlsd.errors import DataError

__all__ = ["check_frame", "check_split", "located_data_error"]


def check_frame(design: Design, frame: pd.DataFrame, features: list[tuple[str, str]]) -> None:
    """Raise :class:`DataError` for the first feature or label problem of the prepared table.

    ``features`` are the ``(field, column)`` pairs the features name
    (:func:`mlsd.data.feature_fields`); a column named twice is checked at its first field.
    """
    if frame.empty:
        raise located_data_error(
            design,
            "the data has no rows",
            field="data.source",
            received=f"{frame.shape[1]} columns, 0 rows",
            expected="a source with rows",
        )
    numeric = _numeric_fields(design)
    for field, col in _first_fields(features):
        if col not in frame.columns:
            continue  # a missing column is reported by the column checks, with suggestions
        s = frame[col]
        if field in numeric:
            s = _as_numbers(design, s, col, field)
            _check_finite(design, s, col, field)
        _check_informative(design, s, col, field)
    _check_label(design, frame)


def check_split(design: Design, split: DataSplit, features: list[tuple[str, str]]) -> None:
    """Raise :class:`DataError` when the training split cannot train what the design asks.

    A feature may be filled in the later months only, and a rare class may fall outside the
    training months: the whole table passes :func:`check_frame`, the training split does not.
    """
    train = split.train
    for field, col in _first_fields(features):
        if col in train.columns and bool(train[col].isna().all()):
            raise located_data_error(
                design,
                f"column {col!r} is missing on every row of the training split",
                field=field,
                received=f"{len(train):,} training rows, none with a value",
                expected="a feature with values in the training split (or drop it from the features)",
            )
    task, target = design.goals.task, design.goals.target
    if task in ("binary", "multiclass") and target in train.columns:
        for name in ("train", "valid") if task == "binary" else ("train",):
            part = getattr(split, name)
            classes = pd.unique(part[target].dropna())
            if len(classes) < 2:
                raise located_data_error(
                    design,
                    f"the {name} split has one class of the label only",
                    field="data.split",
                    received=f"{len(part):,} rows, all {_py(classes[0])!r}"
                    if len(classes)
                    else "no labelled rows",
                    expected=f"both classes in the {name} split (move the split boundaries or use "
                    "by: stratified)",
                )


# -- helpers ----------------------------------------------------------------------------------------


def located_data_error(
    design: Design, message: str, *, field: str, received: Any, expected: str
) -> DataError:
    """A :class:`DataError` at ``field``'s line of the design file (``design.error`` makes DesignErrors)."""
    return DataError(
        message,
        field=field,
        received=received,
        expected=expected,
        file=str(design.path) if design.path else None,
        line=design.line_of(field),
    )


def _first_fields(features: list[tuple[str, str]]) -> list[tuple[str, str]]:
    first: dict[str, str] = {}
    for field, col in features:
        first.setdefault(col, field)
    return [(field, col) for col, field in first.items()]


def _numeric_fields(design: Design) -> set[str]:
    f = design.features
    fields = {f"features.numeric[{i}]" for i in range(len(f.numeric))}
    return fields | {f"features.cyclical.{c}" for c in f.cyclical}


def _as_numbers(design: Design, s: pd.Series, col: str, field: str) -> pd.Series:
    if ptypes.is_bool_dtype(s.dtype) or (
        ptypes.is_numeric_dtype(s.dtype) and not ptypes.is_complex_dtype(s.dtype)
    ):
        return s
    if ptypes.is_datetime64_any_dtype(s.dtype) or ptypes.is_timedelta64_dtype(s.dtype):
        raise located_data_error(
            design,
            f"column {col!r} is a numeric feature but holds dates/times",
            field=field,
            received=str(s.dtype),
            expected="numbers (use features.time_parts for the parts of data.time)",
        )
    numbers = pd.to_numeric(s, errors="coerce")
    bad = s[numbers.isna() & s.notna()]
    if len(bad):
        examples = list(dict.fromkeys(map(str, bad.head(20))))[:3]
        raise located_data_error(
            design,
            f"column {col!r} is a numeric feature but holds text",
            field=field,
            received=f"{len(bad):,} of {len(s):,} rows not numbers, e.g. {examples}",
            expected="numbers or missing values (clean the data, or list the column under categorical)",
        )
    return numbers


def _check_finite(design: Design, s: pd.Series, col: str, field: str) -> None:
    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    inf = np.isinf(values)
    if inf.any():
        raise located_data_error(
            design,
            f"column {col!r} holds infinite values",
            field=field,
            received=f"{int(inf.sum()):,} of {len(values):,} rows, e.g. {values[inf][0]}",
            expected="finite numbers or missing values (filter the rows or derive a clipped column)",
        )


def _check_informative(design: Design, s: pd.Series, col: str, field: str) -> None:
    if bool(s.isna().all()):
        raise located_data_error(
            design,
            f"column {col!r} is missing on every row",
            field=field,
            received=f"{len(s):,} rows, none with a value",
            expected="a column with values (or drop it from the features)",
        )
    values = s.dropna()
    # one value plus missing ones still informs: the pipeline adds a missing-value indicator
    if values.nunique() == 1 and len(values) == len(s):
        raise located_data_error(
            design,
            f"column {col!r} has the same value on every row: it cannot inform a model",
            field=field,
            received=f"{_py(values.iloc[0])!r} on all {len(values):,} rows",
            expected="a column whose values vary (or drop it from the features)",
        )


def _check_label(design: Design, frame: pd.DataFrame) -> None:
    expr, target, task = design.data.label, design.goals.target, design.goals.task
    for col in sorted(parse_expression(expr, field="data.label").columns):
        if col in frame.columns and bool(frame[col].isna().all()):
            raise located_data_error(
                design,
                f"the label reads column {col!r}, which is missing on every row",
                field="data.label",
                received=f"{len(frame):,} rows, none with a value of {col!r}",
                expected="a label expression over columns with values",
            )
    if target not in frame.columns:
        return
    label = frame[target]
    if task == "regression":
        # prepare_data makes a text label missing (unlabelled); a frame checked directly may hold it
        numbers = pd.to_numeric(label, errors="coerce")
        values = numbers.to_numpy(dtype=float, na_value=np.nan)
        if np.isnan(values).all():
            raise located_data_error(
                design,
                "the label is not a number on any row",
                field="data.label",
                received=f"{len(values):,} rows, none numeric",
                expected="a numeric label expression",
            )
        if np.isinf(values).any():
            raise located_data_error(
                design,
                "the label holds infinite values",
                field="data.label",
                received=f"{int(np.isinf(values).sum()):,} of {len(values):,} rows",
                expected="finite numbers (filter the rows with data.filter)",
            )
        return
    classes = pd.unique(label.dropna())
    if len(classes) < 2:
        raise located_data_error(
            design,
            f"the label has one class only: {expr!r} gives {_py(classes[0])!r} on every row"
            if len(classes)
            else "the label has no value on any row",
            field="data.label",
            received=f"{len(label):,} rows, 1 class" if len(classes) else f"{len(label):,} rows, no class",
            expected=f"at least two classes for a {task} task",
        )


def _py(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, so messages show ``3.0``, not ``np.float64(3.0)``."""
    return value.item() if isinstance(value, np.generic) else value

"""The columns monitoring watches: what the model reads, not what the request happens to carry.

A request carries raw input columns; the model reads its **features**, some of them derived
from those inputs (``data.derive``) inside the served pipeline. Drift on a helper column that
only feeds a derived feature (a free-text field, an id, a raw timestamp string) says nothing the
derived feature does not say better, and drift on the derived feature is what the model sees.
So monitoring compares:

- every column named by ``features.numeric``, ``features.categorical``, ``features.cyclical``
  and ``features.crosses``, derived or not (:func:`mlsd.data.feature_fields`);
- not ``features.hashed`` columns (their values are expected to be new: hashing exists for
  that), nor ``data.time`` (time moves forward by nature; its parts drift through the model).

:func:`watched_columns` says which and of what kind; :func:`with_derived` computes the derived
ones from the logged inputs with the data stage's expression language, as the served pipeline
does (:class:`mlsd.features.derived.DeriveColumns` runs the same expressions).

>>> import pandas as pd
>>> frame = pd.DataFrame({"sched_dep_time": [515, 1930]})
>>> with_derived(frame, {"sched_dep_hour": "sched_dep_time // 100"})["sched_dep_hour"].tolist()
[5, 19]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from pandas.api import types as ptypes

from mlsd.data.expressions import evaluate_expression, parse_expression
from mlsd.design import Design
from mlsd.errors import DesignError

__all__ = ["watched_columns", "with_derived"]


def watched_columns(design: Design, frame: pd.DataFrame | None = None) -> dict[str, str | None]:
    """Column -> ``"numeric"`` / ``"categorical"`` for every column monitoring compares.

    The kind comes from the feature group (``numeric`` and ``cyclical`` are numeric,
    ``categorical`` and the members of a cross categorical). A column in no single group takes
    its kind from ``frame`` (strings and booleans are categorical), or ``None`` without a frame.
    """
    # at call time: mlsd.data.preparation loads the splits' scikit-learn, which `mlsd monitor` never uses
    from mlsd.data.preparation import feature_fields

    f = design.features
    # free text is new by nature, like hashed values: not compared as categories
    skip = {*f.hashed, *f.text, design.data.time}
    numeric = {*f.numeric, *f.cyclical}
    categorical = {*f.categorical, *(c for cross in f.crosses for c in cross)}
    out: dict[str, str | None] = {}
    for _, col in feature_fields(design):
        if col in skip or col in out:
            continue
        kinds = {k for k, cols in (("numeric", numeric), ("categorical", categorical)) if col in cols}
        kind = kinds.pop() if len(kinds) == 1 else None
        if kind is None and frame is not None and col in frame.columns:
            dtype = frame[col].dtype
            text = ptypes.is_bool_dtype(dtype) or not ptypes.is_numeric_dtype(dtype)
            kind = "categorical" if text else "numeric"
        out[col] = kind
    return out


def with_derived(frame: pd.DataFrame, derive: Mapping[str, str]) -> pd.DataFrame:
    """``frame`` with the derived columns ``derive`` (name -> expression, in order) added.

    A derived column whose inputs are not all logged, or cannot be read, is left out (drift then
    notes the feature as absent from the window and data quality reports the input); a column
    already in the frame is kept as logged.
    """
    # shallow: the logged columns are shared, not copied (a million-row window is ~400 MB);
    # copy-on-write keeps the caller's frame as it was when columns are added here
    out = frame.copy(deep=False)
    for name, expr in derive.items():
        if name in out.columns:
            continue
        needs = parse_expression(expr, field=f"data.derive.{name}").columns
        if not all(c in out.columns for c in needs):
            continue
        try:
            values = evaluate_expression(out, expr, field=f"data.derive.{name}")
        except (DesignError, TypeError, ValueError):
            # logged values the expression cannot read (text where a number was expected): the
            # feature is noted as absent from the window, and data quality names the bad input
            continue
        out[name] = _as_column(values, len(out))
    return out


def _as_column(values: Any, n: int) -> Any:
    # a constant expression gives a scalar; a column needs one value per row
    return values if isinstance(values, pd.Series) else pd.Series([values] * n)

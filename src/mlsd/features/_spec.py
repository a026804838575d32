"""Validation of a feature spec into a normalised, immutable :class:`FeatureSpec`.

Every problem raises :class:`~mlsd.errors.DesignError` with the design path of the field
(``features.cyclical.month``), what was received and what is expected.

>>> validate_spec({"numeric": ["distance"], "cyclical": {"hour": 24}}).columns
('distance', 'hour')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlsd.errors import DesignError
from mlsd.features.text import validate_text_spec
from mlsd.features.transformers import TIME_PARTS

__all__ = ["COLUMN_GROUPS", "DEFAULT_TIME_PARTS", "IMPUTATION_STRATEGIES", "FeatureSpec", "validate_spec"]

COLUMN_GROUPS = ("numeric", "categorical", "hashed", "cyclical", "text", "time_column")
"""Groups that each own their columns: a column may sit in only one (crosses may reuse any)."""

DEFAULT_TIME_PARTS = ("hour", "dayofweek", "month")
IMPUTATION_STRATEGIES = ("median", "mean", "most_frequent")
_KEYS: tuple[str, ...] = (*COLUMN_GROUPS, "time_parts", "crosses", "rare_min_frequency", "numeric_imputation")
_KEYS = (*_KEYS, "scale", "add_missing_indicator")


@dataclass(frozen=True)
class FeatureSpec:
    """A checked feature spec; ``columns`` lists the raw columns needed, each once."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    hashed: dict[str, int] = field(default_factory=dict)
    cyclical: dict[str, float] = field(default_factory=dict)
    text: dict[str, dict[str, Any]] = field(default_factory=dict)
    time_column: str | None = None
    time_parts: tuple[str, ...] = ()
    crosses: tuple[tuple[str, ...], ...] = ()
    rare_min_frequency: float | int | None = 0.01
    numeric_imputation: str = "median"
    scale: bool = True
    add_missing_indicator: bool = True

    @property
    def columns(self) -> tuple[str, ...]:
        ordered = [*self.numeric, *self.categorical, *self.hashed, *self.cyclical, *self.text]
        if self.time_column is not None:
            ordered.append(self.time_column)
        ordered.extend(c for cross in self.crosses for c in cross)
        return tuple(dict.fromkeys(ordered))


def _names(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise DesignError("must be a list of column names", field=path, received=value, expected="a list")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name:
            raise DesignError(
                "bad column name", field=f"{path}[{i}]", received=name, expected="a non-empty string"
            )
    duplicated = sorted({n for n in value if list(value).count(n) > 1})
    if duplicated:
        raise DesignError("a column is listed twice", field=path, received=duplicated, expected="each once")
    return tuple(value)


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DesignError(
            "must map column names to numbers", field=path, received=value, expected="a mapping"
        )
    for name in value:
        if not isinstance(name, str) or not name:
            raise DesignError("bad column name", field=path, received=name, expected="a non-empty string")
    return dict(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hashed(value: Any) -> dict[str, int]:
    hashed = _mapping(value, "features.hashed")
    for name, n in hashed.items():
        if not _is_number(n) or not math.isfinite(n) or n != int(n) or n < 1:
            raise DesignError(
                "n_features must be a positive integer",
                field=f"features.hashed.{name}",
                received=n,
                expected="an integer >= 1, e.g. 64",
            )
    return {name: int(n) for name, n in hashed.items()}


def _cyclical(value: Any) -> dict[str, float]:
    cyclical = _mapping(value, "features.cyclical")
    for name, period in cyclical.items():
        if not _is_number(period) or not math.isfinite(period) or period <= 0:
            raise DesignError(
                "period must be a positive number",
                field=f"features.cyclical.{name}",
                received=period,
                expected="a number > 0, e.g. 12 for months",
            )
    return {name: float(p) for name, p in cyclical.items()}


def _time(column: Any, parts: Any) -> tuple[str | None, tuple[str, ...]]:
    if column is not None and (not isinstance(column, str) or not column):
        raise DesignError(
            "must be a column name", field="features.time_column", received=column, expected="a column name"
        )
    names = _names(parts, "features.time_parts")
    unknown = [p for p in names if p not in TIME_PARTS]
    if unknown:
        raise DesignError(
            "unknown time part",
            field="features.time_parts",
            received=unknown,
            expected=f"any of {TIME_PARTS}",
        )
    if names and column is None:
        raise DesignError(
            "time_parts need a time column",
            field="features.time_column",
            received=None,
            expected="the name of a date-time column",
        )
    if column is not None and not names:
        names = DEFAULT_TIME_PARTS
    return column, names


def _crosses(value: Any) -> tuple[tuple[str, ...], ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise DesignError(
            "must be a list of column lists",
            field="features.crosses",
            received=value,
            expected="e.g. [[origin, carrier]]",
        )
    crosses = tuple(_names(cross, f"features.crosses[{i}]") for i, cross in enumerate(value))
    for i, cross in enumerate(crosses):
        if len(cross) < 2:
            raise DesignError(
                "a cross needs two or more columns",
                field=f"features.crosses[{i}]",
                received=list(cross),
                expected="e.g. [origin, carrier]",
            )
    return crosses


def _options(params: Mapping[str, Any]) -> dict[str, Any]:
    rare = params.get("rare_min_frequency", 0.01)
    rare_ok = rare is None or (
        _is_number(rare)
        and ((isinstance(rare, int) and rare >= 1) or (isinstance(rare, float) and 0 < rare < 1))
    )
    if not rare_ok:
        raise DesignError(
            "bad rare-category threshold",
            field="features.rare_min_frequency",
            received=rare,
            expected="a share in (0, 1), a count >= 1, or null for no grouping",
        )
    imputation = params.get("numeric_imputation", "median")
    if imputation not in IMPUTATION_STRATEGIES:
        raise DesignError(
            "unknown imputation",
            field="features.numeric_imputation",
            received=imputation,
            expected=f"one of {', '.join(IMPUTATION_STRATEGIES)}",
        )
    flags = {}
    for name in ("scale", "add_missing_indicator"):
        flag = params.get(name, True)
        if not isinstance(flag, bool):
            raise DesignError(
                "must be true or false", field=f"features.{name}", received=flag, expected="true or false"
            )
        flags[name] = flag
    return {"rare_min_frequency": rare, "numeric_imputation": imputation, **flags}


def _check_groups(spec: FeatureSpec) -> None:
    groups = {
        "numeric": spec.numeric,
        "categorical": spec.categorical,
        "hashed": tuple(spec.hashed),
        "cyclical": tuple(spec.cyclical),
        "text": tuple(spec.text),
        "time_column": (spec.time_column,) if spec.time_column is not None else (),
    }
    owner: dict[str, str] = {}
    for group, columns in groups.items():
        for column in columns:
            if column in owner:
                raise DesignError(
                    f"column is already in features.{owner[column]}",
                    field=f"features.{group}.{column}" if group != "time_column" else "features.time_column",
                    received=column,
                    expected=f"each column in one of {', '.join(COLUMN_GROUPS)} (crosses may reuse any)",
                )
            owner[column] = group


def validate_spec(params: Mapping[str, Any]) -> FeatureSpec:
    """Check a spec mapping (the design's ``features`` keys) and return a :class:`FeatureSpec`.

    >>> validate_spec({})
    Traceback (most recent call last):
    mlsd.errors.DesignError: features: no feature columns (expected at least one of numeric, \
categorical, hashed, cyclical, text, time_column, crosses)
    """
    if not isinstance(params, Mapping):
        raise DesignError(
            "must be a mapping", field="features", received=params, expected="a mapping of feature groups"
        )
    unknown = [k for k in params if k not in _KEYS]
    if unknown:
        raise DesignError(
            "unknown key",
            field=f"features.{unknown[0]}",
            received=unknown[0],
            expected=f"one of {', '.join(_KEYS)}",
        )
    time_column, time_parts = _time(params.get("time_column"), params.get("time_parts"))
    spec = FeatureSpec(
        numeric=_names(params.get("numeric"), "features.numeric"),
        categorical=_names(params.get("categorical"), "features.categorical"),
        hashed=_hashed(params.get("hashed")),
        cyclical=_cyclical(params.get("cyclical")),
        text=validate_text_spec(params.get("text")),
        time_column=time_column,
        time_parts=time_parts,
        crosses=_crosses(params.get("crosses")),
        **_options(params),
    )
    if not spec.columns:
        raise DesignError(
            "no feature columns",
            field="features",
            expected=f"at least one of {', '.join(COLUMN_GROUPS)}, crosses",
        )
    _check_groups(spec)
    return spec

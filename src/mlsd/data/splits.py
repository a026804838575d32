"""Leakage-safe train / valid / test splits: by time, by group, or stratified at random.

Each returns a :class:`DataSplit` whose frames keep the original index (so rows can be
traced back) and whose ``describe`` gives the numbers a design review asks for.

>>> import pandas as pd
>>> df = pd.DataFrame({"t": pd.date_range("2013-01-01", periods=12, freq="MS"), "y": [0, 1] * 6})
>>> split = train_valid_test_split_by_time(df, "t", valid_from="2013-07-01", test_from="2013-10-01")
>>> split.sizes()
{'train': 6, 'valid': 3, 'test': 3}
>>> round(split.describe(label="y")["valid"]["label_rate"], 3)
0.333
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from mlsd.errors import DataError, DesignError

__all__ = [
    "DataSplit",
    "train_valid_test_split_by_group",
    "train_valid_test_split_by_time",
    "train_valid_test_split_random",
    "train_valid_test_split_stratified",
]

TimeLike: TypeAlias = str | date | datetime | pd.Timestamp
_SPLITS = ("train", "valid", "test")


@dataclass
class DataSplit:
    """Three disjoint parts of one table; ``by`` is ``"time"``, ``"group"`` or ``"stratified"``.

    ``column`` is the time, group or label column the split was made on.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    by: str
    column: str | None = None

    def parts(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def sizes(self) -> dict[str, int]:
        return {name: len(part) for name, part in self.parts().items()}

    def describe(self, label: str | None = None, time: str | None = None) -> dict[str, dict[str, Any]]:
        """Per split: ``rows``; ``label_rate`` (mean of the label) if ``label``; ``time_min``/``time_max``
        (ISO strings) if ``time`` (defaults to the split column of a time split)."""
        time = time or (self.column if self.by == "time" else None)
        out: dict[str, dict[str, Any]] = {}
        for name, part in self.parts().items():
            row: dict[str, Any] = {"rows": len(part)}
            if label is not None:
                y = part[label]
                rate = pd.to_numeric(y, errors="coerce").mean() if len(part) else float("nan")
                row["label_rate"] = None if pd.isna(rate) else float(rate)
            if time is not None:
                t = parse_time_column(part, time)
                row["time_min"] = None if t.isna().all() else t.min().isoformat()
                row["time_max"] = None if t.isna().all() else t.max().isoformat()
            out[name] = row
        return out


def parse_time_column(df: pd.DataFrame, column: str) -> pd.Series:
    """The time column as datetimes (ISO strings parsed); DesignError when it is missing."""
    if column not in df.columns:
        raise DesignError(
            f"time column {column!r} is not in the data",
            field="data.time",
            received=column,
            expected="one of: " + ", ".join(map(str, df.columns[:30])),
        )
    s = df[column]
    if ptypes.is_datetime64_any_dtype(s.dtype):
        return s
    iso = "ISO8601" if not ptypes.is_numeric_dtype(s.dtype) else None
    try:
        return pd.to_datetime(s, format=iso)
    except (ValueError, TypeError) as exc:
        with contextlib.suppress(ValueError, TypeError):
            # several UTC offsets in one column: one time zone (UTC) makes them comparable
            return pd.to_datetime(s, format=iso, utc=True)
        parsed = pd.to_datetime(s, errors="coerce", format="mixed", utc=True)
        bad = s[parsed.isna() & s.notna()].head(3).tolist()
        raise DataError(
            f"time column {column!r} has values that are not dates/times",
            field=column,
            received=bad or str(exc),
            expected="ISO 8601 dates/times",
        ) from exc


def _boundary(value: TimeLike, times: pd.Series, name: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise DesignError(
            "not a date/time",
            field=f"data.split.{name}",
            received=value,
            expected="an ISO date such as 2013-07-01",
        ) from exc
    tz = getattr(times.dt, "tz", None)
    if tz is not None and ts.tzinfo is None:
        ts = ts.tz_localize(tz)
    elif tz is None and ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def train_valid_test_split_by_time(
    df: pd.DataFrame, time_column: str, valid_from: TimeLike, test_from: TimeLike
) -> DataSplit:
    """Train before ``valid_from``, valid in ``[valid_from, test_from)``, test from ``test_from`` on.

    A naive boundary is read in the data's time zone; naive data with an aware boundary is
    taken as UTC. Rows without a time raise :class:`DataError` (they belong to no split).
    """
    times = parse_time_column(df, time_column)
    if times.isna().any():
        raise DataError(
            f"{int(times.isna().sum())} rows have no time",
            field=time_column,
            received=None,
            expected="a time on every row (filter them out first)",
        )
    lo, hi = _boundary(valid_from, times, "valid_from"), _boundary(test_from, times, "test_from")
    if not lo < hi:
        raise DesignError(
            "valid_from must be earlier than test_from",
            field="data.split.valid_from",
            received=str(valid_from),
            expected=f"a time before test_from={test_from}",
        )
    masks = {"train": times < lo, "valid": (times >= lo) & (times < hi), "test": times >= hi}
    parts = {name: df[mask] for name, mask in masks.items()}
    for name, part in parts.items():
        if part.empty:
            raise DataError(
                f"the {name} split is empty: the data spans "
                f"{times.min().isoformat()} to {times.max().isoformat()}",
                field=f"data.split.{'valid_from' if name != 'test' else 'test_from'}",
                received={"valid_from": str(valid_from), "test_from": str(test_from)},
                expected="boundaries inside the time range of the data",
            )
    return DataSplit(**parts, by="time", column=time_column)


def _check_sizes(valid_size: float, test_size: float) -> None:
    for name, v in (("valid_size", valid_size), ("test_size", test_size)):
        if not 0 < v < 1:
            raise DesignError(
                "must be a fraction", field=f"data.split.{name}", received=v, expected="0 < x < 1"
            )
    if valid_size + test_size >= 1:
        raise DesignError(
            "valid_size + test_size leaves no training data",
            field="data.split.valid_size",
            received=valid_size + test_size,
            expected="valid_size + test_size < 1",
        )


def _check_nonempty(parts: dict[str, pd.DataFrame], by: str) -> None:
    for name, part in parts.items():
        if part.empty:
            raise DataError(
                f"the {name} split is empty",
                field=f"data.split ({by})",
                received={k: len(v) for k, v in parts.items()},
                expected="enough rows (or groups) for three non-empty splits",
            )


def train_valid_test_split_by_group(
    df: pd.DataFrame, group_column: str, *, valid_size: float = 0.15, test_size: float = 0.15, seed: int = 0
) -> DataSplit:
    """Every group (e.g. a customer or an aircraft) lands in exactly one split.

    Sizes are fractions of the groups (scikit-learn's ``GroupShuffleSplit``), not of the rows.
    Missing group values form one group together.
    """
    _check_sizes(valid_size, test_size)
    if group_column not in df.columns:
        raise DesignError(
            f"group column {group_column!r} is not in the data",
            field="data.split.group",
            received=group_column,
            expected="one of: " + ", ".join(map(str, df.columns[:30])),
        )
    groups, _ = pd.factorize(df[group_column], use_na_sentinel=False)
    if len(np.unique(groups)) < 3:
        raise DataError(
            "a group split needs at least 3 groups",
            field=group_column,
            received=len(np.unique(groups)),
            expected=">= 3 distinct groups",
        )
    idx = np.arange(len(df))
    rest, test = next(GroupShuffleSplit(1, test_size=test_size, random_state=seed).split(idx, groups=groups))
    gss = GroupShuffleSplit(1, test_size=valid_size / (1 - test_size), random_state=seed)
    train, valid = next(gss.split(rest, groups=groups[rest]))
    parts = {
        "train": df.iloc[np.sort(rest[train])],
        "valid": df.iloc[np.sort(rest[valid])],
        "test": df.iloc[np.sort(test)],
    }
    _check_nonempty(parts, "group")
    return DataSplit(**parts, by="group", column=group_column)


def _is_classification(y: pd.Series) -> bool:
    if ptypes.is_bool_dtype(y.dtype) or not ptypes.is_numeric_dtype(y.dtype):
        return True
    if ptypes.is_float_dtype(y.dtype) and not np.all(np.mod(y.dropna(), 1) == 0):
        return False
    return y.nunique() <= 20


def train_valid_test_split_stratified(
    df: pd.DataFrame, label_column: str, *, valid_size: float = 0.15, test_size: float = 0.15, seed: int = 0
) -> DataSplit:
    """Random split keeping the label distribution in each part.

    Falls back to a plain random split for a continuous label (floats with fractions, or
    more than 20 distinct numbers) or when a class has too few rows to be stratified.
    """
    _check_sizes(valid_size, test_size)
    if label_column not in df.columns:
        raise DesignError(
            f"label column {label_column!r} is not in the data",
            field="goals.target",
            received=label_column,
            expected="one of: " + ", ".join(map(str, df.columns[:30])),
        )
    y = df[label_column]
    strat = y.astype("str").to_numpy() if _is_classification(y) else None
    if strat is not None and pd.Series(strat).value_counts().min() < 3:
        strat = None
    return _shuffled_split(df, strat, valid_size, test_size, seed, by="stratified", column=label_column)


def train_valid_test_split_random(
    df: pd.DataFrame, *, valid_size: float = 0.15, test_size: float = 0.15, seed: int = 0
) -> DataSplit:
    """Plain random split (rows are independent and nothing is ordered in time).

    >>> import pandas as pd
    >>> train_valid_test_split_random(pd.DataFrame({"x": range(100)}), seed=1).sizes()
    {'train': 69, 'valid': 16, 'test': 15}
    """
    _check_sizes(valid_size, test_size)
    return _shuffled_split(df, None, valid_size, test_size, seed, by="random", column=None)


def _shuffled_split(
    df: pd.DataFrame,
    strat: np.ndarray | None,
    valid_size: float,
    test_size: float,
    seed: int,
    *,
    by: str,
    column: str | None,
) -> DataSplit:
    idx = np.arange(len(df))
    try:
        rest, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=strat)
        train, valid = train_test_split(
            rest,
            test_size=valid_size / (1 - test_size),
            random_state=seed,
            stratify=None if strat is None else strat[rest],
        )
    except ValueError as exc:
        raise DataError(
            f"cannot split {len(df)} rows: {exc}",
            field="data.split",
            received=len(df),
            expected="enough rows for three non-empty splits",
        ) from exc
    parts = {
        "train": df.iloc[np.sort(train)],
        "valid": df.iloc[np.sort(valid)],
        "test": df.iloc[np.sort(test)],
    }
    _check_nonempty(parts, by)
    return DataSplit(**parts, by=by, column=column)

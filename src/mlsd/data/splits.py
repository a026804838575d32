"""Leakage-safe train / valid / test splits: by time, by group, by time and group, or at random.

Each returns a :class:`DataSplit` whose frames keep the original index (so rows can be
traced back) and whose ``describe`` gives the numbers a design review asks for.

Every split takes an optional ``link``: one key per row (e.g. the near-duplicate key of
:func:`mlsd.data.near_duplicates.near_duplicate_keys`); rows sharing a key end in one split.
How depends on the split, and what it changed is in ``DataSplit.adjustments`` (never silent):

* random / stratified: a key's rows move to the split of its first row (rows are moved, none dropped);
* group: the groups joined by shared keys are split as one unit (rows move with their unit);
* time, time + group: a key (or group) belongs to the earliest period it appears in; its rows in
  later periods are held out (moving a December row into training would put the future in
  training, which is the leak a time split exists to prevent).

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
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from mlsd.data.leakage_report import LeakageFinding
from mlsd.data.near_duplicates import link_components
from mlsd.errors import DataError, DesignError

__all__ = [
    "DataSplit",
    "train_valid_test_split_by_group",
    "train_valid_test_split_by_time",
    "train_valid_test_split_by_time_and_group",
    "train_valid_test_split_random",
    "train_valid_test_split_stratified",
]

TimeLike: TypeAlias = str | date | datetime | pd.Timestamp
_SPLITS = ("train", "valid", "test")


@dataclass
class DataSplit:
    """Three disjoint parts of one table; ``by`` is ``"time"``, ``"group"``, ``"time+group"``,
    ``"stratified"`` or ``"random"``.

    ``column`` is the time, group or label column the split was made on (the time column for
    ``time+group``); ``group_column`` the column whose values never cross splits (group splits).
    ``adjustments`` says what keeping linked rows together changed (rows moved or held out).
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    by: str
    column: str | None = None
    group_column: str | None = None
    adjustments: list[LeakageFinding] = field(default_factory=list)
    # per training row, for the candidates' fit (data.labels.quality action down_weight); None: all 1
    train_weight: np.ndarray | None = None

    def parts(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def sizes(self) -> dict[str, int]:
        return {name: len(part) for name, part in self.parts().items()}

    def describe(self, label: str | None = None, time: str | None = None) -> dict[str, dict[str, Any]]:
        """Per split: ``rows``; ``label_rate`` (mean of the label) if ``label``; ``time_min``/``time_max``
        (ISO strings) if ``time`` (defaults to the split column of a time split)."""
        time = time or (self.column if self.by in ("time", "time+group") else None)
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
    df: pd.DataFrame,
    time_column: str,
    valid_from: TimeLike,
    test_from: TimeLike,
    *,
    link: np.ndarray | None = None,
) -> DataSplit:
    """Train before ``valid_from``, valid in ``[valid_from, test_from)``, test from ``test_from`` on.

    A naive boundary is read in the data's time zone; naive data with an aware boundary is
    taken as UTC. Rows without a time raise :class:`DataError` (they belong to no split).
    With ``link``, rows sharing a key in a later period than the key's first are held out.
    """
    period = _periods(df, time_column, valid_from, test_from)
    if link is None:
        parts = {name: df[period == i] for i, name in enumerate(_SPLITS)}
        _check_periods(parts, df, time_column, valid_from, test_from)
        return DataSplit(**parts, by="time", column=time_column)
    keep, note = _earliest_period(period, link, "set of near-duplicates", "near-duplicates")
    parts = {name: df[keep & (period == i)] for i, name in enumerate(_SPLITS)}
    _check_periods(parts, df, time_column, valid_from, test_from, period)
    return DataSplit(**parts, by="time", column=time_column, adjustments=[_dedupe_finding(note)])


def train_valid_test_split_by_time_and_group(
    df: pd.DataFrame,
    time_column: str,
    group_column: str,
    valid_from: TimeLike,
    test_from: TimeLike,
    *,
    link: np.ndarray | None = None,
) -> DataSplit:
    """Time decides the periods and every group lives in exactly one split.

    A group belongs to the split of the earliest period it appears in (an aircraft first seen in
    October is a validation aircraft); its rows in later periods are held out, so no group
    crosses splits and no split reaches back in time. The held-out rows are counted in
    ``adjustments``. With ``link`` (near-duplicate keys), groups joined by a shared key are one
    unit. Missing group values form one group together.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"t": pd.date_range("2013-01-01", periods=6, freq="MS"),
    ...                    "g": ["a", "b", "a", "c", "b", "d"]})
    >>> s = train_valid_test_split_by_time_and_group(df, "t", "g", "2013-03-01", "2013-05-01")
    >>> s.sizes(), s.adjustments[0].evidence["held_out"]
    ({'train': 2, 'valid': 1, 'test': 1}, 2)
    """
    _require_column(df, group_column, "data.split.column")
    period = _periods(df, time_column, valid_from, test_from)
    groups, _ = pd.factorize(df[group_column], use_na_sentinel=False)
    unit = groups if link is None else link_components(groups, link)
    what = f"{group_column} group" + ("" if link is None else " (groups sharing near-duplicates joined)")
    keep, note = _earliest_period(period, unit, what, f"{group_column} groups")
    parts = {name: df[keep & (period == i)] for i, name in enumerate(_SPLITS)}
    _check_periods(parts, df, time_column, valid_from, test_from, period)
    finding = LeakageFinding(
        check="group_time_split" if link is None else "dedupe",
        columns=[group_column],
        detail=note["detail"],
        evidence=note["evidence"],
    )
    return DataSplit(
        **parts, by="time+group", column=time_column, group_column=group_column, adjustments=[finding]
    )


def _periods(df: pd.DataFrame, time_column: str, valid_from: TimeLike, test_from: TimeLike) -> np.ndarray:
    """0 (train), 1 (valid) or 2 (test) per row, from its time and the two boundaries."""
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
    return np.where(times < lo, 0, np.where(times < hi, 1, 2))


def _earliest_period(
    period: np.ndarray, unit: np.ndarray, what: str, plural: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """Rows to keep (those in their unit's earliest period) and a note on the rows held out;
    ``what`` / ``plural`` name a unit in the note (``"tailnum group"``, ``"tailnum groups"``)."""
    first = pd.Series(period).groupby(np.asarray(unit)).transform("min").to_numpy()
    keep = period == first
    held = pd.crosstab(first[~keep], period[~keep]) if (~keep).any() else pd.DataFrame()
    by_pair = {
        f"{_SPLITS[a]}->{_SPLITS[b]}": int(held.loc[a, b])
        for a in held.index
        for b in held.columns
        if held.loc[a, b]
    }
    n = int((~keep).sum())
    pairs = ", ".join(
        f"{v:,} rows of {k.split('->')[0]} {plural} in the {k.split('->')[1]} period"
        for k, v in by_pair.items()
    )
    detail = (
        f"{n:,} rows held out: each {what} belongs to the earliest split it appears in, "
        f"and its rows in later periods are used by no split" + (f" ({pairs})" if pairs else "")
    )
    return keep, {"detail": detail, "evidence": {"held_out": n, "moved": 0, "by_pair": by_pair}}


def _dedupe_finding(note: dict[str, Any], columns: list[str] | None = None) -> LeakageFinding:
    return LeakageFinding(
        check="dedupe", columns=columns or [], detail=note["detail"], evidence=note["evidence"]
    )


def _check_periods(
    parts: dict[str, pd.DataFrame],
    df: pd.DataFrame,
    time_column: str,
    valid_from: TimeLike,
    test_from: TimeLike,
    period: np.ndarray | None = None,
) -> None:
    """An empty split is an error; with ``period``, one emptied by holding rows out says so."""
    for i, (name, part) in enumerate(parts.items()):
        if not part.empty:
            continue
        field_name = f"data.split.{'valid_from' if name != 'test' else 'test_from'}"
        received = {"valid_from": str(valid_from), "test_from": str(test_from)}
        if period is not None and (period == i).any():
            raise DataError(
                f"the {name} split is empty: all {int((period == i).sum()):,} rows of its period belong "
                "to groups (or near-duplicates) first seen in an earlier split, and are held out",
                field=field_name,
                received=received,
                expected="groups that first appear in every period (or a plain time split)",
            )
        times = parse_time_column(df, time_column)
        raise DataError(
            f"the {name} split is empty: the data spans "
            f"{times.min().isoformat()} to {times.max().isoformat()}",
            field=field_name,
            received=received,
            expected="boundaries inside the time range of the data",
        )


def _require_column(df: pd.DataFrame, column: str, field_name: str) -> None:
    if column not in df.columns:
        raise DesignError(
            f"group column {column!r} is not in the data",
            field=field_name,
            received=column,
            expected="one of: " + ", ".join(map(str, df.columns[:30])),
        )


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
    df: pd.DataFrame,
    group_column: str,
    *,
    valid_size: float = 0.15,
    test_size: float = 0.15,
    seed: int = 0,
    link: np.ndarray | None = None,
) -> DataSplit:
    """Every group (e.g. a customer or an aircraft) lands in exactly one split.

    Sizes are fractions of the groups (scikit-learn's ``GroupShuffleSplit``), not of the rows.
    Missing group values form one group together. With ``link``, groups joined by a shared key
    are split as one unit; the rows that land elsewhere than without ``link`` are counted.
    """
    _check_sizes(valid_size, test_size)
    _require_column(df, group_column, "data.split.group")
    groups, _ = pd.factorize(df[group_column], use_na_sentinel=False)
    if len(np.unique(groups)) < 3:
        raise DataError(
            "a group split needs at least 3 groups",
            field=group_column,
            received=len(np.unique(groups)),
            expected=">= 3 distinct groups",
        )
    where = _group_assignment(groups, valid_size, test_size, seed)
    adjustments = []
    if link is not None:
        unit = link_components(groups, link)
        linked = _group_assignment(unit, valid_size, test_size, seed)
        adjustments.append(_moved_finding(where, linked, f"{group_column} groups joined by near-duplicates"))
        where = linked
    parts = {name: df[where == i] for i, name in enumerate(_SPLITS)}
    _check_nonempty(parts, "group")
    return DataSplit(
        **parts, by="group", column=group_column, group_column=group_column, adjustments=adjustments
    )


def _group_assignment(groups: np.ndarray, valid_size: float, test_size: float, seed: int) -> np.ndarray:
    """0 / 1 / 2 (train / valid / test) per row, whole groups at a time."""
    idx = np.arange(len(groups))
    rest, test = next(GroupShuffleSplit(1, test_size=test_size, random_state=seed).split(idx, groups=groups))
    gss = GroupShuffleSplit(1, test_size=valid_size / (1 - test_size), random_state=seed)
    _, valid = next(gss.split(rest, groups=groups[rest]))
    where = np.zeros(len(groups), dtype=np.int64)
    where[test] = 2
    where[rest[valid]] = 1
    return where


def _moved_finding(before: np.ndarray, after: np.ndarray, what: str) -> LeakageFinding:
    """How many rows keeping ``what`` together moved, per (from, to) pair of splits."""
    moved = before != after
    counts = pd.crosstab(before[moved], after[moved]) if moved.any() else pd.DataFrame()
    by_pair = {
        f"{_SPLITS[a]}->{_SPLITS[b]}": int(counts.loc[a, b])
        for a in counts.index
        for b in counts.columns
        if counts.loc[a, b]
    }
    pairs = ", ".join(f"{v} {k.replace('->', ' to ')}" for k, v in by_pair.items())
    n = int(moved.sum())
    return LeakageFinding(
        check="dedupe",
        detail=f"{n:,} rows moved to keep {what} in one split"
        + (f" ({pairs})" if pairs else "")
        + "; none dropped",
        evidence={"moved": n, "held_out": 0, "by_pair": by_pair},
    )


def _is_classification(y: pd.Series) -> bool:
    if ptypes.is_bool_dtype(y.dtype) or not ptypes.is_numeric_dtype(y.dtype):
        return True
    if ptypes.is_float_dtype(y.dtype) and not np.all(np.mod(y.dropna(), 1) == 0):
        return False
    return y.nunique() <= 20


def train_valid_test_split_stratified(
    df: pd.DataFrame,
    label_column: str,
    *,
    valid_size: float = 0.15,
    test_size: float = 0.15,
    seed: int = 0,
    link: np.ndarray | None = None,
) -> DataSplit:
    """Random split keeping the label distribution in each part.

    Falls back to a plain random split for a continuous label (floats with fractions, or
    more than 20 distinct numbers) or when a class has too few rows to be stratified.
    With ``link``, rows sharing a key move to the split of the key's first row.
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
    return _shuffled_split(
        df, strat, valid_size, test_size, seed, by="stratified", column=label_column, link=link
    )


def train_valid_test_split_random(
    df: pd.DataFrame,
    *,
    valid_size: float = 0.15,
    test_size: float = 0.15,
    seed: int = 0,
    link: np.ndarray | None = None,
) -> DataSplit:
    """Plain random split (rows are independent and nothing is ordered in time).

    With ``link``, rows sharing a key move to the split of the key's first row.

    >>> import pandas as pd
    >>> train_valid_test_split_random(pd.DataFrame({"x": range(100)}), seed=1).sizes()
    {'train': 69, 'valid': 16, 'test': 15}
    """
    _check_sizes(valid_size, test_size)
    return _shuffled_split(df, None, valid_size, test_size, seed, by="random", column=None, link=link)


def _shuffled_split(
    df: pd.DataFrame,
    strat: np.ndarray | None,
    valid_size: float,
    test_size: float,
    seed: int,
    *,
    by: str,
    column: str | None,
    link: np.ndarray | None = None,
) -> DataSplit:
    idx = np.arange(len(df))
    try:
        rest, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=strat)
        _, valid = train_test_split(
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
    where = np.zeros(len(df), dtype=np.int64)
    where[test] = 2
    where[valid] = 1  # train_test_split(rest) returns rows of ``rest``, not positions in it
    adjustments = []
    if link is not None:
        # the split of each key's first row (frame order), for all of the key's rows
        linked = pd.Series(where).groupby(np.asarray(link)).transform("first").to_numpy()
        adjustments.append(_moved_finding(where, linked, "near-duplicates"))
        where = linked
    parts = {name: df[where == i] for i, name in enumerate(_SPLITS)}
    _check_nonempty(parts, by)
    return DataSplit(**parts, by=by, column=column, adjustments=adjustments)

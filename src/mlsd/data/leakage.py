"""Leakage checks: forbidden features, time order, duplicates across splits, target leakage.

Each check returns :class:`LeakageFinding` s; :func:`run_leakage_checks` runs them all into a
:class:`LeakageReport`, and the caller decides which checks fail the build (``failing``).

>>> check_forbidden_features(["distance", "dep_delay"], ["dep_delay", "arr_time"])[0].columns
['dep_delay']
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from mlsd.data.leakage_report import LeakageFinding, LeakageReport
from mlsd.data.splits import DataSplit, parse_time_column
from mlsd.data.target_leakage import find_target_leakage
from mlsd.errors import DesignError

__all__ = [
    "LeakageFinding",
    "LeakageReport",
    "check_duplicates_across_splits",
    "check_forbidden_features",
    "check_time_order",
    "find_target_leakage",
    "run_leakage_checks",
]

Check = Literal["forbidden_feature", "time_order", "duplicate_rows", "target_leakage"]
_PAIRS = (("train", "valid"), ("train", "test"), ("valid", "test"))


def check_forbidden_features(features: list[str], forbidden: list[str]) -> list[LeakageFinding]:
    """Each feature the design itself declares forbidden (known only after prediction time)."""
    banned = set(forbidden)
    hit = [f for f in features if f in banned]
    return [
        LeakageFinding(
            check="forbidden_feature",
            columns=[f],
            score=None,
            detail=f"feature {f!r} is declared forbidden but is used as a feature",
        )
        for f in hit
    ]


def check_time_order(split: DataSplit, time_column: str) -> list[LeakageFinding]:
    """Rows of a later split (valid, test) earlier than the latest row of an earlier split."""
    parts = split.parts()
    times = {name: parse_time_column(df, time_column) for name, df in parts.items() if len(df)}
    out = []
    for early, late in _PAIRS:
        if early not in times or late not in times:
            continue
        latest = times[early].max()
        n = int((times[late] < latest).sum())
        if n:
            out.append(
                LeakageFinding(
                    check="time_order",
                    columns=[time_column],
                    score=n / len(times[late]),
                    detail=f"{n} {late} rows are earlier than the latest {early} row ({latest.isoformat()})",
                    evidence={"pair": [early, late], "rows": n, f"latest_{early}": latest.isoformat()},
                )
            )
    return out


def check_duplicates_across_splits(split: DataSplit, columns: list[str]) -> list[LeakageFinding]:
    """Rows identical over ``columns`` (include the label) found in two splits, counted per pair."""
    parts = split.parts()
    for name, df in parts.items():
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DesignError(
                f"column {missing[0]!r} is not in the {name} split",
                field="columns",
                received=missing[0],
                expected="columns present in every split",
            )
    hashes = {
        name: pd.util.hash_pandas_object(df[columns], index=False).to_numpy() for name, df in parts.items()
    }
    out = []
    for a, b in _PAIRS:
        dup = np.isin(hashes[b], hashes[a])
        n = int(dup.sum())
        if n:
            out.append(
                LeakageFinding(
                    check="duplicate_rows",
                    columns=list(columns),
                    score=n / max(len(hashes[b]), 1),
                    detail=f"{n} {b} rows also appear in {a} (identical over {len(columns)} columns)",
                    evidence={"pair": [a, b], "rows": n},
                )
            )
    return out


def run_leakage_checks(
    split: DataSplit,
    *,
    features: list[str],
    label: str | None = None,
    forbidden: list[str] | None = None,
    time_column: str | None = None,
    duplicate_columns: list[str] | None = None,
    task: Literal["binary", "multiclass", "regression"] = "binary",
    target_leakage: bool = True,
    target_features: list[str] | None = None,
    threshold: float = 0.95,
    min_uplift: float = 0.1,
    max_rows: int = 50_000,
    seed: int = 0,
) -> LeakageReport:
    """Run every check that the arguments allow and collect the findings.

    Duplicates are checked over ``duplicate_columns`` (default: the features plus the label);
    target leakage needs ``label`` and is skipped with ``target_leakage=False``; it is measured on
    ``target_features`` (default: the features; a build leaves out the forbidden ones, which the
    forbidden-feature check reports already).
    """
    findings: list[LeakageFinding] = []
    if forbidden:
        findings += check_forbidden_features(features, forbidden)
    if time_column is not None:
        findings += check_time_order(split, time_column)
    dup_cols = duplicate_columns or [*features, *([label] if label else [])]
    findings += check_duplicates_across_splits(split, dup_cols)
    if target_leakage and label is not None:
        scored = features if target_features is None else target_features
        findings += find_target_leakage(
            split.train[scored],
            split.train[label],
            split.valid[scored],
            split.valid[label],
            task=task,
            threshold=threshold,
            min_uplift=min_uplift,
            max_rows=max_rows,
            seed=seed,
        )
    return LeakageReport(findings=findings)

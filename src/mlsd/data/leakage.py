"""Leakage checks: forbidden features, time order, duplicates and near-duplicates across splits,
groups crossing splits, target leakage.

Each check returns :class:`LeakageFinding` s; :func:`run_leakage_checks` runs them all into a
:class:`LeakageReport`, and the caller decides which checks fail the build (``failing``).

>>> check_forbidden_features(["distance", "dep_delay"], ["dep_delay", "arr_time"])[0].columns
['dep_delay']
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from mlsd.data.leakage_report import LeakageFinding, LeakageReport
from mlsd.data.near_duplicates import near_duplicate_keys, text_near_duplicates
from mlsd.data.splits import DataSplit, parse_time_column
from mlsd.data.target_leakage import find_target_leakage
from mlsd.errors import DesignError

__all__ = [
    "LeakageFinding",
    "LeakageReport",
    "check_duplicates_across_splits",
    "check_forbidden_features",
    "check_group_overlap",
    "check_near_duplicates_across_splits",
    "check_text_near_duplicates_across_splits",
    "check_time_order",
    "find_target_leakage",
    "run_leakage_checks",
]

Check = Literal[
    "forbidden_feature", "time_order", "duplicate_rows", "near_duplicates", "group_overlap", "target_leakage"
]
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


def _require_columns(split: DataSplit, columns: list[str]) -> None:
    for name, df in split.parts().items():
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DesignError(
                f"column {missing[0]!r} is not in the {name} split",
                field="columns",
                received=missing[0],
                expected="columns present in every split",
            )


def check_duplicates_across_splits(split: DataSplit, columns: list[str]) -> list[LeakageFinding]:
    """Rows identical over ``columns`` (include the label) found in two splits, counted per pair."""
    parts = split.parts()
    _require_columns(split, columns)
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


def check_near_duplicates_across_splits(
    split: DataSplit, columns: list[str], *, digits: int = 6, examples: int = 3
) -> list[LeakageFinding]:
    """Rows equal over ``columns`` after normalisation (numbers to ``digits`` significant digits,
    text trimmed and case-folded, missing as a value; :mod:`mlsd.data.near_duplicates`) found in
    two splits. Per pair: the later split's rows with a near-duplicate in the earlier one, the
    earlier split's rows involved, how many are not exact duplicates, and a few index pairs.

    >>> import pandas as pd
    >>> from mlsd.data.splits import DataSplit
    >>> df = pd.DataFrame({"x": [1.0, 2.0, 1.0000001, 3.0], "s": ["a", "b", " A", "c"]})
    >>> s = DataSplit(train=df.iloc[:2], valid=df.iloc[[3]], test=df.iloc[[2]], by="random")
    >>> [found] = check_near_duplicates_across_splits(s, ["x", "s"])
    >>> found.evidence["pair"], found.evidence["rows"], found.evidence["examples"]
    (['train', 'test'], 1, [{'train': 0, 'test': 2}])
    """
    _require_columns(split, columns)
    parts = split.parts()
    near = {n: near_duplicate_keys(df, columns, digits=digits) for n, df in parts.items()}
    exact = {n: pd.util.hash_pandas_object(df[columns], index=False).to_numpy() for n, df in parts.items()}
    out = []
    for a, b in _PAIRS:
        in_a = np.isin(near[b], near[a])
        n = int(in_a.sum())
        if not n:
            continue
        n_a = int(np.isin(near[a], near[b][in_a]).sum())
        not_exact = int((in_a & ~np.isin(exact[b], exact[a])).sum())
        first_a = pd.Series(parts[a].index, index=near[a]).groupby(level=0).first()
        shown = [
            {a: _plain(ia), b: _plain(ib)}
            for ib, ia in zip(
                parts[b].index[in_a][:examples], first_a.reindex(near[b][in_a][:examples]), strict=True
            )
        ]
        out.append(
            LeakageFinding(
                check="near_duplicates",
                columns=list(columns),
                score=n / max(len(near[b]), 1),
                detail=(
                    f"{n} {b} rows have a near-duplicate among {n_a} {a} rows ({not_exact} of them "
                    f"not exact copies; equal over {len(columns)} columns with numbers rounded to "
                    f"{digits} significant digits and text case-folded), e.g. "
                    + ", ".join(f"{b} row {e[b]} ~ {a} row {e[a]}" for e in shown)
                ),
                evidence={
                    "pair": [a, b],
                    "rows": n,
                    f"rows_{a}": n_a,
                    "not_exact": not_exact,
                    "examples": shown,
                },
            )
        )
    return out


def _plain(label: object) -> object:
    """An index label JSON can hold (numpy integers become int, the rest their text)."""
    if isinstance(label, np.integer | int):
        return int(label)
    return label if isinstance(label, str) else str(label)


def check_group_overlap(split: DataSplit, group_column: str) -> list[LeakageFinding]:
    """Values of ``group_column`` (missing counts as one value) present in two splits, per pair.

    >>> import pandas as pd
    >>> from mlsd.data.splits import DataSplit
    >>> df = pd.DataFrame({"g": ["a", "b", "a", "c"]})
    >>> s = DataSplit(train=df.iloc[:2], valid=df.iloc[[3]], test=df.iloc[[2]], by="random")
    >>> check_group_overlap(s, "g")[0].detail
    "1 g values are in both train and test (1 test rows), e.g. 'a'"
    """
    _require_columns(split, [group_column])
    parts = split.parts()
    values = {
        n: df[group_column].astype(object).where(df[group_column].notna(), None) for n, df in parts.items()
    }
    out = []
    for a, b in _PAIRS:
        shared = pd.Index(values[a].unique()).intersection(pd.Index(values[b].unique()))
        if len(shared):
            rows = int(values[b].isin(shared).sum())
            out.append(
                LeakageFinding(
                    check="group_overlap",
                    columns=[group_column],
                    score=len(shared) / max(values[b].nunique(dropna=False), 1),
                    detail=f"{len(shared)} {group_column} values are in both {a} and {b} ({rows} {b} rows), "
                    f"e.g. " + ", ".join(repr(v) for v in list(shared[:3])),
                    evidence={"pair": [a, b], "groups": len(shared), "rows": rows},
                )
            )
    return out


def check_text_near_duplicates_across_splits(
    split: DataSplit, columns: list[str], threshold: float = 0.8, *, k: int = 3, seed: int = 0
) -> list[LeakageFinding]:
    """Rows whose ``columns`` (joined) are near-duplicate texts of a row of an earlier split: the
    estimated Jaccard similarity of their k-word shingles (MinHash) is ``threshold`` or more.
    Reported as ``near_duplicates`` findings, per pair of splits.

    >>> from mlsd.data.splits import DataSplit
    >>> df = pd.DataFrame({"t": ["cheap flights to new york today", "a review of the hotel",
    ...                          "Cheap flights to New York today!"]})
    >>> s = DataSplit(train=df.iloc[:2], valid=df.iloc[:0], test=df.iloc[[2]], by="random")
    >>> [found] = check_text_near_duplicates_across_splits(s, ["t"], 0.5)
    >>> found.evidence["pair"], found.evidence["rows"]
    (['train', 'test'], 1)
    """
    _require_columns(split, columns)
    parts = split.parts()
    names = list(parts)
    whole = pd.concat([df[columns] for df in parts.values()], ignore_index=True)
    part_of = np.repeat(np.arange(len(names)), [len(df) for df in parts.values()])
    found = text_near_duplicates(whole, threshold, k=k, seed=seed)
    out = []
    for a, b in _PAIRS:
        in_b = part_of == names.index(b)
        hit = found.has_match_in(part_of == names.index(a)) & in_b
        n = int(hit.sum())
        if n:
            out.append(
                LeakageFinding(
                    check="near_duplicates",
                    columns=list(columns),
                    score=n / max(int(in_b.sum()), 1),
                    detail=f"{n} {b} rows have text near-duplicates in {a} (estimated Jaccard "
                    f">= {threshold:g} over {k}-word shingles of {', '.join(columns)})",
                    evidence={"pair": [a, b], "rows": n, "text": True, "threshold": threshold},
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
    near_duplicate_digits: int = 6,
    text_duplicates: Any = None,
    group_column: str | None = None,
    task: Literal["binary", "multiclass", "regression"] = "binary",
    target_leakage: bool = True,
    target_features: list[str] | None = None,
    threshold: float = 0.95,
    min_uplift: float = 0.1,
    max_rows: int = 50_000,
    seed: int = 0,
) -> LeakageReport:
    """Run every check that the arguments allow and collect the findings.

    Duplicates and near-duplicates are checked over ``duplicate_columns`` (default: the features
    plus the label), near-duplicates with numbers rounded to ``near_duplicate_digits``; groups
    crossing splits over ``group_column`` (default: the split's own group column, if any);
    near-duplicate free text over ``text_duplicates`` (a ``split.dedupe_text`` spec) if given. What
    the split changed to keep linked rows together (``split.adjustments``) is reported too.
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
    findings += check_near_duplicates_across_splits(split, dup_cols, digits=near_duplicate_digits)
    if text_duplicates is not None:  # a TextDedupeSpec: columns, threshold, shingle
        t = text_duplicates
        findings += check_text_near_duplicates_across_splits(split, t.columns, t.threshold, k=t.shingle)
    group = group_column or split.group_column
    if group is not None:
        findings += check_group_overlap(split, group)
    findings += [f.model_copy() for f in split.adjustments]
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

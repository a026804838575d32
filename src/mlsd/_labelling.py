"""``mlsd label``: what to annotate next, the annotation queue, and its answers in the next build.

Orchestration (top level: it reads the data, the registry and the prediction log); the choosing
is :mod:`mlsd.data.active_learning`, the storing :mod:`mlsd.store.annotation_queue`.

- :func:`label_next` scores the unlabelled pool (``data.labels.active.pool``, minus what is
  already queued) or, ``from_log``, the logged predictions that have no feedback, with the
  registered champion, and queues the ``n`` picks of the strategy.
- :func:`import_answers` validates and stores the answers (the labels the task accepts); answers
  to items from the log are also written to the log as their feedback.
- :func:`apply_answers` is the build's step: the pool rows answered get their answer as label,
  the pool rows still unanswered leave the build (their label is unknown, not false).

docs/active-learning.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import DesignError, MlsdError

__all__ = ["LabelRun", "answer_labels", "apply_answers", "import_answers", "label_next", "open_queue"]

_BINARY = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0}


@dataclass(frozen=True)
class LabelRun:
    """What one ``mlsd label --next`` did."""

    source: str  # "pool" or "log"
    strategy: str
    diverse: bool
    pool_size: int
    queued: int
    picked: pd.DataFrame  # item_key, score, then the inputs


def _active(design: Any) -> Any:
    spec = design.data.labels.active
    if spec is None:
        raise design.error(
            "`mlsd label` needs the unlabelled pool",
            field="data.labels.active",
            received=None,
            expected="data.labels.active: {pool: <rows whose label is missing>, key: <column>}",
        )
    if design.goals.task == "regression":
        raise design.error(
            "active learning picks by class probabilities: a classification task",
            field="data.labels.active",
            received="goals.task: regression",
            expected="goals.task: binary or multiclass",
        )
    return spec


def open_queue(system: Any, log_url: str | None = None) -> Any:
    """The workspace's annotation queue (in the prediction log's database)."""
    from mlsd.store.annotation_queue import AnnotationQueue

    return AnnotationQueue.for_workspace(system.workspace, log_url or system.design.deployment.log_url)


def answer_labels(design: Any, classes: list[Any] | None = None) -> dict[str, Any]:
    """The answer texts an import accepts and the label each stores (binary: 1/0, true/false, yes/no)."""
    if design.goals.task == "binary":
        return dict(_BINARY)
    return {str(c): str(c) for c in classes or []}


def _pool_mask(design: Any, frame: pd.DataFrame) -> np.ndarray:
    from mlsd.data.expressions import evaluate_expression

    spec = design.data.labels.active
    try:
        mask = evaluate_expression(frame, spec.pool, field="data.labels.active.pool")
    except DesignError as exc:
        raise design.error(
            exc.message, field="data.labels.active.pool", received=exc.received, expected=exc.expected or ""
        ) from None
    if spec.key not in frame.columns:
        raise design.error(
            "no such column",
            field="data.labels.active.key",
            received=spec.key,
            expected="one of: " + ", ".join(map(str, frame.columns[:30])),
        )
    return mask.fillna(False).astype(bool).to_numpy()


def apply_answers(design: Any, prepared: Any, progress: Any) -> tuple[Any, pd.DataFrame | None]:
    """The build's prepared data with the pool's answers as labels and its unanswered rows left
    out, and those unanswered rows (what ``self_training`` candidates pseudo-label)."""
    spec = design.data.labels.active
    if spec is None:
        return prepared, None
    frame = prepared.frame
    pool = _pool_mask(design, frame)
    from mlsd.store.annotation_queue import AnnotationQueue

    path = design.workspace_dir() / "predictions.db"
    url = design.deployment.log_url
    answers: dict[str, Any] = {}
    if url is not None or path.exists():  # never create a database just to find it empty
        with AnnotationQueue.for_workspace(design.workspace_dir(), url) as queue:
            answers = queue.answers()
    keys = frame[spec.key].astype(str)
    answered = pool & keys.isin(list(answers)).to_numpy()
    keep = ~pool | answered
    target = design.goals.target
    frame = frame.copy()
    if answered.any():
        values = keys[answered].map(answers)
        frame.loc[answered, target] = (
            values.astype(frame[target].dtype) if design.goals.task == "binary" else values
        )
    progress.note(
        f"labels: {int(answered.sum()):,} of {int(pool.sum()):,} unlabelled pool rows answered in the "
        f"annotation queue; the {int((pool & ~answered).sum()):,} unanswered stay out of the build"
    )
    raw = prepared.raw_inputs
    kept = dataclasses.replace(
        prepared,
        frame=frame.loc[keep].reset_index(drop=True),
        raw_inputs=None if raw is None else raw.loc[keep].reset_index(drop=True),
    )
    return kept, frame.loc[~keep].drop(columns=[target]).reset_index(drop=True)


def _features(pipeline: Any, rows: pd.DataFrame) -> Any:
    """The rows as the model sees them (its pipeline's transform before the estimator)."""
    try:
        return pipeline[:-1].transform(rows)
    except Exception:
        numeric = rows.select_dtypes("number").fillna(0.0).to_numpy(float)
        return (numeric - numeric.mean(axis=0)) / (numeric.std(axis=0) + 1e-12)


def label_next(
    system: Any,
    n: int | None = None,
    *,
    strategy: str | None = None,
    diverse: bool | None = None,
    from_log: bool = False,
    log_url: str | None = None,
    seed: int = 0,
) -> LabelRun:
    """Pick the next ``n`` items to annotate and queue them."""
    from mlsd.data import prepare_data
    from mlsd.data.active_learning import bootstrap_committee, select_batch

    design = system.design
    spec = _active(design)
    n = n or spec.batch
    strategy = strategy or spec.strategy
    diverse = spec.diverse if diverse is None else diverse
    packaged, _, _ = system.champion()
    columns = packaged.input_columns
    with open_queue(system, log_url) as queue:
        queued = set(queue.read()["item_key"])
        labelled = None
        if from_log:
            log = system.prediction_log(log_url)
            logged = log.read_predictions()
            logged = logged[logged["outcome"].isna() & ~logged["request_id"].isin(queued)]
            keys = logged["request_id"].astype(str)
            rows = logged.reindex(columns=columns)
        if not from_log or strategy == "committee":
            frame = prepare_data(design).frame
            pool = _pool_mask(design, frame)
            labelled = frame.loc[~pool]
            if not from_log:
                keys = frame[spec.key].astype(str)
                fresh = pool & ~keys.isin(queued).to_numpy()
                keys, rows = keys[fresh], frame.loc[fresh, columns]
        if rows.empty:
            raise MlsdError(
                "nothing left to annotate",
                field="--from-log" if from_log else "data.labels.active.pool",
                received="0 unlabelled items not yet queued",
                expected="logged predictions without feedback" if from_log else "pool rows not yet queued",
            )
        if strategy == "committee":
            assert labelled is not None  # read above whenever the strategy is "committee"
            target = design.goals.target
            proba = bootstrap_committee(
                packaged.pipeline,
                labelled[columns],
                labelled[target].to_numpy(),
                rows,
                members=spec.committee,
                seed=seed,
            )
        else:
            proba = packaged.pipeline.predict_proba(rows)
        picked = select_batch(
            strategy,
            proba,
            min(n, len(rows)),
            features=_features(packaged.pipeline, rows) if diverse else None,
            diverse=diverse,
            seed=seed,
        )
        chosen = rows.iloc[picked.indices].reset_index(drop=True)
        chosen.insert(0, "item_key", keys.iloc[picked.indices].to_numpy())
        added = queue.enqueue(
            chosen, key="item_key", strategy=strategy + "+diverse" * diverse, scores=picked.scores
        )
    chosen.insert(1, "score", picked.scores)
    return LabelRun("log" if from_log else "pool", strategy, diverse, len(rows), added, chosen)


def import_answers(system: Any, path: Path, *, log_url: str | None = None) -> tuple[int, int]:
    """Store the answers of ``path``; (answers stored, of them written to the log as feedback)."""
    design = system.design
    _active(design)
    classes: list[Any] | None = None
    if design.goals.task != "binary":
        classes = list(system.champion()[0].classes)
    with open_queue(system, log_url) as queue:
        stored = queue.import_answers(path, labels=answer_labels(design, classes))
        answers = queue.answers()
    # answers to logged predictions are their natural label too: `mlsd retrain` and the monitor see them
    path_db = system.workspace / "predictions.db"
    fed = 0
    if (log_url or design.deployment.log_url) is not None or path_db.exists():
        from mlsd.errors import ConflictError, NotFoundError

        log = system.prediction_log(log_url)
        logged = set(log.read_predictions_by_id(list(answers))["request_id"]) if answers else set()
        for key in sorted(logged):
            try:
                log.add_feedback(key, answers[key])
                fed += 1
            except (ConflictError, NotFoundError):
                continue  # feedback already there (first write wins): the log keeps the natural label
    return stored, fed

"""Likely label errors (cleanlab over out-of-fold probabilities) and consistency between sources.

:func:`find_label_issues` predicts every training row's class probabilities with a model that
did not see the row (``sklearn.model_selection.cross_val_predict`` over stratified folds) and
asks cleanlab which given labels those probabilities make unlikely
(``cleanlab.filter.find_label_issues``, its default ``prune_by_noise_rate``: the confident
joint estimates how many rows of each given class belong to each other class, and that many
rows with the largest margin are flagged). :func:`issues_from_probabilities` is that last step
alone, for probabilities computed elsewhere. :func:`apply_label_action` then drops the flagged
rows, down-weights them (a sample weight for the fit) or keeps them. :func:`label_consistency`
compares two labellings of the same items.

>>> import numpy as np
>>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.95, 0.05], [0.15, 0.85]])
>>> r = issues_from_probabilities(np.array([0, 0, 1, 1, 1, 1]), probs, keys=list("abcdef"))
>>> r.count, r.examples()[["key", "given", "predicted"]].to_dict("records")
(1, [{'key': 'e', 'given': 1, 'predicted': 0}])
>>> label_consistency(pd.Series({"a": "x", "b": "y"}), pd.Series({"a": "x", "b": "x", "c": "y"})).disagree
1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlsd.data.annotations import require_labels_extra
from mlsd.errors import DataError

__all__ = [
    "LABEL_ACTIONS",
    "Consistency",
    "LabelIssues",
    "apply_label_action",
    "find_label_issues",
    "issues_from_probabilities",
    "label_consistency",
]

#: the values of ``data.labels.quality.action`` and what each does to the training split
LABEL_ACTIONS: dict[str, str] = {
    "drop": "the flagged training rows are removed before any model is fitted",
    "down_weight": "the flagged training rows keep a smaller sample weight in every candidate's fit",
    "keep": "nothing changes; the flagged rows are reported",
}


@dataclass
class LabelIssues:
    """Which rows' given labels the out-of-fold probabilities find unlikely."""

    flagged: np.ndarray  # bool per row
    keys: np.ndarray  # the rows' keys (the item column, or the row number)
    given: np.ndarray  # the given labels
    predicted: np.ndarray  # the most probable class out of fold
    p_given: np.ndarray  # out-of-fold probability of the given label (cleanlab's self-confidence)
    p_predicted: np.ndarray
    classes: list[Any]
    folds: int = 0
    model: str = ""
    oof_accuracy: float = float("nan")  # how often the out-of-fold prediction is the given label
    action: str = "keep"
    changed_rows: int = 0  # rows the action removed or down-weighted
    weight: float | None = None  # down_weight: the flagged rows' sample weight
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.flagged.sum())

    def examples(self, n: int = 20) -> pd.DataFrame:
        """The ``n`` flagged rows whose given label is least probable, least first."""
        frame = pd.DataFrame(
            {
                "key": self.keys,
                "given": self.given,
                "predicted": self.predicted,
                "p_given": self.p_given,
                "p_predicted": self.p_predicted,
            }
        )[self.flagged]
        return frame.sort_values("p_given", kind="stable").head(n).reset_index(drop=True)

    def to_dict(self, examples: int = 20) -> dict[str, Any]:
        shown = self.examples(examples).astype(object)
        return {
            "rows": len(self.flagged),
            "count": self.count,
            "share": float(self.flagged.mean()) if len(self.flagged) else 0.0,
            "folds": self.folds,
            "model": self.model,
            "oof_accuracy": None if not np.isfinite(self.oof_accuracy) else float(self.oof_accuracy),
            "action": self.action,
            "action_effect": LABEL_ACTIONS.get(self.action, ""),
            "changed_rows": self.changed_rows,
            "weight": self.weight,
            "classes": [str(c) for c in self.classes],
            "examples": [
                {k: (round(float(v), 4) if k.startswith("p_") else str(v)) for k, v in row.items()}
                for row in shown.to_dict("records")
            ],
            "notes": list(self.notes),
        }


def issues_from_probabilities(
    labels: np.ndarray, pred_probs: np.ndarray, *, keys: Any = None, classes: list[Any] | None = None
) -> LabelIssues:
    """cleanlab's ``find_label_issues`` on class codes ``labels`` (0..k-1) and their probabilities."""
    flt = require_labels_extra("cleanlab.filter")
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs, dtype=float)
    if pred_probs.ndim != 2 or len(pred_probs) != len(labels):
        raise DataError(
            "the probabilities do not match the labels",
            received=f"{pred_probs.shape} probabilities for {len(labels)} labels",
            expected="one row of class probabilities per label",
        )
    classes = list(range(pred_probs.shape[1])) if classes is None else list(classes)
    flagged = np.asarray(flt.find_label_issues(labels=labels, pred_probs=pred_probs), dtype=bool)
    rows = np.arange(len(labels))
    top = pred_probs.argmax(axis=1)
    names = np.asarray(classes, dtype=object)
    return LabelIssues(
        flagged=flagged,
        keys=np.asarray(rows if keys is None else keys, dtype=object),
        given=names[labels],
        predicted=names[top],
        p_given=pred_probs[rows, labels],
        p_predicted=pred_probs[rows, top],
        classes=classes,
        oof_accuracy=float((top == labels).mean()) if len(labels) else float("nan"),
    )


def find_label_issues(
    X: pd.DataFrame,
    y: Any,
    model: Any,
    *,
    folds: int = 5,
    seed: int = 0,
    keys: Any = None,
    model_name: str = "",
) -> LabelIssues:
    """Out-of-fold probabilities of ``model`` (unfitted, with ``predict_proba``) on ``X``, then cleanlab.

    The folds are stratified; with fewer rows of a class than ``folds`` the folds shrink to that
    count (every fold must see every class for the probabilities' columns to line up), and a
    class with a single row cannot be judged: :class:`DataError`.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    classes, codes = np.unique(np.asarray(y), return_inverse=True)
    if len(classes) < 2:
        raise DataError("label quality needs two classes at least", received=[str(c) for c in classes])
    smallest = int(np.bincount(codes).min())
    if smallest < 2:
        raise DataError(
            "a class has a single training row; its label cannot be judged out of fold",
            received={str(c): int(n) for c, n in zip(classes, np.bincount(codes), strict=True)},
            expected="two rows of every class at least",
        )
    used = min(folds, smallest)
    cv = StratifiedKFold(n_splits=used, shuffle=True, random_state=seed)
    probs = cross_val_predict(model, X, codes, cv=cv, method="predict_proba")
    result = issues_from_probabilities(codes, probs, keys=keys, classes=list(classes))
    result.folds, result.model = used, model_name
    if used < folds:
        result.notes.append(f"{used} folds, not {folds}: the smallest class has {smallest} training rows")
    return result


def apply_label_action(
    train: pd.DataFrame, issues: LabelIssues, action: str, *, weight: float = 0.2
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """``(train, sample_weight)`` after ``action``: ``drop`` removes the flagged rows,
    ``down_weight`` keeps every row with weight ``weight`` on the flagged ones (1 elsewhere),
    ``keep`` changes nothing; the weight is ``None`` unless ``down_weight``.

    ``issues`` must have been computed on ``train`` (one flag per row, in its order).
    """
    if action not in LABEL_ACTIONS:
        raise DataError("unknown label action", received=action, expected=" or ".join(LABEL_ACTIONS))
    if len(issues.flagged) != len(train):
        raise DataError(
            "the label issues were found on other rows",
            received=f"{len(issues.flagged)} flags for {len(train)} rows",
            expected="the training split the issues were computed on",
        )
    if not 0 < weight <= 1:
        raise DataError("a down-weight is in (0, 1]", received=weight, expected="e.g. 0.2")
    issues.action = action
    issues.changed_rows = 0 if action == "keep" else issues.count
    if action == "drop":
        return train.loc[~issues.flagged], None
    if action == "down_weight":
        issues.weight = weight
        return train, np.where(issues.flagged, weight, 1.0)
    return train, None


@dataclass
class Consistency:
    """Items labelled by two sources, and where they differ."""

    sources: tuple[str, str]
    compared: int
    disagree: int
    examples: pd.DataFrame  # item, first, second (the disagreements)

    def to_dict(self, examples: int = 20) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "compared": self.compared,
            "disagree": self.disagree,
            "share": self.disagree / self.compared if self.compared else None,
            "examples": self.examples.head(examples).astype(str).to_dict("records"),
        }


def label_consistency(
    first: pd.Series, second: pd.Series, *, names: tuple[str, str] = ("data.label", "annotations")
) -> Consistency:
    """Compare two labellings (item -> label) on the items both label; labels compared as text."""
    a = first.dropna().astype(str)
    b = second.dropna().astype(str)
    a.index, b.index = a.index.astype(str), b.index.astype(str)
    a = a[~a.index.duplicated(keep="last")]
    both = a.index.intersection(b.index)
    x, y = a.reindex(both), b.reindex(both)
    differ = x.to_numpy() != y.to_numpy()
    examples = pd.DataFrame(
        {"item": both[differ], names[0]: x[differ].to_numpy(), names[1]: y[differ].to_numpy()}
    )
    return Consistency(names, len(both), int(differ.sum()), examples)

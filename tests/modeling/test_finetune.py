"""``monitoring.retrain.mode: finetune``: the champion continued, its old trees and features kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlsd.modeling.finetune import finetune


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    old = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000)})
    new = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000)})
    # the world moved: b now matters as much as a
    return old, (old.a > 0).astype(int), new, (new.a + new.b > 0).astype(int)


def _pipeline(estimator) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("model", estimator)])


def test_lightgbm_keeps_its_trees_and_boosts_on_from_them(data) -> None:
    old, y_old, new, y_new = data
    champion = _pipeline(LGBMClassifier(n_estimators=30, verbose=-1, random_state=0)).fit(old, y_old)
    before = champion.predict_proba(new)[:, 1]
    tuned, why = finetune(champion, new, y_new, rounds=40)
    assert why is None and tuned[-1].booster_.num_trees() == 70
    Xt = champion[0].transform(new)
    # its first 30 trees are the champion's: the margin through them is the champion's margin
    first = tuned[-1].booster_.predict(Xt, num_iteration=30, raw_score=True)
    assert np.allclose(first, champion[-1].booster_.predict(Xt, raw_score=True), atol=1e-12)
    assert np.array_equal(champion.predict_proba(new)[:, 1], before)  # the champion is untouched
    assert roc_auc_score(y_new, tuned.predict_proba(new)[:, 1]) > roc_auc_score(y_new, before) + 0.05


def test_a_warm_startable_estimator_continues_from_its_weights(data) -> None:
    old, y_old, new, y_new = data
    champion = _pipeline(SGDClassifier(loss="log_loss", max_iter=5, tol=None, random_state=0)).fit(old, y_old)
    coef = champion[-1].coef_.copy()
    tuned, why = finetune(champion, new, y_new)
    assert why is None and tuned[-1].warm_start and not np.allclose(tuned[-1].coef_, coef)
    assert np.allclose(champion[-1].coef_, coef)


def test_what_cannot_continue_says_why(data) -> None:
    old, y_old, new, y_new = data
    forest = _pipeline(RandomForestClassifier(n_estimators=5, random_state=0)).fit(old, y_old)
    model, why = finetune(forest, new, y_new)
    assert model is None and "from scratch" in why
    model, why = finetune(LGBMClassifier(n_estimators=5, verbose=-1).fit(old, y_old), new, y_new)
    assert model is None and "pipeline" in why

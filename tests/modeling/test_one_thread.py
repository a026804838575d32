"""predict_on_one_thread reaches estimators inside pipelines and calibration wrappers."""

from __future__ import annotations

import numpy as np
from lightgbm import LGBMClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlsd.modeling import calibrate, predict_on_one_thread


def test_every_nested_estimator_predicts_on_one_thread() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + rng.normal(size=300) > 0).astype(int)
    forest = make_pipeline(
        StandardScaler(), RandomForestClassifier(n_estimators=10, n_jobs=2, random_state=0)
    )
    gbdt = make_pipeline(StandardScaler(), LGBMClassifier(n_estimators=10, n_jobs=2, verbose=-1))
    forest.fit(x[:200], y[:200])
    gbdt.fit(x[:200], y[:200])
    before = forest.predict_proba(x)
    calibrated = calibrate(gbdt, x[200:], y[200:], method="sigmoid")
    predict_on_one_thread(forest)
    predict_on_one_thread(calibrated)
    assert forest.steps[-1][1].n_jobs == 1
    inner = calibrated.calibrated_classifiers_[0].estimator
    inner = getattr(inner, "estimator", inner)
    assert inner.steps[-1][1].n_jobs == 1
    np.testing.assert_array_equal(forest.predict_proba(x), before)  # same predictions, fewer threads

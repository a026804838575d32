"""The serving champion fine-tuned on new labelled rows, where its model type allows.

``monitoring.retrain.mode: finetune`` (docs/retraining.md) adds a row ``champion_finetuned`` to
the retrain build's trade-off table, beside the candidates trained from scratch, so the decision
rule and the holdout comparison choose between them. The champion's fitted feature steps are
kept as they are (the encoders, scalers and hashes it was trained with), and its estimator
continues on the new rows:

* LightGBM: ``rounds`` more trees boosted from the champion's booster (``init_model``), at the
  champion's own learning rate and parameters;
* an estimator with ``warm_start`` (e.g. ``SGDClassifier``, ``MLPClassifier``): fitted again from
  its current weights.

Anything else (a calibrated or resampled wrapper, a forest without ``warm_start`` meaning, an ONNX
model) cannot be continued: :func:`finetune` says why, and the build notes it.

>>> import numpy as np, pandas as pd
>>> from lightgbm import LGBMClassifier
>>> from sklearn.pipeline import Pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> rng = np.random.default_rng(0)
>>> X = pd.DataFrame({"x": rng.normal(size=400)})
>>> champion = Pipeline([("scale", StandardScaler()), ("model", LGBMClassifier(n_estimators=20, verbose=-1))])
>>> _ = champion.fit(X, (X.x > 0).astype(int))
>>> tuned, why = finetune(champion, X, (X.x > 0.5).astype(int), rounds=10)
>>> why is None, tuned[-1].booster_.num_trees(), champion[-1].booster_.num_trees()
(True, 30, 20)
>>> tuned[0] is champion[0]  # the fitted feature steps are the champion's own
True
"""

from __future__ import annotations

import copy
from typing import Any

from sklearn.base import clone
from sklearn.pipeline import Pipeline

__all__ = ["finetune"]


def finetune(champion: Any, X: Any, y: Any, *, rounds: int = 100) -> tuple[Pipeline | None, str | None]:
    """``(model, None)``: the champion continued on ``X, y`` (raw rows); ``(None, why)`` when its
    type cannot be continued. The champion itself is not changed."""
    if not isinstance(champion, Pipeline):
        return None, f"the champion is a {type(champion).__name__}, not a features → estimator pipeline"
    steps, (last_name, estimator) = champion.steps[:-1], champion.steps[-1]
    if any(not hasattr(step, "transform") for _, step in steps):
        return None, "the champion resamples its training rows (a sampler step): only a refit can redo that"
    features = Pipeline(steps) if steps else None
    Xt = features.transform(X) if features is not None else X
    booster = getattr(estimator, "booster_", None)
    if hasattr(estimator, "estimators_"):
        return None, (
            f"a {type(estimator).__name__}'s warm start only adds members fitted on the new rows: "
            "retrain it from scratch"
        )
    if booster is not None and hasattr(estimator, "n_estimators"):
        # LightGBM continues boosting: the old trees stay, `rounds` new ones fit the new rows' residuals
        continued = clone(estimator).set_params(n_estimators=rounds)
        continued.fit(Xt, y, init_model=booster)
    elif "warm_start" in estimator.get_params():
        continued = copy.deepcopy(estimator).set_params(warm_start=True)
        continued.fit(Xt, y)
    else:
        return None, (
            f"a {type(estimator).__name__} cannot continue training (LightGBM or an estimator with "
            "warm_start can): retrain it from scratch"
        )
    return Pipeline([*steps, (last_name, continued)]), None

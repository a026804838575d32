"""Adversarial validation: can a classifier tell the training rows from the test rows?

A LightGBM classifier is trained to tell ``train`` (label 0) from ``test`` (label 1) on the
columns the model reads. Its out-of-fold ROC AUC (stratified k-fold) says how separable the two
splits are: about 0.5 when the test rows look like the training rows, towards 1 when some
feature shifted between them (a test split the model's validation numbers do not speak for).
The interval is the percentile bootstrap of the out-of-fold AUC
(:func:`mlsd.goals.bootstrap.bootstrap_ci`), and the features that separate them are ranked by
their share of the classifiers' total gain. ``models.adversarial`` runs it in every build and
fails the build above ``fail_above`` (docs/splits-and-leakage.md).

It is kept cheap: at most ``sample`` rows of each split, few shallow trees, one thread.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> train = pd.DataFrame({"x": rng.normal(0, 1, 600), "c": rng.choice(["a", "b"], 600)})
>>> test = pd.DataFrame({"x": rng.normal(2, 1, 600), "c": rng.choice(["a", "b"], 600)})
>>> result = adversarial_validation(train, test, ["x", "c"], n_resamples=50)
>>> result.auc > 0.8, result.features[0]["feature"]
(True, 'x')
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import DataError

__all__ = ["AdversarialResult", "adversarial_validation"]

_TOP_FEATURES = 10


@dataclasses.dataclass(frozen=True)
class AdversarialResult:
    """Out-of-fold AUC of train-vs-test with its 95% interval, and the separating features."""

    auc: float
    auc_low: float
    auc_high: float
    folds: int
    n_train: int
    n_test: int
    n_estimators: int
    columns: list[str]
    features: list[dict[str, Any]]  # {feature, importance (share of gain)}, largest first
    fail_above: float | None = None

    @property
    def failed(self) -> bool:
        return self.fail_above is not None and self.auc > self.fail_above

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "failed": self.failed}

    def describe(self) -> str:
        top = ", ".join(f["feature"] for f in self.features[:3]) or "none"
        return (
            f"train vs test AUC {self.auc:.3f} [{self.auc_low:.3f}, {self.auc_high:.3f}] "
            f"on {self.n_train:,} + {self.n_test:,} rows; most separating: {top}"
        )


def _encoded(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """The rows of both splits as LightGBM reads them: numbers, and categories shared by both."""
    rows = pd.concat([f[columns] for f in frames], ignore_index=True)
    out = {}
    for c in columns:
        s = rows[c]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            out[c] = s.astype(float)
        elif pd.api.types.is_datetime64_any_dtype(s):
            out[c] = s.astype("int64").astype(float).where(s.notna())
        else:  # one category set over both splits, so a code means the same value in each
            out[c] = s.astype("string").astype("category")
    return pd.DataFrame(out)


def adversarial_validation(
    train: pd.DataFrame,
    test: pd.DataFrame,
    columns: list[str],
    *,
    sample: int = 20_000,
    folds: int = 3,
    n_estimators: int = 50,
    seed: int = 0,
    fail_above: float | None = None,
    n_resamples: int = 200,
) -> AdversarialResult:
    """How well LightGBM tells ``test`` rows from ``train`` rows on ``columns`` (see the module)."""
    from lightgbm import LGBMClassifier
    from sklearn.model_selection import StratifiedKFold

    from mlsd.goals.bootstrap import bootstrap_ci

    missing = [c for c in columns if c not in train.columns or c not in test.columns]
    if missing or not columns:
        raise DataError(
            "adversarial validation needs the model's input columns in both splits",
            field="models.adversarial",
            received=missing or columns,
            expected="columns present in the train and test splits",
        )
    rng = np.random.default_rng(seed)

    def draw(frame: pd.DataFrame) -> pd.DataFrame:
        if len(frame) <= sample:
            return frame
        return frame.iloc[np.sort(rng.choice(len(frame), sample, replace=False))]

    a, b = draw(train), draw(test)
    if min(len(a), len(b)) < folds:
        raise DataError(
            "too few rows to cross-validate train against test",
            field="models.adversarial.folds",
            received={"train": len(a), "test": len(b)},
            expected=f"at least {folds} rows in each split",
        )
    X = _encoded([a, b], columns)
    y = np.r_[np.zeros(len(a), dtype=int), np.ones(len(b), dtype=int)]
    oof = np.empty(len(y))
    gain = np.zeros(len(columns))
    min_child = int(max(2, min(20, len(y) // (10 * folds))))
    for fit_rows, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        clf = LGBMClassifier(
            n_estimators=n_estimators,
            num_leaves=15,
            learning_rate=0.1,
            min_child_samples=min_child,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            importance_type="gain",
            n_jobs=1,
            random_state=seed,
            verbose=-1,
        )
        clf.fit(X.iloc[fit_rows], y[fit_rows])
        oof[held] = np.asarray(clf.predict_proba(X.iloc[held]))[:, 1]
        gain += clf.booster_.feature_importance(importance_type="gain")
    estimate = bootstrap_ci("roc_auc", y, oof, n_resamples=n_resamples, seed=seed)
    share = gain / gain.sum() if gain.sum() > 0 else gain
    ranked = np.argsort(-share, kind="stable")[:_TOP_FEATURES]
    features = [{"feature": columns[i], "importance": float(share[i])} for i in ranked if share[i] > 0]
    value = float(estimate.value)
    return AdversarialResult(
        auc=value,
        auc_low=float(estimate.low if estimate.low is not None else value),
        auc_high=float(estimate.high if estimate.high is not None else value),
        folds=folds,
        n_train=len(a),
        n_test=len(b),
        n_estimators=n_estimators,
        columns=list(columns),
        features=features,
        fail_above=fail_above,
    )

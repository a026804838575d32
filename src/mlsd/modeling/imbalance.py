"""Class-imbalance resampling (``models.imbalance``) inside the model, on training rows only.

:func:`resampled_model` puts an imbalanced-learn resampler between the fitted feature
pipeline and the estimator, in an :class:`imblearn.pipeline.Pipeline`. Such a pipeline calls
``fit_resample`` only in ``fit``; ``predict`` and ``predict_proba`` skip the resampler, so
validation, test and served rows are scored as they are, one score per row, and the split is
made before any row is resampled.

Resampling moves the training base rate from pi (before) to rho (after), so the estimator's
probabilities answer for a population with base rate rho. :class:`ResampledClassifier` undoes
that for every class with the prior-shift correction (Saerens, Latinne & Decaestecker, 2002)

    p'_k = p_k * pi_k / rho_k / sum_j (p_j * pi_j / rho_j)

which for a binary task is ``p·π/ρ / (p·π/ρ + (1-p)(1-π)/(1-ρ))``. It is exact when the
resampler leaves p(x | y) unchanged (random over- and under-sampling) and close for SMOTE and
Tomek links. pi and rho are counted on the training rows the resampler sees in ``fit``.

imbalanced-learn is imported only when a resampler is made.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from sklearn.preprocessing import StandardScaler
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(600, 2)); y = (X[:, 0] + rng.normal(size=600) > 1.8).astype(int)
>>> model = resampled_model([("scale", StandardScaler())], LogisticRegression(), "random_under")
>>> model.fit(X, y).resampled_counts_.tolist() == [int(y.sum())] * 2
True
>>> model.predict_proba(X[:5]).shape
(5, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from mlsd.errors import DesignError

__all__ = [
    "IMBALANCE_METHODS",
    "RecordingSampler",
    "ResampledClassifier",
    "make_resampler",
    "resampled_model",
]

#: the values of ``models.imbalance`` that resample (``none`` does not)
IMBALANCE_METHODS = ("smote", "tomek", "smote_tomek", "random_under", "random_over")


def make_resampler(method: str, seed: int = 0) -> Any:
    """The unfitted imbalanced-learn resampler ``models.imbalance: method`` names."""
    if method not in IMBALANCE_METHODS:
        raise DesignError(
            "unknown imbalance method",
            field="models.imbalance",
            received=method,
            expected=f"none or one of: {', '.join(IMBALANCE_METHODS)}",
        )
    # lazy: imbalanced-learn is only needed by designs that resample
    from imblearn.combine import SMOTETomek
    from imblearn.over_sampling import SMOTE, RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler, TomekLinks

    makers: dict[str, Any] = {
        "smote": lambda: SMOTE(random_state=seed),
        "tomek": lambda: TomekLinks(),  # deterministic: removes majority members of Tomek links
        "smote_tomek": lambda: SMOTETomek(random_state=seed),
        "random_under": lambda: RandomUnderSampler(random_state=seed),
        "random_over": lambda: RandomOverSampler(random_state=seed),
    }
    return makers[method]()


class RecordingSampler(BaseEstimator):
    """A resampler that also records the class counts it received and returned.

    imbalanced-learn's pipeline calls ``fit_resample`` in ``fit`` only, so what is recorded
    is the training rows (after the feature pipeline) and nothing else.
    """

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def fit_resample(self, X: Any, y: Any) -> tuple[Any, Any]:
        self.sampler_ = clone(self.sampler)
        X_res, y_res = self.sampler_.fit_resample(X, y)
        self.classes_, self.counts_in_ = np.unique(np.asarray(y), return_counts=True)
        classes_out, counts_out = np.unique(np.asarray(y_res), return_counts=True)
        self.counts_out_ = np.zeros_like(self.counts_in_)
        self.counts_out_[np.searchsorted(self.classes_, classes_out)] = counts_out
        self.n_in_ = int(self.counts_in_.sum())
        return X_res, y_res


class ResampledClassifier(ClassifierMixin, BaseEstimator):
    """An imbalanced-learn pipeline (features → :class:`RecordingSampler` → estimator), with its
    probabilities corrected for the prior shift the resampler made (``correct_prior``).

    Fitted attributes: ``pipeline_``, ``classes_``, ``train_counts_`` (per class, before
    resampling), ``resampled_counts_`` (after), ``feature_names_in_`` when the rows had names.
    """

    def __init__(self, pipeline: Any, correct_prior: bool = True) -> None:
        self.pipeline = pipeline
        self.correct_prior = correct_prior

    def fit(self, X: Any, y: Any) -> ResampledClassifier:
        self.pipeline_ = clone(self.pipeline).fit(X, y)
        recorder = self.pipeline_.named_steps["resample"]
        self.classes_ = np.asarray(self.pipeline_.classes_)
        if not np.array_equal(self.classes_, recorder.classes_):  # every class survives resampling
            raise DesignError(
                "the resampler removed a class from the training rows",
                field="models.imbalance",
                received=recorder.sampler,
                expected="a resampler that keeps every class",
            )
        self.train_counts_ = recorder.counts_in_
        self.resampled_counts_ = recorder.counts_out_
        names = getattr(self.pipeline_, "feature_names_in_", None)
        if names is not None:
            self.feature_names_in_ = names
        return self

    def _weights(self) -> np.ndarray:
        """pi_k / rho_k for each class: the likelihood ratio that undoes the resampling."""
        pi = self.train_counts_ / self.train_counts_.sum()
        rho = self.resampled_counts_ / self.resampled_counts_.sum()
        return np.asarray(pi / rho, dtype=float)

    def predict_proba(self, X: Any) -> np.ndarray:
        proba = np.asarray(self.pipeline_.predict_proba(X), dtype=float)
        if not self.correct_prior:
            return proba
        weighted = proba * self._weights()
        total = weighted.sum(axis=1, keepdims=True)
        return np.asarray(weighted / total)

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])


def resampled_model(
    feature_steps: list[tuple[str, Any]],
    estimator: Any,
    method: str,
    *,
    seed: int = 0,
    correct_prior: bool = True,
) -> ResampledClassifier:
    """Unfitted ``feature_steps → resampler(method) → estimator`` as a :class:`ResampledClassifier`."""
    from imblearn.pipeline import Pipeline  # lazy, as in make_resampler

    sampler = RecordingSampler(make_resampler(method, seed))
    pipeline = Pipeline([*feature_steps, ("resample", sampler), ("model", estimator)])
    return ResampledClassifier(pipeline, correct_prior=correct_prior)

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

``oversample_then_finetune`` and ``smote_then_finetune`` (:class:`FinetunedClassifier`) fit the
estimator on over-sampled training rows, then continue training it on the original training rows
(LightGBM: more boosting rounds from the first model, ``init_model``; forests: more trees with
``warm_start``; logistic regression: ``warm_start`` from the first coefficients; ``partial_fit``
where an estimator has it). The continued stage learns on the real base rate, so its
probabilities are not prior-corrected. :func:`finetune_mode` says how, or refuses, a type.

:func:`cost_class_weights` turns ``goals.costs`` into the class weights of
``class_weight: costs``.

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
    "FINETUNE_METHODS",
    "FINETUNE_SHARE",
    "IMBALANCE_METHODS",
    "FinetunedClassifier",
    "RecordingSampler",
    "ResampledClassifier",
    "cost_class_weights",
    "finetune_mode",
    "make_resampler",
    "resampled_model",
]

#: the values of ``models.imbalance`` that over-sample, fit, then continue on the original rows
FINETUNE_METHODS = ("oversample_then_finetune", "smote_then_finetune")
#: the values of ``models.imbalance`` that resample (``none`` does not)
IMBALANCE_METHODS = ("smote", "tomek", "smote_tomek", "random_under", "random_over", *FINETUNE_METHODS)
#: the continued stage adds this share of the first stage's rounds (boosting) or trees (forests)
FINETUNE_SHARE = 0.2


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
        "oversample_then_finetune": lambda: RandomOverSampler(random_state=seed),
        "smote_then_finetune": lambda: SMOTE(random_state=seed),
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
        return self._keep_counts(recorder)

    def _keep_counts(self, recorder: RecordingSampler) -> ResampledClassifier:
        """The fitted attributes every resampled model has (counts before and after, names)."""
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


def finetune_mode(estimator: Any) -> str | None:
    """How ``estimator`` continues training on new rows, or ``None`` when it cannot.

    ``init_model`` (LightGBM: more boosting rounds), ``warm_start`` (more trees for a forest, the
    previous solution as the start for a linear model), ``partial_fit`` (one more pass).
    HistGradientBoosting has ``warm_start`` but re-bins the rows on every fit while its earlier
    trees keep the bins of the first rows, so it cannot continue on other rows.

    >>> from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    >>> finetune_mode(RandomForestClassifier()), finetune_mode(HistGradientBoostingClassifier())
    ('warm_start', None)
    """
    if type(estimator).__name__.startswith("HistGradientBoosting"):
        return None
    if any(c.__name__ == "LGBMModel" for c in type(estimator).__mro__):  # no lightgbm import here
        return "init_model"
    if "warm_start" in estimator.get_params(deep=False):
        return "warm_start"
    if hasattr(estimator, "partial_fit"):
        return "partial_fit"
    return None


def _refuse_finetune(estimator: Any, method: str) -> DesignError:
    return DesignError(
        f"{type(estimator).__name__} cannot continue training on the original rows",
        field="models.imbalance",
        received=method,
        expected="a candidate of type lightgbm, lightgbm_focal, random_forest or logistic_regression "
        "for *_then_finetune, or another imbalance method",
    )


def continue_training(
    estimator: Any, X_first: Any, y_first: Any, X: Any, y: Any, share: float = FINETUNE_SHARE
) -> Any:
    """Fit ``estimator`` on ``(X_first, y_first)``, then continue it on ``(X, y)``; the fitted model.

    The continued stage adds ``share`` of the first stage's boosting rounds or trees (at least one).
    """
    mode = finetune_mode(estimator)
    if mode is None:
        raise _refuse_finetune(estimator, "oversample_then_finetune")
    params = estimator.get_params(deep=False)
    if mode == "init_model":
        first = clone(estimator).fit(X_first, y_first)
        extra = max(1, round(share * params["n_estimators"]))
        # the returned model holds the first model's trees and the extra rounds grown from them
        return clone(estimator).set_params(n_estimators=extra).fit(X, y, init_model=first)
    if mode == "warm_start":
        model = clone(estimator).set_params(warm_start=True).fit(X_first, y_first)
        if "n_estimators" in params:  # an ensemble: the extra trees see the original rows only
            model.set_params(
                n_estimators=params["n_estimators"] + max(1, round(share * params["n_estimators"]))
            )
        return model.fit(X, y)
    model = clone(estimator).fit(X_first, y_first)
    return model.partial_fit(X, y)


class FinetunedClassifier(ResampledClassifier):
    """Features → :class:`RecordingSampler` → estimator fitted on the resampled rows, then
    continued on the original training rows (:func:`continue_training`). Not prior-corrected:
    the last stage learns on the real base rate.

    ``pipeline`` is the same imbalanced-learn pipeline as :class:`ResampledClassifier`'s; fitted,
    ``pipeline_`` is a scikit-learn pipeline of the fitted features and the continued estimator.
    """

    correct_prior = False

    def __init__(self, pipeline: Any, share: float = FINETUNE_SHARE) -> None:
        self.pipeline = pipeline
        self.share = share

    def fit(self, X: Any, y: Any) -> FinetunedClassifier:
        from sklearn.pipeline import Pipeline

        steps = clone(self.pipeline).steps
        *feature_steps, (_, recorder), (_, estimator) = steps
        if finetune_mode(estimator) is None:
            raise _refuse_finetune(estimator, "oversample_then_finetune")
        if feature_steps:
            features = Pipeline(feature_steps)
            Xt = features.fit_transform(X, y)
            feature_steps = features.steps
        else:
            Xt = X
        X_res, y_res = recorder.fit_resample(Xt, y)  # training rows only, once
        model = continue_training(estimator, X_res, y_res, Xt, y, self.share)
        self.pipeline_ = Pipeline([*feature_steps, ("model", model)])
        self.classes_ = np.asarray(model.classes_)
        return self._keep_counts(recorder)


def resampled_model(
    feature_steps: list[tuple[str, Any]],
    estimator: Any,
    method: str,
    *,
    seed: int = 0,
    correct_prior: bool = True,
) -> ResampledClassifier:
    """Unfitted ``feature_steps → resampler(method) → estimator`` as a :class:`ResampledClassifier`
    (a :class:`FinetunedClassifier` for the ``*_then_finetune`` methods)."""
    from imblearn.pipeline import Pipeline  # lazy, as in make_resampler

    sampler = RecordingSampler(make_resampler(method, seed))
    pipeline = Pipeline([*feature_steps, ("resample", sampler), ("model", estimator)])
    if method in FINETUNE_METHODS:
        if finetune_mode(estimator) is None:
            raise _refuse_finetune(estimator, method)
        return FinetunedClassifier(pipeline)
    return ResampledClassifier(pipeline, correct_prior=correct_prior)


def cost_class_weights(costs: Any) -> dict[int, float]:
    """``class_weight: costs``: each class weighted by what misclassifying one of its rows costs.

    ``costs`` is ``goals.costs`` (any object or mapping with the four cost fields). Misclassifying
    a positive costs ``false_negative - true_positive`` more than getting it right, a negative
    ``false_positive - true_negative``; a weighted loss with these weights has its Bayes-optimal
    threshold at 0.5 (Elkan, 2001). Scaled so that the cheaper class weighs 1.

    >>> cost_class_weights({"false_positive": 1, "false_negative": 4})
    {0: 1.0, 1: 4.0}
    """
    from mlsd.goals.costs import CostMatrix

    c = CostMatrix.from_spec(costs)
    regret = {0: c.false_positive - c.true_negative, 1: c.false_negative - c.true_positive}
    if min(regret.values()) <= 0:
        raise DesignError(
            "class weights from costs need every error to cost more than the right decision",
            field="goals.costs",
            received=regret,
            expected="false_positive > true_negative and false_negative > true_positive",
        )
    low = min(regret.values())
    return {k: float(v / low) for k, v in regret.items()}

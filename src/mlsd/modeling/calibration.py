"""Probability calibration of an already fitted classifier on held-out rows.

The fitted model is frozen (:class:`sklearn.frozen.FrozenEstimator`, which replaced
``cv="prefit"``) and a sigmoid (Platt) or isotonic map is learnt on the validation rows, so the
training rows are never reused. Works on a whole ``Pipeline`` fed raw rows.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 2)); y = (X[:, 0] + rng.normal(size=400) > 0).astype(int)
>>> model = LogisticRegression().fit(X[:200], y[:200])
>>> calibrated = calibrate(model, X[200:], y[200:], method="isotonic")
>>> calibrated.predict_proba(X[:3]).shape
(3, 2)
"""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted

from mlsd.errors import DesignError, ModelError

__all__ = ["CALIBRATION_METHODS", "calibrate"]

CALIBRATION_METHODS = ("sigmoid", "isotonic")


def calibrate(
    fitted_model: BaseEstimator, X_valid: Any, y_valid: Any, method: str = "sigmoid"
) -> CalibratedClassifierCV:
    """A calibrated copy of ``fitted_model`` (left untouched), fitted on ``(X_valid, y_valid)``."""
    if method not in CALIBRATION_METHODS:
        raise DesignError(
            "unknown calibration method",
            field="models.calibrate",
            received=method,
            expected=f"one of: {', '.join(CALIBRATION_METHODS)} (or none)",
        )
    if not hasattr(fitted_model, "predict_proba"):
        raise ModelError(
            "only a classifier with predict_proba can be calibrated",
            field="models.calibrate",
            received=type(fitted_model).__name__,
            expected="a fitted classifier",
        )
    check_is_fitted(fitted_model)
    return CalibratedClassifierCV(FrozenEstimator(fitted_model), method=method).fit(X_valid, y_valid)

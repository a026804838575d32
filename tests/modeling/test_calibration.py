"""Calibration lowers ECE of a deliberately miscalibrated model without touching the original."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlsd.errors import DesignError, ModelError
from mlsd.goals import compute_metric
from mlsd.modeling import calibrate


@pytest.fixture(scope="module")
def skewed(flights):
    cols = list(flights.numeric)
    # class_weight="balanced" on ~20 % positives inflates every probability: miscalibrated on purpose
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))
    return model.fit(flights.train[cols], flights.label(flights.train)), cols


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibration_lowers_ece(flights, skewed, method: str) -> None:
    model, cols = skewed
    X_test, y_test = flights.test[cols], flights.label(flights.test)
    before_proba = model.predict_proba(X_test)[:, 1]
    before = compute_metric("ece", y_test, before_proba)
    calibrated = calibrate(model, flights.valid[cols], flights.label(flights.valid), method=method)
    after = compute_metric("ece", y_test, calibrated.predict_proba(X_test)[:, 1])
    assert before > 0.1
    assert after < before / 2
    np.testing.assert_array_equal(model.predict_proba(X_test)[:, 1], before_proba)  # original untouched


def test_errors() -> None:
    X, y = np.arange(20.0).reshape(-1, 1), np.arange(20) % 2
    with pytest.raises(DesignError, match="unknown calibration method") as info:
        calibrate(LogisticRegression().fit(X, y), X, y, method="platt")
    assert info.value.field == "models.calibrate"
    with pytest.raises(ModelError, match="predict_proba"):
        calibrate(LinearRegression().fit(X, y), X, y)

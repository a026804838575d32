"""Focal loss for LightGBM (binary): candidate type ``lightgbm_focal``.

The focal loss (Lin et al., 2017) down-weights the rows a model already gets right, so the
boosting rounds spend their capacity on the hard ones. With p the predicted probability of the
positive class, p_t = p for a positive row and 1 - p for a negative one, and alpha_t = alpha for a
positive row and 1 - alpha for a negative one (1 for both when ``alpha`` is ``None``):

    FL = -alpha_t * (1 - p_t)**gamma * log(p_t)

``gamma = 0`` and ``alpha = None`` is the log loss. LightGBM boosts a raw margin z (p = sigmoid(z))
and needs the first and second derivatives of the loss in z, per row; with s = 2y - 1 (so that
dp_t/dz = s * p_t * (1 - p_t)) they are, vectorised in :func:`focal_grad_hess`,

    grad = s * alpha_t * (1 - p_t)**gamma * (gamma * p_t * log(p_t) - (1 - p_t))
    hess = alpha_t * p_t * (1 - p_t)**gamma
           * ((1 - p_t) * (gamma * log(p_t) + 2 * gamma + 1) - gamma**2 * p_t * log(p_t))

The exact hessian is negative for very wrong rows when gamma > 0 (p_t below ~0.08 at gamma 2);
the objective floors it at a small positive number, as a Newton step needs a positive curvature.

A custom objective gives LightGBM no link function: its predictions are raw margins, and it starts
boosting from 0 (p = 0.5) instead of the base rate. :class:`FocalLGBMClassifier` therefore finds
the constant margin that minimises the focal loss on the training rows (``offset_``), boosts
around it, and returns ``sigmoid(offset_ + raw margin)`` from ``predict_proba``, so it scores,
pickles and serves like any candidate. Like class weights, ``alpha`` and ``gamma`` move the
probabilities away from the real rates (gamma > 0 pulls them towards 0.5); the threshold is still
chosen on validation by cost, and ``models.calibrate`` maps the scores back to probabilities.

>>> import numpy as np
>>> grad, hess = focal_grad_hess(np.array([1.0, 0.0]), np.array([0.0, 0.0]), gamma=0.0)
>>> grad.tolist(), hess.tolist()  # the log loss at p = 0.5
([-0.5, 0.5], [0.25, 0.25])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lightgbm import LGBMClassifier
from lightgbm.sklearn import _ObjectiveFunctionWrapper
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit

from mlsd.errors import DesignError

__all__ = ["FocalLGBMClassifier", "FocalObjective", "focal_grad_hess", "focal_loss"]

_MIN_HESSIAN = 1e-6  # floor of the per-row curvature (the exact one is < 0 for very wrong rows)


def _parts(y: np.ndarray, z: np.ndarray, alpha: float | None) -> tuple[np.ndarray, ...]:
    """s = 2y - 1, p_t, log(p_t) (computed stably from the margin) and alpha_t, per row."""
    s = 2.0 * np.asarray(y, dtype=float) - 1.0
    sz = s * np.asarray(z, dtype=float)
    a = np.ones_like(s) if alpha is None else np.where(s > 0, alpha, 1.0 - alpha)
    return s, expit(sz), log_expit(sz), a


def focal_loss(y: Any, z: Any, gamma: float = 2.0, alpha: float | None = None) -> np.ndarray:
    """The focal loss of each row at raw margin ``z`` (labels ``y`` 0/1).

    >>> round(float(focal_loss(np.array([1.0]), np.array([0.0]), gamma=0.0)[0]), 4)  # log 2
    0.6931
    """
    _, pt, log_pt, a = _parts(y, z, alpha)
    return np.asarray(-a * (1.0 - pt) ** gamma * log_pt)


def focal_grad_hess(
    y: Any, z: Any, gamma: float = 2.0, alpha: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """First and second derivative of :func:`focal_loss` in the margin ``z``, per row (exact)."""
    s, pt, log_pt, a = _parts(y, z, alpha)
    q = 1.0 - pt
    qg = q**gamma
    grad = s * a * qg * (gamma * pt * log_pt - q)
    hess = a * pt * qg * (q * (gamma * log_pt + 2.0 * gamma + 1.0) - gamma**2 * pt * log_pt)
    return np.asarray(grad), np.asarray(hess)


class FocalObjective:
    """LightGBM's custom objective ``(y_true, raw) -> (grad, hess)`` at margin ``offset + raw``.

    A module-level class, not a closure, so the fitted model pickles.
    """

    def __init__(self, gamma: float, alpha: float | None, offset: float) -> None:
        self.gamma, self.alpha, self.offset = gamma, alpha, offset

    def __call__(self, y_true: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grad, hess = focal_grad_hess(y_true, self.offset + raw, self.gamma, self.alpha)
        return grad, np.maximum(hess, _MIN_HESSIAN)


def best_constant(y: np.ndarray, gamma: float, alpha: float | None) -> float:
    """The margin minimising the mean focal loss of a constant model (the log-odds for gamma 0)."""
    mean = float(np.mean(y))
    if mean in (0.0, 1.0):
        return 0.0
    start = float(np.log(mean / (1.0 - mean)))
    found = minimize_scalar(
        lambda c: float(np.mean(focal_loss(y, np.full(len(y), c), gamma, alpha))),
        bounds=(start - 10.0, start + 10.0),
        method="bounded",
        options={"xatol": 1e-8},
    )
    return float(found.x)


class FocalLGBMClassifier(LGBMClassifier):
    """A binary :class:`lightgbm.LGBMClassifier` trained on the focal loss; sigmoid probabilities.

    ``gamma`` (>= 0) is the focusing exponent, ``alpha`` (in (0, 1), or ``None``) the weight of the
    positive class. Every other parameter is LightGBM's (``objective`` is this class's own).
    Fitted attributes besides LightGBM's: ``offset_`` (the constant margin boosting starts from).
    """

    offset_: float

    def __init__(self, *, gamma: float = 2.0, alpha: float | None = None, **kwargs: Any) -> None:
        self.gamma = gamma
        self.alpha = alpha
        super().__init__(**kwargs)

    def _check(self) -> None:
        g, a = self.gamma, self.alpha
        if isinstance(g, bool) or not isinstance(g, int | float) or not 0 <= g <= 20:
            raise DesignError(
                "invalid focal-loss parameter",
                field="params.gamma",
                received=g,
                expected="a number in [0, 20]",
            )
        if a is not None and (isinstance(a, bool) or not isinstance(a, int | float) or not 0 < a < 1):
            raise DesignError(
                "invalid focal-loss parameter",
                field="params.alpha",
                received=a,
                expected="a number in (0, 1), or null for no class weighting",
            )
        if self.objective is not None:
            raise DesignError(
                "lightgbm_focal sets its own objective",
                field="params.objective",
                received=self.objective,
                expected="no objective (use the lightgbm type for LightGBM's built-in objectives)",
            )

    def fit(self, X: Any, y: Any, **kwargs: Any) -> FocalLGBMClassifier:  # type: ignore[override]
        self._check()
        labels = np.unique(np.asarray(y))
        if len(labels) != 2:
            raise DesignError(
                "the focal loss here is binary",
                field="models.candidates.type",
                received=f"{len(labels)} classes",
                expected="a binary task for lightgbm_focal",
            )
        encoded = (np.asarray(y) == labels[1]).astype(float)
        init_model = kwargs.get("init_model")
        if isinstance(init_model, FocalLGBMClassifier):
            # continued boosting (oversample_then_finetune): keep the margin the first trees grew on
            self.offset_ = init_model.offset_
        else:
            self.offset_ = best_constant(encoded, float(self.gamma), self.alpha)
        self._focal = FocalObjective(float(self.gamma), self.alpha, self.offset_)
        super().fit(X, y, **kwargs)
        return self

    def _process_params(self, stage: str) -> dict[str, Any]:
        params = super()._process_params(stage)
        params.pop("gamma", None)  # ours, not LightGBM's (LightGBM knows no such keys)
        params.pop("alpha", None)
        if stage == "fit":
            params["objective"] = _ObjectiveFunctionWrapper(self._focal)  # type: ignore[arg-type]
        return params

    def decision_function(self, X: Any) -> np.ndarray:  # type: ignore[override]
        """The margin ``offset_ + raw``: the log-odds the probabilities are the sigmoid of."""
        raw = super().predict_proba(X, raw_score=True)
        return np.asarray(self.offset_ + np.asarray(raw, dtype=float), dtype=float)

    def predict_proba(self, X: Any, raw_score: bool = False, **kwargs: Any) -> Any:  # type: ignore[override]
        if raw_score or kwargs.get("pred_leaf") or kwargs.get("pred_contrib"):
            return super().predict_proba(X, raw_score=raw_score, **kwargs)
        raw = super().predict_proba(X, raw_score=True, **kwargs)
        p = expit(self.offset_ + np.asarray(raw, dtype=float))
        return np.column_stack([1.0 - p, p])

"""Target leakage: features that predict the label too well to be known at prediction time.

Two parts, both scored on the validation rows after learning on the training rows:

1. **Single feature.** How well each feature ALONE ranks the label. Binary: ROC AUC of the raw
   value, ``max(auc, 1 - auc)`` (missing values take the train median; text and categories are
   replaced by their smoothed train target mean), computed for all columns at once from ranks.
   Multiclass: the mean of the one-vs-rest AUCs. Regression: ``|Spearman|`` between the feature
   and the label. A feature scoring ``>= threshold`` is flagged.
2. **Jointly.** A quick ``HistGradientBoosting`` model on all features. If its validation score
   (AUC; macro one-vs-rest AUC for multiclass; R² for regression) is ``>= threshold`` — too
   good to be true — features are removed one by one, each time the one with the largest
   permutation importance on the validation rows, refitting after each, until the score falls
   below the threshold: these are the leaking set ``L``. Leaks often come in correlated groups
   (``dep_time`` and ``sched_dep_time`` rebuild ``dep_delay``) that mask each other, so the
   removal goes on while the top permutation importance is still ``>= min_uplift``. What
   remains is the clean set ``C`` with score ``s0``. A feature removed in the first phase is
   named; one removed in the second phase is named only if adding it alone to ``C`` raises
   the score by ``>= min_uplift`` (so a merely useful legitimate feature is not named).

Every named feature gets one finding with its evidence: single-feature score, uplift over
the clean set, the score of the model with all features and of the clean model.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from scipy.stats import rankdata

from mlsd.data.leakage_report import LeakageFinding
from mlsd.errors import DesignError

__all__ = ["find_target_leakage", "single_feature_scores"]

Task = Literal["binary", "multiclass", "regression"]
_MAX_CATEGORIES = 250  # HistGradientBoosting bins categories into at most 255 bins
_SMOOTHING = 10.0
# a quick model is enough to tell 0.99 from 0.68; these keep the check at a few seconds on 40k rows
_MAX_ITER = 50
_REPEATS = 2
_PERM_ROWS = 2_000


def _is_numeric(s: pd.Series) -> bool:
    return ptypes.is_numeric_dtype(s.dtype) or ptypes.is_bool_dtype(s.dtype)


def _encode_single(x_train: pd.DataFrame, t_train: np.ndarray, x_valid: pd.DataFrame) -> np.ndarray:
    """A numeric matrix for the valid rows: raw numbers (NaN -> train median), text -> train target mean."""
    cols = []
    prior = float(np.mean(t_train))
    for c in x_train.columns:
        tr, va = x_train[c], x_valid[c]
        if _is_numeric(tr) and _is_numeric(va):
            v = va.astype("float64")
            med = tr.astype("float64").median()
            cols.append(v.fillna(0.0 if pd.isna(med) else med).to_numpy())
        else:
            stats = (
                pd.DataFrame({"k": tr.astype("str").to_numpy(), "t": t_train})
                .groupby("k")["t"]
                .agg(["sum", "count"])
            )
            enc = (stats["sum"] + prior * _SMOOTHING) / (stats["count"] + _SMOOTHING)
            cols.append(va.astype("str").map(enc).fillna(prior).to_numpy(dtype="float64"))
    return np.column_stack(cols) if cols else np.empty((len(x_valid), 0))


def _auc_columns(m: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC AUC of every column of ``m`` against a boolean label, from average ranks (ties count half)."""
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    if n1 == 0 or n0 == 0:
        return np.full(m.shape[1], np.nan)
    ranks = rankdata(m, axis=0)
    auc = (ranks[positive].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.maximum(auc, 1 - auc)


def single_feature_scores(
    x_train: pd.DataFrame,
    y_train: pd.Series,
    x_valid: pd.DataFrame,
    y_valid: pd.Series,
    *,
    task: Task = "binary",
) -> dict[str, float]:
    """Score of each feature alone on the valid rows (see the module docstring)."""
    yt, yv = np.asarray(y_train), np.asarray(y_valid)
    if task == "regression":
        m = _encode_single(x_train, yt.astype("float64"), x_valid)
        rx, ry = rankdata(m, axis=0), rankdata(yv)
        rx, ry = rx - rx.mean(axis=0), ry - ry.mean()
        denom = np.sqrt((rx**2).sum(axis=0) * (ry**2).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            scores = np.abs((rx * ry[:, None]).sum(axis=0) / denom)
    else:
        classes = np.unique(yt)
        targets = classes[-1:] if task == "binary" else classes
        per_class = [
            _auc_columns(_encode_single(x_train, (yt == c).astype("float64"), x_valid), yv == c)
            for c in targets
        ]
        scores = np.nanmean(np.vstack(per_class), axis=0) if per_class else np.array([])
    return {str(c): float(s) for c, s in zip(x_train.columns, scores, strict=True)}


class _Joint:
    """Fits and scores quick models on subsets of the features, caching each subset's score."""

    def __init__(
        self,
        x_train: pd.DataFrame,
        y_train: np.ndarray,
        x_valid: pd.DataFrame,
        y_valid: np.ndarray,
        task: Task,
        seed: int,
        perm_rows: int,
    ) -> None:
        self.task, self.seed = task, seed
        self.xt, self.xv = x_train.copy(), x_valid.copy()
        for c in x_train.columns:
            if _is_numeric(x_train[c]) and _is_numeric(x_valid[c]):
                self.xt[c] = x_train[c].astype("float64")
                self.xv[c] = x_valid[c].astype("float64")
            else:
                top = x_train[c].astype("str").value_counts().index[:_MAX_CATEGORIES]
                dtype = pd.CategoricalDtype(categories=list(top))
                # rare and unseen categories become missing, which HistGradientBoosting handles
                for frame, src in ((self.xt, x_train[c]), (self.xv, x_valid[c])):
                    text = src.astype("str")
                    frame[c] = text.where(text.isin(top)).astype(dtype)
        self.yt, self.yv = y_train, y_valid
        rng = np.random.default_rng(seed)
        n = len(self.xv)
        self.perm_idx = np.sort(rng.choice(n, perm_rows, replace=False)) if n > perm_rows else np.arange(n)
        self.cache: dict[frozenset[str], tuple[float, Any]] = {}

    def _model(self) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingRegressor if self.task == "regression" else HistGradientBoostingClassifier
        return cls(
            max_iter=_MAX_ITER,
            learning_rate=0.2,
            early_stopping=False,
            random_state=self.seed,
            categorical_features="from_dtype",
        )

    def _score(self, model: Any, x: pd.DataFrame, y: np.ndarray) -> float:
        from sklearn.metrics import r2_score, roc_auc_score

        if self.task == "regression":
            return float(r2_score(y, model.predict(x)))
        proba = model.predict_proba(x)
        if self.task == "binary":
            return float(roc_auc_score(y == model.classes_[-1], proba[:, -1]))
        present = np.isin(model.classes_, y)
        scores = [roc_auc_score(y == c, proba[:, i]) for i, c in enumerate(model.classes_) if present[i]]
        return float(np.mean(scores))

    def score(self, cols: list[str]) -> float:
        key = frozenset(cols)
        if key not in self.cache:
            model = self._model().fit(self.xt[cols], self.yt)
            self.cache[key] = (self._score(model, self.xv[cols], self.yv), model)
        return self.cache[key][0]

    def importances(self, cols: list[str]) -> dict[str, float]:
        from sklearn.inspection import permutation_importance

        self.score(cols)
        model = self.cache[frozenset(cols)][1]
        xv, yv = self.xv[cols].iloc[self.perm_idx], self.yv[self.perm_idx]
        res = permutation_importance(
            model,
            xv,
            yv,
            scoring=lambda m, x, y: self._score(m, x, y),
            n_repeats=_REPEATS,
            random_state=self.seed,
        )
        return dict(zip(cols, res.importances_mean.tolist(), strict=True))


def _prepare(
    x: pd.DataFrame, y: pd.Series, name: str, max_rows: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    keep = np.asarray(pd.notna(y))
    x, y = x.loc[keep], y.loc[keep]
    if len(x) > max_rows:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), max_rows, replace=False))
        x, y = x.iloc[idx], y.iloc[idx]
    if len(x) == 0:
        raise DesignError(
            f"no labelled {name} rows to check for target leakage",
            field=f"y_{name}",
            received=0,
            expected="labelled rows",
        )
    return x, np.asarray(y)


def find_target_leakage(
    X_train: pd.DataFrame,
    y_train: pd.Series,
    X_valid: pd.DataFrame,
    y_valid: pd.Series,
    *,
    task: Task = "binary",
    threshold: float = 0.95,
    min_uplift: float = 0.1,
    max_rows: int = 50_000,
    seed: int = 0,
    joint: bool = True,
) -> list[LeakageFinding]:
    """Name the features that leak the target (see the module docstring); rows with no label are ignored."""
    if task not in ("binary", "multiclass", "regression"):
        raise DesignError(
            "unknown task", field="goals.task", received=task, expected="binary, multiclass or regression"
        )
    if list(X_train.columns) != list(X_valid.columns):
        raise DesignError(
            "train and valid features differ",
            field="features",
            received=list(X_valid.columns),
            expected=str(list(X_train.columns)),
        )
    xt, yt = _prepare(X_train, pd.Series(np.asarray(y_train), index=X_train.index), "train", max_rows, seed)
    xv, yv = _prepare(X_valid, pd.Series(np.asarray(y_valid), index=X_valid.index), "valid", max_rows, seed)
    if task != "regression" and min(len(np.unique(yt)), len(np.unique(yv))) < 2:
        return []  # no AUC to judge on a single class
    single = single_feature_scores(xt, pd.Series(yt), xv, pd.Series(yv), task=task)
    evidence: dict[str, dict[str, Any]] = {
        f: {"single_score": s, "flagged_by": ["single"]} for f, s in single.items() if s >= threshold
    }
    if joint and len(xt.columns):
        from threadpoolctl import threadpool_limits

        # On small data, OpenMP start-up in each quick fit/predict costs more than it saves
        # (3x slower with 2 threads on a 2-core machine), so the joint part runs single-threaded.
        with threadpool_limits(1, user_api="openmp"):
            joint_model = _Joint(xt, yt, xv, yv, task, seed, _PERM_ROWS)
            evidence = _joint(
                joint_model, list(map(str, xt.columns)), single, evidence, threshold, min_uplift
            )
    metric = "R2" if task == "regression" else "AUC"
    out = []
    for f, ev in evidence.items():
        parts = [f"alone scores {metric} {ev['single_score']:.3f}"]
        if "uplift" in ev:
            parts.append(f"adds {ev['uplift']:+.3f} {metric} to the clean features ({ev['score_clean']:.3f})")
            parts.append(f"the model with all features scores {ev['score_all']:.3f}")
        out.append(
            LeakageFinding(
                check="target_leakage",
                columns=[f],
                score=ev.get("uplift", ev["single_score"]),
                detail=f"feature {f!r} predicts the label too well: " + "; ".join(parts),
                evidence=ev,
            )
        )
    return out


def _joint(
    j: _Joint,
    features: list[str],
    single: dict[str, float],
    evidence: dict[str, dict[str, Any]],
    threshold: float,
    min_uplift: float,
) -> dict[str, dict[str, Any]]:
    s_all = j.score(features)
    if s_all < threshold:
        return evidence
    kept, hard, soft = list(features), [], []
    s = s_all
    while s >= threshold and len(kept) > 1:
        imp = j.importances(kept)
        top = max(imp, key=imp.__getitem__)
        kept.remove(top)
        hard.append(top)
        s = j.score(kept)
    while len(kept) > 1:
        imp = j.importances(kept)
        top = max(imp, key=imp.__getitem__)
        if imp[top] < min_uplift:
            break
        kept.remove(top)
        soft.append(top)
    s0 = j.score(kept)
    for f in hard + soft:
        uplift = j.score([*kept, f]) - s0
        if f in hard or uplift >= min_uplift:
            ev = evidence.setdefault(f, {"single_score": single[f], "flagged_by": []})
            ev["flagged_by"].append("joint")
            ev |= {"uplift": uplift, "score_all": s_all, "score_clean": s0, "clean_features": list(kept)}
    return evidence

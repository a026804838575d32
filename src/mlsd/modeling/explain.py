"""Why the champion scores what it scores: SHAP contributions per input column, and importances.

:class:`Explainer` splits one fitted model's **raw score** (its margin: the log-odds of the
positive class, each class's margin, or the regression value) into a base value plus one
contribution per *input column*, so that ``base + sum(contributions) == raw score``:

- LightGBM (``lightgbm``, ``lightgbm_focal``, and the ``distilled`` student of ``models.compress``):
  LightGBM's own exact TreeSHAP (``pred_contrib=True``), no extra needed;
- linear models (``logistic_regression``, ``linear_regression``, ``ridge``): ``coef × (x − mean)``
  on the transformed features, the means taken over training rows (what
  ``shap.LinearExplainer`` computes with an independent masker), no extra needed;
- scikit-learn trees (``random_forest``, ``hist_gradient_boosting``): ``shap.TreeExplainer``
  (the ``explain`` extra).

Contributions are computed on the transformed features the estimator reads and mapped back to
the model's input columns (:func:`input_weights`): the one-hot, missing-indicator, sin/cos and
hashed columns of one input are summed; a cross, or a derived column computed from several
inputs, is shared equally among them, so every transformed column's contribution is counted once.
A wrapper around the estimator (calibration, the prior correction of a resampler) is a monotone
map of its score: the contributions explain the margin *before* it, and :attr:`Explainer.notes`
says so. Anything else (an ONNX graph) raises :class:`NotExplainable`.

:func:`explain_champion` is the build's step (``models.explain``): mean |SHAP| per input over a
sample of test rows, scikit-learn's permutation importance on the same rows scored by the design's
metric, and optionally an ablation (the champion refitted without each group of columns).

>>> import pandas as pd
>>> from sklearn.linear_model import LogisticRegression
>>> from sklearn.pipeline import make_pipeline
>>> from mlsd.features import build_feature_pipeline
>>> rows = pd.DataFrame({"distance": [100.0, 900.0, 400.0, 1500.0], "carrier": ["UA", "AA", "UA", "AA"]})
>>> model = make_pipeline(build_feature_pipeline(numeric=["distance"], categorical=["carrier"],
...                                              rare_min_frequency=1), LogisticRegression())
>>> model = model.fit(rows, [0, 1, 0, 1])
>>> explainer = Explainer(model, ["distance", "carrier"], task="binary",
...                       metadata=explain_metadata(model, rows, task="binary"))
>>> c = explainer.explain(rows)
>>> c.columns, c.values.shape, bool(c.max_additivity_error() < 1e-12)
(['distance', 'carrier'], (4, 2, 1), True)
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import MlsdError, ModelError

__all__ = [
    "EXPLAIN_EXTRA",
    "Contributions",
    "Explainer",
    "ExplanationReport",
    "NotExplainable",
    "ablation_importances",
    "explain_champion",
    "explain_metadata",
    "input_weights",
    "needs_shap",
    "permutation_importances",
    "require_shap",
]

EXPLAIN_EXTRA = "pip install 'mlsd[explain]'"
_BACKGROUND_ROWS = 10_000  # training rows whose transformed means a linear explanation is relative to
_PERMUTATION_REPEATS = 5
_ABLATION_TRAIN_ROWS = 20_000  # training rows of each ablation refit (and of the full refit it is judged by)


class NotExplainable(ModelError):
    """The model's score cannot be split into contributions here (the server answers 501)."""


def require_shap(field: str = "models.explain") -> Any:
    """Import ``shap`` (the ``explain`` extra), or a clear :class:`MlsdError` naming the extra."""
    try:
        return importlib.import_module("shap")
    except ImportError as exc:
        raise MlsdError(
            "SHAP values of this model need shap, which is not installed",
            field=field,
            received=str(exc),
            expected=EXPLAIN_EXTRA,
        ) from None


# --- the estimator inside a fitted model ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Parts:
    """A fitted model taken apart: its row-transforming steps, its estimator, and what wraps it."""

    steps: tuple[Any, ...]
    estimator: Any
    notes: tuple[str, ...]

    def transform(self, rows: Any) -> Any:
        for step in self.steps:
            rows = step.transform(rows)
        return rows


def _parts(model: Any) -> _Parts:
    """The estimator at the bottom of calibration, resampling and pipeline wrappers."""
    from sklearn.calibration import CalibratedClassifierCV

    notes: list[str] = []
    for _ in range(10):
        if isinstance(model, CalibratedClassifierCV):
            notes.append(f"the margin before calibration ({model.method}), a monotone map of it")
            model = model.calibrated_classifiers_[0].estimator
        elif type(model).__name__ == "FrozenEstimator":
            model = model.estimator
        elif hasattr(model, "pipeline_"):  # ResampledClassifier, FinetunedClassifier
            if getattr(model, "correct_prior", False):
                notes.append("the margin before the prior correction of the resampling (a constant shift)")
            model = model.pipeline_
        elif hasattr(model, "steps"):
            *head, (_, estimator) = model.steps
            # a sampler (data.augment, a resampler) acts only while fitting; predicting skips it
            steps = tuple(s for _, s in head if hasattr(s, "transform") and not hasattr(s, "fit_resample"))
            return _Parts(steps, estimator, tuple(notes))
        else:
            return _Parts((), model, tuple(notes))
    raise NotExplainable("the model nests too many wrappers", received=type(model).__name__)


_LINEAR = (
    "LogisticRegression",
    "LinearRegression",
    "Ridge",
    "RidgeClassifier",
    "Lasso",
    "ElasticNet",
    "SGDClassifier",
    "SGDRegressor",
)
_SHAP_TREES = (
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "GradientBoostingRegressor",
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
)


def _kind(estimator: Any) -> str:
    """``lightgbm``, ``linear`` or ``tree`` (shap.TreeExplainer), or NotExplainable with the reason."""
    from lightgbm import LGBMModel

    if isinstance(estimator, LGBMModel):
        return "lightgbm"
    students = getattr(estimator, "regressors_", None)  # models.compress distill: DistilledClassifier
    if students and all(isinstance(r, LGBMModel) for r in students):
        return "distilled"
    mro = {c.__name__ for c in type(estimator).__mro__ if c.__module__.startswith("sklearn.")}
    if mro & set(_LINEAR):
        return "linear"
    if mro & set(_SHAP_TREES):
        return "tree"
    raise NotExplainable(
        f"no SHAP explainer for a {type(estimator).__name__}",
        field="model",
        received=type(estimator).__name__,
        expected="a LightGBM, linear or scikit-learn tree model, or a distilled LightGBM student "
        "(an ONNX graph holds no model to explain)",
    )


def _explains_probability(estimator: Any) -> bool:
    """Whether shap's TreeExplainer explains this classifier's probabilities (trees that average
    leaf class frequencies) rather than a margin (gradient boosting)."""
    return type(estimator).__name__.startswith(("RandomForest", "ExtraTrees", "DecisionTree"))


def needs_shap(estimator: Any) -> bool:
    """Whether explaining ``estimator`` (fitted or not) takes shap: the scikit-learn tree models.

    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.linear_model import LogisticRegression
    >>> needs_shap(RandomForestClassifier()), needs_shap(LogisticRegression())
    (True, False)
    """
    try:
        return _kind(estimator) == "tree"
    except NotExplainable:
        return False


# --- transformed columns -> input columns -----------------------------------------------------------


def _one_hot_widths(encoder: Any) -> list[int]:
    infrequent = getattr(encoder, "infrequent_categories_", None) or [None] * len(encoder.categories_)
    return [
        len(cats) if rare is None else len(cats) - len(rare) + 1
        for cats, rare in zip(encoder.categories_, infrequent, strict=True)
    ]


def _feature_sources(features: Any) -> tuple[list[str], np.ndarray]:
    """A FeaturePipeline's input columns and the (n_out × n_in) weights of each output on them."""
    ct = features.column_transformer_
    names = [str(c) for c in features.feature_names_in_]
    index = {c: i for i, c in enumerate(names)}
    weights = np.zeros((features.n_features_out_, len(names)))
    for name, transformer, cols in ct.transformers_:
        part = ct.output_indices_.get(name)
        if part is None or part.stop == part.start or name == "remainder":
            continue
        cols = [str(c) for c in cols]
        width = part.stop - part.start
        if name == "numeric":
            owners = cols
        elif name == "missing":
            owners = [cols[i] for i in transformer.features_]
        elif name == "categorical":
            owners = [
                c for c, w in zip(cols, _one_hot_widths(transformer[-1]), strict=True) for _ in range(w)
            ]
        elif name == "cyclical":
            owners = [c for c in cols for _ in ("sin", "cos")]  # CyclicalEncoder interleaves sin, cos
        else:  # hashed_<c>, time, cross_<a>_x_<b>: every output reads all its columns
            rows = weights[part]
            for c in cols:
                rows[:, index[c]] = 1.0 / len(cols)
            continue
        if len(owners) != width:  # a transformer this mapping does not know: never a silent misattribution
            raise NotExplainable(
                f"cannot map the {width} outputs of feature step {name} to its input columns",
                field="features",
                received=len(owners),
                expected=f"{width} outputs",
            )
        for offset, owner in enumerate(owners):
            weights[part.start + offset, index[owner]] = 1.0
    return names, weights


def _derived_sources(steps: Sequence[Any]) -> dict[str, list[str]]:
    """Each derived column -> the columns its expression reads (chains resolved, DeriveColumns)."""
    from mlsd.data.expressions import parse_expression

    expressions: dict[str, str] = {}
    for step in steps:
        if type(step).__name__ == "DeriveColumns" and step.expressions:
            expressions.update(step.expressions)
    sources: dict[str, list[str]] = {}
    for name, expr in expressions.items():  # in order: a later expression may read an earlier one
        read = sorted(parse_expression(expr, field=f"data.derive.{name}").columns)
        sources[name] = list(dict.fromkeys(r for col in read for r in sources.get(col, [col])))
    return sources


def input_weights(model: Any, input_columns: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``(W, names)``: the estimator's ``n`` transformed columns (named) as weights on the inputs.

    ``W`` is ``(n, len(input_columns))``; each row sums to 1, so ``contributions @ W`` keeps their
    total. A transformed column read from one input belongs to it; one read from several (a cross,
    a derived column of two inputs) is shared equally.

    >>> import pandas as pd
    >>> from sklearn.linear_model import LinearRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from mlsd.features import build_feature_pipeline
    >>> rows = pd.DataFrame({"a": ["x", "y", "x"], "b": ["u", "u", "v"], "n": [1.0, None, 3.0]})
    >>> pipe = make_pipeline(build_feature_pipeline(numeric=["n"], categorical=["a"], crosses=[["a", "b"]],
    ...                                             rare_min_frequency=1), LinearRegression())
    >>> W, names = input_weights(pipe.fit(rows, [1.0, 2.0, 3.0]), ["n", "a", "b"])
    >>> names[:2], W[:2].tolist(), W[-1].tolist()
    (['numeric__n', 'missing__missingindicator_n'], [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], [0.0, 0.5, 0.5])
    """
    parts = _parts(model)
    inputs = [str(c) for c in input_columns]
    at = {c: i for i, c in enumerate(inputs)}
    features = next((s for s in parts.steps if hasattr(s, "column_transformer_")), None)
    if features is not None:
        names = [str(n) for n in features.get_feature_names_out()]
        feature_columns, to_features = _feature_sources(features)
    else:  # the estimator reads the (derived) columns themselves
        seen = getattr(parts.estimator, "feature_names_in_", None)
        feature_columns = [str(c) for c in (seen if seen is not None else inputs)]
        names, to_features = feature_columns, np.eye(len(feature_columns))
    derived = _derived_sources(parts.steps)
    to_inputs = np.zeros((len(feature_columns), len(inputs)))
    for i, column in enumerate(feature_columns):
        sources = derived.get(column, [column])
        unknown = [s for s in sources if s not in at]
        if unknown:
            raise NotExplainable(
                "a feature reads a column that is not an input of the model",
                field=column,
                received=unknown,
                expected="one of: " + ", ".join(inputs),
            )
        for s in sources:
            to_inputs[i, at[s]] = 1.0 / len(sources)
    return to_features @ to_inputs, names


# --- contributions -------------------------------------------------------------------------------


@dataclasses.dataclass
class Contributions:
    """Per-row contributions of each input column to each explained output of the model.

    ``values`` is ``(rows, columns, outputs)``; ``base`` ``(outputs,)``; ``raw`` the model's own raw
    score ``(rows, outputs)``, computed independently, so :meth:`max_additivity_error` checks the sum.
    ``outputs`` names each output: a class label (one per class for multiclass, the positive class
    for binary) or ``"value"`` (regression).
    """

    columns: list[str]
    values: np.ndarray
    base: np.ndarray
    raw: np.ndarray
    outputs: list[Any]

    def max_additivity_error(self) -> float:
        """The largest ``|base + sum(contributions) - raw score|`` over rows and outputs."""
        if not len(self.raw):
            return 0.0
        return float(np.max(np.abs(self.base[None, :] + self.values.sum(axis=1) - self.raw)))

    def mean_abs(self) -> np.ndarray:
        """Mean |contribution| per column over the rows, summed over the outputs (shap's bar plot)."""
        return np.abs(self.values).mean(axis=0).sum(axis=1)


class Explainer:
    """Contributions of a fitted raw-rows model's raw score, per input column.

    ``metadata`` is what :func:`explain_metadata` wrote at build time (the transformed means a
    linear model's contributions are relative to); a tree model needs none. Raises
    :class:`NotExplainable` when the model cannot be explained, and :class:`MlsdError` naming the
    ``explain`` extra when a scikit-learn tree needs shap and it is missing.
    """

    def __init__(
        self,
        model: Any,
        input_columns: Sequence[str],
        *,
        task: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.task = task
        self.columns = [str(c) for c in input_columns]
        self.parts = _parts(model)
        self.estimator = self.parts.estimator
        self.kind = _kind(self.estimator)
        self.weights, self.transformed_names = input_weights(model, self.columns)
        self.notes = list(self.parts.notes)
        self.classes = list(getattr(self.estimator, "classes_", []))
        self._means: np.ndarray | None = None
        self._tree: Any = None
        if self.kind == "linear":
            means = (metadata or {}).get("means")
            if means is None:
                raise NotExplainable(
                    "a linear model's contributions are relative to the training means of its features, "
                    "and this model carries none",
                    field="metadata.explain.means",
                    received=None,
                    expected="a model registered by a build with models.explain enabled",
                )
            self._means = np.asarray(means, dtype=float)
            if self._means.shape != (len(self.transformed_names),):
                raise NotExplainable(
                    "the stored feature means do not match the model's features",
                    field="metadata.explain.means",
                    received=len(self._means),
                    expected=f"{len(self.transformed_names)} means",
                )
        elif self.kind == "tree":
            shap = require_shap("models.explain")
            self._tree = shap.TreeExplainer(self.estimator)

    @property
    def method(self) -> str:
        return {
            "lightgbm": "LightGBM TreeSHAP (pred_contrib, exact)",
            "distilled": "LightGBM TreeSHAP of the distilled student's trees (pred_contrib, exact)",
            "linear": "coef × (x − training mean) on the transformed features (exact)",
            "tree": "shap.TreeExplainer (path-dependent TreeSHAP)",
        }[self.kind]

    @property
    def output(self) -> str:
        """What the raw score is, in words."""
        if self.task == "regression":
            return "the predicted value"
        if self.kind == "tree" and _explains_probability(self.estimator):
            return (
                "the probability of each class"
                if self.task == "multiclass"
                else "the positive-class probability"
            )
        return (
            "each class's margin (softmax input)"
            if self.task == "multiclass"
            else "the log-odds of the positive class"
        )

    def explain(self, rows: pd.DataFrame, *, by_input: bool = True) -> Contributions:
        """The contributions of ``rows`` (raw input rows, every input column present).

        ``by_input=False`` keeps them on the transformed columns the estimator reads
        (:attr:`transformed_names`), before they are mapped to the input columns.
        """
        X = np.asarray(self.parts.transform(rows.loc[:, self.columns]), dtype=np.float64)
        if self.kind in ("lightgbm", "distilled"):
            values, base, raw = self._lightgbm(X)
        elif self.kind == "linear":
            values, base, raw = self._linear(X)
        else:
            values, base, raw = self._shap_tree(X)
        outputs: list[Any] = ["value"] if self.task == "regression" else self.classes
        if self.task == "binary":
            outputs = self.classes[1:2]
        if not by_input:
            return Contributions(self.transformed_names, values, base, raw, outputs)
        mapped = np.einsum("npk,pm->nmk", values, self.weights)
        return Contributions(self.columns, mapped, base, raw, outputs)

    def _lightgbm(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, p = X.shape
        # a distilled student has one regressor per output (the positive logit, or each class's
        # centred log-probability), each a LightGBM of its own
        models = self.estimator.regressors_ if self.kind == "distilled" else [self.estimator]
        boosters = [m.booster_ for m in models]
        contrib = np.concatenate(
            [
                np.asarray(b.predict(X, pred_contrib=True), dtype=float).reshape(n, -1, p + 1)
                for b in boosters
            ],
            axis=1,
        )
        raw = np.concatenate(
            [np.asarray(b.predict(X, raw_score=True), dtype=float).reshape(n, -1) for b in boosters], axis=1
        )
        # lightgbm_focal boosts around a constant margin of its own (FocalLGBMClassifier.offset_)
        offset = float(getattr(self.estimator, "offset_", 0.0))
        base = contrib[:, :, p].mean(axis=0) + offset  # the expected value: the same on every row
        return contrib[:, :, :p].transpose(0, 2, 1), base, raw + offset

    def _linear(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self._means is not None
        coef = np.atleast_2d(np.asarray(self.estimator.coef_, dtype=float))  # (outputs, features)
        intercept = np.broadcast_to(np.asarray(self.estimator.intercept_, dtype=float), (coef.shape[0],))
        values = (X - self._means)[:, :, None] * coef.T[None, :, :]
        base = self._means @ coef.T + intercept
        if hasattr(self.estimator, "decision_function"):
            raw = self.estimator.decision_function(X)
        else:
            raw = self.estimator.predict(X)
        return values, base, np.asarray(raw, dtype=float).reshape(len(X), -1)

    def _shap_tree(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        values = np.asarray(self._tree.shap_values(X, check_additivity=False), dtype=float)
        base = np.atleast_1d(np.asarray(self._tree.expected_value, dtype=float))
        if values.ndim == 2:
            values = values[:, :, None]
        est = self.estimator
        if _explains_probability(est):
            raw = est.predict_proba(X) if self.task != "regression" else est.predict(X)
        else:
            raw = est.decision_function(X) if self.task != "regression" else est.predict(X)
        raw = np.asarray(raw, dtype=float).reshape(len(X), -1)
        if self.task == "binary" and values.shape[2] == 2:  # a probability per class: the positive one
            values, base, raw = values[:, :, 1:], base[1:], raw[:, 1:]
        return values, base, raw


def explain_metadata(model: Any, background: pd.DataFrame, *, task: str) -> dict[str, Any]:
    """What serving needs to explain ``model`` later, for the packaged model's metadata.

    The means of the transformed features over ``background`` (training rows) for a linear model;
    the kind and the method for every model. Raises :class:`NotExplainable` like :class:`Explainer`.
    """
    parts = _parts(model)
    kind = _kind(parts.estimator)
    out: dict[str, Any] = {"kind": kind, "n_background": len(background)}
    if kind == "linear":
        X = np.asarray(parts.transform(background), dtype=np.float64)
        out["means"] = X.mean(axis=0).tolist()
    return out


# --- importances -------------------------------------------------------------------------------------


def _scorer(metric: Any, task: str, classes: Sequence[Any], threshold: float) -> Any:
    """``scorer(model, X, y)`` for permutation_importance: the metric, larger always better."""
    from mlsd.goals.metrics import compute_metric
    from mlsd.modeling.evaluation import model_scores

    sign = 1.0 if metric.greater_is_better else -1.0

    def score(model: Any, X: Any, y: Any) -> float:
        scores, _ = model_scores(model, X, task)
        if task == "binary":
            y = (np.asarray(y) == classes[1]).astype(np.int64)
        value = compute_metric(metric, y, scores, threshold, classes=list(classes) or None)
        return sign * value

    return score


def permutation_importances(
    model: Any,
    rows: pd.DataFrame,
    y: Any,
    *,
    task: str,
    metric: str,
    classes: Sequence[Any] = (),
    threshold: float = 0.5,
    seed: int = 0,
    repeats: int = _PERMUTATION_REPEATS,
) -> dict[str, Any]:
    """scikit-learn's permutation importance of each input column of ``rows``, in ``metric``.

    Each column is shuffled ``repeats`` times; the importance is the mean fall of the metric (in
    the better direction: a fall in log loss counts as a rise), with its standard deviation.
    """
    from sklearn.inspection import permutation_importance

    from mlsd.goals.metrics import get_metric

    m = get_metric(metric)
    scorer = _scorer(m, task, list(classes), threshold)
    result = permutation_importance(
        model, rows, np.asarray(y), scoring=scorer, n_repeats=repeats, random_state=seed, n_jobs=1
    )
    base = scorer(model, rows, np.asarray(y))
    return {
        "metric": metric,
        "repeats": repeats,
        "score": base if m.greater_is_better else -base,
        "mean": dict(zip(rows.columns.astype(str), result.importances_mean.tolist(), strict=True)),
        "std": dict(zip(rows.columns.astype(str), result.importances_std.tolist(), strict=True)),
    }


def _without(design: Any, columns: set[str]) -> Any:
    """The design with every feature reading ``columns`` dropped, or None when none would be left."""
    from mlsd.data import source_columns

    f = design.features
    gone = {c for c in f.input_columns() if c in columns or set(source_columns(design, c)) & columns}
    features = f.model_copy(
        update={
            "numeric": [c for c in f.numeric if c not in gone],
            "categorical": [c for c in f.categorical if c not in gone],
            "hashed": {c: v for c, v in f.hashed.items() if c not in gone},
            "cyclical": {c: v for c, v in f.cyclical.items() if c not in gone},
            "crosses": [x for x in f.crosses if not set(x) & gone],
            "time_parts": [] if design.data.time in columns else list(f.time_parts),
        }
    )
    if not features.input_columns() and not features.time_parts:
        return None
    return design.model_copy(update={"features": features})


def ablation_importances(
    design: Any,
    split: Any,
    candidate: int,
    groups: dict[str, list[str]],
    *,
    test_rows: pd.DataFrame,
    features: Callable[[Any], Any],
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Candidate ``candidate`` refitted without each group of columns, against its full refit.

    ``features(design)`` is the design's unfitted feature pipeline
    (:func:`mlsd.features.feature_pipeline_for`, passed in: modeling does not import features).
    Both are fitted on the same sample of training rows (uncalibrated) and scored with
    ``goals.metric`` on ``test_rows``; ``drop`` is how much worse the model without the group is
    (positive: the group helps), in the better direction of the metric.
    """
    from mlsd.goals.metrics import get_metric
    from mlsd.modeling.training import candidate_model

    g, m = design.goals, design.models
    metric = get_metric(g.metric)
    train = split.train
    if len(train) > _ABLATION_TRAIN_ROWS:
        train = train.sample(n=_ABLATION_TRAIN_ROWS, random_state=m.seed)
    y_train = train[g.target].to_numpy()
    y_test = test_rows[g.target].to_numpy()

    def fitted_score(d: Any) -> float:
        model = candidate_model(d, candidate, features(d)).fit(train, y_train)
        classes = list(getattr(model, "classes_", []))
        return _scorer(metric, g.task, classes, threshold)(model, test_rows, y_test)

    full = fitted_score(design)
    out: list[dict[str, Any]] = []
    for name, columns in groups.items():
        reduced = _without(design, set(columns))
        if reduced is None:
            out.append({"group": name, "columns": columns, "skipped": "no feature would be left"})
            continue
        without = fitted_score(reduced)
        sign = 1.0 if metric.greater_is_better else -1.0
        out.append(
            {
                "group": name,
                "columns": list(columns),
                "without": sign * without,
                "drop": full - without,
            }
        )
    sign = 1.0 if metric.greater_is_better else -1.0
    return {"metric": g.metric, "full": sign * full, "train_rows": len(train), "groups": out}


# --- the build's step ----------------------------------------------------------------------------------


@dataclasses.dataclass
class ExplanationReport:
    """What ``models.explain`` measured on the champion (``to_dict`` goes into the design document)."""

    model: str
    rows: int
    columns: list[str]
    mean_abs_shap: dict[str, float] | None = None
    method: str = ""
    output: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)
    additivity_error: float | None = None
    base_value: list[float] | None = None
    shap_skipped: str | None = None
    permutation: dict[str, Any] | None = None
    ablation: dict[str, Any] | None = None
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def importance(self) -> list[dict[str, Any]]:
        """One row per input column, by mean |SHAP| (else by permutation importance), largest first."""
        perm = self.permutation or {}
        rows = [
            {
                "column": c,
                "mean_abs_shap": None if self.mean_abs_shap is None else self.mean_abs_shap[c],
                "permutation": perm.get("mean", {}).get(c),
                "permutation_std": perm.get("std", {}).get(c),
            }
            for c in self.columns
        ]
        key = "mean_abs_shap" if self.mean_abs_shap is not None else "permutation"
        return sorted(rows, key=lambda r: -(r[key] if r[key] is not None else -np.inf))

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("mean_abs_shap",)}
        out["importance"] = self.importance()
        if self.permutation is not None:
            out["permutation"] = {k: v for k, v in self.permutation.items() if k not in ("mean", "std")}
        return out


def explain_champion(
    design: Any,
    split: Any,
    model: Any,
    *,
    name: str,
    input_columns: Sequence[str],
    threshold: float = 0.5,
    features: Callable[[Any], Any] | None = None,
) -> tuple[ExplanationReport, dict[str, Any] | None]:
    """``models.explain`` on the fitted champion ``model``: the report and the packaged metadata.

    ``features(design)`` builds the unfitted feature pipeline the ablation refits (it is needed
    only with ``models.explain.ablation``).

    SHAP contributions and permutation importance are measured on the same ``models.explain.rows``
    test rows (drawn with ``models.seed``). A champion that cannot be explained (an ONNX graph) gets
    ``shap_skipped`` and no metadata; its permutation importance is still measured. So does a
    scikit-learn tree champion without shap installed when the design does not name
    ``models.explain`` (explanations are on by default); when it does, that is an error.
    """
    spec = design.models.explain
    g, seed = design.goals, design.models.seed
    columns = [str(c) for c in input_columns]
    test = split.test
    if len(test) > spec.rows:
        test = test.sample(n=spec.rows, random_state=seed)
    report = ExplanationReport(model=name, rows=len(test), columns=columns)
    metadata: dict[str, Any] | None = None
    t = time.perf_counter()
    try:
        background = split.train
        if len(background) > _BACKGROUND_ROWS:
            background = background.sample(n=_BACKGROUND_ROWS, random_state=seed)
        metadata = explain_metadata(model, background[columns], task=g.task)
        explainer = Explainer(model, columns, task=g.task, metadata=metadata)
        contributions = explainer.explain(test[columns])
    except NotExplainable as exc:
        report.shap_skipped, metadata = exc.message, None
    except MlsdError as exc:  # shap (the explain extra) is missing for a scikit-learn tree champion
        if "explain" in design.models.model_fields_set:  # asked for in the design: validate refused it
            raise
        # on by default only: the build goes on, and the document says what is missing
        report.shap_skipped, metadata = f"{exc.message} ({exc.expected})", None
    else:
        report.mean_abs_shap = dict(zip(columns, contributions.mean_abs().tolist(), strict=True))
        report.method, report.output, report.notes = explainer.method, explainer.output, explainer.notes
        report.additivity_error = contributions.max_additivity_error()
        report.base_value = contributions.base.tolist()
    report.seconds["shap"] = time.perf_counter() - t
    classes = list(getattr(model, "classes_", []))
    if spec.permutation:
        t = time.perf_counter()
        report.permutation = permutation_importances(
            model,
            test[columns],
            test[g.target].to_numpy(),
            task=g.task,
            metric=g.metric,
            classes=classes,
            threshold=threshold,
            seed=seed,
        )
        report.seconds["permutation"] = time.perf_counter() - t
    if spec.ablation:
        if features is None:
            raise ModelError(
                "the ablation refits the champion and needs its feature pipeline",
                field="features",
                expected="features=mlsd.features.feature_pipeline_for",
            )
        index = next((i for i, c in enumerate(design.models.candidates) if c.name == name), None)
        if index is None:
            report.ablation = {"skipped": f"{name} is not a candidate of the design (a compressed row)"}
        else:
            t = time.perf_counter()
            groups = spec.groups or _top_columns(report, spec.ablation_features)
            report.ablation = ablation_importances(
                design, split, index, groups, test_rows=test, features=features, threshold=threshold
            )
            report.seconds["ablation"] = time.perf_counter() - t
    return report, metadata


def _top_columns(report: ExplanationReport, k: int) -> dict[str, list[str]]:
    """The ``k`` most important input columns, each its own group."""
    return {r["column"]: [r["column"]] for r in report.importance()[:k]}

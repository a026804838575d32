"""Compressed variants of the best candidate, evaluated like every candidate (``models.compress``).

:func:`compress_best` takes the pre-decision best candidate (best primary metric on valid among
the candidates, before any constraint) and adds trade-off rows for it:

* ``<name>_onnx``: its estimator exported to ONNX (:mod:`mlsd.modeling.onnx_model`) behind the
  same fitted feature pipeline, scored by ONNX Runtime on one thread;
* ``<name>_onnx_int8`` / ``<name>_onnx_fp16``: that graph dynamically quantised to int8 weights
  (``onnxruntime.quantization.quantize_dynamic``) or converted to float16, when the graph has an
  operator the tool acts on; otherwise the reason is recorded and the row skipped;
* ``<name>_distilled``: a small LightGBM (``distill.max_leaves`` leaves, ``n_estimators`` trees)
  regressed on the teacher's logit (its value for regression) over the training split.

Each row goes through :func:`~mlsd.modeling.evaluation.evaluate_model` with the threshold rule and
costs of every candidate, so :func:`~mlsd.modeling.selection.select_model` may pick one when a
constraint (``size_mb``, ``p99_latency_ms``) asks for it. :attr:`CompressionResult.checks` holds
each variant's max |Δscore| against the teacher over the test split; the exact ONNX export must
stay within ``tolerance`` (:meth:`CompressionResult.raise_if_beyond_tolerance`).

>>> import numpy as np
>>> _logit(np.array([[0.5, 0.5], [0.1, 0.9]]), "binary").round(3).tolist()
[[0.0], [2.197]]
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.pipeline import Pipeline

from mlsd.errors import GateError, MlsdError, ModelError
from mlsd.modeling.onnx_model import OnnxModel, export_estimator, require_onnx

__all__ = ["VARIANTS", "CompressionResult", "DistilledClassifier", "compress_best", "quantize_onnx"]

VARIANTS = ("onnx", "onnx_int8", "onnx_fp16", "distilled")
_LATENCY_ROWS = 500  # as for every candidate (mlsd.modeling.training)
_EPS = 1e-7  # probabilities are clipped this far from 0 and 1 before the logit
# operators that show quantize_dynamic / the float16 converter changed the graph
_QUANTIZED_OPS = {
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "QLinearMatMul",
    "ConvInteger",
}


@dataclasses.dataclass
class CompressionResult:
    """What ``models.compress`` added: the teacher, each variant's row name, skipped variants and why,
    and each variant's agreement with the teacher on the test split."""

    teacher: str
    tolerance: float
    rows: dict[str, str] = dataclasses.field(default_factory=dict)  # variant -> trade-off row name
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # variant -> reason
    checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    sizes_bytes: dict[str, int] = dataclasses.field(default_factory=dict)  # row -> ONNX graph bytes

    def raise_if_beyond_tolerance(self) -> None:
        """:class:`GateError` when the exact ONNX export's scores differ from the teacher's too much."""
        for check in self.checks:
            if check["gated"] and not check["passed"]:
                raise GateError(
                    f"the ONNX export of {self.teacher} scores the test split differently from the Python "
                    f"model (max |Δscore| {check['max_abs_diff']:.3g}); nothing was registered",
                    field="models.compress.tolerance",
                    received=check["max_abs_diff"],
                    expected=f"at most {self.tolerance:g}",
                )

    def variants(self) -> dict[str, tuple[str, bool]]:
        """Each added row -> (the teacher, whether it is exact): what the decision needs to know
        (:func:`~mlsd.modeling.selection.select_model` ``variants``). Only the plain ONNX export
        is exact; quantised and distilled rows are lossy."""
        return {row: (self.teacher, variant == "onnx") for variant, row in self.rows.items()}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class DistilledClassifier(BaseEstimator):
    """A student classifier: LightGBM regressor(s) on the teacher's logits, back through sigmoid/softmax.

    ``fit(X, proba)`` takes the teacher's probability matrix; binary fits one regressor on the
    positive-class logit, multiclass one per class on the centred log-probabilities.
    """

    def __init__(
        self, classes: list[Any] | None = None, max_leaves: int = 15, n_estimators: int = 50,
        learning_rate: float = 0.1, seed: int = 0, min_child_samples: int = 20,
    ) -> None:  # fmt: skip
        self.classes = classes
        self.max_leaves = max_leaves
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.seed = seed
        self.min_child_samples = min_child_samples

    def fit(self, X: Any, proba: Any) -> DistilledClassifier:
        from lightgbm import LGBMRegressor

        proba = np.asarray(proba, dtype=float)
        task = "binary" if proba.shape[1] == 2 else "multiclass"
        targets = _logit(proba, task)
        self.regressors_ = [
            LGBMRegressor(
                num_leaves=self.max_leaves,
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                min_child_samples=self.min_child_samples,
                random_state=self.seed,
                verbose=-1,
            ).fit(X, targets[:, k])
            for k in range(targets.shape[1])
        ]
        for r in self.regressors_:  # fitted on every core; a served row needs one
            r.n_jobs = 1
        self.classes_ = np.asarray(self.classes)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        z = np.column_stack([r.predict(X) for r in self.regressors_])
        if z.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.column_stack([1.0 - p, p])
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _logit(proba: np.ndarray, task: str) -> np.ndarray:
    """Binary: the positive-class logit ``[n, 1]``; multiclass: log-probabilities centred per row."""
    p = np.clip(proba, _EPS, 1 - _EPS)
    if task == "binary":
        return np.log(p[:, 1:] / p[:, :1])
    logp = np.log(p)
    return logp - logp.mean(axis=1, keepdims=True)


def quantize_onnx(model: OnnxModel, variant: str) -> OnnxModel:
    """``model`` with int8 weights (``"onnx_int8"``) or in float16 (``"onnx_fp16"``).

    :class:`ModelError` (its message is the recorded reason) when no operator of the graph is one
    the tool changes: tree ensembles are ai.onnx.ml operators with float32/64 kernels only.
    """
    onnx = require_onnx("onnx")
    proto = onnx.load_from_string(model.onnx_bytes)
    ops = ", ".join(model.op_types)
    if variant == "onnx_int8":
        quantization = require_onnx("onnxruntime.quantization")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "int8.onnx"
            # it logs advice (pre-processing, opset upgrade) on the root logger: not for a build's console
            previous = logging.root.manager.disable
            logging.disable(logging.WARNING)
            try:
                quantization.quantize_dynamic(proto, out, weight_type=quantization.QuantType.QInt8)
            finally:
                logging.disable(previous)
            data = out.read_bytes()
        changed = bool(_QUANTIZED_OPS & set(OnnxModel(data).op_types))
        why = f"quantize_dynamic quantises MatMul/Gemm/Conv-like operators; this graph has only {ops}"
    elif variant == "onnx_fp16":
        try:
            float16 = require_onnx("onnxconverter_common.float16")
        except Exception:  # onnxruntime ships the same converter
            float16 = require_onnx("onnxruntime.transformers.float16")
        why = f"ai.onnx.ml operators have no float16 kernels in ONNX Runtime; graph: {ops}"
        # the converter leaves them in float32 but halves the constants around them, which ONNX
        # Runtime then refuses (Mul bound to float and float16): not worth building
        if any(n.domain == "ai.onnx.ml" for n in proto.graph.node):
            raise ModelError(why, field="models.compress.quantize", received=variant,
                             expected="a graph of ai.onnx operators only")  # fmt: skip
        half = float16.convert_float_to_float16(proto, keep_io_types=True)
        data = half.SerializeToString()
        changed = any(t.data_type == onnx.TensorProto.FLOAT16 for t in half.graph.initializer)
    else:
        raise ModelError("unknown quantisation", field="models.compress.quantize", received=variant,
                         expected="onnx_int8 or onnx_fp16")  # fmt: skip
    if not changed:
        raise ModelError(why, field="models.compress.quantize", received=variant,
                         expected="a quantisable operator")  # fmt: skip
    small = OnnxModel(data, task=model.task, classes=model.classes, source=f"{model.source} ({variant})",
                      precision=model.precision)  # fmt: skip
    n_features = proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    try:  # a graph ONNX Runtime cannot run is a reason to skip the row, not a failed build
        small._run(np.zeros((1, n_features)))
    except Exception as exc:
        raise ModelError(
            f"ONNX Runtime cannot run the {variant} graph: {exc}",
            field="models.compress.quantize",
            received=variant,
            expected="a graph ONNX Runtime runs",
        ) from None
    return small


def _best_candidate(table: Any, metric: str, greater: bool) -> str:
    values = {e.name: e.value(metric) for e in table.candidates}
    finite = {n: v for n, v in values.items() if not math.isnan(v)}
    if not finite:
        raise ModelError("no candidate has a defined metric to compress", field="models.compress",
                         received=values, expected=f"a candidate with a finite {metric}")  # fmt: skip
    return (max if greater else min)(finite, key=finite.__getitem__)


def compress_best(
    design: Any,
    split: Any,
    modeling: Any,
    feature_pipeline: Pipeline,
    input_columns: list[str],
    *,
    metric: str,
    greater: bool,
) -> CompressionResult:
    """Add the ``models.compress`` rows for the best candidate to ``modeling`` (table, fitted,
    thresholds, costs: changed in place) and return what was added and checked."""
    from mlsd.modeling.training import add_fitted_row

    spec, task, target, m = design.models.compress, design.goals.task, design.goals.target, design.models
    teacher_name = _best_candidate(modeling.table, metric, greater)
    teacher_eval, teacher = modeling.table[teacher_name], modeling.fitted[teacher_name]
    result = CompressionResult(teacher=teacher_name, tolerance=spec.tolerance)
    y_test = split.test[target].to_numpy()
    latency_rows = split.test[input_columns].head(_LATENCY_ROWS)

    def add(variant: str, model: Any, seconds: float, gated: bool) -> None:
        name = f"{teacher_name}_{variant}"
        e = add_fitted_row(
            design, split, modeling, name, model,
            train_seconds=teacher_eval.train_seconds + seconds, latency_rows=latency_rows,
        )  # fmt: skip
        result.rows[variant] = name
        diff = float(np.max(np.abs(np.asarray(e.scores["test"]) - np.asarray(teacher_eval.scores["test"]))))
        result.checks.append({
            "model": name, "variant": variant, "split": "test", "n_rows": len(y_test),
            "max_abs_diff": diff, "tolerance": spec.tolerance if gated else None,
            "gated": gated, "passed": (diff <= spec.tolerance) if gated else True,
        })  # fmt: skip

    if spec.onnx:
        onnx_model = None
        estimator = teacher.steps[-1][1] if isinstance(teacher, Pipeline) else None
        if estimator is None:
            result.skipped["onnx"] = (
                f"{teacher_name} is a {type(teacher).__name__} (calibrated or resampled), not a plain "
                "features → estimator pipeline: only the estimator is exported"
            )
        else:
            t = time.perf_counter()
            steps = _feature_steps(teacher)
            features = Pipeline(steps) if steps else None
            n_features = (
                int(features.transform(split.train.head(1)).shape[1]) if features else len(input_columns)
            )
            try:
                onnx_model = export_estimator(estimator, n_features=n_features, task=task)
            except ModelError as exc:
                result.skipped["onnx"] = exc.message
            except Exception as exc:  # a converter's own failure skips the row, with its reason
                if isinstance(exc, MlsdError):  # the extra is missing: say so, do not hide it
                    raise
                result.skipped["onnx"] = f"the converter failed on {type(estimator).__name__}: {exc}"
            else:
                add("onnx", _behind(teacher, onnx_model), time.perf_counter() - t, gated=True)
                result.sizes_bytes[result.rows["onnx"]] = onnx_model.size_bytes
        for q in spec.quantize:
            variant = f"onnx_{q}"
            if onnx_model is None:
                result.skipped[variant] = "no ONNX export to quantise: " + result.skipped.get("onnx", "")
                continue
            t = time.perf_counter()
            try:
                small = quantize_onnx(onnx_model, variant)
            except ModelError as exc:
                result.skipped[variant] = exc.message
                continue
            add(variant, _behind(teacher, small), time.perf_counter() - t, gated=False)
            result.sizes_bytes[result.rows[variant]] = small.size_bytes
    if spec.distill is not None:
        t = time.perf_counter()
        student = distill(teacher, split.train, split.train[target].to_numpy(), feature_pipeline,
                          task=task, spec=spec.distill, seed=m.seed)  # fmt: skip
        add("distilled", student, time.perf_counter() - t, gated=False)
    return result


def _feature_steps(teacher: Pipeline) -> list[tuple[str, Any]]:
    """The teacher's fitted steps before its estimator that transform rows: a sampler
    (``data.augment``) only acts while fitting, so predicting skips it anyway."""
    return [(n, step) for n, step in teacher.steps[:-1] if hasattr(step, "transform")]


def _behind(teacher: Pipeline, estimator: Any) -> Pipeline:
    """The teacher's fitted feature steps, then ``estimator`` (the steps are shared, already fitted)."""
    return Pipeline([*_feature_steps(teacher), ("model", estimator)])


def distill(
    teacher: Any, X_train: Any, y_train: Any, feature_pipeline: Pipeline, *, task: str, spec: Any, seed: int
) -> Pipeline:
    """A small LightGBM behind a freshly fitted copy of the feature pipeline, fitted on the teacher's
    scores of ``X_train`` (raw rows): its logit for a classifier, its value for a regressor."""
    features = clone(feature_pipeline).fit(X_train, y_train)
    Xf = features.transform(X_train)
    if task == "regression":
        from lightgbm import LGBMRegressor

        student: Any = LGBMRegressor(
            num_leaves=spec.max_leaves, n_estimators=spec.n_estimators, learning_rate=spec.learning_rate,
            min_child_samples=spec.min_child_samples, random_state=seed, verbose=-1,
        ).fit(Xf, np.asarray(teacher.predict(X_train), dtype=float))  # fmt: skip
        student.n_jobs = 1
    else:
        classes = [c.item() if isinstance(c, np.generic) else c for c in teacher.classes_]
        student = DistilledClassifier(
            classes, spec.max_leaves, spec.n_estimators, spec.learning_rate, seed, spec.min_child_samples
        )
        student.fit(Xf, teacher.predict_proba(X_train))
    steps = features.steps if isinstance(features, Pipeline) else [("features", features)]
    return Pipeline([*steps, ("model", student)])

"""A fitted estimator exported to ONNX, scored by ONNX Runtime, usable like the scikit-learn one.

:func:`export_estimator` converts the *estimator* at the end of a fitted pipeline (LightGBM
through onnxmltools, other scikit-learn models through skl2onnx, linear models as a plain
``MatMul`` graph that int8/fp16 compression can act on) and returns an :class:`OnnxModel`: a
scikit-learn-compatible estimator with ``predict_proba``/``predict`` whose pickle holds only the
ONNX bytes. The ONNX Runtime session is built lazily on first use, on one intra-op thread, so a
single-row timing measures the model and not a thread pool (docs/threads-and-timing.md).

The feature pipeline stays in Python in front of it (docs/compression.md says why).

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> X = np.random.default_rng(0).normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
>>> lr = LogisticRegression().fit(X, y)
>>> onnx = export_estimator(lr, n_features=3, task="binary")
>>> float(np.abs(onnx.predict_proba(X)[:, 1] - lr.predict_proba(X)[:, 1]).max()) < 1e-5
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from mlsd.errors import MlsdError, ModelError

__all__ = ["OnnxModel", "export_estimator", "require_onnx"]

_EXTRA = "pip install 'mlsd[onnx]'"
# onnxmltools 1.16 converts LightGBM up to opset 15; one opset for every graph keeps them comparable.
_OPSET = 15
_INPUT = "X"


def require_onnx(what: str = "skl2onnx") -> Any:
    """Import ``what`` (a module of the ``onnx`` extra), or a clear :class:`MlsdError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(what)
    except ImportError as exc:
        raise MlsdError(
            f"ONNX export needs {what.split('.')[0]}, which is not installed",
            field="models.compress.onnx",
            received=str(exc),
            expected=_EXTRA,
        ) from None


class OnnxModel(BaseEstimator):
    """An ONNX graph from float features to scores, with the scikit-learn predict interface.

    ``onnx_bytes`` is the serialised graph (input ``X``: float32 ``[n, n_features]``; output
    ``probabilities`` for classifiers, ``variable`` for regressors); ``classes`` the labels of the
    probability columns (empty for regression); ``source`` says what it was converted from.
    """

    def __init__(
        self,
        onnx_bytes: bytes = b"",
        task: str = "binary",
        classes: list[Any] | None = None,
        source: str = "",
        precision: str = "float32",
    ) -> None:
        self.onnx_bytes = onnx_bytes
        self.task = task
        self.classes = classes
        self.source = source
        self.precision = precision  # the graph's input type: float32, or float64 for LightGBM trees

    # -- sklearn protocol ---------------------------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return bool(self.onnx_bytes)

    def fit(self, X: Any, y: Any = None) -> OnnxModel:
        raise ModelError(
            "an OnnxModel is converted from a fitted model, not trained",
            field="fit",
            received=self.source,
            expected="export_estimator(fitted_estimator, ...)",
        )

    @property
    def classes_(self) -> np.ndarray:
        if self.task == "regression":
            raise AttributeError("a regressor has no classes_")
        return np.asarray(self.classes)

    @property
    def size_bytes(self) -> int:
        return len(self.onnx_bytes)

    @property
    def op_types(self) -> list[str]:
        """The distinct operators of the graph, in order of first use."""
        onnx = require_onnx("onnx")
        return list(dict.fromkeys(n.op_type for n in onnx.load_from_string(self.onnx_bytes).graph.node))

    # -- the session: built on first use, never pickled ---------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_session"}

    def _run(self, X: Any) -> np.ndarray:
        session = self.__dict__.get("_session")
        if session is None:
            ort = require_onnx("onnxruntime")
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1  # a served row is scored on the calling thread
            options.inter_op_num_threads = 1
            options.log_severity_level = 3  # converters' static shapes of unused outputs only warn
            session = ort.InferenceSession(self.onnx_bytes, options, providers=["CPUExecutionProvider"])
            self._session = session
            self._output = "probabilities" if self.task != "regression" else session.get_outputs()[0].name
        rows = np.ascontiguousarray(np.asarray(X, dtype=np.dtype(self.precision)))
        return np.asarray(session.run([self._output], {_INPUT: rows})[0], dtype=float)

    def predict_proba(self, X: Any) -> np.ndarray:
        if self.task == "regression":
            raise AttributeError("a regressor has no predict_proba")
        return self._run(X)

    def predict(self, X: Any) -> np.ndarray:
        out = self._run(X)
        if self.task == "regression":
            return out.reshape(-1)
        return self.classes_[out.argmax(axis=1)]


def _linear_graph(est: Any, n_features: int, task: str) -> bytes:
    """``X @ W + b`` then sigmoid/softmax: the linear model as operators quantize_dynamic and the
    float16 converter act on (skl2onnx's ``LinearClassifier`` is an ai.onnx.ml operator they skip)."""
    onnx = require_onnx("onnx")
    from onnx import TensorProto, helper, numpy_helper

    coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float32))
    bias = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float32))
    W = np.ascontiguousarray(coef.T)  # [n_features, k]
    nodes = [helper.make_node("MatMul", [_INPUT, "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"])]
    if task == "regression":
        out, width = "variable", W.shape[1]
        nodes.append(helper.make_node("Identity", ["z"], [out]))
    elif W.shape[1] == 1:  # binary: p = sigmoid(z); [1 - p, p]
        out, width = "probabilities", 2
        nodes += [
            helper.make_node("Sigmoid", ["z"], ["p"]),
            helper.make_node("Sub", ["one", "p"], ["q"]),
            helper.make_node("Concat", ["q", "p"], [out], axis=1),
        ]
    else:
        out, width = "probabilities", W.shape[1]
        nodes.append(helper.make_node("Softmax", ["z"], [out], axis=1))
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info(_INPUT, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, width])],
        [
            numpy_helper.from_array(W, "W"),
            numpy_helper.from_array(bias, "b"),
            numpy_helper.from_array(np.ones((1, 1), np.float32), "one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


# LightGBM objectives whose prediction is the raw score (regression) or its sigmoid/softmax
_LGBM_IDENTITY = {"regression", "regression_l1", "huber", "fair", "quantile", "mape"}
_LGBM_OBJECTIVES = {"binary", "multiclass", "multiclassova", *_LGBM_IDENTITY}


def _lightgbm_graph(est: Any, n_features: int, task: str) -> bytes:
    """LightGBM's trees as a float64 ``TreeEnsembleRegressor`` (ai.onnx.ml 3), then sigmoid/softmax.

    Not onnxmltools' float32 graph: a feature whose equal values differ in the last bits (the
    cyclical sin/cos of the feature pipeline) gets LightGBM thresholds between them, which float32
    cannot separate; on flights that moved scores by up to 0.1. In float64 the comparisons are
    LightGBM's own (the leaf values are still summed in float32, the operator's output type).
    """
    onnx = require_onnx("onnx")
    from onnx import TensorProto, helper, numpy_helper

    dump = est.booster_.dump_model()
    objective = str(dump.get("objective", "")).split(" ")[0]
    if objective not in _LGBM_OBJECTIVES or dump.get("average_output"):
        raise ModelError(
            "no ONNX export for this LightGBM objective",
            field="models.compress.onnx",
            received=objective or "average_output",
            expected=f"one of: {', '.join(sorted(_LGBM_OBJECTIVES))}",
        )
    k = max(1, int(dump.get("num_tree_per_iteration", 1)))
    columns = ("tree", "node", "feature", "value", "mode", "true", "false", "missing")
    nodes: dict[str, list[Any]] = {a: [] for a in columns}
    targets: dict[str, list[Any]] = {"tree": [], "node": [], "id": [], "weight": []}
    for t, info in enumerate(dump["tree_info"]):
        stack, ids = [info["tree_structure"]], {}
        order: list[dict[str, Any]] = []
        while stack:  # number the nodes depth first
            node = stack.pop()
            ids[id(node)] = len(order)
            order.append(node)
            if "split_index" in node:
                stack += [node["right_child"], node["left_child"]]
        for node in order:
            nodes["tree"].append(t)
            nodes["node"].append(ids[id(node)])
            if "split_index" in node:
                if node.get("decision_type", "<=") != "<=":
                    raise ModelError(
                        "categorical LightGBM splits are not exported",
                        field="models.compress.onnx",
                        received=node["decision_type"],
                        expected="numerical (<=) splits",
                    )
                nodes["feature"].append(int(node["split_feature"]))
                nodes["value"].append(float(node["threshold"]))
                nodes["mode"].append("BRANCH_LEQ")
                nodes["true"].append(ids[id(node["left_child"])])
                nodes["false"].append(ids[id(node["right_child"])])
                nodes["missing"].append(int(bool(node.get("default_left", True))))
            else:
                nodes["feature"].append(0)
                nodes["value"].append(0.0)
                nodes["mode"].append("LEAF")
                nodes["true"].append(0)
                nodes["false"].append(0)
                nodes["missing"].append(0)
                targets["tree"].append(t)
                targets["node"].append(ids[id(node)])
                targets["id"].append(t % k)
                targets["weight"].append(float(node.get("leaf_value", 0.0)))
    trees = helper.make_node(
        "TreeEnsembleRegressor",
        [_INPUT],
        ["raw"],
        domain="ai.onnx.ml",
        n_targets=k,
        aggregate_function="SUM",
        post_transform="NONE",
        nodes_treeids=nodes["tree"],
        nodes_nodeids=nodes["node"],
        nodes_featureids=nodes["feature"],
        nodes_values_as_tensor=numpy_helper.from_array(np.asarray(nodes["value"], dtype=np.float64)),
        nodes_modes=nodes["mode"],
        nodes_truenodeids=nodes["true"],
        nodes_falsenodeids=nodes["false"],
        nodes_missing_value_tracks_true=nodes["missing"],
        target_treeids=targets["tree"],
        target_nodeids=targets["node"],
        target_ids=targets["id"],
        target_weights_as_tensor=numpy_helper.from_array(np.asarray(targets["weight"], dtype=np.float64)),
    )
    graph_nodes, inits = [trees], []
    if task == "regression":
        out, width = "variable", 1
        graph_nodes.append(helper.make_node("Identity", ["raw"], [out]))
    elif k == 1:
        out, width = "probabilities", 2
        inits.append(numpy_helper.from_array(np.ones((1, 1), np.float32), "one"))
        graph_nodes += [
            helper.make_node("Sigmoid", ["raw"], ["p"]),
            helper.make_node("Sub", ["one", "p"], ["q"]),
            helper.make_node("Concat", ["q", "p"], [out], axis=1),
        ]
    else:
        out, width = "probabilities", k
        graph_nodes.append(helper.make_node("Softmax", ["raw"], [out], axis=1))
    graph = helper.make_graph(
        graph_nodes,
        "lightgbm",
        [helper.make_tensor_value_info(_INPUT, TensorProto.DOUBLE, [None, n_features])],
        # TreeEnsembleRegressor sums in float32 whatever its input: ~1e-7 of a score
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, width])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _sklearn_graph(est: Any, n_features: int, task: str) -> bytes:
    skl2onnx = require_onnx("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(est): {"zipmap": False}} if task != "regression" else None
    model = skl2onnx.convert_sklearn(
        est,
        initial_types=[(_INPUT, FloatTensorType([None, n_features]))],
        options=options,
        target_opset={"": _OPSET, "ai.onnx.ml": 3},
    )
    return model.SerializeToString()


_LINEAR = ("LogisticRegression", "LinearRegression", "Ridge")
_LIGHTGBM = ("LGBMClassifier", "LGBMRegressor")
_SKLEARN = (
    "RandomForestClassifier",
    "RandomForestRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
)
SUPPORTED = (*_LINEAR, *_LIGHTGBM, *_SKLEARN)


def export_estimator(est: Any, *, n_features: int, task: str) -> OnnxModel:
    """The fitted ``est`` (fed ``n_features`` float columns) as an :class:`OnnxModel`.

    :class:`ModelError` for an estimator no converter here handles (the caller records why and
    skips the row); :class:`MlsdError` naming the extra when the ONNX packages are missing.
    """
    kind = type(est).__name__
    if kind not in SUPPORTED:
        raise ModelError(
            f"no ONNX converter for {kind}",
            field="models.compress.onnx",
            received=kind,
            expected=f"one of: {', '.join(SUPPORTED)}",
        )
    precision = "float32"
    if kind in _LINEAR:
        if kind == "LogisticRegression" and getattr(est, "multi_class", "auto") == "ovr":
            raise ModelError(
                "one-vs-rest logistic regression is not a softmax",
                field="models.compress.onnx",
                received="multi_class=ovr",
                expected="a multinomial or binary logistic regression",
            )
        data = _linear_graph(est, n_features, task)
    elif kind in _LIGHTGBM:
        data, precision = _lightgbm_graph(est, n_features, task), "float64"
    else:
        data = _sklearn_graph(est, n_features, task)
    classes = (
        [] if task == "regression" else [c.item() if isinstance(c, np.generic) else c for c in est.classes_]
    )
    return OnnxModel(data, task=task, classes=classes, source=kind, precision=precision)

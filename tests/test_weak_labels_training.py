"""The build's model trained on each label source (mlsd._weak_labels.compare_training).

In process, on 800 of the real tweets (examples/tweets/weak.yaml's functions, training on gold):
the comparison refits the candidate on the label model's and the majority vote's training labels
and judges each on the gold test split, with the trade-off table's metric and bootstrap interval;
the gold row is the build's own. A label source of random votes must score clearly worse than gold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mlsd._weak_labels import compare_training, weak_labelling
from mlsd.data import prepare_data, split_prepared
from mlsd.data.weak_supervision import ABSTAIN
from mlsd.design import load_design
from mlsd.features import feature_pipeline_for
from mlsd.modeling import train_and_evaluate
from mlsd.modeling.training import candidate_model

ROOT = Path(__file__).resolve().parents[1]
WEAK = ROOT / "examples" / "tweets" / "weak.yaml"

pytest.importorskip("snorkel.labeling")


def _build(tmp_path: Path, train_on: str) -> tuple:
    """weak.yaml on 800 tweets, trained on ``train_on``: the build's stages up to the models."""
    text = WEAK.read_text()
    assert "n: 3000" in text and "train_on: label_model" in text
    path = tmp_path / "weak.yaml"
    text = text.replace("n: 3000", "n: 800").replace("train_on: label_model", f"train_on: {train_on}")
    path.write_text(text)
    design = load_design(path)
    prepared = prepare_data(design)
    split = split_prepared(design, prepared.frame)
    weak = weak_labelling(design, split)
    pipeline = feature_pipeline_for(design)
    modeling = train_and_evaluate(design, weak.split, pipeline, prepared.input_columns)
    return design, weak, modeling, pipeline


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return _build(tmp_path_factory.mktemp("gold"), "gold")


def _sources(doc: dict) -> dict[str, dict]:
    return {s["source"]: s for s in doc["training"]["sources"]}


def test_each_source_is_judged_on_the_gold_test_split(built: tuple) -> None:
    design, weak, modeling, pipeline = built
    assert weak.split.train is weak.gold_train  # train_on: gold keeps the gold training labels
    doc = compare_training(design, weak, modeling, "logreg", pipeline)
    training = doc["training"]
    assert training["model"] == "logreg" and training["is_winner"] and training["metric"] == "roc_auc"
    assert training["test_rows"] == len(weak.split.test)
    rows = _sources(doc)
    assert list(rows) == ["gold", "label_model", "majority_vote"]
    # gold: the build's own row of the trade-off table, not refitted
    table = modeling.table["logreg"].estimate("roc_auc", "test")
    assert not rows["gold"]["refitted"] and rows["gold"]["value"] == table.value
    assert (rows["gold"]["low"], rows["gold"]["high"]) == (table.low, table.high)
    # the label model's: the rows it labels (the same count the LF section reports), refitted,
    # and its AUC recomputed independently with sklearn on the gold test labels
    target = design.goals.target
    assert rows["label_model"]["rows"] == doc["accuracy"]["label_model"]["n"]
    assert rows["majority_vote"]["rows"] == doc["accuracy"]["majority_vote"]["n"] < len(weak.gold_train)
    labelled = weak.labels["label_model"] != ABSTAIN
    train = weak.gold_train.loc[labelled]
    y = np.asarray(weak.classes)[weak.labels["label_model"][labelled]]
    model = candidate_model(design, 0, pipeline).fit(train, y)
    expected = roc_auc_score(weak.split.test[target], model.predict_proba(weak.split.test)[:, 1])
    lm = rows["label_model"]
    assert lm["refitted"] and lm["value"] == pytest.approx(expected, abs=1e-9)
    assert lm["low"] < lm["value"] < lm["high"]
    # weak labels cost something, yet the functions carry real signal
    assert 0.6 < lm["value"] <= rows["gold"]["value"] + 0.05


def test_random_votes_score_clearly_worse_than_gold(built: tuple) -> None:
    design, weak, modeling, pipeline = built
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 2, len(weak.gold_train))
    noise[rng.random(len(noise)) < 0.2] = ABSTAIN  # and some rows left unlabelled, then dropped
    weak.labels = {**weak.labels, "majority_vote": noise}
    rows = _sources(compare_training(design, weak, modeling, "logreg", pipeline))
    random = rows["majority_vote"]
    assert random["rows"] == int((noise != ABSTAIN).sum())
    assert random["high"] < rows["gold"]["low"], (random, rows["gold"])
    assert abs(random["value"] - 0.5) < 0.12  # no signal: about chance on the gold test rows


def test_a_baseline_winner_refits_the_first_candidate(built: tuple) -> None:
    design, weak, modeling, pipeline = built
    training = compare_training(design, weak, modeling, "majority", pipeline)["training"]
    assert training["model"] == "logreg" and training["winner"] == "majority" and not training["is_winner"]


def test_training_on_the_label_model_refits_gold(tmp_path: Path) -> None:
    design, weak, modeling, pipeline = _build(tmp_path, "label_model")
    assert len(weak.split.train) < len(weak.gold_train)  # the build trained on the label model's rows
    rows = _sources(compare_training(design, weak, modeling, "logreg", pipeline))
    built_row = modeling.table["logreg"].estimate("roc_auc", "test")
    assert not rows["label_model"]["refitted"] and rows["label_model"]["value"] == built_row.value
    assert rows["gold"]["refitted"] and rows["gold"]["rows"] == len(weak.gold_train)
    assert rows["gold"]["value"] > rows["label_model"]["value"] - 0.05

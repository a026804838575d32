"""MinHash near-duplicates of free text, checked against exact Jaccard similarity on small data.

(``datasketch`` is not installed, so the reference is the exact Jaccard of the shingle sets,
computed with Python sets.)
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from mlsd.data.near_duplicates import (
    link_components,
    lsh_bands,
    minhash_signatures,
    text_near_duplicates,
    word_shingles,
)
from mlsd.errors import DesignError

VOCABULARY = [f"w{i}" for i in range(2_000)]


def _shingles(text: str | None, k: int = 3) -> set[str]:
    """The reference: the k-word shingles of a text, as plain strings."""
    if not isinstance(text, str):
        return set()
    words = " ".join(text.split()).casefold().split()
    if not words:
        return set()
    if len(words) < k:
        return {" ".join(words)}
    return {" ".join(words[i : i + k]) for i in range(len(words) - k + 1)}


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _corpus(seed: int = 0) -> list[str]:
    """40 base texts of 80 words, each with 5 variants (a few words replaced), and 100 others."""
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(40):
        base = list(rng.choice(VOCABULARY, 80))
        texts.append(" ".join(base))
        for _ in range(5):
            variant = list(base)
            for at in rng.choice(80, size=int(rng.integers(0, 6)), replace=False):
                variant[at] = str(rng.choice(VOCABULARY))
            texts.append(" ".join(variant))
    texts += [" ".join(rng.choice(VOCABULARY, 80)) for _ in range(100)]
    return texts


def test_shingles_match_the_reference() -> None:
    texts = pd.Series(["a b c d", "  A b   C ", "one", "", None, "x y x y x y"])
    rows, hashes = word_shingles(texts, k=3)
    counts = np.bincount(rows, minlength=len(texts)).tolist()
    assert counts == [len(_shingles(t)) for t in texts] == [2, 1, 1, 0, 0, 2]
    by_row = [set(hashes[rows == i]) for i in range(len(texts))]
    assert by_row[1] <= by_row[0]  # "a b c" is in both
    with pytest.raises(DesignError):
        word_shingles(texts, k=0)


def test_minhash_estimates_the_exact_jaccard() -> None:
    texts = _corpus()
    sig = minhash_signatures(pd.Series(texts), permutations=256, seed=1, block=1_000)  # many blocks
    sets = [_shingles(t) for t in texts]
    rng = np.random.default_rng(2)
    pairs = [(i, i + d) for i in range(0, 230, 6) for d in (1, 3)] + [
        tuple(p) for p in rng.integers(0, len(texts), size=(200, 2))
    ]
    exact = np.array([_jaccard(sets[i], sets[j]) for i, j in pairs])
    estimate = np.array([(sig[i] == sig[j]).mean() for i, j in pairs])
    error = np.sqrt(np.maximum(exact * (1 - exact), 1e-4) / 256)
    assert (np.abs(estimate - exact) <= 5 * error + 1e-9).all()
    assert np.abs(estimate - exact).mean() < 0.02
    assert exact.min() < 0.1 and exact.max() > 0.8  # both ends were compared


def test_near_duplicate_pairs_agree_with_exact_jaccard() -> None:
    texts = _corpus(3)
    found = text_near_duplicates(pd.Series(texts), threshold=0.7, seed=4)
    i, j, sim = found.row_pairs()
    got = set(zip(i.tolist(), j.tolist(), strict=True))
    sets = [_shingles(t) for t in texts]
    exact = {(a, b): _jaccard(sets[a], sets[b]) for a, b in itertools.combinations(range(len(texts)), 2)}
    clearly_similar = {p for p, s in exact.items() if s >= 0.8}
    clearly_not = {p for p, s in exact.items() if s < 0.55}
    assert clearly_similar and len(clearly_similar & got) / len(clearly_similar) > 0.97
    assert not got & clearly_not
    assert (sim >= 0.7).all() and (i < j).all()
    # the labels are the components of those pairs
    labels = found.labels()
    expected = link_components(np.arange(len(texts)), np.arange(len(texts)))  # each row alone
    if len(i):
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        n = len(texts)
        _, comp = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
        expected = pd.factorize(comp)[0]
    np.testing.assert_array_equal(labels, expected)


def test_repeated_and_missing_texts() -> None:
    texts = pd.Series(["the same words again and again"] * 500 + [None, "", "other words entirely here"])
    found = text_near_duplicates(texts, threshold=0.9)
    assert len(found.pairs) == 0  # 500 copies are one signature, not 124,750 candidate pairs
    labels = found.labels()
    assert len(set(labels[:500])) == 1 and len(set(labels[500:])) == 3  # no text: linked to nothing
    i, _, _ = found.row_pairs()
    assert len(i) == 500 * 499 // 2
    frame = pd.DataFrame(
        {"title": ["Cheap flights", "cheap  flights"], "body": ["to New York now", "to new york now"]}
    )
    assert text_near_duplicates(frame, 0.9).labels().tolist() == [0, 0]  # columns joined per row


def test_lsh_bands_put_the_s_curve_at_the_threshold() -> None:
    for threshold in (0.5, 0.7, 0.8, 0.9):
        b, r = lsh_bands(128, threshold)
        assert b * r <= 128
        # a pair at the threshold is very likely a candidate; one far below rarely
        assert 1 - (1 - threshold**r) ** b > 0.8
        assert 1 - (1 - (threshold / 2) ** r) ** b < 0.2
    with pytest.raises(DesignError):
        text_near_duplicates(pd.Series(["a"]), threshold=0)


def _reviews(tmp_path) -> dict:
    """A CSV of 600 reviews of 100 words: 60 texts with 4 near-copies each (one word changed, one
    copy upper-cased; Jaccard >= 0.88 within a cluster, about 0 between), and 300 others."""
    rng = np.random.default_rng(7)
    texts, cluster = [], []
    for c in range(60):
        base = list(rng.choice(VOCABULARY, 100))
        for copy in range(5):
            words = list(base)
            if copy:
                words[int(rng.integers(100))] = str(rng.choice(VOCABULARY))
            texts.append(" ".join(words).upper() if copy == 4 else " ".join(words))
            cluster.append(c)
    texts += [" ".join(rng.choice(VOCABULARY, 100)) for _ in range(300)]
    cluster += list(range(60, 360))
    frame = pd.DataFrame({"review": texts, "cluster": cluster, "x": rng.normal(size=600)})
    frame["y"] = (rng.random(600) < 0.4).astype(int)
    frame.sample(frac=1.0, random_state=0).to_csv(tmp_path / "reviews.csv", index=False)
    return {
        "name": "reviews",
        "goals": {"task": "binary", "metric": "roc_auc"},
        "data": {
            "source": str(tmp_path / "reviews.csv"),
            "label": "y == 1",
            "split": {"by": "random", "seed": 3},
        },
        "features": {"numeric": ["x"]},
        "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]},
    }


def test_dedupe_text_keeps_near_duplicate_texts_in_one_split_and_the_check_counts_them(tmp_path) -> None:
    from mlsd.data import check_leakage, prepare_data, split_prepared
    from mlsd.data.leakage import check_text_near_duplicates_across_splits
    from mlsd.design import Design

    raw = _reviews(tmp_path)
    plain = Design.model_validate(raw)
    prepared = prepare_data(plain)
    split = split_prepared(plain, prepared.frame)
    # without dedupe_text the clusters straddle splits, and the check finds them
    spread = sum(
        part["cluster"].isin(other["cluster"]).sum()
        for (_, part), (_, other) in itertools.combinations(split.parts().items(), 2)
    )
    assert spread > 20
    found = check_text_near_duplicates_across_splits(split, ["review"], 0.7)
    assert {tuple(f.evidence["pair"]) for f in found} == {
        ("train", "valid"),
        ("train", "test"),
        ("valid", "test"),
    }
    # every row of a later split sharing a cluster with an earlier split is found, no other row
    for f in found:
        a, b = (split.parts()[n] for n in f.evidence["pair"])
        assert f.evidence["rows"] == int(b["cluster"].isin(a["cluster"]).sum())
    raw["data"]["split"]["dedupe_text"] = {"columns": ["review"], "threshold": 0.7}
    design = Design.model_validate(raw)
    split = split_prepared(design, prepared.frame)
    for (_, part), (_, other) in itertools.combinations(split.parts().items(), 2):
        assert not part["cluster"].isin(other["cluster"]).any()
    from mlsd._document import split_params

    assert split_params(design)["dedupe_text"] == {"columns": ["review"], "threshold": 0.7, "shingle": 3}
    report = check_leakage(design, prepared, split)
    assert not [f for f in report.findings if f.check == "near_duplicates" and f.evidence.get("text")]
    moved = [f for f in report.findings if f.check == "dedupe"]
    assert moved and moved[0].evidence  # the split says how many rows it moved
    with pytest.raises(ValueError, match=r"columns"):
        Design.model_validate(
            {**raw, "data": {**raw["data"], "split": {"by": "random", "dedupe_text": {"columns": []}}}}
        )

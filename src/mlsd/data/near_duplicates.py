"""Near-duplicate rows of a table: equal on every column once values are normalised.

Normalisation makes copies that differ only in noise compare equal:

* floating-point numbers are rounded to ``digits`` significant digits (``digits=6`` is a
  relative tolerance of about 5e-6); ``-0.0`` becomes ``0.0``; ``inf`` and NaN stay as they are;
* text (object, string and categorical columns) is stripped, runs of white space become one
  space, and it is case-folded (``" JFK "`` and ``"jfk"`` are equal);
* integers, booleans and dates are compared exactly;
* a missing value is a value: two rows missing the same column are equal there.

Rows are compared through a 64-bit hash of the normalised row (pandas'
``hash_pandas_object``), so a table of any size is handled without a Python loop over rows.
Rounding puts values into bins: two values a hair apart on either side of a bin edge (``1.2345649``
and ``1.2345651`` at 6 digits) stay different.

Free text is compared apart (:func:`text_near_duplicates`, ``split.dedupe_text``): MinHash
signatures of k-word shingles, LSH banding for candidate pairs, and an estimated Jaccard
similarity threshold that every candidate is verified against.

>>> import pandas as pd
>>> df = pd.DataFrame({"x": [1.0, 1.0 + 1e-9, 2.0], "s": ["JFK", " jfk ", "JFK"]})
>>> near_duplicate_keys(df, ["x", "s"]).tolist()[:2] == [near_duplicate_keys(df, ["x", "s"])[0]] * 2
True
>>> normalise_rows(df, ["x", "s"], digits=3)["s"].tolist()
['jfk', 'jfk', 'jfk']
>>> link_components(np.array([0, 0, 1, 2]), np.array([5, 6, 6, 7])).tolist()
[0, 0, 0, 1]
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mlsd.errors import DesignError

__all__ = [
    "TextDuplicates",
    "link_components",
    "lsh_bands",
    "minhash_signatures",
    "near_duplicate_keys",
    "normalise_rows",
    "round_significant",
    "text_duplicate_labels",
    "text_near_duplicates",
    "word_shingles",
]

_MISSING_TEXT = "\x00<missing>"  # a value no real text has, so missing never equals a string


def round_significant(values: np.ndarray, digits: int) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits, vectorised.

    The rounded value is built from an integer and an exact power of ten, so two inputs that
    round to the same decimal give the very same float (and the same hash).

    >>> round_significant(np.array([123456.789, 0.000123456, -1.5e-20, np.nan]), 3).tolist()
    [123000.0, 0.000123, -1.5e-20, nan]
    """
    if not 1 <= digits <= 15:
        raise DesignError(
            "cannot round to that many digits",
            field="data.leakage.near_duplicate_digits",
            received=digits,
            expected="1 to 15 significant digits",
        )
    x = np.asarray(values, dtype=float)
    ok = np.isfinite(x) & (x != 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mag = np.floor(np.log10(np.abs(np.where(ok, x, 1.0))))
        e = (digits - 1 - mag).astype(np.int64)
        up = np.float_power(10.0, np.abs(e))  # exact for |e| <= 22
        # e >= 0: n / 10^e ; e < 0: n * 10^-e -- both from an integer n, so equal decimals are equal floats
        rounded = np.where(e >= 0, np.round(x * up) / up, np.round(x / up) * up)
    out = np.where(ok & np.isfinite(rounded), rounded, x)
    return out + 0.0  # -0.0 -> 0.0


def _normalise_column(s: pd.Series, digits: int) -> pd.Series:
    if ptypes.is_bool_dtype(s.dtype) or ptypes.is_integer_dtype(s.dtype):
        return s
    if ptypes.is_datetime64_any_dtype(s.dtype) or ptypes.is_timedelta64_dtype(s.dtype):
        return s
    if ptypes.is_float_dtype(s.dtype):
        values = s.to_numpy(dtype=float, na_value=np.nan)
        return pd.Series(round_significant(values, digits), index=s.index, name=s.name)
    text = s.astype("string").str.strip().str.replace(r"\s+", " ", regex=True).str.casefold()
    return text.fillna(_MISSING_TEXT).astype(object)


def normalise_rows(df: pd.DataFrame, columns: list[str], *, digits: int = 6) -> pd.DataFrame:
    """The ``columns`` of ``df`` normalised as the module describes (same index)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DesignError(
            f"column {missing[0]!r} is not in the data",
            field="columns",
            received=missing[0],
            expected="one of: " + ", ".join(map(str, df.columns[:30])),
        )
    return pd.DataFrame({c: _normalise_column(df[c], digits) for c in columns}, index=df.index)


def near_duplicate_keys(df: pd.DataFrame, columns: list[str], *, digits: int = 6) -> np.ndarray:
    """One uint64 per row; near-duplicate rows (equal after normalisation) share their key."""
    normal = normalise_rows(df, columns, digits=digits)
    return pd.util.hash_pandas_object(normal, index=False).to_numpy()


def link_components(*labels: np.ndarray) -> np.ndarray:
    """Rows joined into components: two rows are in one component when they share a value of
    any label (directly or through a chain of rows). Returns a component number per row.

    Used to keep near-duplicates *and* groups together: a row links its group to its
    near-duplicate key, so a group split over components never separates either.
    """
    if not labels:
        raise ValueError("link_components needs at least one label array")
    n = len(labels[0])
    codes, offset = [], 0
    for lab in labels:
        c, uniques = pd.factorize(np.asarray(lab), use_na_sentinel=False)
        codes.append(c + offset)
        offset += len(uniques)
    # a bipartite graph: node per label value, an edge from each row's first value to the others
    src = np.concatenate([codes[0]] * (len(codes) - 1)) if len(codes) > 1 else codes[0]
    dst = np.concatenate(codes[1:]) if len(codes) > 1 else codes[0]
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(offset, offset))
    _, comp = connected_components(graph, directed=False)
    # number components by first appearance so the result does not depend on label order
    return pd.factorize(comp[codes[0][:n]])[0]


# --- free text: MinHash over word shingles, LSH banding -----------------------------------------

_NO_SHINGLE = np.uint32(np.iinfo(np.uint32).max)  # the signature of a row without text (no hash is)


def word_shingles(texts: pd.Series, k: int = 3, *, distinct: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The k-word shingles of each text, hashed once: ``(row position, 64-bit shingle hash)``, rows
    sorted, one entry per distinct shingle of a row (``distinct=False``: every shingle, in text
    order, which is all a minimum needs).

    Text is normalised as row keys are (stripped, white space collapsed, case-folded); a text of
    fewer than ``k`` words is one shingle of all its words; a missing or empty text has none.

    >>> rows, hashes = word_shingles(pd.Series(["a b c d", "A  b c", None]), k=3)
    >>> rows.tolist(), set(hashes[rows == 1]) <= set(hashes[rows == 0])  # "a b c": in both
    ([0, 0, 1], True)
    """
    if k < 1:
        raise DesignError("a shingle needs at least one word", field="shingle", received=k, expected=">= 1")
    normal = texts.astype("string").str.strip().str.replace(r"\s+", " ", regex=True).str.casefold()
    words = normal.reset_index(drop=True).str.split(" ").explode().dropna()
    words = words[words != ""]
    row = words.index.to_numpy(dtype=np.int64)
    n_words = np.bincount(row, minlength=len(texts))[row]
    rank = np.arange(len(row)) - np.searchsorted(row, row)  # position of each word in its row
    # each word hashed once; a shingle's hash combines its words' hashes by position (wrap-around
    # multiply-add), so no shingle string is ever built
    word_hash = pd.util.hash_array(words.to_numpy(dtype=object))
    mult = np.random.default_rng(k).integers(1, 1 << 62, size=k, dtype=np.uint64) | np.uint64(1)
    combined = word_hash * mult[0]
    with np.errstate(over="ignore"):
        for j in range(1, k):  # the j-th next word of the same row, if the row has one
            nxt = np.zeros_like(word_hash)
            nxt[:-j] = word_hash[j:]
            same = np.zeros(len(row), dtype=bool)
            same[:-j] = row[j:] == row[:-j]
            combined = combined + np.where(same, nxt * mult[j], np.uint64(0))
    keep = (rank + k <= n_words) | ((n_words < k) & (rank == 0))
    row, hashed = row[keep], combined[keep]  # rows in order: explode keeps it
    if not distinct:
        return row, hashed
    order = np.lexsort((hashed, row))
    row, hashed = row[order], hashed[order]
    first = np.r_[True, (row[1:] != row[:-1]) | (hashed[1:] != hashed[:-1])]
    return row[first], hashed[first]


def minhash_signatures(
    texts: pd.Series, *, k: int = 3, permutations: int = 128, seed: int = 0, block: int = 1 << 18
) -> np.ndarray:
    """``(rows, permutations)`` MinHash signatures of the texts' k-word shingles.

    Each permutation is a multiply-add-shift hash ``((a x + b) mod 2**64) >> 33`` of the 64-bit
    shingle hash ``x`` (``a`` odd; a universal family, and about 7 times faster in numpy than
    ``(a x + b) mod p``, which needs a division per entry), applied to every shingle at once as a
    matrix; a row's signature is the minimum over its shingles (``np.minimum.reduceat``), 31 bits
    per entry. The share of equal entries of two signatures estimates the Jaccard similarity of
    the two shingle sets (standard error ``sqrt(J(1-J)/permutations)``). Shingles are processed
    ``block`` at a time, so memory stays at ``block x permutations`` words.
    """
    rows, hashes = word_shingles(texts, k, distinct=False)
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 1 << 63, size=permutations, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 1 << 63, size=permutations, dtype=np.uint64)
    out = np.full((len(texts), permutations), _NO_SHINGLE, dtype=np.uint32)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.empty(0, dtype=int)
    # blocks of about ``block`` shingles, each starting where a row starts
    cuts = np.unique(starts[np.searchsorted(starts, np.arange(0, len(rows), block), side="right") - 1])
    for lo, hi in itertools.pairwise([*cuts, len(rows)]):
        part = rows[lo:hi]
        first = np.flatnonzero(np.r_[True, part[1:] != part[:-1]])
        with np.errstate(over="ignore"):  # mod 2**64 is the wrap-around itself
            values = hashes[lo:hi, None] * a
            values += b
        values >>= np.uint64(33)  # < 2**31: never the no-text sentinel
        out[part[first]] = np.minimum.reduceat(values.astype(np.uint32), first, axis=0)
    return out


def lsh_bands(permutations: int, threshold: float) -> tuple[int, int]:
    """``(bands, rows per band)``, ``bands x rows <= permutations``, for LSH over the signatures:
    the pair whose S-curve ``1 - (1 - s^r)^b`` best separates similarities below and above
    ``threshold`` (missed pairs weighted 9:1 against false candidates, which are verified anyway).

    >>> lsh_bands(128, 0.8)  # a pair at 0.8 is a candidate with probability 0.87, at 0.4: 0.004
    (14, 9)
    """
    s = np.linspace(0, 1, 1001)
    best, cost = (permutations, 1), np.inf
    for r in range(1, permutations + 1):
        for b in range(1, permutations // r + 1):
            p = 1 - (1 - s**r) ** b
            fp = float(np.trapezoid(np.where(s < threshold, p, 0), s))
            fn = float(np.trapezoid(np.where(s >= threshold, 1 - p, 0), s))
            if 0.1 * fp + 0.9 * fn < cost:
                best, cost = (b, r), 0.1 * fp + 0.9 * fn
    return best


def _ragged_arange(counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(c) for c in counts])`` without the loop."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


def _pairs_in_buckets(key: np.ndarray) -> np.ndarray:
    """Every pair ``(u, v)``, ``u < v``, of positions sharing a key, without a loop over buckets."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    start = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    size = np.diff(np.r_[start, len(key)])
    end = np.repeat(start + size, size)  # per sorted position: where its bucket ends
    after = end - np.arange(len(key)) - 1  # the positions after it in its bucket
    left = np.repeat(np.arange(len(key)), after)
    right = left + 1 + _ragged_arange(after)
    u, v = order[left], order[right]
    return np.stack([np.minimum(u, v), np.maximum(u, v)], axis=1)


@dataclasses.dataclass(frozen=True)
class TextDuplicates:
    """Near-duplicate texts, found on the distinct signatures (a text repeated m times is one).

    ``signature_of[row]`` numbers the row's distinct signature (-1: no text); ``pairs`` are
    pairs of distinct signatures whose estimated Jaccard similarity (``similarity``) reaches
    the threshold. Rows sharing a signature are near-duplicates of each other (similarity 1).
    """

    signature_of: np.ndarray
    pairs: np.ndarray
    similarity: np.ndarray

    def labels(self) -> np.ndarray:
        """A component number per row: rows linked by a chain of near-duplicates share it; a row
        without text has one of its own (the ``link`` of a split, like near-duplicate keys)."""
        n_sig = int(self.signature_of.max()) + 1 if len(self.signature_of) else 0
        graph = coo_matrix(
            (np.ones(len(self.pairs), dtype=np.int8), (self.pairs[:, 0], self.pairs[:, 1])),
            shape=(n_sig, n_sig),
        )
        _, comp = connected_components(graph, directed=False)
        none = self.signature_of < 0
        out = np.where(none, 0, comp[np.maximum(self.signature_of, 0)] if n_sig else 0)
        out[none] = (comp.max() + 1 if n_sig else 0) + np.arange(int(none.sum()))
        return pd.factorize(out)[0]  # numbered by first appearance

    def has_match_in(self, among: np.ndarray) -> np.ndarray:
        """Per row: whether a row of ``among`` (a boolean mask over rows) is its near-duplicate
        (shares its signature or a verified pair with it)."""
        sig = self.signature_of
        n_sig = int(sig.max()) + 1 if len(sig) else 0
        present = np.zeros(n_sig, dtype=bool)
        present[sig[np.asarray(among) & (sig >= 0)]] = True
        near = present.copy()
        np.logical_or.at(near, self.pairs[:, 0], present[self.pairs[:, 1]])
        np.logical_or.at(near, self.pairs[:, 1], present[self.pairs[:, 0]])
        return (sig >= 0) & near[np.maximum(sig, 0)] if n_sig else np.zeros(len(sig), dtype=bool)

    def row_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row pairs ``(i, j, similarity)``, ``i < j`` (quadratic in repeated texts: for small data)."""
        rows = np.flatnonzero(self.signature_of >= 0)
        sig = self.signature_of[rows]
        order = np.argsort(sig, kind="stable")
        members, counts = rows[order], np.bincount(sig, minlength=int(sig.max()) + 1 if len(sig) else 0)
        offsets = np.cumsum(counts) - counts
        u, v = self.pairs[:, 0], self.pairs[:, 1]
        cu, cv = counts[u], counts[v]
        k = _ragged_arange(cu * cv)
        which = np.repeat(np.arange(len(u)), cu * cv)
        i = members[offsets[u][which] + k // cv[which]]
        j = members[offsets[v][which] + k % cv[which]]
        same = _pairs_in_buckets(sig)  # rows sharing one signature
        i = np.r_[i, rows[same[:, 0]]]
        j = np.r_[j, rows[same[:, 1]]]
        s = np.r_[self.similarity[which], np.ones(len(same))]
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        order = np.lexsort((hi, lo))
        return lo[order], hi[order], s[order]


def text_near_duplicates(
    texts: pd.Series | pd.DataFrame,
    threshold: float = 0.8,
    *,
    k: int = 3,
    permutations: int = 128,
    bands: int | None = None,
    seed: int = 0,
) -> TextDuplicates:
    """Texts whose k-word shingle sets have an estimated Jaccard similarity of ``threshold`` or more.

    A frame's columns are joined into one text per row. Candidates come from LSH banding of the
    MinHash signatures (rows equal on every entry of some band share a bucket; ``bands`` from
    :func:`lsh_bands` unless given), each verified on the whole signature.

    >>> found = text_near_duplicates(pd.Series([
    ...     "the quick brown fox jumps over the lazy dog", "The quick brown fox jumps over the lazy dog!",
    ...     "the quick brown fox jumps over the lazy dog", "an entirely different sentence here"]), 0.5)
    >>> found.labels().tolist()
    [0, 0, 0, 1]
    """
    if not 0 < threshold <= 1:
        raise DesignError(
            "a similarity threshold is a share", field="threshold", received=threshold, expected="in (0, 1]"
        )
    if isinstance(texts, pd.DataFrame):
        texts = texts.astype("string").fillna("").agg(" ".join, axis=1)
    signatures = minhash_signatures(texts, k=k, permutations=permutations, seed=seed)
    has_text = signatures[:, 0] != _NO_SHINGLE
    unique, inverse = np.unique(signatures[has_text], axis=0, return_inverse=True)
    signature_of = np.full(len(texts), -1, dtype=np.int64)
    signature_of[has_text] = inverse.ravel()
    b, r = (bands, permutations // bands) if bands else lsh_bands(permutations, threshold)
    mult = np.random.default_rng(seed + 1).integers(1, 1 << 62, size=r, dtype=np.uint64) | np.uint64(1)
    candidates = [np.empty((0, 2), dtype=np.int64)]
    with np.errstate(over="ignore"):  # wrap-around multiply-add: a hash of the band's entries
        for band in range(b):
            key = (unique[:, band * r : (band + 1) * r] * mult).sum(axis=1)
            candidates.append(_pairs_in_buckets(key))
    pairs = np.unique(np.concatenate(candidates), axis=0)
    similarity = (unique[pairs[:, 0]] == unique[pairs[:, 1]]).mean(axis=1) if len(pairs) else np.empty(0)
    keep = similarity >= threshold
    return TextDuplicates(signature_of, pairs[keep], similarity[keep])


def text_duplicate_labels(
    frame: pd.DataFrame, columns: list[str], threshold: float, *, k: int = 3, seed: int = 0
) -> np.ndarray:
    """A component number per row of ``frame``: rows whose ``columns`` (joined) are near-duplicate
    texts (:func:`text_near_duplicates`), directly or through a chain, share it (a split's ``link``)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DesignError(
            f"column {missing[0]!r} is not in the data",
            field="data.split.dedupe_text.columns",
            received=missing[0],
            expected="one of: " + ", ".join(map(str, frame.columns[:30])),
        )
    return text_near_duplicates(frame[columns].reset_index(drop=True), threshold, k=k, seed=seed).labels()

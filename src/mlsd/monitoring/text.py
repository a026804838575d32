"""Watching free-text columns: length, out-of-vocabulary rate and embedding drift (MMD).

A text column is not compared as a category (every tweet is new). Per ``features.text`` column,
the build saves a :class:`TextReference` (``reference/text/``) and each monitoring window gets a
:class:`TextWatch` with three measures:

- **length** (characters): two-sample KS of the window's lengths against the training lengths,
  effect Wasserstein / reference std, material at ``LENGTH_THRESHOLD`` (0.1, as ``ks``);
- **out-of-vocabulary rate**: the share of the window's tokens (scikit-learn's default word
  tokeniser, lowercased) absent from the training vocabulary, beside the *expected* rate: the
  same share for a random fifth of training against a vocabulary of the other four fifths (new
  text always brings some new words). It is material when it exceeds the expected rate by
  ``OOV_THRESHOLD`` (0.05: five more unknown tokens in a hundred) in a window of at least
  ``OOV_MIN_TOKENS`` (500) tokens. Tokens of one text are not independent, so no p-value is
  claimed;
- **embedding drift**: ``mmd`` (:mod:`._mmd`), the permutation test of the maximum mean
  discrepancy between at most ``max_rows`` embeddings of training texts and of window texts,
  embedded by the column's **fitted encoder from the champion** (TF-IDF rows or MiniLM vectors:
  what the model reads). Drifted when ``p < alpha`` and the effect reaches the ``mmd`` threshold
  (:data:`mlsd.monitoring.drift.DEFAULT_THRESHOLDS`, calibrated in docs/text-features.md).

Length and embedding verdicts need ``MIN_TEXTS`` (50) texts in the window, the smallest window
the ``mmd`` threshold was calibrated on; smaller windows are measured and shown with a note.
The watch is against the training reference (``monitoring.reference: training``); rolling
references leave text unwatched.

>>> import pandas as pd
>>> from mlsd.features.text import TfidfEncoder
>>> train = pd.Series(["the fake news media", "join us tonight", "the failing times", "fake polls"] * 25)
>>> ref = TextReference.from_texts("tweet", train, TfidfEncoder().fit(train.to_frame()), seed=0)
>>> watch = watch_text(ref, pd.Series(["bonjour la compagnie"] * 200), threshold=0.1, alpha=0.05)
>>> watch.oov_window, watch.oov_drifted, watch.length_drifted
(1.0, True, True)
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import DataError
from mlsd.monitoring import _univariate as uni
from mlsd.monitoring._mmd import mmd_test

__all__ = [
    "LENGTH_THRESHOLD",
    "MIN_TEXTS",
    "OOV_MIN_TOKENS",
    "OOV_THRESHOLD",
    "TextReference",
    "TextWatch",
    "find_text_encoder",
    "load_text_references",
    "text_references",
    "watch_text",
]

LENGTH_THRESHOLD = 0.1  # Wasserstein / std, as the ks method's default
OOV_THRESHOLD = 0.05  # window OOV rate above the expected rate, absolute
OOV_MIN_TOKENS = 500  # fewer tokens (about 25 tweets): the OOV rate is shown without a verdict
# fewer texts: length and MMD are measured and shown, without a verdict. The mmd threshold is
# calibrated on windows of 50 to 500 tweets; a week of 3 tweets on one topic differs from nine
# years of them, and says nothing about drift
MIN_TEXTS = 50
_MAX_ROWS = 500  # embeddings per side of the MMD test: the kernel matrix is (2 * 500)² floats
_PERMUTATIONS = 500


def _texts(values: pd.Series) -> list[str]:
    return values.where(values.notna(), "").astype(str).tolist()


def _token_counts(texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """Token totals over ``texts`` (sklearn's default analyzer) and the tokens they count."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer()
    try:
        counts = vectorizer.fit_transform(texts)
    except ValueError:  # no token at all (empty texts)
        return np.zeros(0, dtype="int64"), []
    return np.asarray(counts.sum(axis=0)).ravel(), vectorizer.get_feature_names_out().tolist()


def _oov(texts: list[str], vocabulary: frozenset[str]) -> tuple[float, int]:
    """The out-of-vocabulary share of the tokens of ``texts``, and how many tokens there were."""
    totals, tokens = _token_counts(texts)
    n = int(totals.sum())
    if not n:
        return 0.0, 0
    unknown = ~np.isin(np.asarray(tokens, dtype=object), np.asarray(sorted(vocabulary), dtype=object))
    return float(totals[unknown].sum() / n), n


@dataclasses.dataclass
class TextReference:
    """What the build keeps of one training text column for monitoring."""

    column: str
    encoder: Any  # the champion's fitted text encoder of this column (pickled with joblib)
    lengths: np.ndarray  # sorted training lengths, in characters
    vocabulary: frozenset[str]
    expected_oov: float
    embeddings: np.ndarray  # float32, at most _MAX_ROWS training rows, embedded by ``encoder``
    seed: int = 0

    @classmethod
    def from_texts(
        cls, column: str, values: pd.Series, encoder: Any, *, seed: int = 0, max_rows: int = _MAX_ROWS
    ) -> TextReference:
        texts = _texts(values.reset_index(drop=True))
        if len(texts) < 5:
            raise DataError(
                "too few training texts to watch", field=column, received=len(texts), expected=">= 5"
            )
        rng = np.random.default_rng(seed)
        held_out = rng.random(len(texts)) < 0.2
        fit_part = [t for t, h in zip(texts, held_out, strict=True) if not h]
        test_part = [t for t, h in zip(texts, held_out, strict=True) if h]
        expected = _oov(test_part, frozenset(_token_counts(fit_part)[1]))[0]
        rows = np.sort(rng.choice(len(texts), size=min(max_rows, len(texts)), replace=False))
        frame = pd.DataFrame({column: [texts[i] for i in rows]})
        return cls(
            column=column,
            encoder=encoder,
            lengths=np.sort(np.array([len(t) for t in texts], dtype="float64")),
            vocabulary=frozenset(_token_counts(texts)[1]),
            expected_oov=expected,
            embeddings=np.asarray(encoder.transform(frame), dtype="float32"),
            seed=seed,
        )

    def save(self, directory: Path) -> None:
        """``<directory>/<column>.joblib`` (one file: encoder, samples and vocabulary)."""
        import joblib

        directory.mkdir(parents=True, exist_ok=True)
        state = dataclasses.asdict(self) | {"vocabulary": sorted(self.vocabulary)}
        joblib.dump(state, directory / f"{self.column}.joblib")

    @classmethod
    def load(cls, path: Path) -> TextReference:
        import joblib

        state = joblib.load(path)
        state["vocabulary"] = frozenset(state["vocabulary"])
        return cls(**state)


def find_text_encoder(model: Any, column: str, depth: int = 8) -> Any | None:
    """The fitted ``text_<column>`` encoder inside a fitted model (pipelines, calibration wrappers)."""
    if depth < 0 or model is None:
        return None
    ct = getattr(model, "column_transformer_", None)
    if ct is not None and f"text_{column}" in getattr(ct, "named_transformers_", {}):
        return ct.named_transformers_[f"text_{column}"]
    children: list[Any] = [step for _, step in getattr(model, "steps", [])]
    children += [getattr(model, "estimator", None)]
    children += [getattr(c, "estimator", None) for c in getattr(model, "calibrated_classifiers_", [])[:1]]
    for child in children:
        found = find_text_encoder(child, column, depth - 1)
        if found is not None:
            return found
    return None


def text_references(
    train: pd.DataFrame, model: Any, columns: list[str], *, seed: int = 0
) -> dict[str, TextReference]:
    """A :class:`TextReference` per text column the fitted ``model`` encodes (others are skipped)."""
    out: dict[str, TextReference] = {}
    for column in columns:
        encoder = find_text_encoder(model, column)
        if encoder is not None and column in train.columns:
            out[column] = TextReference.from_texts(column, train[column], encoder, seed=seed)
    return out


def load_text_references(directory: Path) -> dict[str, TextReference]:
    """Every saved text reference of a reference directory's ``text/`` folder (none: ``{}``)."""
    folder = Path(directory) / "text"
    if not folder.is_dir():
        return {}
    return {p.stem: TextReference.load(p) for p in sorted(folder.glob("*.joblib"))}


@dataclasses.dataclass
class TextWatch:
    """One text column in one window; ``drifted`` when any of its three measures is material."""

    column: str
    n_window: int
    length_reference_median: float
    length_window_median: float
    length_p_value: float
    length_effect: float
    length_drifted: bool
    oov_expected: float
    oov_window: float
    oov_drifted: bool
    n_tokens: int
    method: str
    mmd_statistic: float
    mmd_p_value: float
    mmd_effect: float
    mmd_threshold: float
    embedding_drifted: bool
    drifted: bool
    n_embedded: int = 0
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN written as ``None``)."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextWatch:
        fields: dict[str, Any] = {
            k: (math.nan if v is None and k not in ("note",) else v) for k, v in data.items()
        }
        return cls(**fields)


def watch_text(
    reference: TextReference,
    values: pd.Series,
    *,
    threshold: float,
    alpha: float,
    max_rows: int = _MAX_ROWS,
    n_permutations: int = _PERMUTATIONS,
) -> TextWatch:
    """Length, OOV rate and MMD of one window's texts against ``reference``."""
    texts = _texts(values.reset_index(drop=True))
    n = len(texts)
    lengths = np.sort(np.array([len(t) for t in texts], dtype="float64"))
    ref = reference.lengths
    if n:
        d = uni.ks_statistic(ref, lengths)
        p_len = float(uni.ks_p_values(np.array([d]), np.array([len(ref)]), np.array([n]))[0])
        std = float(np.std(ref, ddof=1)) if len(ref) > 1 else 0.0
        dist = uni.wasserstein(ref, lengths)
        effect_len = dist / std if std else float(dist > 0)
    else:
        p_len, effect_len = math.nan, 0.0
    oov, n_tokens = _oov(texts, reference.vocabulary)
    rng = np.random.default_rng(reference.seed)
    mmd = None
    note = None
    if n >= 2:
        rows = np.sort(rng.choice(n, size=min(max_rows, n), replace=False))
        frame = pd.DataFrame({reference.column: [texts[i] for i in rows]})
        window = np.asarray(reference.encoder.transform(frame), dtype="float32")
        mmd = mmd_test(reference.embeddings, window, n_permutations=n_permutations, seed=reference.seed)
    else:
        note = "fewer than 2 texts: no embedding test"
    if n < MIN_TEXTS:
        note = note or f"fewer than {MIN_TEXTS} texts: measured, no verdict on length and embeddings"
    judged = n >= MIN_TEXTS
    length_drifted = bool(judged and p_len < alpha and effect_len >= LENGTH_THRESHOLD)
    # a few tweets' share of new words swings by tens of points: no verdict below OOV_MIN_TOKENS
    oov_drifted = bool(n_tokens >= OOV_MIN_TOKENS and oov - reference.expected_oov >= OOV_THRESHOLD)
    embedding_drifted = bool(judged and mmd is not None and mmd.p_value < alpha and mmd.effect >= threshold)
    return TextWatch(
        column=reference.column,
        n_window=n,
        length_reference_median=float(np.median(ref)),
        length_window_median=float(np.median(lengths)) if n else math.nan,
        length_p_value=p_len,
        length_effect=float(effect_len),
        length_drifted=length_drifted,
        oov_expected=reference.expected_oov,
        oov_window=oov,
        oov_drifted=oov_drifted,
        n_tokens=n_tokens,
        method="mmd",
        mmd_statistic=mmd.statistic if mmd else math.nan,
        mmd_p_value=mmd.p_value if mmd else math.nan,
        mmd_effect=mmd.effect if mmd else math.nan,
        mmd_threshold=threshold,
        embedding_drifted=embedding_drifted,
        drifted=length_drifted or oov_drifted or embedding_drifted,
        n_embedded=mmd.n_window if mmd else 0,
        note=note,
    )

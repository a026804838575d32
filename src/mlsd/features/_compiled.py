"""A plain-numpy copy of a fitted feature ``ColumnTransformer``, for fast small batches.

:func:`compile_features` reads the learnt state of the fitted scikit-learn steps (imputer
statistics, scaler moments, one-hot categories with their infrequent bucket, the hasher,
cyclical periods, date-time parts) into small kernels. :class:`CompiledFeatures` then reads
each raw column once and writes every block into one float64 matrix: the same numbers as
the ``ColumnTransformer`` without its per-call cost (validation, joblib, pandas indexing),
which is nearly all of the time spent on one row. A step it does not know makes
:func:`compile_features` return ``None``; an input it cannot reproduce exactly (infinity,
duplicated column names) raises :class:`Fallback`, and the caller uses the ``ColumnTransformer``.

>>> import pandas as pd
>>> from sklearn.compose import ColumnTransformer
>>> from sklearn.preprocessing import StandardScaler
>>> rows = pd.DataFrame({"x": [1.0, 3.0]})
>>> ct = ColumnTransformer([("n", StandardScaler(), ["x"])]).fit(rows)
>>> compile_features(ct, float_columns=["x"]).transform(pd.DataFrame({"x": [2.0, 5.0]})).tolist()
[[0.0], [3.0]]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils import murmurhash3_32

from mlsd.features._columns import SMALL, RawColumns, time_parts
from mlsd.features.transformers import (
    CyclicalEncoder,
    DateTimeParts,
    FeatureCross,
    HashingEncoder,
    _input_names,
    as_category_strings,
)

__all__ = ["CompiledFeatures", "Fallback", "compile_features"]


class Fallback(Exception):
    """This input is not one the compiled kernels reproduce exactly; use the reference path."""


# Sources: raw columns -> the first matrix of a step.


class _FloatSource:
    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)

    def __call__(self, cols: RawColumns, n: int) -> np.ndarray:
        out = np.empty((n, len(self.columns)), dtype=np.float64)
        for j, column in enumerate(self.columns):
            out[:, j] = cols.floats(column)
        if np.isinf(out).any():
            raise Fallback("infinity in a number column")  # sklearn's validation owns that error
        return out


class _StringSource:
    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)

    def __call__(self, cols: RawColumns, n: int) -> np.ndarray:
        out = np.empty((n, len(self.columns)), dtype=object)
        for j, column in enumerate(self.columns):
            out[:, j] = cols.strings(column)
        return out


class _CrossSource:
    def __init__(self, columns: Sequence[str], pairs: Iterable[tuple[int, int]], separator: str) -> None:
        self.columns, self.pairs, self.separator = list(columns), list(pairs), separator

    def __call__(self, cols: RawColumns, n: int) -> np.ndarray:
        out = np.empty((n, len(self.pairs)), dtype=object)
        for j, (a, b) in enumerate(self.pairs):
            out[:, j] = cols.strings(self.columns[a]) + self.separator + cols.strings(self.columns[b])
        return out


class _TimeSource:
    def __init__(self, column: str, parts: Sequence[str]) -> None:
        self.column, self.parts = column, tuple(parts)

    def __call__(self, cols: RawColumns, n: int) -> np.ndarray:
        return time_parts(cols.stamps(self.column), self.parts)


class _HashSource:
    def __init__(self, columns: Sequence[str], names: Sequence[str], hasher: Any) -> None:
        self.columns, self.names, self.hasher = list(columns), list(names), hasher

    def __call__(self, cols: RawColumns, n: int) -> np.ndarray:
        tokens = np.empty((n, len(self.columns)), dtype=object)
        for j, (column, name) in enumerate(zip(self.columns, self.names, strict=True)):
            tokens[:, j] = name + "=" + cols.strings(column)
        if n > SMALL:
            return self.hasher.transform(tokens).toarray()
        # FeatureHasher's own arithmetic, minus its sparse round trip, for a few rows.
        width, sign = self.hasher.n_features, self.hasher.alternate_sign
        hashes = np.fromiter((murmurhash3_32(t) for t in tokens.ravel()), dtype=np.int64, count=tokens.size)
        index = np.where(hashes == -(2**31), (2**31 - 1 - (width - 1)) % width, np.abs(hashes) % width)
        value = np.where(hashes >= 0, 1.0, -1.0) if sign else np.ones(len(hashes))
        out = np.zeros((n, width), dtype=np.float64)
        np.add.at(out, (np.repeat(np.arange(n), tokens.shape[1]), index), value)
        return out


# Stages: matrix -> matrix, each a fitted sklearn step's transform in plain numpy.


class _Impute:
    def __init__(self, statistics: np.ndarray) -> None:
        self.statistics = statistics

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(X), self.statistics, X)


class _Scale:
    def __init__(self, mean: np.ndarray | None, scale: np.ndarray | None) -> None:
        self.mean, self.scale = mean, scale

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if self.mean is not None:
            X = X - self.mean
        return X / self.scale if self.scale is not None else X


class _Cyclical:
    def __init__(self, factor: np.ndarray) -> None:
        self.factor = factor

    def __call__(self, X: np.ndarray) -> np.ndarray:
        angle = self.factor * X
        out = np.empty((X.shape[0], 2 * X.shape[1]), dtype=np.float64)
        out[:, 0::2] = np.sin(angle)
        out[:, 1::2] = np.cos(angle)
        return out


class _Indicator:
    def __init__(self, features: np.ndarray) -> None:
        self.features = features

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return np.isnan(X[:, self.features]).astype(np.float64)


class _Vocabulary:
    """Category string -> output column of one one-hot block (-1: no column, all zeros)."""

    def __init__(self, categories: np.ndarray, columns: np.ndarray, unknown: int) -> None:
        self.codes = dict(zip(categories.tolist(), columns.tolist(), strict=True))
        self.unknown = unknown
        self.index = pd.Index(categories, dtype=object)
        self.by_position = np.append(columns, unknown).astype(np.intp)  # position -1 is the unknown

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if len(values) <= SMALL:
            get, unknown = self.codes.get, self.unknown
            return np.fromiter((get(v, unknown) for v in values), dtype=np.intp, count=len(values))
        return self.by_position[self.index.get_indexer(values)]


class _OneHot:
    def __init__(self, vocabularies: Sequence[_Vocabulary], widths: Sequence[int]) -> None:
        self.vocabularies = list(vocabularies)
        self.offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.intp)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((X.shape[0], self.offsets[-1]), dtype=np.float64)
        rows = np.arange(X.shape[0])
        for i, vocabulary in enumerate(self.vocabularies):
            column = vocabulary(X[:, i])
            hit = column >= 0
            out[rows[hit], self.offsets[i] + column[hit]] = 1.0
        return out


class _Select:
    """An inner ColumnTransformer over the columns of a matrix."""

    def __init__(self, parts: Sequence[tuple[np.ndarray, list[Any]]]) -> None:
        self.parts = list(parts)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        blocks = []
        for indices, stages in self.parts:
            block = X[:, indices]
            for stage in stages:
                block = stage(block)
            blocks.append(block)
        return np.hstack(blocks) if blocks else np.empty((X.shape[0], 0))


def _dropped(step: Any) -> bool:
    return isinstance(step, str) and step == "drop"


def _identity(step: Any) -> bool:
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return True
    return isinstance(step, FunctionTransformer) and step.func is None and step.inverse_func is None


def _imputer(step: SimpleImputer) -> _Impute | None:
    stats = np.asarray(step.statistics_, dtype=np.float64)
    ok = not isinstance(step.missing_values, str) and pd.isna(step.missing_values) and not step.add_indicator
    if not ok or (not step.keep_empty_features and np.isnan(stats).any()):
        return None
    return _Impute(stats)


def _one_hot(step: OneHotEncoder) -> _OneHot | None:
    ok = (
        step.drop is None
        and step.handle_unknown in ("ignore", "infrequent_if_exist")
        and not step.sparse_output
    )
    if not ok or not all(isinstance(c, str) for cats in step.categories_ for c in cats):
        return None
    infrequent_on = getattr(step, "_infrequent_enabled", False)
    vocabularies, widths = [], []
    for i, categories in enumerate(step.categories_):
        mapping = step._default_to_infrequent_mappings[i] if infrequent_on else None
        if mapping is None:
            columns, unknown = np.arange(len(categories)), -1
        else:
            columns = np.asarray(mapping)
            # 'ignore' leaves unknown values out even when an infrequent bucket exists.
            if step.handle_unknown == "infrequent_if_exist":
                unknown = int(mapping[step._infrequent_indices[i][0]])
            else:
                unknown = -1
        vocabularies.append(_Vocabulary(np.asarray(categories, dtype=object), columns, unknown))
        widths.append(int(columns.max()) + 1 if len(columns) else 0)
    if widths != list(step._n_features_outs):
        return None
    return _OneHot(vocabularies, widths)


def _stage(step: Any) -> Any:
    """A kernel for one fitted matrix -> matrix step, or None if it is not one we copy."""
    if isinstance(step, SimpleImputer):
        return _imputer(step)
    if isinstance(step, StandardScaler):
        return _Scale(step.mean_ if step.with_mean else None, step.scale_ if step.with_std else None)
    if isinstance(step, CyclicalEncoder):
        return _Cyclical(2.0 * np.pi / step.periods_)
    if isinstance(step, MissingIndicator):
        if step.error_on_new or not pd.isna(step.missing_values) or step.features != "missing-only":
            return None
        return _Indicator(np.asarray(step.features_, dtype=np.intp))
    if isinstance(step, OneHotEncoder):
        return _one_hot(step)
    if isinstance(step, ColumnTransformer):
        parts = []
        for _, inner, indices in step.transformers_:
            if _dropped(inner):
                continue
            chain = _stages(_steps(inner))
            if chain is None or not all(isinstance(i, int | np.integer) for i in indices):
                return None
            parts.append((np.asarray(indices, dtype=np.intp), chain))
        return _Select(parts)
    return None


def _steps(step: Any) -> list[Any]:
    return [s for _, s in step.steps] if isinstance(step, Pipeline) else [step]


def _stages(steps: Iterable[Any]) -> list[Any] | None:
    """Kernels for a chain of fitted steps (identities skipped), or None if one is not copied."""
    stages = [_stage(s) for s in steps if not _identity(s)]
    return None if any(s is None for s in stages) else stages


def _source(first: Any, columns: list[str], float_columns: frozenset[str]) -> Any:
    """The source kernel a step starts from, or None if the step starts from plain numbers."""
    if isinstance(first, HashingEncoder) and not first.sparse_output:
        return _HashSource(columns, _input_names(first), first.hasher_)
    if isinstance(first, DateTimeParts) and len(columns) == 1 and first.tz == "UTC":
        return _TimeSource(columns[0], first.parts)
    if isinstance(first, FunctionTransformer) and first.func is as_category_strings:
        return _StringSource(columns)
    if isinstance(first, FeatureCross):
        return _CrossSource(columns, first.pairs_, first.separator)
    return None


class CompiledFeatures:
    """Raw rows -> the feature matrix, by kernels copied from a fitted ``ColumnTransformer``."""

    def __init__(
        self,
        steps: list[tuple[Any, list[Any]]],
        columns: Sequence[str],
        n_features_out: int,
        float_columns: Any,
    ) -> None:
        self.steps = steps
        self.columns = list(columns)
        self.n_features_out = n_features_out
        self.float_columns = frozenset(float_columns)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """The feature matrix of ``X`` (which must hold every input column); zero rows give (0, n)."""
        if not X.columns.is_unique:
            raise Fallback("duplicated column names")
        n = len(X)
        if n == 0:
            return np.empty((n, self.n_features_out), dtype=np.float64)
        return self._fill(RawColumns(X, self.columns, self.float_columns), n)

    def transform_columns(self, arrays: Mapping[str, Any], n: int) -> np.ndarray:
        """The feature matrix of ``n`` rows given as one array per input column (numpy, or a pandas
        extension array), as :meth:`transform` computes it for a frame of those columns."""
        if n == 0:
            return np.empty((n, self.n_features_out), dtype=np.float64)
        return self._fill(RawColumns(None, self.columns, self.float_columns, arrays), n)

    def _fill(self, cols: RawColumns, n: int) -> np.ndarray:
        out = np.empty((n, self.n_features_out), dtype=np.float64)
        start = 0
        for source, stages in self.steps:
            block = source(cols, n)
            for stage in stages:
                block = stage(block)
            out[:, start : start + block.shape[1]] = block
            start += block.shape[1]
        if start != self.n_features_out:
            raise Fallback(f"compiled width {start} != {self.n_features_out}")
        return out


def compile_features(ct: ColumnTransformer, float_columns: Iterable[str]) -> CompiledFeatures | None:
    """Kernels for a fitted dense ``ColumnTransformer`` over named columns, or None if unsupported.

    ``float_columns`` are the columns the caller converts to float64 before the transformer
    sees them (numbers for imputers, scalers and cyclical encoders; strings in crosses).
    """
    float_columns = frozenset(float_columns)
    steps = []
    for _, step, columns in ct.transformers_:
        if _dropped(step):
            continue
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            return None
        chain = _steps(step)
        source = _source(chain[0], columns, float_columns)
        if source is None:
            if not set(columns) <= float_columns:
                return None
            source, rest = _FloatSource(columns), chain
        else:
            rest = chain[1:]
        stages = _stages(rest)
        if stages is None:
            return None
        steps.append((source, stages))
    used = dict.fromkeys(c for _, step, columns in ct.transformers_ if not _dropped(step) for c in columns)
    return CompiledFeatures(steps, list(used), len(ct.get_feature_names_out()), float_columns)

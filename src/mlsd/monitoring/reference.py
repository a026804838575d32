"""Reference statistics: what monitoring compares production traffic against, saved at build time.

:meth:`ReferenceStatistics.from_frame` summarises the training inputs once, so ``mlsd monitor``
never needs the training data again:

- per numeric column: non-missing count, missing rate, min/max, mean/std (``ddof=1``), decile bin
  edges (duplicates dropped, so a column that is mostly zero gets fewer bins) with the count of
  training rows in each bin (PSI, Jensen-Shannon), and a seeded row sample of at most
  ``sample_size`` rows (KS and Wasserstein are computed exactly against that sample);
- per categorical column: the counts of the ``max_categories`` most frequent categories, the count
  of the rest (``other_count``) and the missing rate; categories are compared as text through
  :func:`category_keys`, so ``1`` and ``1.0`` are the same category;
- ``score`` (model scores on held-out data, not aligned with the frame's rows) becomes one more
  numeric column, so prediction drift is feature drift on ``score``;
- the label rate of the held-out labels and the build's offline performance.

Bins are right-closed: ``(-inf, e1], (e1, e2], ..., (ek, inf)``. Infinite values count as missing.
:meth:`~ReferenceStatistics.save` writes ``statistics.json`` (exact: floats are written with
``repr``) plus ``sample.parquet`` (the row sample) and, when scores were given,
``score_sample.parquet``; :meth:`~ReferenceStatistics.load` reads them back equal.

>>> import pandas as pd
>>> train = pd.DataFrame({"temp": [10.0, 20.0, 30.0, None], "carrier": ["UA", "AA", "UA", "UA"]})
>>> ref = ReferenceStatistics.from_frame(train, numeric=["temp"], categorical=["carrier"])
>>> ref.numeric_stats["temp"].mean, ref.missing_rates()["temp"]
(20.0, 0.25)
>>> ref.frequencies("carrier")
{'UA': 0.75, 'AA': 0.25}
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from mlsd.data.schema import _category_keys
from mlsd.errors import DataError

__all__ = [
    "SCORE_COLUMN",
    "CategoricalStats",
    "NumericStats",
    "ReferenceStatistics",
    "binned_counts",
    "category_keys",
    "float_matrix",
]

SCORE_COLUMN = "score"
_FORMAT_VERSION = 1
_STATS_FILE, _SAMPLE_FILE, _SCORE_FILE = "statistics.json", "sample.parquet", "score_sample.parquet"


def category_keys(values: pd.Series) -> pd.Series:
    """Categories as text, missing kept missing; integral floats lose ``.0`` (the schema's rule).

    >>> category_keys(pd.Series([1.0, 2.5, None])).tolist()
    ['1', '2.5', nan]
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype("object")
    return _category_keys(values)


def _float_column(values: pd.Series, name: str) -> np.ndarray:
    if ptypes.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    if ptypes.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    if ptypes.is_datetime64_any_dtype(values.dtype):
        raise DataError(
            "a datetime column cannot be a numeric drift column",
            field=name,
            received=str(values.dtype),
            expected="a number column (derive e.g. the hour as a number first)",
        )
    # JSON rows from the prediction log arrive as objects; text that is not a number counts as missing
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def float_matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """``frame[columns]`` as a Fortran-ordered float64 array (one contiguous column each); NaN = missing.

    Non-finite values become NaN: an infinity has no place in a CDF distance.

    >>> float_matrix(pd.DataFrame({"a": [1, 2], "b": ["3", "x"]}), ["a", "b"]).tolist()
    [[1.0, 3.0], [2.0, nan]]
    """
    out = np.empty((len(frame), len(columns)), dtype="float64", order="F")
    for j, name in enumerate(columns):
        out[:, j] = _float_column(frame[name], name)
    out[~np.isfinite(out)] = np.nan
    return out


def binned_counts(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in the right-closed bins ``(-inf, e1], ..., (ek, inf)`` of already sorted, finite values.

    Sorted data needs one binary search per edge instead of one per value.

    >>> binned_counts(np.array([0.0, 1.0, 1.0, 2.0, 5.0]), np.array([1.0, 2.0])).tolist()
    [3, 1, 1]
    """
    inner = np.searchsorted(sorted_values, edges, side="right")
    return np.diff(np.concatenate([[0], inner, [len(sorted_values)]])).astype("int64")


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclasses.dataclass(frozen=True)
class NumericStats:
    """One numeric column at build time (``None`` where the column had no values)."""

    n: int
    missing_rate: float
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    edges: list[float]
    counts: list[int]

    @property
    def proportions(self) -> np.ndarray:
        """Share of the non-missing training rows in each bin."""
        counts = np.asarray(self.counts, dtype="float64")
        return counts / counts.sum() if counts.sum() else counts

    @classmethod
    def from_values(cls, values: np.ndarray, n_total: int) -> NumericStats:
        valid = np.sort(values[~np.isnan(values)])
        n = len(valid)
        if n == 0:
            return cls(0, 1.0 if n_total else 0.0, None, None, None, None, [], [0])
        edges = np.unique(np.quantile(valid, np.linspace(0.1, 0.9, 9)))
        std = float(np.std(valid, ddof=1)) if n > 1 else 0.0
        return cls(
            n=n,
            missing_rate=1.0 - n / n_total,
            min=float(valid[0]),
            max=float(valid[-1]),
            mean=float(np.mean(valid)),
            std=std,
            edges=[float(e) for e in edges],
            counts=[int(c) for c in binned_counts(valid, edges)],
        )


@dataclasses.dataclass(frozen=True)
class CategoricalStats:
    """One categorical column at build time: the most frequent categories, most frequent first."""

    n: int
    missing_rate: float
    categories: list[str]
    counts: list[int]
    other_count: int = 0

    @classmethod
    def from_series(cls, values: pd.Series, max_categories: int) -> CategoricalStats:
        counts = category_keys(values).value_counts(dropna=True, sort=True)
        n = int(counts.sum())
        kept = counts.iloc[:max_categories]
        return cls(
            n=n,
            missing_rate=(1.0 - n / len(values)) if len(values) else 0.0,
            categories=[str(c) for c in kept.index],
            counts=[int(c) for c in kept.to_numpy()],
            other_count=n - int(kept.sum()),
        )


@dataclasses.dataclass(eq=False)
class ReferenceStatistics:
    """What monitoring compares against; build it with :meth:`from_frame`, keep it with :meth:`save`."""

    numeric: list[str]
    categorical: list[str]
    n_rows: int
    numeric_stats: dict[str, NumericStats]
    categorical_stats: dict[str, CategoricalStats]
    sample: pd.DataFrame
    score_sample: np.ndarray | None = None
    label_rate: float | None = None
    label_distribution: dict[str, float] | None = None
    positive_class: Any = None  # the label value ``labels`` counted as 1 (binary), for the feedback
    performance: dict[str, float] = dataclasses.field(default_factory=dict)
    seed: int = 0
    #: features.text column -> its mlsd.monitoring.text.TextReference (saved under text/)
    text: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    # sorted samples and the like, derived once per process: monitoring calls drift per window
    _cache: dict[Any, Any] = dataclasses.field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        numeric: list[str],
        categorical: list[str],
        scores: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        positive_class: Any = None,
        performance: dict[str, float] | None = None,
        sample_size: int = 20_000,
        seed: int = 0,
        max_categories: int = 1000,
    ) -> ReferenceStatistics:
        """Summarise ``frame`` (the raw training inputs); ``scores``/``labels`` are held-out arrays."""
        _check_columns(frame, numeric, categorical, has_scores=scores is not None)
        if sample_size < 1 or max_categories < 1:
            raise DataError(
                "sample_size and max_categories must be positive",
                field="sample_size" if sample_size < 1 else "max_categories",
                received=min(sample_size, max_categories),
                expected="an integer >= 1",
            )
        rng = np.random.default_rng(seed)
        values = float_matrix(frame, numeric)
        numeric_stats = {c: NumericStats.from_values(values[:, j], len(frame)) for j, c in enumerate(numeric)}
        rows = np.sort(rng.choice(len(frame), size=min(sample_size, len(frame)), replace=False))
        sample = pd.DataFrame(values[rows], columns=numeric)
        for c in categorical:
            sample[c] = category_keys(frame[c].iloc[rows].reset_index(drop=True))
        score_sample = None
        if scores is not None:
            raw = np.asarray(scores, dtype="float64")
            if raw.ndim != 1:
                raise DataError(
                    "scores must be one number per row",
                    field="scores",
                    received=raw.shape,
                    expected="a 1-D array (the positive-class probability for binary tasks)",
                )
            raw = np.where(np.isfinite(raw), raw, np.nan)
            numeric_stats[SCORE_COLUMN] = NumericStats.from_values(raw, len(raw))
            pick = np.sort(rng.choice(len(raw), size=min(sample_size, len(raw)), replace=False))
            score_sample = raw[pick]
        label_rate, label_distribution = _label_summary(labels)
        return cls(
            numeric=[*numeric, SCORE_COLUMN] if scores is not None else list(numeric),
            categorical=list(categorical),
            n_rows=len(frame),
            numeric_stats=numeric_stats,
            categorical_stats={
                c: CategoricalStats.from_series(frame[c], max_categories) for c in categorical
            },
            sample=sample,
            score_sample=score_sample,
            label_rate=label_rate,
            label_distribution=label_distribution,
            positive_class=positive_class.item()
            if isinstance(positive_class, np.generic)
            else positive_class,
            performance={str(k): float(v) for k, v in (performance or {}).items()},
            seed=seed,
        )

    def sample_values(self, column: str) -> np.ndarray:
        """The sorted, non-missing sample of a numeric column (what KS and Wasserstein compare with).

        Cached and read-only: drift asks for it once per window.
        """
        key = ("sample", column)
        if key not in self._cache:
            if column == SCORE_COLUMN and self.score_sample is not None:
                raw = self.score_sample
            else:
                raw = self.sample[column].to_numpy(dtype="float64", na_value=np.nan)
            values = np.sort(raw[~np.isnan(raw)])
            values.flags.writeable = False
            self._cache[key] = values
        return self._cache[key]

    def frequencies(self, column: str) -> dict[str, float]:
        """Category shares among non-missing training rows (``"__other__"`` holds the rest, if any)."""
        st = self.categorical_stats[column]
        out = {c: n / st.n for c, n in zip(st.categories, st.counts, strict=True)} if st.n else {}
        if st.other_count:
            out["__other__"] = st.other_count / st.n
        return out

    def missing_rates(self) -> dict[str, float]:
        """Missing rate of every reference column at build time."""
        stats: dict[str, NumericStats | CategoricalStats] = {**self.numeric_stats, **self.categorical_stats}
        return {c: s.missing_rate for c, s in stats.items()}

    def to_dict(self) -> dict[str, Any]:
        """Everything but the samples, JSON-ready (NaN written as ``null``)."""
        return {
            "format_version": _FORMAT_VERSION,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "n_rows": self.n_rows,
            "numeric_stats": {c: dataclasses.asdict(s) for c, s in self.numeric_stats.items()},
            "categorical_stats": {c: dataclasses.asdict(s) for c, s in self.categorical_stats.items()},
            "label_rate": self.label_rate,
            "label_distribution": self.label_distribution,
            "positive_class": self.positive_class,
            "performance": self.performance,
            "seed": self.seed,
        }

    def save(self, directory: Path | str) -> None:
        """Write ``statistics.json``, ``sample.parquet`` (and ``score_sample.parquet``) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / _STATS_FILE).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        self.sample.to_parquet(directory / _SAMPLE_FILE, index=False)
        score_file = directory / _SCORE_FILE
        if self.score_sample is not None:
            pd.DataFrame({SCORE_COLUMN: self.score_sample}).to_parquet(score_file, index=False)
        elif score_file.exists():
            score_file.unlink()  # a stale score sample from an earlier build would be read back
        import shutil

        shutil.rmtree(directory / "text", ignore_errors=True)  # an earlier build's text columns
        for reference in self.text.values():
            reference.save(directory / "text")

    @classmethod
    def load(cls, directory: Path | str) -> ReferenceStatistics:
        """Read what :meth:`save` wrote; a clear :class:`~mlsd.errors.DataError` if it is not there."""
        directory = Path(directory)
        stats_path, sample_path = directory / _STATS_FILE, directory / _SAMPLE_FILE
        for path in (stats_path, sample_path):
            if not path.is_file():
                raise DataError(
                    "no reference statistics; run `mlsd build` first (it saves them for monitoring)",
                    field="reference",
                    received=str(path),
                    expected=f"{_STATS_FILE} and {_SAMPLE_FILE} written by `mlsd build`",
                )
        try:
            raw = json.loads(stats_path.read_text(encoding="utf-8"))
            version = raw.get("format_version")
        except (ValueError, AttributeError) as exc:
            raise DataError(
                f"reference statistics are not readable JSON: {exc}",
                field="reference",
                received=str(stats_path),
            ) from exc
        if version != _FORMAT_VERSION:
            raise DataError(
                "reference statistics were written by another mlsd version; run `mlsd build` again",
                field="reference.format_version",
                received=version,
                expected=str(_FORMAT_VERSION),
            )
        score_path = directory / _SCORE_FILE
        from mlsd.monitoring.text import load_text_references

        return cls(
            text=load_text_references(directory),
            numeric=raw["numeric"],
            categorical=raw["categorical"],
            n_rows=raw["n_rows"],
            numeric_stats={c: NumericStats(**s) for c, s in raw["numeric_stats"].items()},
            categorical_stats={c: CategoricalStats(**s) for c, s in raw["categorical_stats"].items()},
            sample=pd.read_parquet(sample_path),
            score_sample=(
                pd.read_parquet(score_path)[SCORE_COLUMN].to_numpy(dtype="float64")
                if score_path.is_file()
                else None
            ),
            label_rate=raw["label_rate"],
            label_distribution=raw["label_distribution"],
            positive_class=raw.get("positive_class"),
            performance=raw["performance"],
            seed=raw["seed"],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReferenceStatistics):
            return NotImplemented
        scores_equal = (self.score_sample is None and other.score_sample is None) or (
            self.score_sample is not None
            and other.score_sample is not None
            and np.array_equal(self.score_sample, other.score_sample, equal_nan=True)
        )
        return self.to_dict() == other.to_dict() and self.sample.equals(other.sample) and scores_equal

    __hash__ = None  # type: ignore[assignment]


def _check_columns(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str], *, has_scores: bool
) -> None:
    missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
    if missing:
        raise DataError(
            "reference columns are not in the frame",
            field="columns",
            received=missing,
            expected=f"columns of the frame: {list(frame.columns)[:20]}",
        )
    both = sorted(set(numeric) & set(categorical))
    if both or len(set(numeric)) < len(numeric) or len(set(categorical)) < len(categorical):
        raise DataError(
            "each column must be listed once, as numeric or as categorical",
            field="columns",
            received=both or [c for c in [*numeric, *categorical] if [*numeric, *categorical].count(c) > 1],
            expected="distinct column names",
        )
    if has_scores and SCORE_COLUMN in [*numeric, *categorical]:
        raise DataError(
            f"{SCORE_COLUMN!r} is reserved for the model scores when scores= is given",
            field="numeric",
            received=SCORE_COLUMN,
            expected="a feature column with another name",
        )
    if len(frame) == 0:
        raise DataError(
            "the reference frame has no rows", field="frame", received=0, expected="at least one row"
        )


def _label_summary(labels: np.ndarray | None) -> tuple[float | None, dict[str, float] | None]:
    if labels is None:
        return None, None
    series = pd.Series(np.asarray(labels))
    rate = None
    if ptypes.is_bool_dtype(series.dtype) or ptypes.is_numeric_dtype(series.dtype):
        rate = _none_if_nan(float(series.astype("float64").mean()))
    keys = category_keys(series)
    distribution = None
    if keys.nunique() <= 100:
        shares = keys.value_counts(normalize=True, dropna=True)
        distribution = {str(k): float(v) for k, v in shares.items()}
    return rate, distribution

"""Sampling the labelled table (``data.sample``) and streams (the prediction log), and what each
method does to the estimates made on the sample.

:func:`draw_sample` takes the design's rows after labelling, before the split, and returns the
sample with a :class:`SampleReport` that the design document shows:

- ``random``: every row equally likely (``n`` or ``frac``); estimates stay unbiased, their
  variance grows as ``1 / rows kept``;
- ``stratified``: the same fraction of every value of ``by`` (proportional allocation, largest
  remainder for ``n``); unbiased, and no stratum's share moves by sampling noise;
- ``weighted``: rows drawn with probability proportional to the column ``weights``, without
  replacement; the sample over-represents heavy rows, so its plain averages are biased towards
  them (weight by ``1 / weight`` to estimate the population);
- ``quota``: at most ``per`` rows (or ``quota[value]``) of each value of ``by``, at random
  within the value; a non-probability sample: the values' shares are what the quotas say, not
  the population's;
- ``importance``: rows drawn in proportion to the density ratio between a **target**
  population (the rows where the expression ``target`` holds, e.g. the latest months) and the
  rest, estimated by a domain classifier on the feature columns (cross-fitted, so that no row's
  weight comes from a model that saw it); the sample resembles the target on those columns,
  and the report gives the weights' effective sample size ``(sum w)^2 / sum w^2``, which says
  how many rows the sample is really worth.

:func:`reservoir_sample` keeps a uniform sample of ``n`` rows from chunks read one at a time (a
prediction log of any size in bounded memory): every row gets a uniform random key and the ``n``
smallest keys are kept, which is a uniform sample without replacement (Algorithm R's result,
vectorised per chunk). :func:`sample_prediction_log` runs it over a prediction log: the
reservoir holds request ids read in chunks from the database, and only the ``n`` sampled rows
are then read whole (``mlsd log --sample``).

>>> frame = pd.DataFrame({"carrier": ["AA"] * 6 + ["UA"] * 4, "x": range(10)})
>>> sample, report = draw_sample(frame, {"method": "stratified", "by": "carrier", "n": 5})
>>> sample["carrier"].value_counts().to_dict(), report.rows_kept
({'AA': 3, 'UA': 2}, 5)
>>> sample, report = draw_sample(frame, {"method": "quota", "by": "carrier", "per": 3})
>>> sample["carrier"].value_counts().to_dict()
{'AA': 3, 'UA': 3}
>>> kept = reservoir_sample((frame.iloc[i : i + 3] for i in range(0, 10, 3)), 4, seed=0)
>>> len(kept), kept["x"].is_unique
(4, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlsd.data.expressions import evaluate_expression
from mlsd.errors import DataError, DesignError

__all__ = [
    "SAMPLING_METHODS",
    "SampleReport",
    "draw_sample",
    "importance_weights",
    "reservoir_sample",
    "sample_prediction_log",
]

#: method -> what it does to the estimates made on the sample (shown in the design document)
SAMPLING_METHODS: dict[str, str] = {
    "random": "every row equally likely: estimates unbiased, variance up as 1 / rows kept",
    "stratified": "the same fraction of each stratum: unbiased, strata shares kept exactly",
    "weighted": "rows drawn in proportion to a column: biased towards heavy rows "
    "(weight by 1 / weight to estimate the population)",
    "quota": "a fixed number per category (non-probability): category shares are the quotas', "
    "not the population's",
    "importance": "rows drawn in proportion to the density ratio target / rest (a domain "
    "classifier): the sample resembles the target population on the feature columns",
}


@dataclasses.dataclass(frozen=True)
class SampleReport:
    """Which sampling ran, on how many rows, what it kept, and what that does to estimates."""

    method: str
    rows_before: int
    rows_kept: int
    effect: str
    by: str | None = None
    per_value: dict[str, int] | None = None  # stratified, quota: rows kept per value
    effective_sample_size: float | None = None  # importance, weighted: of the weights
    target_rows: int | None = None  # importance: rows of the target population
    domain_auc: float | None = None  # importance: how separable target and rest are

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _spec(spec: Any) -> dict[str, Any]:
    if isinstance(spec, Mapping):
        return dict(spec)
    return spec.model_dump()


def _size(spec: dict[str, Any], rows: int, field: str) -> int:
    n, frac = spec.get("n"), spec.get("frac")
    if n is not None:
        if n > rows:
            raise DataError(
                "the sample is larger than the data",
                field=f"{field}.n",
                received=n,
                expected=f"at most the {rows:,} rows the data has after data.filter",
            )
        return int(n)
    if frac is not None:
        return round(frac * rows)
    return rows


def _column(frame: pd.DataFrame, name: str | None, field: str) -> pd.Series:
    if name not in frame.columns:
        raise DataError(
            "the sampling column is not in the data",
            field=field,
            received=name,
            expected=f"one of the {frame.shape[1]} columns after data.derive",
        )
    return frame[name]


def _allocate(counts: pd.Series, size: int) -> pd.Series:
    """Proportional allocation of ``size`` rows over strata, by largest remainder."""
    exact = counts * (size / counts.sum())
    base = np.floor(exact).astype(int)
    short = size - int(base.sum())
    order = np.argsort(-(exact - base).to_numpy(), kind="stable")[:short]
    base.iloc[order] += 1
    return base


def _take_per_value(key: pd.Series, take: pd.Series, rng: np.random.Generator) -> np.ndarray:
    """Row positions: ``take[v]`` rows at random among the rows whose key is ``v``."""
    codes, uniques = pd.factorize(key, use_na_sentinel=False)
    wanted = take.reindex(uniques).fillna(0).to_numpy(dtype=int)
    # a random rank within each value: sort by (value, random key), keep ranks below the quota
    order = np.lexsort((rng.random(len(key)), codes))
    starts = np.searchsorted(codes[order], np.arange(len(uniques)))
    rank = np.arange(len(key)) - starts[codes[order]]
    return np.sort(order[rank < wanted[codes[order]]])


def importance_weights(
    frame: pd.DataFrame, target: np.ndarray, columns: list[str], *, seed: int = 0, clip_quantile: float = 0.99
) -> tuple[np.ndarray, float]:
    """Density-ratio weights ``p_target(x) / p_rest(x)`` for every row, and the domain AUC.

    A gradient-boosted domain classifier (target rows against the rest, on ``columns``) gives
    ``P(target | x)``, cross-fitted over 5 folds; the ratio is the odds times ``n_rest /
    n_target``. Weights are clipped at their ``clip_quantile`` so that a few rows cannot carry
    the sample (the report's effective sample size shows what is left).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = frame[columns].copy()
    for c in x.columns:
        if not pd.api.types.is_numeric_dtype(x[c]) or pd.api.types.is_bool_dtype(x[c]):
            x[c] = x[c].astype("category")
    y = np.asarray(target, dtype=int)
    model = HistGradientBoostingClassifier(max_iter=100, categorical_features="from_dtype", random_state=seed)
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    p = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    p = np.clip(p, 1e-6, 1 - 1e-6)
    w = p / (1 - p) * ((y == 0).sum() / max((y == 1).sum(), 1))
    w = np.minimum(w, np.quantile(w, clip_quantile))
    return w, float(roc_auc_score(y, p))


def _ess(w: np.ndarray) -> float:
    return float(w.sum() ** 2 / (w**2).sum()) if len(w) and (w**2).sum() > 0 else 0.0


def draw_sample(
    frame: pd.DataFrame,
    spec: Any,
    *,
    feature_columns: list[str] | None = None,
    field: str = "data.sample",
) -> tuple[pd.DataFrame, SampleReport]:
    """The sample ``spec`` (a ``SampleSpec`` or its dict) asks for, and its report.

    ``feature_columns`` are the columns an importance sample's domain classifier reads (the
    design's feature inputs). Rows keep their order (a
    ``random`` sample is in pandas' drawn order, as builds before these methods had it); the index
    is reset.
    """
    s = _spec(spec)
    method = s.get("method") or "random"
    rng = np.random.default_rng(s.get("seed", 0))
    rows = len(frame)
    size = _size(s, rows, field)
    effect = SAMPLING_METHODS.get(method)
    if effect is None:
        raise DesignError(
            "unknown sampling method",
            field=f"{field}.method",
            received=method,
            expected=", ".join(SAMPLING_METHODS),
        )
    extra: dict[str, Any] = {}
    if method == "random":
        # pandas' own draw, in its order: the rows every earlier build with this seed kept
        drawn = frame.reset_index(drop=True).sample(
            n=s.get("n"), frac=s.get("frac"), random_state=s.get("seed", 0)
        )
        keep = drawn.index.to_numpy()
    elif method in ("stratified", "quota"):
        column = _column(frame, s.get("by"), f"{field}.by")
        # values as text, as a YAML quota names them; a missing value is a stratum of its own
        key = column.astype(object).where(column.notna(), "(missing)").astype(str)
        counts = key.value_counts(sort=False)
        if method == "stratified":
            take = _allocate(counts, size)
        elif s.get("quota"):
            quota = pd.Series({str(k): int(v) for k, v in s["quota"].items()}, dtype=int)
            unknown = sorted(set(quota.index) - set(counts.index))
            if unknown:  # a typo would silently keep none of the value meant
                raise DataError(
                    f"the quota names values {s['by']!r} does not hold",
                    field=f"{field}.quota",
                    received=unknown,
                    expected=f"values of {s['by']!r}, e.g. {', '.join(list(counts.index[:5]))}",
                )
            take = quota.reindex(counts.index).fillna(0).astype(int).clip(upper=counts)
        else:
            take = counts.clip(upper=int(s["per"]))
        keep = _take_per_value(key, take, rng)
        kept = key.iloc[keep].value_counts(sort=False)
        extra = {"by": s["by"], "per_value": {str(k): int(v) for k, v in kept.items()}}
    elif method == "weighted":
        weights = pd.to_numeric(_column(frame, s.get("weights"), f"{field}.weights"), errors="coerce")
        w = weights.to_numpy(dtype=float)
        if not np.isfinite(w).all() or (w < 0).any() or not (w > 0).any():
            bad = int((~np.isfinite(w) | (w < 0)).sum())
            raise DataError(
                "sampling weights must be finite, non-negative numbers, not all zero",
                field=f"{field}.weights",
                received=f"{bad:,} missing, infinite or negative values in {s['weights']!r}",
                expected="a column of non-negative numbers",
            )
        keep = _weighted_without_replacement(w, size, rng)
        extra = {"by": s["weights"], "effective_sample_size": _ess(w)}
    else:  # importance
        target = evaluate_expression(frame, s["target"], field=f"{field}.target")
        target = pd.Series(target).fillna(False).astype(bool).to_numpy()
        n_target = int(target.sum())
        if n_target < 10 or n_target > rows - 10:
            raise DataError(
                "the target population needs at least 10 rows, and 10 outside it",
                field=f"{field}.target",
                received=f"{s['target']!r} holds on {n_target:,} of {rows:,} rows",
                expected="an expression that selects the population to resemble",
            )
        columns = [c for c in (feature_columns or []) if c in frame.columns]
        if not columns:
            raise DataError(
                "an importance sample needs feature columns for its domain classifier",
                field=f"{field}.target",
                received=feature_columns,
                expected="the design's features",
            )
        w, auc = importance_weights(frame, target, columns, seed=s.get("seed", 0))
        keep = _weighted_without_replacement(w, size, rng)
        extra = {"effective_sample_size": _ess(w), "target_rows": n_target, "domain_auc": auc}
    report = SampleReport(method, rows, len(keep), effect, **extra)
    return frame.iloc[keep].reset_index(drop=True), report


def _weighted_without_replacement(w: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``size`` rows drawn with probability proportional to ``w``, no repeats.

    Efraimidis-Spirakis: key ``u ** (1 / w)``, keep the largest (as ``log(u) / w``, stable for
    small weights); rows of weight 0 are never drawn unless nothing else is left.
    """
    positive = int((w > 0).sum())
    if size > positive:
        raise DataError(
            "the sample asks for more rows than have a positive weight",
            field="data.sample.n",
            received=size,
            expected=f"at most {positive:,}",
        )
    with np.errstate(divide="ignore"):
        key = np.log(rng.random(len(w))) / w
    return np.sort(np.argpartition(-key, size - 1)[:size]) if size else np.array([], dtype=int)


def reservoir_sample(chunks: Iterable[pd.DataFrame], n: int, *, seed: int = 0) -> pd.DataFrame:
    """A uniform sample of ``n`` rows (all of them if fewer) from ``chunks``, read once.

    Memory holds the reservoir and one chunk: each row's uniform key is compared with the
    largest key kept so far, so most rows of a long stream are discarded at once.
    """
    if n < 1:
        raise DesignError("a sample needs at least one row", field="sample", received=n, expected="n >= 1")
    rng = np.random.default_rng(seed)
    kept: pd.DataFrame | None = None
    keys = np.empty(0)
    position = 0
    positions = np.empty(0, dtype=np.int64)
    for chunk in chunks:
        k = rng.random(len(chunk))
        where = np.arange(position, position + len(chunk))
        position += len(chunk)
        if kept is not None and len(keys) == n:
            better = k < keys.max()
            if not better.any():
                continue
            chunk, k, where = chunk[better], k[better], where[better]
        merged = chunk if kept is None else pd.concat([kept, chunk], ignore_index=True)
        keys, positions = np.concatenate([keys, k]), np.concatenate([positions, where])
        if len(keys) > n:
            best = np.argpartition(keys, n - 1)[:n]
            merged, keys, positions = merged.iloc[best], keys[best], positions[best]
        kept = merged.reset_index(drop=True)
    if kept is None:
        return pd.DataFrame()
    return kept.iloc[np.argsort(positions, kind="stable")].reset_index(drop=True)  # stream order


def sample_prediction_log(
    log: Any,
    n: int,
    *,
    seed: int = 0,
    since: Any = None,
    until: Any = None,
    time: str = "event_time",
    chunk_rows: int = 50_000,
) -> pd.DataFrame:
    """A uniform sample of ``n`` predictions of ``log`` (a :class:`mlsd.store.PredictionLog`) in
    ``[since, until)``, as ``read_predictions`` returns rows (feedback joined, oldest first).

    Two passes, both bounded: :func:`reservoir_sample` over the request ids, read ``chunk_rows``
    at a time by ``log.iter_request_ids`` (keyset pagination in SQL, never the whole log in
    memory), then the ``n`` sampled rows read whole by ``log.read_predictions_by_id``. Decoding
    a row's inputs is what costs; only the sampled rows pay it.
    """
    chunks = log.iter_request_ids(since, until, time=time, chunk_rows=chunk_rows)
    ids = reservoir_sample(chunks, n, seed=seed)
    return log.read_predictions_by_id(ids["request_id"].tolist() if len(ids) else [], time=time)

"""Univariate drift: does each input column (and the score) of a window still look like training?

**The auto rule** (:func:`choose_method`): numeric columns get the two-sample **KS test**,
categorical columns the **chi-squared test** of the reference-count vs window-count table.
Both give p-values, corrected across the window's columns by Benjamini-Hochberg (default) or
Bonferroni. A p-value alone is the wrong alarm for monitoring: a window of a million rows makes
a 0.01-std shift "significant", and a window of fifty rows hides a real one. So a column with a
p-value drifts only when ``p_adjusted < alpha`` **and** its effect size reaches the threshold:
the effect size stops huge windows from flagging trivial shifts, the corrected p-value stops
small windows (and many columns) from raising false alarms.

Two tiers per column: ``detected`` (the test says the window differs: ``p_adjusted < alpha``)
and ``drifted``, the **material** tier (detected *and* ``effect_size >= threshold``). A
distance-only method has no test, so its effect decides both. ``thresholds`` (per method) and
``column_thresholds`` (per column) replace the defaults below; a design sets them with
``monitoring.effect_threshold`` and ``monitoring.effect_thresholds``.

Effect sizes, comparable enough to rank (0 = no change; drifted at ``>= threshold``):

==================  =====================================  ============================  =========
method              statistic                              effect size                   threshold
==================  =====================================  ============================  =========
``ks``              KS D (p-value: asymptotic)             Wasserstein / reference std   0.1
``wasserstein``     Wasserstein distance (no p-value)      Wasserstein / reference std   0.1
``chi2``            Pearson chi2 (p-value)                 balanced Cramér's V           0.1
``psi``             PSI on the reference deciles           PSI                           0.2
``jensen_shannon``  JS distance (base 2) on deciles        JS distance                   0.1
``mmd``             MMD² of embeddings (permutation p)     sqrt(unbiased MMD²)           0.04
==================  =====================================  ============================  =========

``mmd`` fits only the embeddings of a ``features.text`` column (kind ``text``), compared by
:mod:`mlsd.monitoring.text` rather than by :func:`detect_drift`, which has no text columns.

Wasserstein / std is the shift in reference standard deviations (a mean shift of 0.1 std gives
0.1), Cramér's V is the usual association measure of a table (0.1 = "small"), computed with
both rows scaled to the same total so it does not shrink as the window grows. The defaults of
the auto rule share the threshold 0.1 on similar scales; because the thresholds of ``psi``
(0.2, the usual "moderate shift" convention; 0.1 / 0.25 are the other customary marks) and the
others differ, features are ranked by ``effect_size / threshold`` (1 = at the drift boundary).
``psi``, ``jensen_shannon`` and ``wasserstein`` are distance-only: ``drifted = effect >= threshold``.

Binned methods use the reference's decile edges (numeric) or categories (categorical).
PSI floors empty shares at ``1e-4`` (:data:`~mlsd.monitoring._univariate.PSI_EPSILON`), as its
log ratio is infinite otherwise; JS needs no epsilon (``0 log 0 = 0``). Categories unseen in the
reference each get their own cell with reference count 0 (so new categories raise chi2); if the
reference kept only its most frequent categories, they join its ``other`` cell instead.
Missing values (NaN, None, infinities) are left out per column; data quality reports them.

A global ``method`` applies to the columns whose kind it fits (``ks`` and ``wasserstein`` to numeric
ones, ``chi2`` to categorical ones, ``psi``/``jensen_shannon`` to both); the rest use the auto rule.
An ``overrides`` entry that does not fit its column is a :class:`~mlsd.errors.DesignError`.
Columns absent from the window raise :class:`~mlsd.errors.SchemaError` (``missing="skip"``
reports them undrifted, with a note, instead).

Speed: numeric columns are read as 2-D float blocks of ~8M cells, sorted once in place along
axis 0; KS, Wasserstein and bin counts then use binary searches of the (small) reference into
the sorted window; p-values, PSI, JS and chi2 are computed for all columns at once.

>>> import numpy as np, pandas as pd
>>> from mlsd.monitoring.reference import ReferenceStatistics
>>> rng = np.random.default_rng(0)
>>> train = pd.DataFrame({"temp": rng.normal(60, 15, 5000), "carrier": rng.choice(["UA", "AA"], 5000)})
>>> ref = ReferenceStatistics.from_frame(train, numeric=["temp"], categorical=["carrier"])
>>> window = pd.DataFrame({"temp": rng.normal(40, 15, 2000), "carrier": rng.choice(["UA", "AA"], 2000)})
>>> result = detect_drift(ref, window)
>>> [(f.column, f.method, f.drifted) for f in result.features]
[('temp', 'ks', True), ('carrier', 'chi2', False)]
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlsd.errors import DataError, DesignError, SchemaError
from mlsd.monitoring import _univariate as uni
from mlsd.monitoring.reference import ReferenceStatistics, binned_counts, category_keys, float_matrix

__all__ = [
    "CORRECTIONS",
    "DEFAULT_THRESHOLDS",
    "DRIFT_METHODS",
    "DriftResult",
    "FeatureDrift",
    "choose_method",
    "correct_p_values",
    "detect_drift",
    "list_drift_methods",
]

DRIFT_METHODS = ("ks", "chi2", "psi", "jensen_shannon", "wasserstein", "mmd")
CORRECTIONS = ("benjamini_hochberg", "bonferroni", "none")
# mmd: calibrated on real tweets (docs/text-features.md, examples/tweets/calibrate_mmd.py)
DEFAULT_THRESHOLDS = {
    "ks": 0.1,
    "chi2": 0.1,
    "psi": 0.2,
    "jensen_shannon": 0.1,
    "wasserstein": 0.1,
    "mmd": 0.04,
}
_FITS = {
    "numeric": ("ks", "psi", "jensen_shannon", "wasserstein"),
    "categorical": ("chi2", "psi", "jensen_shannon"),
    # the embeddings of a features.text column (mlsd.monitoring.text)
    "text": ("mmd",),
}
_EFFECT = {
    "ks": "wasserstein/std",
    "wasserstein": "wasserstein/std",
    "chi2": "cramers_v",
    "mmd": "sqrt(unbiased MMD²)",
}
_BLOCK_CELLS = 1 << 23  # ~64 MB of float64 per block of numeric columns


def list_drift_methods(kind: Literal["numeric", "categorical", "text"] | None = None) -> list[str]:
    """The drift methods :func:`detect_drift` implements, or those that fit a column ``kind``.

    ``auto`` is not a method but the rule that picks one (:func:`choose_method`).

    >>> list_drift_methods("categorical")
    ['chi2', 'psi', 'jensen_shannon']
    >>> len(list_drift_methods()), list_drift_methods("text")
    (6, ['mmd'])
    """
    if kind is None:
        return list(DRIFT_METHODS)
    if kind not in _FITS:
        raise DesignError(
            "unknown column kind", field="kind", received=kind, expected="numeric, categorical or text"
        )
    return list(_FITS[kind])


def choose_method(kind: Literal["numeric", "categorical", "text"]) -> str:
    """The auto rule: ``ks`` for numeric columns, ``chi2`` for categorical ones, ``mmd`` for text.

    >>> choose_method("numeric"), choose_method("categorical"), choose_method("text")
    ('ks', 'chi2', 'mmd')
    """
    if kind not in _FITS:
        raise DesignError(
            "unknown column kind", field="kind", received=kind, expected="numeric, categorical or text"
        )
    return {"numeric": "ks", "categorical": "chi2", "text": "mmd"}[kind]


@dataclasses.dataclass
class FeatureDrift:
    """The drift verdict on one column; ``note`` says why a column was not compared, if it was not."""

    column: str
    kind: str
    method: str
    statistic: float
    p_value: float | None
    p_adjusted: float | None
    effect_size: float
    threshold: float
    drifted: bool
    n_reference: int
    n_window: int
    effect_measure: str = ""
    note: str | None = None
    #: significant after the correction (distance-only methods, which have no test: ``drifted``)
    detected: bool = False

    @property
    def severity(self) -> float:
        """``effect_size / threshold``: the ranking key (1 = at the drift boundary)."""
        if self.threshold > 0:
            return self.effect_size / self.threshold
        return math.inf if self.effect_size > 0 else 0.0


@dataclasses.dataclass
class DriftResult:
    """All columns of one window, ranked by ``effect_size / threshold`` (descending)."""

    features: list[FeatureDrift]
    share_drifted: float
    n_drifted: int
    correction: str
    alpha: float
    share_detected: float = 0.0
    n_detected: int = 0

    def to_frame(self) -> pd.DataFrame:
        """One row per column, in rank order."""
        cols = [f.name for f in dataclasses.fields(FeatureDrift)]
        return pd.DataFrame([dataclasses.asdict(f) for f in self.features], columns=cols)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN written as ``None``)."""

        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "features": [{k: clean(v) for k, v in dataclasses.asdict(f).items()} for f in self.features],
            "share_drifted": self.share_drifted,
            "n_drifted": self.n_drifted,
            "share_detected": self.share_detected,
            "n_detected": self.n_detected,
            "correction": self.correction,
            "alpha": self.alpha,
        }


def correct_p_values(p: np.ndarray, method: str) -> np.ndarray:
    """Adjusted p-values (``benjamini_hochberg``, ``bonferroni`` or ``none``); NaNs are not counted.

    >>> correct_p_values(np.array([0.01, 0.04, 0.03]), "benjamini_hochberg").round(3).tolist()
    [0.03, 0.04, 0.04]
    """
    if method not in CORRECTIONS:
        raise DesignError(
            "unknown multiple-testing correction",
            field="correction",
            received=method,
            expected=", ".join(CORRECTIONS),
        )
    p = np.asarray(p, dtype="float64")
    out = p.copy()
    tested = ~np.isnan(p)
    m = int(tested.sum())
    if method == "none" or m == 0:
        return out
    q = p[tested]
    if method == "bonferroni":
        out[tested] = np.minimum(q * m, 1.0)
        return out
    order = np.argsort(q)[::-1]  # largest first: BH's running minimum goes from the top rank down
    adjusted = np.minimum.accumulate(q[order] * m / np.arange(m, 0, -1))
    back = np.empty(m)
    back[order] = np.minimum(adjusted, 1.0)
    out[tested] = back
    return out


def _plan(
    reference: ReferenceStatistics,
    window: pd.DataFrame,
    method: str,
    overrides: dict[str, str] | None,
    columns: list[str] | None,
    missing: str,
) -> tuple[dict[str, str], list[FeatureDrift]]:
    """The method of each column to compare, and the skipped (absent) columns."""
    kinds = {
        **dict.fromkeys(reference.numeric, "numeric"),
        **dict.fromkeys(reference.categorical, "categorical"),
    }
    if method != "auto" and method not in DRIFT_METHODS:
        raise DesignError(
            "unknown drift method",
            field="method",
            received=method,
            expected="auto or " + ", ".join(DRIFT_METHODS),
        )
    if missing not in ("error", "skip"):
        raise DesignError(
            "unknown missing-column policy", field="missing", received=missing, expected="error or skip"
        )
    selected = list(kinds) if columns is None else list(columns)
    unknown = [c for c in [*selected, *(overrides or {})] if c not in kinds]
    if unknown:
        raise DesignError(
            "columns not in the reference statistics",
            field="columns" if any(c in selected for c in unknown) else "overrides",
            received=unknown,
            expected=f"reference columns: {list(kinds)[:30]}",
        )
    plan: dict[str, str] = {}
    for col in selected:
        kind = kinds[col]
        chosen = (overrides or {}).get(col)
        if chosen is not None and chosen != "auto":
            if chosen not in _FITS[kind]:
                known = chosen in DRIFT_METHODS
                raise DesignError(
                    f"method {chosen!r} does not fit a {kind} column" if known else "unknown drift method",
                    field=f"overrides.{col}",
                    received=chosen,
                    expected=f"auto or one of {', '.join(_FITS[kind])} for a {kind} column",
                )
            plan[col] = chosen
        else:
            plan[col] = method if method in _FITS[kind] else choose_method(kind)  # type: ignore[arg-type]
    absent = [c for c in plan if c not in window.columns]
    if absent and missing == "error":
        raise SchemaError(
            "reference columns are missing from the window",
            field="window",
            received=absent,
            expected="the raw input columns as served (pass columns= or missing='skip' to leave them out)",
        )
    skipped = [_empty(c, kinds[c], plan.pop(c), "column absent from the window", 0, 0) for c in absent]
    return plan, skipped


def _empty(col: str, kind: str, method: str, note: str, n_ref: int, n_win: int) -> FeatureDrift:
    return FeatureDrift(col, kind, method, math.nan, None, None, 0.0, 0.0, False, n_ref, n_win, "", note)


def _numeric(
    reference: ReferenceStatistics, window: pd.DataFrame, plan: dict[str, str]
) -> list[dict[str, Any]]:
    """Raw statistics of numeric columns: sorted in blocks, then per-column binary searches."""
    cols = [c for c in plan if c in reference.numeric_stats]
    rows: list[dict[str, Any]] = []
    block = max(1, _BLOCK_CELLS // max(len(window), 1))
    for start in range(0, len(cols), block):
        names = cols[start : start + block]
        values = float_matrix(window, names)
        values.sort(axis=0)  # in place; NaNs sort last, so each column's valid part is a prefix
        n_valid = (~np.isnan(values)).sum(axis=0)
        for j, col in enumerate(names):
            method, st = plan[col], reference.numeric_stats[col]
            win = values[: n_valid[j], j]
            ref = reference.sample_values(col) if method in ("ks", "wasserstein") else None
            n_ref = len(ref) if ref is not None else st.n
            row: dict[str, Any] = {"column": col, "kind": "numeric", "method": method, "n_ref": n_ref}
            row["n_win"] = len(win)
            if len(win) and n_ref:
                if ref is not None:
                    dist = uni.wasserstein(ref, win)
                    if method == "ks":
                        if ("steps", col) not in reference._cache:
                            reference._cache["steps", col] = uni.reference_steps(ref)
                        row["statistic"] = uni.ks_statistic(ref, win, reference._cache["steps", col])
                    else:
                        row["statistic"] = dist
                    row["effect"] = (
                        dist / st.std if st.std else float(dist > 0)
                    )  # a constant column that moves
                else:
                    row["ref_counts"] = np.asarray(st.counts)
                    row["win_counts"] = binned_counts(win, np.asarray(st.edges, dtype="float64"))
            rows.append(row)
    return rows


def _categorical(
    reference: ReferenceStatistics, window: pd.DataFrame, plan: dict[str, str]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for col in (c for c in plan if c in reference.categorical_stats):
        st = reference.categorical_stats[col]
        counts = category_keys(window[col]).value_counts(dropna=True)
        known = counts.reindex(st.categories, fill_value=0).to_numpy(dtype="int64")
        unseen = counts[~counts.index.isin(st.categories)].to_numpy(dtype="int64")
        if st.other_count:
            ref_counts = np.append(st.counts, st.other_count)
            win_counts = np.append(known, unseen.sum())
        else:
            ref_counts = np.concatenate([st.counts, np.zeros(len(unseen), dtype="int64")])
            win_counts = np.concatenate([known, unseen])
        row = {
            "column": col,
            "kind": "categorical",
            "method": plan[col],
            "n_ref": st.n,
            "n_win": int(counts.sum()),
        }
        if len(unseen):
            row["note"] = f"{len(unseen)} categories unseen in the reference ({int(unseen.sum())} rows)"
        if row["n_win"] and st.n:
            row["ref_counts"], row["win_counts"] = np.asarray(ref_counts), win_counts
        rows.append(row)
    return rows


def _padded(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    width = max(len(r[key]) for r in rows)
    out = np.zeros((len(rows), width), dtype="float64")
    for i, r in enumerate(rows):
        out[i, : len(r[key])] = r[key]
    return out


def _table_statistics(rows: list[dict[str, Any]]) -> None:
    """Chi2, PSI and JS of every binned row at once (padded count tables)."""
    binned = [r for r in rows if "ref_counts" in r]
    if not binned:
        return
    ref, win = _padded(binned, "ref_counts"), _padded(binned, "win_counts")
    chi2, _, p = uni.chi2_tables(ref, win)
    by_method = {"chi2": chi2, "psi": uni.psi(ref, win), "jensen_shannon": uni.jensen_shannon(ref, win)}
    cramers_v = uni.balanced_cramers_v(ref, win)
    for i, r in enumerate(binned):
        r["statistic"] = float(by_method[r["method"]][i])
        r["effect"] = float(cramers_v[i]) if r["method"] == "chi2" else r["statistic"]
        if r["method"] == "chi2":
            r["p"] = float(p[i])


def detect_drift(
    reference: ReferenceStatistics,
    window: pd.DataFrame,
    *,
    method: str = "auto",
    overrides: dict[str, str] | None = None,
    correction: str = "benjamini_hochberg",
    alpha: float = 0.05,
    columns: list[str] | None = None,
    thresholds: dict[str, float] | None = None,
    column_thresholds: dict[str, float] | None = None,
    missing: Literal["error", "skip"] = "error",
) -> DriftResult:
    """Compare ``window`` with ``reference`` column by column (all reference columns by default).

    ``thresholds`` (method -> effect size) replace :data:`DEFAULT_THRESHOLDS`;
    ``column_thresholds`` (column -> effect size) replace the method's threshold for one column.
    """
    if correction not in CORRECTIONS:
        correct_p_values(np.array([]), correction)  # raises the DesignError naming the choices
    if not 0.0 < alpha < 1.0:
        raise DesignError(
            "alpha must be a probability", field="alpha", received=alpha, expected="0 < alpha < 1"
        )
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    bad = {k: v for k, v in limits.items() if k not in DRIFT_METHODS or not v >= 0}
    if bad:
        raise DesignError(
            "bad drift thresholds",
            field="thresholds",
            received=bad,
            expected=f"numbers >= 0 for {DRIFT_METHODS}",
        )
    per_column = dict(column_thresholds or {})
    bad = {k: v for k, v in per_column.items() if not v >= 0}
    if bad:
        raise DesignError(
            "bad drift thresholds", field="column_thresholds", received=bad, expected="numbers >= 0"
        )
    if len(window) == 0:
        raise DataError(
            "the window has no rows", field="window", received=0, expected="at least one prediction"
        )
    plan, skipped = _plan(reference, window, method, overrides, columns, missing)
    rows = _numeric(reference, window, plan) + _categorical(reference, window, plan)
    _table_statistics(rows)
    ks = [r for r in rows if r["method"] == "ks" and "statistic" in r]
    if ks:
        p = uni.ks_p_values(
            np.array([r["statistic"] for r in ks]),
            np.array([r["n_ref"] for r in ks]),
            np.array([r["n_win"] for r in ks]),
        )
        for r, pv in zip(ks, p, strict=True):
            r["p"] = float(pv)
    tested = [r for r in rows if "p" in r]
    for r, q in zip(tested, correct_p_values(np.array([r["p"] for r in tested]), correction), strict=True):
        r["p_adj"] = float(q)
    features = [_verdict(r, per_column.get(r["column"], limits[r["method"]]), alpha) for r in rows]
    features += skipped
    compared = [f for f in features if math.isfinite(f.statistic)]
    n_drifted = sum(f.drifted for f in features)
    n_detected = sum(f.detected for f in features)
    features.sort(key=lambda f: (not math.isfinite(f.statistic), -f.severity, f.column))
    return DriftResult(
        features=features,
        share_drifted=n_drifted / len(compared) if compared else 0.0,
        n_drifted=n_drifted,
        correction=correction,
        alpha=alpha,
        share_detected=n_detected / len(compared) if compared else 0.0,
        n_detected=n_detected,
    )


def _verdict(r: dict[str, Any], threshold: float, alpha: float) -> FeatureDrift:
    if "statistic" not in r:
        side = "window" if r["n_win"] == 0 else "reference"
        return _empty(
            r["column"],
            r["kind"],
            r["method"],
            f"no non-missing values in the {side}",
            r["n_ref"],
            r["n_win"],
        )
    effect = float(r["effect"])
    p_adj = r.get("p_adj")
    # two tiers: detected = the test says the window differs (after the correction); material =
    # detected and the effect reaches the threshold. Without a test, the effect decides both.
    detected = p_adj < alpha if p_adj is not None else effect >= threshold
    drifted = detected and effect >= threshold
    return FeatureDrift(
        column=r["column"],
        kind=r["kind"],
        method=r["method"],
        statistic=float(r["statistic"]),
        p_value=r.get("p"),
        p_adjusted=p_adj,
        effect_size=effect,
        threshold=threshold,
        drifted=bool(drifted),
        n_reference=int(r["n_ref"]),
        n_window=int(r["n_win"]),
        effect_measure=_EFFECT.get(r["method"], r["method"]),
        note=r.get("note"),
        detected=bool(detected),
    )

"""SliceLine against a brute-force enumeration, and the Simpson check on built reversals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlsd.modeling.slices import (
    brute_force_slices,
    one_hot,
    per_row_errors,
    simpson_check,
    slice_line,
    worst_slices,
)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.choice(list("xyz"), n),
            "b": rng.choice(list("pq"), n, p=[0.7, 0.3]),
            "c": rng.choice(list("klmn"), n),
            "d": rng.normal(size=n),
        }
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("k", "max_level", "min_sup"), [(5, 3, 10), (3, 2, 30), (10, 4, 5)])
def test_top_k_matches_brute_force(seed: int, k: int, max_level: int, min_sup: int) -> None:
    f = _frame(600, seed)
    rng = np.random.default_rng(seed + 10)
    # continuous errors (no ties in scores), higher where a = x and b = q
    errors = rng.exponential(1.0, len(f)) * (1 + 2 * ((f.a == "x") & (f.b == "q")))
    oh = one_hot(f, list(f.columns), bins=4)
    fast = slice_line(
        oh.matrix, errors, feature_of=oh.feature_of, k=k, max_level=max_level, min_sup=min_sup, alpha=0.9
    )
    slow = brute_force_slices(
        oh.matrix, errors, feature_of=oh.feature_of, k=k, max_level=max_level, min_sup=min_sup, alpha=0.9
    )
    assert [s.columns for s in fast] == [s.columns for s in slow]
    np.testing.assert_allclose([s.score for s in fast], [s.score for s in slow])
    assert [s.size for s in fast] == [s.size for s in slow]


def test_finds_the_planted_slice_with_binary_errors() -> None:
    f = _frame(5000, 3)
    rng = np.random.default_rng(4)
    planted = (f.a == "y") & (f.c == "m")
    errors = (rng.random(len(f)) < np.where(planted, 0.6, 0.1)).astype(float)
    out = worst_slices(f, list(f.columns), errors, k=3, max_level=2, min_support=0.01)
    top = out["slices"][0]
    assert top["slice"] == "a = y AND c = m"
    assert top["rows"] == int(planted.sum())
    assert top["ci_low"] < top["error"] < top["ci_high"]
    assert top["ci_low"] > out["overall_error"]


def test_no_error_no_slices() -> None:
    f = _frame(200, 0)
    assert worst_slices(f, ["a", "b"], np.zeros(200))["slices"] == []


def test_per_row_errors_regression_and_multiclass() -> None:
    assert per_row_errors(np.array([1.0, 3.0]), np.array([2.0, 3.0]), task="regression").tolist() == [
        1.0,
        0.0,
    ]
    p = np.array([[0.7, 0.3], [0.2, 0.8]])
    assert per_row_errors(np.array(["a", "a"]), p, task="multiclass", classes=["a", "b"]).tolist() == [
        0.0,
        1.0,
    ]


def _auc_diff(y: np.ndarray, a: np.ndarray, b: np.ndarray):
    return lambda rows: roc_auc_score(y[rows], a[rows]) - roc_auc_score(y[rows], b[rows])


def test_simpson_reversal_is_flagged() -> None:
    # B ranks only by the slice (whose label rates differ), A ranks well within each slice:
    # overall B wins, within every slice A wins.
    rng = np.random.default_rng(0)
    n = 4000
    g = rng.integers(0, 2, n)
    y = (rng.random(n) < np.where(g == 1, 0.8, 0.2)).astype(int)
    a = 0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.5, n)  # within-slice signal, no slice offset
    b = g + rng.normal(0, 0.01, n)  # the slice only
    out = simpson_check({"g": g, "noise": rng.integers(0, 3, n)}, _auc_diff(y, a, b), n_rows=n)
    by = {r["column"]: r for r in out}
    assert by["g"]["overall_diff"] < 0
    assert all(s["diff"] > 0 for s in by["g"]["slices"])
    assert by["g"]["reversed"]
    assert not by["noise"]["reversed"]  # random groups carry B's advantage into every group


def test_no_reversal_is_not_flagged() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    g = rng.integers(0, 3, n)
    y = (rng.random(n) < 0.3).astype(int)
    a = y + rng.normal(0, 0.6, n)
    b = y + rng.normal(0, 1.2, n)
    out = simpson_check({"g": g}, _auc_diff(y, a, b), n_rows=n)
    assert out[0]["overall_diff"] > 0
    assert not out[0]["reversed"]
    assert out[0]["reversed_share"] == 0.0


def test_small_slices_are_ignored() -> None:
    g = np.array([0] * 100 + [1] * 10)
    errs = {0: 0.1, 1: -5.0}
    out = simpson_check(
        {"g": g}, lambda r: 1.0 if len(r) == 110 else errs[int(g[r[0]])], n_rows=110, min_rows=50
    )
    assert [s["value"] for s in out[0]["slices"]] == ["0"]
    assert not out[0]["reversed"]


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("top_k", 0, "models.slice_finding.top_k"),
        ("max_level", 9, "models.slice_finding.max_level"),
        ("min_support", 1.5, "models.slice_finding.min_support"),
        ("alpha", 0, "models.slice_finding.alpha"),
        ("bins", "five", "models.slice_finding.bins"),
    ],
)
def test_bad_slice_finding_values_are_refused(tmp_path, key: str, value: object, field: str) -> None:
    from mlsd.design import load_design
    from mlsd.errors import DesignError
    from support import tiny_design, write_tiny_design

    models = {**tiny_design()["models"], "slice_finding": {key: value}}
    with pytest.raises(DesignError) as info:
        load_design(write_tiny_design(tmp_path, models=models))
    assert info.value.field == field
    assert info.value.received is not None and info.value.expected


def test_slice_finding_defaults_and_unknown_column(tmp_path) -> None:
    from mlsd.design import load_design
    from support import mlsd_cli, tiny_design, write_tiny_design

    spec = load_design(write_tiny_design(tmp_path)).models.slice_finding
    assert (spec.enabled, spec.top_k, spec.max_level, spec.min_support, spec.alpha) == (
        True,
        5,
        2,
        0.01,
        0.95,
    )
    models = {**tiny_design()["models"], "slice_finding": {"columns": ["mpg", "nope"]}}
    result = mlsd_cli("validate", str(write_tiny_design(tmp_path, models=models)))
    assert result.returncode != 0
    assert "models.slice_finding.columns[1]" in result.stdout + result.stderr


@pytest.mark.parametrize("enabled", [True, False])
def test_tiny_build_runs_slice_finding_unless_disabled(tmp_path, enabled: bool) -> None:
    from mlsd._build import run_build
    from mlsd.design import load_design
    from support import tiny_design, write_tiny_design

    models = {
        **tiny_design()["models"],
        "candidates": [
            {"name": "lr", "type": "logistic_regression"},
            {"name": "lr2", "type": "logistic_regression"},
        ],
        "slice_finding": {"enabled": enabled, "min_support": 0.2},
    }
    doc = run_build(load_design(write_tiny_design(tmp_path, models=models))).document.models
    if not enabled:
        assert doc.slice_finding is None and doc.simpson == []
        return
    assert doc.slice_finding is not None
    assert doc.slice_finding["columns"] == ["mpg", "hp", "wt"]
    assert [c["role"] for c in doc.simpson] == ["best baseline", "runner-up"]
    assert {c["column"] for c in doc.simpson[0]["columns"]} == {"mpg", "hp", "wt"}

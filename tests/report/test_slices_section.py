"""The design document's Worst slices and Simpson sections, from what the stages compute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from mlsd.modeling.slices import simpson_check, worst_slices
from mlsd.report import DesignDocument, render_design_document


def _render(document: DesignDocument, tmp_path: Path) -> str:
    return render_design_document(document, tmp_path / "design.html").read_text(encoding="utf-8")


def test_worst_slices_and_simpson_flag_render(document: DesignDocument, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({"carrier": rng.choice(["UA", "AA", "<b>B6</b>"], n), "temp": rng.normal(60, 10, n)})
    errors = (rng.random(n) < np.where(frame.carrier == "<b>B6</b>", 0.5, 0.1)).astype(float)
    found = worst_slices(frame, ["carrier", "temp"], errors, k=3)
    g = rng.integers(0, 2, n)
    y = (rng.random(n) < np.where(g == 1, 0.8, 0.2)).astype(int)
    a, b = 0.3 * y + rng.normal(0, 0.5, n), g + rng.normal(0, 0.01, n)
    checks = simpson_check(
        {"origin": g.astype(str)},
        lambda r: roc_auc_score(y[r], a[r]) - roc_auc_score(y[r], b[r]),
        n_rows=n,
    )
    doc = document.model_copy(deep=True)
    doc.models.slice_finding = found
    doc.models.simpson = [
        {
            "champion": "gbdt",
            "other": "rule",
            "role": "best baseline",
            "metric": "roc_auc",
            "columns": checks,
            "reversed": ["origin"],
        },
        {
            "champion": "gbdt",
            "other": "logreg",
            "role": "runner-up",
            "metric": "roc_auc",
            "columns": [{**checks[0], "reversed": False}],
            "reversed": [],
        },
    ]
    html = _render(doc, tmp_path)
    assert "Worst slices" in html and "carrier = &lt;b&gt;B6&lt;/b&gt;" in html
    assert f"{found['slices'][0]['rows']:,}" in html
    assert 'id="simpson"' in html and "reversed</strong> in the slices holding most rows, by origin" in html
    assert "no reversal found in 1 columns" in html


def test_sections_absent_without_slice_finding(document: DesignDocument, tmp_path: Path) -> None:
    html = _render(document, tmp_path)
    assert 'id="worst-slices"' not in html and 'id="simpson"' not in html

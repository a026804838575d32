"""examples/lending/design.yaml end to end: every imbalance option in one trade-off table, with CIs.

The build trains the design's LightGBM five ways (none, SMOTE, balanced and cost class weights,
focal loss, over-sample then fine-tune) plus a logistic regression on the real lending_club data
(9,857 loans, 5 % bad) and writes the design document; about 20 s on 2 cores.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from support import ROOT

pytestmark = pytest.mark.slow

OPTIONS = {
    "gbdt": ("lightgbm", "none", None),
    "gbdt_smote": ("lightgbm", "smote", None),
    "gbdt_balanced": ("lightgbm", "none", "balanced"),
    "gbdt_costs": ("lightgbm", "none", "costs"),
    "gbdt_focal": ("lightgbm_focal", "none", None),
    "gbdt_finetune": ("lightgbm", "oversample_then_finetune", None),
    "logreg": ("logistic_regression", "none", None),
}


def test_lending_build_compares_every_option_with_intervals(tmp_path: Path, monkeypatch) -> None:
    from mlsd.store import ModelRegistry
    from mlsd.system import System

    monkeypatch.setenv("MLSD_PSEUDONYM_KEY", "lending-test-key-0123456789")  # data.privacy's key
    path = tmp_path / "design.yaml"
    shutil.copy(ROOT / "examples" / "lending" / "design.yaml", path)
    system = System(path)
    design = system.design
    m = design.models
    assert {c.name: (c.type, m.imbalance_of(c), m.class_weight_of(c)) for c in m.candidates} == OPTIONS
    result = system.build()

    rows = {r.name: r for r in result.document.models.tradeoff}
    assert set(OPTIONS) <= set(rows)
    for name in OPTIONS:
        row = rows[name]
        assert row.type == OPTIONS[name][0]
        for split in ("valid", "test"):
            est = getattr(row, split)["pr_auc"]  # the rare-class metric, with its bootstrap interval
            assert est.low is not None and est.high is not None, (name, split, est)
            assert est.low <= est.value <= est.high, (name, split, est)
        assert row.cost_per_1000 is not None and np.isfinite(row.cost_per_1000)
        cost = row.cost_interval  # the cost per 1,000 test loans, with its bootstrap interval
        assert cost is not None and cost.low <= cost.value <= cost.high, (name, cost)
        assert cost.value == pytest.approx(row.cost_per_1000)
    # the personal-looking column is pseudonymised, and the document says so
    treated = {c.column: c.treatment for c in result.document.data.privacy.columns}
    assert treated["addr_state"] == "pseudonymise" and treated["annual_inc"] == "keep"
    # the document's trade-off table shows the intervals of every option
    html = result.report_path.read_text()
    for name in OPTIONS:
        assert f"<td>{name}" in html
    assert html.count(" [") >= 2 * len(OPTIONS)

    # the registered champion is whole: features, any resampler's model, sigmoid scores
    model = ModelRegistry(system.workspace).load(design.registry_name)
    frame = system.prepare_data().frame.head(200)
    out = model.predict_frame(frame[model.input_columns])
    assert len(out) == 200 and out["score"].between(0, 1).all()
    assert result.winner in OPTIONS

"""System.monitor on a real build and prediction log with two variants: the comparison reaches
the result, its JSON, the monitoring report and segment 5 of the design document."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlsd.system import System
from support import write_tiny_design


@pytest.mark.slow
def test_two_variants_are_compared_in_every_report(tmp_path: Path) -> None:
    from mlsd.serving.replay import json_records
    from mlsd.store import PredictionRecord

    # the default strategy (single): the log still holds two variants (say, after a rollback),
    # so the comparison is made
    path = write_tiny_design(tmp_path)
    system = System(path)
    system.build()
    rows, labels = system.replay_rows("train")
    model, name, version = system.champion()
    inputs = rows[model.input_columns]
    scores = model.predict_frame(inputs)["score"].to_numpy()
    start = datetime(2026, 1, 5, tzinfo=UTC)
    records = []
    # 3 rounds over the rows: two thirds to the champion, a third to the challenger
    for k in range(3):
        for i, (row, s) in enumerate(zip(json_records(inputs), scores, strict=True)):
            j = k * len(scores) + i
            variant = "challenger" if j % 3 == 0 else "champion"
            records.append(
                PredictionRecord(
                    f"r{j}",
                    start + timedelta(minutes=j),
                    None,
                    name,
                    version,
                    variant,
                    row,
                    float(s),
                    bool(s >= 0.5),
                    2.0 if variant == "champion" else 3.0,
                )
            )
    with system.prediction_log() as log:
        log.write_sync(records)
        for j, y in enumerate(list(labels) * 3):
            log.add_feedback(f"r{j}", bool(y))
    run = system.monitor()
    variants = run.result.variants
    assert variants is not None
    n = len(records)
    champion, challenger = variants.variant("champion"), variants.variant("challenger")
    assert champion.requests + challenger.requests == n
    assert (champion.latency_p50_ms, challenger.latency_p50_ms) == (2.0, 3.0)
    assert challenger.requests == math.ceil(n / 3)  # every third request
    # a single deployment intends everything for the champion: one variant, no split to test
    assert variants.weights == {"champion": 1.0} and variants.srm_p_value is None
    assert challenger.intended_share == 0.0
    assert champion.labelled == champion.requests and champion.accuracy is not None
    saved = json.loads(run.json_path.read_text())
    assert saved["variants"]["variants"][0]["variant"] == "champion"  # routed aliases first
    assert saved["variants"]["variants"][1]["requests"] == challenger.requests
    assert '<section id="variants">' in run.html_path.read_text()
    design_html = (system.reports_dir / "design.html").read_text()
    assert '<h3 id="variants">Variants and rollout</h3>' in design_html
    assert 'id="fig-variant-scores"' in design_html

"""System.monitor over a real log of a rollout: routing fields, shadow answers, rollout events and
the shared state reach the comparison, its JSON, the report and the design document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scipy import stats

from mlsd.system import System
from support import write_tiny_design


@pytest.mark.slow
def test_a_rollout_log_is_compared_per_variant(tmp_path: Path) -> None:
    from mlsd._deployment import DeploymentSpec
    from mlsd.serving.replay import json_records
    from mlsd.store import PredictionRecord, ShadowRecord

    system = System(write_tiny_design(tmp_path))
    system.build()
    # an A/B test of champion and challenger from here on (set on the loaded design, so the test
    # does not depend on which rollout keys `mlsd validate` accepts)
    ab = DeploymentSpec(strategy="ab", traffic={"champion": 1, "challenger": 1})
    system.design = system.design.model_copy(update={"deployment": ab})
    rows, labels = system.replay_rows("train")
    model, name, version = system.champion()
    inputs = json_records(rows[model.input_columns])
    scores = model.predict_frame(rows[model.input_columns])["score"].to_numpy()
    start = datetime(2026, 1, 5, tzinfo=UTC)
    records, shadows = [], []
    n = 4 * len(scores)
    for j in range(n):
        i = j % len(scores)
        assigned = "challenger" if j % 4 == 0 else "champion"  # 25 % to the challenger
        fallback = "timeout" if assigned == "challenger" and j % 8 == 0 else None  # half of them
        variant = "champion" if fallback else assigned
        s = float(scores[i])
        records.append(
            PredictionRecord(
                f"r{j}",
                start + timedelta(seconds=j),
                None,
                name,
                version,
                variant,
                inputs[i],
                s,
                bool(s >= 0.5),
                2.0,
                assigned_variant=assigned,
                propensity=0.5,
                unit=None,
                assignment="random",
                fallback=fallback,
            )
        )
        # a shadow that always says the opposite of the primary, 1 ms slower
        opposite = ShadowRecord(
            f"r{j}", start + timedelta(seconds=j), "shadowy", name, version, 1 - s, not (s >= 0.5), 3.0
        )
        shadows.append(opposite)
    with system.prediction_log() as log:
        log.write_sync(records)
        log.submit_shadow(shadows).result(timeout=30)
        for j in range(n):
            log.add_feedback(f"r{j}", bool(labels.iloc[j % len(scores)]))
        log.add_event("traffic", reason="admin set 50/50", actor="cli", variant="challenger", at=start)
        log.add_event("rollback", reason="p99 over the SLO", actor="server", variant="challenger")
        # the servers' shared state: the split the routers intend now
        state = {"weights": {"champion": 50.0, "challenger": 50.0}}
        assert log.write_state(name, state, expected_revision=None)
    run = system.monitor()
    v = run.result.variants
    assert v is not None and v.weights == {"champion": 0.5, "challenger": 0.5}
    assigned = {"champion": n - n // 4, "challenger": n // 4}
    assert v.srm_counts == assigned
    expected = stats.chisquare([assigned["champion"], assigned["challenger"]], f_exp=[n / 2, n / 2]).pvalue
    assert v.srm_p_value == pytest.approx(expected) and v.srm_detected
    challenger = v.variant("challenger")
    assert challenger.fallbacks == n // 8 and challenger.requests == n // 4 - n // 8
    assert v.variant("champion").answered_for_others == n // 8
    assert v.fallback_reasons == {"timeout": n // 8}
    (shadow,) = v.shadow
    assert shadow.variant == "shadowy" and shadow.n == n and shadow.agreement == 0.0
    assert shadow.pearson == pytest.approx(-1.0) and shadow.latency_p50_diff_ms == pytest.approx(1.0)
    assert [e.kind for e in v.timeline] == ["traffic", "rollback"]
    html = run.html_path.read_text()
    assert "Sample-ratio mismatch" in html and 'id="shadow-table"' in html and "p99 over the SLO" in html
    design = (system.reports_dir / "design.html").read_text()
    assert "p99 over the SLO" in design and 'id="fig-variant-traffic"' in design

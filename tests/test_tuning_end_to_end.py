"""`mlsd build` with searched candidates and a stacking ensemble, on 8,000 real flights (docs/tuning.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "flights" / "design.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flights-build")]

_CANDIDATES = """  candidates:
    - {name: logreg, type: logistic_regression, params: {C: 1.0}, search: {trials: 4}}
    - name: gbdt
      type: lightgbm
      params: {n_estimators: 60}
      search:
        trials: 6
        space:
          num_leaves: {low: 8, high: 64, log: true}
          learning_rate: {low: 0.02, high: 0.3, log: true}
          min_child_samples: [20, 100, 200]
    - {name: stack, type: stacking, members: [logreg, gbdt], params: {cv: 3}}
  select:"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    text = EXAMPLE.read_text().replace("  label: ", "  sample: {n: 8000, seed: 0}\n  label: ", 1)
    text = text.replace("p99_latency_ms: 20}", "p99_latency_ms: 500}")
    start, end = text.index("  candidates:"), text.index("  select:")
    path = tmp_path_factory.mktemp("tuning") / "design.yaml"
    path.write_text(text[:start] + _CANDIDATES + text[end + len("  select:") :])
    exe = Path(sys.executable).parent / "mlsd"
    env = {**os.environ, "COLUMNS": "200"}
    assert subprocess.run([str(exe), "validate", str(path)], capture_output=True, env=env).returncode == 0
    return path, subprocess.run(
        [str(exe), "build", str(path)], capture_output=True, text=True, timeout=900, env=env
    )


def test_the_tradeoff_table_shows_tuned_and_untuned_rows_and_the_ensemble(built) -> None:
    path, result = built
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads((path.parent / ".mlsd" / "flight-delay" / "reports" / "design.json").read_text())
    rows = {r["name"]: r for r in doc["models"]["tradeoff"]}
    names = [r["name"] for r in doc["models"]["tradeoff"] if r["kind"] == "candidate"]
    assert names == ["logreg_untuned", "logreg", "gbdt_untuned", "gbdt", "stack"]
    for name in ("logreg", "gbdt"):
        tuned, untuned = rows[name], rows[f"{name}_untuned"]
        assert tuned["valid"]["roc_auc"]["value"] >= untuned["valid"]["roc_auc"]["value"]
        assert "searched: " in tuned["training"] and untuned["type"] == tuned["type"]
    assert rows["stack"]["type"] == "stacking" and rows["stack"]["training"] == "stacking of logreg, gbdt"
    assert "search gbdt (lightgbm): at most 6 trials" in result.stderr  # the progress bar
    tuning = json.loads((path.parent / ".mlsd" / "flight-delay" / "reports" / "tuning.json").read_text())
    assert sorted(tuning) == ["gbdt", "logreg"] and len(tuning["gbdt"]["trials"]) == 6
    assert tuning["gbdt"]["trials"][0]["params"]["num_leaves"] == 63  # trial 0: the untuned model

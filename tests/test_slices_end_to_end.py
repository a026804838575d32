"""The flights design document (a subsample) shows SliceLine's worst slices and the Simpson check."""

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


def test_flights_document_has_worst_slices_and_a_simpson_check(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("  label: ", "  sample: {n: 20000, seed: 1}\n  label: ", 1)
    text = text.replace("p99_latency_ms: 20}", "p99_latency_ms: 250}")
    (tmp_path / "design.yaml").write_text(text)
    exe = Path(sys.executable).parent / "mlsd"
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [str(exe), "build", str(tmp_path / "design.yaml")],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reports = tmp_path / ".mlsd" / "flight-delay" / "reports"
    models = json.loads((reports / "design.json").read_text())["models"]
    found = models["slice_finding"]
    assert found["slices"], "SliceLine found no slice above the average error"
    assert {"carrier", "origin", "temp"} <= set(found["columns"])
    for s in found["slices"]:
        assert s["rows"] >= found["min_rows"] and s["ci_low"] <= s["error"] <= s["ci_high"]
        assert s["error"] > found["overall_error"]
    roles = {c["role"] for c in models["simpson"]}
    assert roles == {"best baseline", "runner-up"}
    html = (reports / "design.html").read_text(encoding="utf-8")
    assert 'id="worst-slices"' in html and 'id="simpson"' in html
    assert found["slices"][0]["slice"] in html

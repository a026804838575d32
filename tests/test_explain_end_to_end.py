"""`mlsd build` then `mlsd serve` then POST /v1/explain: the feature means a linear champion's
explanations need travel from the build to the server in the registered model."""

from __future__ import annotations

import math

import httpx
import pytest

from support import mlsd_cli, mlsd_server, write_tiny_design

pytestmark = pytest.mark.slow  # a build and a server in subprocesses: about 30 s


def test_a_built_linear_champion_is_explained_by_the_server(tmp_path) -> None:
    design = write_tiny_design(tmp_path)
    built = mlsd_cli("build", str(design))
    assert built.returncode == 0, built.stdout + built.stderr
    rows = [{"mpg": 21.0, "hp": 110, "wt": 2.62}, {"mpg": 10.4, "hp": 205, "wt": 5.25}]
    with mlsd_server(design) as (_, url), httpx.Client(base_url=url) as http:
        explained = http.post("/v1/explain", json={"inputs": rows})
        predicted = http.post("/v1/predict", json={"inputs": rows})
    assert explained.status_code == 200, explained.text
    body = explained.json()
    assert body["method"].startswith("coef × (x − training mean)")
    scores = [p["score"] for p in predicted.json()["predictions"]]
    for e, score in zip(body["explanations"], scores, strict=True):
        assert set(e["contributions"]) == {"mpg", "hp", "wt"}
        assert abs(e["base_value"] + sum(e["contributions"].values()) - e["raw_score"]) < 1e-9
        assert abs(1 / (1 + math.exp(-e["raw_score"])) - score) < 1e-9  # the served probability
    # a heavy, powerful car and a light one pull the log-odds of a manual gearbox apart
    assert body["explanations"][0]["raw_score"] > body["explanations"][1]["raw_score"]

"""A workspace is one folder: moved or copied, it serves, monitors and builds again.

A tiny design (32 cars, one logistic regression) is built, then its folder is moved or copied
and used from the new place while the old place is gone or must stay untouched.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import mlflow
import pytest
import yaml
from fastapi.testclient import TestClient

from mlsd.serving import create_app, settings_for
from mlsd.serving.replay import json_records
from mlsd.store import ModelRegistry
from mlsd.system import System
from support import tiny_design

TINY = tiny_design()


def _build(project: Path) -> System:
    project.mkdir(parents=True)
    (project / "design.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    system = System(project / "design.yaml")
    system.build()
    return system


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _locations(workspace: Path) -> list[str]:
    """Every artefact location MLflow stored (experiments, runs, logged models, versions)."""
    columns = {
        "experiments": "artifact_location",
        "runs": "artifact_uri",
        "logged_models": "artifact_location",
        "model_versions": "storage_location",
    }
    with closing(sqlite3.connect(workspace / "mlflow.db")) as conn:
        found = [
            row[0]
            for table, column in columns.items()
            for row in conn.execute(f"SELECT {column} FROM {table}")
        ]
    return [loc for loc in found if "mlartifacts" in (loc or "")]  # not the cwd's Default experiment


def test_a_moved_workspace_serves_and_monitors_then_builds_in_place(tmp_path: Path) -> None:
    _build(tmp_path / "before")
    shutil.move(tmp_path / "before", tmp_path / "after")  # the old folder no longer exists
    system = System(tmp_path / "after" / "design.yaml")
    rows, labels = system.replay_rows("test")  # checks the champion's files: found in the new place

    model, name, version = system.champion()
    assert (name, version) == ("tiny", 1)
    expected = model.predict_frame(rows)["score"].tolist()
    with TestClient(create_app(settings_for(system)), base_url="http://127.0.0.1") as http:
        answer = http.post("/v1/predict", json={"inputs": json_records(rows)})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["score"] for p in predictions] == pytest.approx(expected)
        for p, label in zip(predictions, labels, strict=True):
            assert http.post(
                "/v1/feedback", json={"request_id": p["request_id"], "outcome": bool(label)}
            ).is_success
    run = system.monitor()
    assert run.result.overall.n == len(rows) and run.json_path.parent == system.reports_dir

    # MLflow's own loader follows too: opening the registry pointed its locations here
    registry = ModelRegistry(system.workspace)
    root = system.workspace.as_uri()
    assert all(loc.startswith(root) for loc in _locations(system.workspace))
    assert len(_locations(system.workspace)) == 4  # experiment, run, logged model, version
    with registry.activated():
        native = mlflow.pyfunc.load_model("models:/tiny@champion").predict(rows)
    assert native["score"].tolist() == pytest.approx(expected)

    result = system.build()
    assert result.registered_version == "2"
    assert all(loc.startswith(root) for loc in _locations(system.workspace))
    assert not (tmp_path / "before").exists()  # nothing was written to the old place
    assert System(tmp_path / "after" / "design.yaml").champion()[2] == 2


def test_a_copy_builds_on_its_own_and_leaves_the_original_untouched(tmp_path: Path) -> None:
    original = _build(tmp_path / "original")
    shutil.copytree(tmp_path / "original", tmp_path / "copy")
    before = _files(original.workspace)

    copy = System(tmp_path / "copy" / "design.yaml")
    result = copy.build()
    assert result.registered_version == "2"
    assert any("the workspace moved from" in note and "original" in note for note in result.notes)
    assert copy.champion()[2] == 2
    assert all(loc.startswith(copy.workspace.as_uri()) for loc in _locations(copy.workspace))

    after = _files(original.workspace)
    assert after == before  # not one byte of the original changed
    assert original.champion()[2] == 1


def test_mlsd_serve_answers_from_a_moved_workspace(tmp_path: Path) -> None:
    """The issue's case through the real CLI: `mlsd serve` of a moved workspace, a live server."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    _build(tmp_path / "before")
    shutil.move(tmp_path / "before", tmp_path / "after")
    system = System(tmp_path / "after" / "design.yaml")
    rows, _ = system.replay_rows("test")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlsd = Path(sys.executable).parent / "mlsd"
    server = subprocess.Popen(
        [str(mlsd), "serve", str(tmp_path / "after" / "design.yaml"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        answer = httpx.post(f"{base}/v1/predict", json={"inputs": json_records(rows.head(3))}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 3
    finally:
        server.terminate()
        server.communicate(timeout=60)

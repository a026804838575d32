"""A workspace is private to its owner: every folder 0700, every file 0600, whatever the umask.

The test process runs with the common umask 0o022 (files 0644 by default), builds a tiny
design, serves a few predictions into the SQLite log (with its -wal and -shm files open),
monitors, and then ``stat``s every entry under the workspace.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from mlsd.serving import create_app, settings_for
from mlsd.serving.replay import json_records
from mlsd.system import System
from support import tiny_design

TINY = tiny_design()


@pytest.fixture()
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(root: Path) -> dict[str, str]:
    """``oct(mode)`` of the root and of every folder and file under it."""
    entries = [root, *root.rglob("*")]
    return {str(p.relative_to(root.parent)): oct(stat.S_IMODE(p.lstat().st_mode)) for p in entries}


def _not_private(root: Path) -> dict[str, str]:
    expected = {True: oct(0o700), False: oct(0o600)}
    return {
        name: mode for name, mode in _modes(root).items() if mode != expected[(root.parent / name).is_dir()]
    }


def test_every_file_of_a_built_served_and_monitored_workspace_is_owner_only(
    tmp_path: Path, permissive_umask: None
) -> None:
    (tmp_path / "design.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    system = System(tmp_path / "design.yaml")
    system.build()
    assert os.umask(0o022) == 0o022  # the build restored the process's umask
    assert _not_private(system.workspace.parent) == {}  # .mlsd/ and everything in it

    rows, labels = system.replay_rows("test")
    with TestClient(create_app(settings_for(system)), base_url="http://127.0.0.1") as http:
        answer = http.post("/v1/predict", json={"inputs": json_records(rows)})
        assert answer.status_code == 200, answer.text
        for p, label in zip(answer.json()["predictions"], labels, strict=True):
            http.post("/v1/feedback", json={"request_id": p["request_id"], "outcome": bool(label)})
        # the log's journal files exist while the server runs: SQLite gives them the log's mode
        assert (system.workspace / "predictions.db-wal").exists()
        assert _not_private(system.workspace) == {}
    run = system.monitor()
    system.report()
    export = system.workspace / "reports" / "log.parquet"
    assert system.export_log(export) == len(rows)
    names = _modes(system.workspace)
    assert "tiny/predictions.db" in names and f"tiny/reports/{run.html_path.name}" in names
    assert any(name.endswith("packaged_model.joblib") for name in names)
    assert _not_private(system.workspace) == {}


def test_an_old_world_readable_workspace_is_tightened(tmp_path: Path, permissive_umask: None) -> None:
    (tmp_path / "design.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    system = System(tmp_path / "design.yaml")
    system.build()
    for path in [system.workspace, *system.workspace.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # as builds made them before
    assert _not_private(system.workspace)
    system.report()
    assert _not_private(system.workspace) == {}

"""An interrupted build leaves no run RUNNING and no model without a version.

Builds of a tiny design run in a subprocess whose training loops (really fitting, again and
again) until the test sends a signal: SIGINT and SIGTERM end the build's run FAILED; SIGKILL
leaves it RUNNING, and the next build marks it KILLED and says so. An exception, in a stage
or between logging and registering the model, ends the run FAILED and deletes the logged model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlsd.store import ModelRegistry
from mlsd.system import System
from support import tiny_design

TINY = tiny_design()

# The build of argv[1]; training announces itself on stdout, then fits for real until stopped.
# ``kill_in`` "register" kills the process between logging the model and registering it.
_BUILD = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if inherited ignored
import mlsd.modeling as modeling
from mlsd.system import System

real = modeling.train_and_evaluate
def training(*args, **kwargs):
    print("training", flush=True)
    while True:
        real(*args, **kwargs)

if sys.argv[2] == "register":
    from mlflow import MlflowClient
    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    MlflowClient.create_model_version = killed
else:
    modeling.train_and_evaluate = training
System(sys.argv[1]).build()
"""


def _design(tmp_path: Path) -> Path:
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return path


def _build_in_subprocess(design: Path, stop: signal.Signals | None, where: str = "training") -> int:
    proc = subprocess.Popen(
        [sys.executable, "-c", _BUILD, str(design), where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        if stop is not None:
            line = proc.stdout.readline() if proc.stdout else ""
            assert line.strip() == "training", (line, proc.stderr.read() if proc.stderr else "")
            proc.send_signal(stop)
        return proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _runs(registry: ModelRegistry) -> list[Any]:
    experiment = registry.client.get_experiment_by_name("tiny")
    return registry.client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])


def _logged_models(registry: ModelRegistry) -> list[Any]:
    experiment = registry.client.get_experiment_by_name("tiny")
    return list(registry.client.search_logged_models([experiment.experiment_id]))


def _model_folders(workspace: Path) -> list[Path]:
    return list((workspace / "mlartifacts").glob("*/models/*"))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_training_ends_the_run_failed(tmp_path: Path, stop: signal.Signals) -> None:
    design = _design(tmp_path)
    code = _build_in_subprocess(design, stop)
    assert code != 0
    registry = ModelRegistry(System(design).workspace)
    [run] = _runs(registry)
    assert run.info.status == "FAILED"
    assert registry.models() == [] and _logged_models(registry) == []


def test_the_next_build_marks_a_killed_builds_run_killed(tmp_path: Path) -> None:
    design = _design(tmp_path)
    assert _build_in_subprocess(design, signal.SIGKILL) == -signal.SIGKILL
    registry = ModelRegistry(System(design).workspace)
    assert [r.info.status for r in _runs(registry)] == ["RUNNING"]  # nothing could end it

    result = System(design).build()
    [note] = result.notes
    assert note.startswith("marked 1 run left RUNNING by a killed build KILLED: build-")
    assert [r.info.status for r in _runs(registry)] == ["KILLED", "FINISHED"]
    assert result.registered_version == "1"


def test_the_next_build_removes_a_model_logged_but_never_registered(tmp_path: Path) -> None:
    design = _design(tmp_path)
    assert System(design).build().registered_version == "1"
    assert _build_in_subprocess(design, None, where="register") == -signal.SIGKILL
    workspace = System(design).workspace
    registry = ModelRegistry(workspace)
    registered = {v.source.removeprefix("models:/") for v in registry.versions("tiny")}
    [orphan] = [m for m in _logged_models(registry) if m.model_id not in registered]
    assert len(_model_folders(workspace)) == 2

    result = System(design).build()
    assert result.notes[0].startswith("marked 1 run")
    assert result.notes[1] == f"removed 1 logged model that no version registers: {orphan.model_id}"
    kept = {m.model_id for m in _logged_models(registry)}
    assert orphan.model_id not in kept and len(kept) == 2
    assert {f.name for f in _model_folders(workspace)} == kept
    # the versions registered before and after are intact
    registry.set_alias("tiny", 1, "previous")
    assert registry.load("tiny", "previous").task == "binary"
    assert System(design).champion()[2] == 2


def test_an_exception_in_a_stage_ends_the_run_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlsd.modeling

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("selection broke")

    monkeypatch.setattr(mlsd.modeling, "select_model", broken)
    system = System(_design(tmp_path))
    with pytest.raises(RuntimeError, match="selection broke"):
        system.build()
    registry = ModelRegistry(system.workspace)
    assert [r.info.status for r in _runs(registry)] == ["FAILED"]
    assert not (system.workspace / "reference").exists()


def test_an_exception_between_logging_and_registering_deletes_the_logged_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(MlflowClient, "create_model_version", refused)
    system = System(_design(tmp_path))
    with pytest.raises(OSError, match="disk full"):
        system.build()
    registry = ModelRegistry(system.workspace)
    assert [r.info.status for r in _runs(registry)] == ["FAILED"]
    assert _logged_models(registry) == [] and _model_folders(system.workspace) == []
    monkeypatch.undo()
    assert System(system.design).build().notes == []  # nothing left to clean


def test_only_runs_whose_process_is_gone_are_marked_killed(tmp_path: Path) -> None:
    """A concurrent build's run is left RUNNING; a dead pid, or a reused one, is not that build."""
    import socket

    from mlsd.store.registry import _process_token

    registry = ModelRegistry(tmp_path / "ws")
    experiment_id = registry.experiment_id("tiny")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        host = socket.gethostname()
        token = _process_token(live.pid) or ""
        tags = {
            "live build": {"mlsd.pid": str(live.pid), "mlsd.host": host, "mlsd.pid_start": token},
            "dead build": {"mlsd.pid": str(gone.pid), "mlsd.host": host},
            "reused pid": {"mlsd.pid": str(live.pid), "mlsd.host": host, "mlsd.pid_start": token + "0"},
            "other host": {"mlsd.pid": str(gone.pid), "mlsd.host": host + "-elsewhere"},
            "older mlsd": {},
        }
        for name, run_tags in tags.items():
            registry.client.create_run(experiment_id, run_name=name, tags=run_tags)
        [note] = registry.clean_interrupted("tiny")
    finally:
        live.kill()
        live.wait()
    status = {r.info.run_name: r.info.status for r in _runs(registry)}
    assert status == {
        "live build": "RUNNING",
        "dead build": "KILLED",
        "reused pid": "KILLED",
        "other host": "RUNNING",
        "older mlsd": "KILLED",
    }
    assert note.startswith("marked 3 runs left RUNNING by a killed build KILLED: ")


def test_an_interrupt_while_the_model_is_logged_deletes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # as Ctrl-C while MLflow copies the model's files

    monkeypatch.setattr(MlflowClient, "log_model_artifacts", interrupted)
    system = System(_design(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        system.build()
    registry = ModelRegistry(system.workspace)
    assert [r.info.status for r in _runs(registry)] == ["FAILED"]
    assert _logged_models(registry) == [] and _model_folders(system.workspace) == []

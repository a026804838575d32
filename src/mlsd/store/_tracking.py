"""MLflow tracking of a build in the workspace: its runs, parameters, metrics and artefacts.

Kept apart from :mod:`mlsd.store.registry` (the versions and aliases of models) because a run is
the build's record, not the model's: :class:`Tracking`, a mixin of
:class:`~mlsd.store.registry.ModelRegistry`, points MLflow at the workspace only while it is
needed, starts a run tagged with the process that runs it, logs into it, and tidies what killed
builds left behind (runs left RUNNING, logged models that no version registers).

>>> _flatten({"model": {"type": "logreg", "C": 1.0}, "seed": 0})
{'model.type': 'logreg', 'model.C': 1.0, 'seed': 0}
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import pandas as pd

from mlsd.errors import RegistryError

if TYPE_CHECKING:  # MLflow is imported where it is used: checking a champion needs none of it
    from mlflow import MlflowClient

__all__ = ["Tracking"]

# Tags of a build's run: which process runs it, so a later build can tell a live build on the
# same workspace from one that was killed and left its run RUNNING.
_PID_TAG, _HOST_TAG, _PID_START_TAG = "mlsd.pid", "mlsd.host", "mlsd.pid_start"
# ErrorCode.Name(RESOURCE_ALREADY_EXISTS) of mlflow.protos.databricks_pb2 (tests/store/test_registry.py)
_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"


@contextmanager
def _as_registry_error(field_name: str, received: Any) -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        # e.g. a parameter logged twice with different values, or a metric name MLflow rejects
        raise RegistryError(
            f"MLflow refused to log {field_name}: {exc.message}",
            field=field_name,
            received=received,
            expected="names of letters, digits, _ - . / and space; each parameter logged once",
        ) from exc


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


class Tracking:
    """Runs of the workspace's MLflow tracking store (a mixin of ``ModelRegistry``)."""

    if TYPE_CHECKING:  # ModelRegistry's, made on first use

        @property
        def client(self) -> MlflowClient: ...

    tracking_uri: str
    artifact_root: Path
    _run_id: str | None

    if TYPE_CHECKING:  # supplied by ModelRegistry

        def _registered_model_ids(self) -> set[str]: ...

        def _delete_logged_model(self, model_id: str) -> None: ...

    @contextmanager
    def activated(self) -> Iterator[Self]:
        """Point MLflow's global tracking and registry URIs at this workspace, then restore them."""
        # Restore the raw state, not the resolved URIs: setting a URI also exports it as an
        # environment variable (inherited by subprocesses) and would pin the registry to a
        # default that no longer follows later ``mlflow.set_tracking_uri`` calls.
        import mlflow
        from mlflow.environment_variables import MLFLOW_REGISTRY_URI, MLFLOW_TRACKING_URI
        from mlflow.tracking._model_registry import utils as _registry_utils
        from mlflow.tracking._tracking_service import utils as _tracking_utils

        saved_env = {var: var.get_raw() for var in (MLFLOW_TRACKING_URI, MLFLOW_REGISTRY_URI)}
        saved_tracking, saved_registry = _tracking_utils._tracking_uri, _registry_utils._registry_uri
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        try:
            yield self
        finally:
            # None unsets it and resets the tracer (MLflow annotates the parameter as str | Path only)
            mlflow.set_tracking_uri(saved_tracking)  # type: ignore[arg-type]
            _registry_utils._registry_uri = saved_registry
            for var, raw in saved_env.items():
                if raw is None:
                    var.unset()
                else:
                    var.set(raw)

    def experiment_id(self, experiment: str) -> str:
        """The id of ``experiment``, created with its artefacts under ``mlartifacts/`` if new."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        location = (self.artifact_root / experiment.replace("/", "_")).as_uri()
        try:
            return self.client.create_experiment(experiment, artifact_location=location)
        except MlflowException as exc:
            # another build on this workspace created it since we looked
            found = self.client.get_experiment_by_name(experiment)
            if exc.error_code == _ALREADY_EXISTS and found is not None:
                return found.experiment_id
            raise RegistryError(
                f"cannot create the MLflow experiment: {exc.message}",
                field="experiment",
                received=experiment,
                expected="an experiment name MLflow accepts",
            ) from exc

    @contextmanager
    def start_run(self, experiment: str, run_name: str) -> Iterator[Any]:
        """Start an MLflow run in ``experiment`` (the helpers below log into it)."""
        import mlflow

        if self._run_id is not None:
            raise RegistryError(
                "a run is already active in this registry",
                field="run_name",
                received=run_name,
                expected="one run at a time (finish the current run first)",
            )
        experiment_id = self.experiment_id(experiment)
        tags = {_PID_TAG: str(os.getpid()), _HOST_TAG: socket.gethostname()}
        token = _process_token(os.getpid())
        if token is not None:
            tags[_PID_START_TAG] = token
        # MLflow's run context ends the run FAILED on any exception, KeyboardInterrupt and
        # SystemExit included, and FINISHED otherwise.
        with (
            self.activated(),
            mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run,
        ):
            self._run_id = run.info.run_id
            try:
                yield run
            finally:
                self._run_id = None

    def _active_run(self, what: str) -> str:
        if self._run_id is None:
            raise RegistryError(
                f"{what} needs an active run",
                field="run",
                received=None,
                expected="a call inside `with registry.start_run(experiment, run_name):`",
            )
        return self._run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters; nested dicts are flattened to dotted names (``select.maximize``)."""
        import mlflow

        run_id = self._active_run("log_params")
        flat = {
            k: json.dumps(v, default=str) if isinstance(v, list | tuple) else v
            for k, v in _flatten(params).items()
        }
        with self.activated(), _as_registry_error("params", list(flat)):
            mlflow.log_params({k: str(v)[:6000] for k, v in flat.items()}, run_id=run_id)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics (nested dicts flattened; ``None`` values skipped)."""
        import mlflow

        run_id = self._active_run("log_metrics")
        flat: dict[str, float] = {}
        for key, value in _flatten(metrics).items():
            if value is None:
                continue
            try:
                flat[key] = float(value)
            except (TypeError, ValueError) as exc:
                raise RegistryError(
                    "a metric must be a number", field=key, received=value, expected="a float or None"
                ) from exc
        with self.activated(), _as_registry_error("metrics", list(flat)):
            mlflow.log_metrics(flat, step=step, run_id=run_id)

    def log_table(self, name: str, records: list[Mapping[str, Any]]) -> None:
        """Log ``records`` as ``tables/<name>.json`` and ``tables/<name>.csv`` artefacts."""
        run_id = self._active_run("log_table")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / f"{name}.json").write_text(json.dumps(list(records), indent=2, default=str))
            pd.DataFrame.from_records(list(records)).to_csv(folder / f"{name}.csv", index=False)
            self.client.log_artifact(run_id, str(folder / f"{name}.json"), artifact_path="tables")
            self.client.log_artifact(run_id, str(folder / f"{name}.csv"), artifact_path="tables")

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a local file or folder as an artefact of the active run."""
        run_id = self._active_run("log_artifact")
        local = Path(path)
        if not local.exists():
            raise RegistryError(
                "no such file to log", field="path", received=str(local), expected="an existing path"
            )
        if local.is_dir():
            self.client.log_artifacts(run_id, str(local), artifact_path=artifact_path)
        else:
            self.client.log_artifact(run_id, str(local), artifact_path=artifact_path)

    # -- interrupted builds -------------------------------------------------------------------

    def clean_interrupted(self, experiment: str) -> list[str]:
        """Tidy what killed builds left in ``experiment``; one line per thing cleaned.

        A run left RUNNING by a process that no longer exists (a build killed with SIGKILL, or
        a machine that lost power) is marked KILLED; a run of a live process (another build on
        this workspace) is left alone. A logged model that no version registers, whose run is
        over, is deleted with its files.
        """
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return []
        notes: list[str] = []
        killed = []
        for run in self.client.search_runs(
            [found.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
        ):
            if not _process_alive(run.data.tags):
                self.client.set_terminated(run.info.run_id, "KILLED")
                killed.append(run.info.run_name or run.info.run_id)
        if killed:
            notes.append(
                f"marked {len(killed)} run{'s' if len(killed) > 1 else ''} left RUNNING by a killed "
                f"build KILLED: {', '.join(killed)}"
            )
        registered = self._registered_model_ids()
        removed = []
        for logged in self.client.search_logged_models([found.experiment_id], max_results=1000):
            if logged.model_id in registered:
                continue
            if logged.source_run_id and self.client.get_run(logged.source_run_id).info.status == "RUNNING":
                continue  # a live build between logging and registering its model
            self._delete_logged_model(logged.model_id)
            removed.append(logged.model_id)
        if removed:
            notes.append(
                f"removed {len(removed)} logged model{'s' if len(removed) > 1 else ''} that no "
                f"version registers: {', '.join(removed)}"
            )
        return notes


def _process_token(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux ``/proc``), so a reused pid is not taken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; the start time is field 22
    return stat.rsplit(")", 1)[1].split()[19]


def _process_alive(tags: Mapping[str, str]) -> bool:
    """Whether the build that started a run (its pid and host tags) may still be running."""
    pid, host = tags.get(_PID_TAG), tags.get(_HOST_TAG)
    if not pid or not pid.isdigit():
        return False  # started by an mlsd that did not record its process: no live build
    if host != socket.gethostname():
        return True  # another machine's build: nothing here can tell
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    recorded = tags.get(_PID_START_TAG)
    return recorded is None or _process_token(int(pid)) in (None, recorded)

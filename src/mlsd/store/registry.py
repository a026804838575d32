"""The model registry: MLflow tracking + model registry in one workspace, no server.

Everything lives under the workspace folder: ``mlflow.db`` (SQLite tracking and registry
store) and ``mlartifacts/`` (run and model artefacts). Each experiment gets an explicit
artifact location there, so nothing is ever written to ``./mlruns`` of the current directory.

A :class:`PackagedModel` is registered as an MLflow pyfunc model, so the standard
``mlflow.pyfunc.load_model("models:/NAME@champion")`` predicts from raw rows;
:meth:`ModelRegistry.load` unwraps it back to the :class:`PackagedModel`.

MLflow's global tracking URI is only set inside :meth:`ModelRegistry.activated` (and the
methods that need it) and restored afterwards, so several workspaces can coexist.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient
from mlflow.environment_variables import MLFLOW_REGISTRY_URI, MLFLOW_TRACKING_URI
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking._model_registry import utils as _registry_utils
from mlflow.tracking._tracking_service import utils as _tracking_utils

from mlsd.errors import ArtifactIntegrityError, ModelError, RegistryError
from mlsd.store._relocation import relocate_artifact_locations
from mlsd.store.integrity import (
    file_record,
    manifest,
    no_record_error,
    sign,
    verify_manifest,
    verify_signature,
)
from mlsd.store.packaged import PackagedModel
from mlsd.store.pyfunc import (
    ARTIFACT_KEY,
    PackagedPyfunc,
    model_signature,
    pip_requirements,
    signed_file_payload,
)

__all__ = [
    "CHAMPION_HISTORY_TAG",
    "HASHES_TAG",
    "PATH_TAG",
    "SIGNATURE_TAG",
    "ModelRegistry",
    "ModelVersionInfo",
    "PackagedPyfunc",
]

_METRIC_TAG = "metric."
# Tags of a registered version: where its folder is (relative to the workspace, so a moved or
# copied workspace still finds it), the SHA-256 and size of each of its files, and their HMAC.
PATH_TAG = "mlsd.artifact_path"
HASHES_TAG = "mlsd.sha256"
SIGNATURE_TAG = "mlsd.hmac"
# Tags of a build's run: which process runs it, so a later build can tell a live build on the
# same workspace from one that was killed and left its run RUNNING.
_PID_TAG, _HOST_TAG, _PID_START_TAG = "mlsd.pid", "mlsd.host", "mlsd.pid_start"
# mlflow.pyfunc.load_model("models:/...") writes this (the name and version, YAML) into a local
# model folder; it is metadata for MLflow's UI, never unpickled nor imported
_WRITTEN_BY_MLFLOW_LOADER = frozenset({"registered_model_meta"})
# Tag of a registered model: the versions that were champion, oldest first (a JSON list), so a
# rollback knows where to go back to. Kept to its last entries: MLflow caps a tag's length.
CHAMPION_HISTORY_TAG = "mlsd.champion_history"
_HISTORY_KEPT = 200
_PACKAGED_FILE = f"artifacts/{ARTIFACT_KEY}.joblib"  # where MLflow puts the pyfunc's artefact
_ALREADY_EXISTS = ErrorCode.Name(RESOURCE_ALREADY_EXISTS)


def _quiet_mlflow() -> None:
    # A fresh SQLite store runs ~50 alembic migrations, each logged at INFO; the CLI output
    # should show mlsd's progress, not MLflow's bookkeeping. Only INFO chatter is hidden.
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


_quiet_mlflow()


@contextmanager
def _quiet_logger(*names: str) -> Iterator[None]:
    # While logging a model MLflow reports at INFO/WARNING that a python object is pickled
    # (the point here) and that the input example was validated; failures still raise.
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextmanager
def _moving_champion(name: str, client: MlflowClient, *, back_to: int | None) -> Iterator[None]:
    """Move the champion alias and its history together: if either write fails, the alias goes
    back to ``back_to`` (the history is written last, so it never holds a move that failed)."""
    try:
        yield
    except MlflowException as exc:
        with suppress(MlflowException):
            if back_to is None:
                client.delete_registered_model_alias(name, "champion")
            else:
                client.set_registered_model_alias(name, "champion", str(back_to))
        raise RegistryError(
            f"cannot move the champion alias: {exc.message}",
            field="name",
            received=name,
            expected="a writable mlflow.db",
        ) from exc


@contextmanager
def _as_registry_error(field_name: str, received: Any) -> Iterator[None]:
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


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version of a model (JSON-ready via :meth:`to_dict`)."""

    name: str
    version: int
    aliases: list[str]
    run_id: str | None
    created_at: datetime
    source: str
    metrics: dict[str, float] = field(default_factory=dict)
    description: str = ""

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``, loadable by ``mlflow.pyfunc.load_model``."""
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat()
        out["uri"] = self.uri
        return out


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


class ModelRegistry:
    """MLflow tracking + registry rooted at one workspace folder.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     registry = ModelRegistry(tmp)
    ...     with registry.start_run("demo", "first"):
    ...         registry.log_params({"model": {"type": "logreg", "C": 1.0}})
    ...         registry.log_metrics({"roc_auc": 0.71})
    ...     (Path(tmp) / "mlflow.db").exists(), registry.models()
    (True, [])
    """

    def __init__(self, workspace: str | Path) -> None:
        self.workspace = Path(workspace).expanduser().resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.artifact_root = self.workspace / "mlartifacts"
        self.tracking_uri = f"sqlite:///{self.workspace / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self._run_id: str | None = None
        # the folders this workspace's mlflow.db pointed at before it was moved or copied here
        self.relocated_from: list[str] = relocate_artifact_locations(
            self.workspace / "mlflow.db", self.artifact_root
        )

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.workspace)!r})"

    # -- tracking ---------------------------------------------------------------------------

    @contextmanager
    def activated(self) -> Iterator[ModelRegistry]:
        """Point MLflow's global tracking and registry URIs at this workspace, then restore them."""
        # Restore the raw state, not the resolved URIs: setting a URI also exports it as an
        # environment variable (inherited by subprocesses) and would pin the registry to a
        # default that no longer follows later ``mlflow.set_tracking_uri`` calls.
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
        run_id = self._active_run("log_params")
        flat = {
            k: json.dumps(v, default=str) if isinstance(v, list | tuple) else v
            for k, v in _flatten(params).items()
        }
        with self.activated(), _as_registry_error("params", list(flat)):
            mlflow.log_params({k: str(v)[:6000] for k, v in flat.items()}, run_id=run_id)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics (nested dicts flattened; ``None`` values skipped)."""
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

    # -- registry ---------------------------------------------------------------------------

    def register(
        self,
        model: PackagedModel,
        name: str,
        *,
        alias: str | None = "champion",
        description: str = "",
        input_example: pd.DataFrame | None = None,
        experiment: str | None = None,
    ) -> ModelVersionInfo:
        """Log ``model`` as an MLflow pyfunc, register it as a new version of ``name``, set ``alias``.

        Logs into the active run if there is one, else into a new run of ``experiment``
        (default: ``name``). ``input_example`` (a few raw rows) is stored with the model.
        """
        if not isinstance(model, PackagedModel):
            raise RegistryError(
                "only a PackagedModel can be registered",
                field="model",
                received=type(model).__name__,
                expected="mlsd.store.PackagedModel",
            )
        if self._run_id is None:
            with self.start_run(experiment or name, f"register-{name}"):
                return self.register(
                    model, name, alias=alias, description=description, input_example=input_example
                )
        run_id = self._run_id
        example = None
        if input_example is not None:
            model.check_columns(input_example)
            example = input_example.loc[:, model.input_columns].head(5)
        metrics = {
            k: float(v)
            for k, v in dict(model.metadata.get("metrics") or {}).items()
            if isinstance(v, int | float)
        }
        with tempfile.TemporaryDirectory() as tmp:
            artefact = Path(tmp) / f"{ARTIFACT_KEY}.joblib"
            joblib.dump(model, artefact)
            # what the pyfunc loader checks before it unpickles the joblib (see PackagedPyfunc)
            record = file_record(artefact)
            model_config: dict[str, Any] = dict(record)
            signature = sign(signed_file_payload(record["sha256"]))
            if signature is not None:
                model_config["hmac"] = signature
            with (
                self.activated(),
                _quiet_logger("mlflow.pyfunc", "mlflow.models"),
                warnings.catch_warnings(),
                self._no_half_logged_model(run_id),
            ):
                warnings.filterwarnings(
                    "ignore", message=".*input example was not provided", category=UserWarning
                )
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=PackagedPyfunc(),
                    artifacts={ARTIFACT_KEY: str(artefact)},
                    pip_requirements=pip_requirements(),
                    signature=model_signature(model),
                    input_example=example,
                    metadata=json.loads(json.dumps(model.summary(), default=str)),
                    model_config=model_config,
                )
        mv, previous = None, None
        try:
            folder = self._local_folder(self.client.get_logged_model(info.model_id).artifact_location)
            relative = folder.relative_to(self.workspace).as_posix()
            hashes = manifest(folder)
            self._create_model(name, description)
            tags = {"task": model.task, **{f"{_METRIC_TAG}{k}": str(v) for k, v in metrics.items()}}
            if model.threshold is not None:
                tags["threshold"] = str(model.threshold)
            tags |= {PATH_TAG: relative, HASHES_TAG: json.dumps(hashes, sort_keys=True)}
            mv = self.client.create_model_version(
                name,
                source=info.model_uri,
                run_id=run_id,
                tags=tags,
                description=description or None,
                model_id=info.model_id,
            )
            # signed once the version is known, so a record cannot be moved to another version
            version_signature = sign(_signed_version_payload(name, int(mv.version), relative, hashes))
            if version_signature is not None:
                self.client.set_model_version_tag(name, mv.version, SIGNATURE_TAG, version_signature)
            if alias:
                previous = self._alias_version(name, "champion") if alias == "champion" else None
                self.client.set_registered_model_alias(name, alias, mv.version)
                if alias == "champion":
                    self._record_champion(name, int(mv.version), previous)
        except BaseException as exc:
            # Interrupted or refused between logging and aliasing: a version without its alias
            # would be a silent half-registration, and a logged model without a version is litter.
            if mv is not None:
                with suppress(MlflowException):
                    self.client.delete_model_version(name, mv.version)
                if previous is not None:  # the champion had moved to the deleted version: back
                    with suppress(MlflowException):
                        self.client.set_registered_model_alias(name, "champion", str(previous))
            self._delete_logged_model(info.model_id)
            if isinstance(exc, MlflowException):
                raise RegistryError(
                    f"cannot register the model: {exc.message}",
                    field="name",
                    received=name,
                    expected="a registered model name MLflow accepts and a writable mlflow.db",
                ) from exc
            raise
        return self._info(self.client.get_model_version(name, mv.version))

    def load(self, name: str, alias: str = "champion") -> PackagedModel:
        """The :class:`PackagedModel` behind ``models:/NAME@ALIAS``, verified before it is unpickled.

        Raises :class:`ArtifactIntegrityError` naming the file when a file of the version differs
        from what its build recorded (see :meth:`verify`).
        """
        folder, hashes = self._verified(name, alias)
        path = folder / _PACKAGED_FILE
        # Unpickle the very bytes that are hashed, so a file swapped after the check is not read.
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != hashes.get(_PACKAGED_FILE, {}).get("sha256"):
            raise ArtifactIntegrityError(
                f"model {name!r} ({alias}): the file changed while it was being checked",
                field=str(path),
                received=hashlib.sha256(data).hexdigest(),
                expected=str(hashes.get(_PACKAGED_FILE, {}).get("sha256")),
            )
        try:
            model = joblib.load(io.BytesIO(data))
        except Exception as exc:  # the bytes are the build's: the environment cannot read them
            raise ModelError(
                f"cannot unpickle the verified model ({type(exc).__name__}: {exc})".splitlines()[0],
                field=str(path),
                received=type(exc).__name__,
                expected="the library versions that built it (requirements.txt beside MLmodel)",
            ) from exc
        if not isinstance(model, PackagedModel):
            raise ModelError(
                "the artefact is not a packaged model",
                field=str(path),
                received=type(model).__name__,
                expected="mlsd.store.PackagedModel",
            )
        return model

    def verify(self, name: str, alias: str = "champion") -> Path:
        """Check every file of ``NAME@ALIAS`` against its build's record; return its folder.

        The folder is found relative to this workspace (wherever the workspace now lives); each
        file's size and SHA-256 must be the recorded ones and no file may be added; with
        ``MLSD_SIGNING_KEY`` set the record must carry a valid HMAC. Nothing is unpickled.
        """
        return self._verified(name, alias)[0]

    def _verified(self, name: str, alias: str) -> tuple[Path, dict[str, Any]]:
        """The verified folder of ``NAME@ALIAS`` and the record it was verified against."""
        version = self._resolve(name, alias)
        mv = self.client.get_model_version(name, version)
        tags = dict(mv.tags or {})
        what = f"model {name!r} version {version} ({alias})"
        relative = tags.get(PATH_TAG, "")
        hashes = _json_object(tags.get(HASHES_TAG))
        if not relative or hashes is None:
            # registered before mlsd recorded paths and hashes: nothing to check it against
            raise no_record_error(f"{name}/{version}.tags.{HASHES_TAG}", what=what)
        verify_signature(
            _signed_version_payload(name, int(version), relative, hashes),
            tags.get(SIGNATURE_TAG),
            what=what,
            field=f"{name}/{version}.tags.{SIGNATURE_TAG}",
        )
        folder = (self.workspace / relative).resolve()
        if not folder.is_relative_to(self.workspace):
            raise ArtifactIntegrityError(
                f"{what}: the recorded artefact folder lies outside the workspace",
                field=f"{name}/{version}.tags.{PATH_TAG}",
                received=relative,
                expected=f"a folder under {self.workspace}",
            )
        verify_manifest(folder, hashes, what=what, tolerated=_WRITTEN_BY_MLFLOW_LOADER)
        return folder, hashes

    def versions(self, name: str) -> list[ModelVersionInfo]:
        """Every version of ``name``, oldest first."""
        self._require_model(name)
        found = self.client.search_model_versions(f"name = '{self._quote(name)}'")
        # Search results do not carry aliases; the registered model holds the alias -> version map.
        by_version: dict[int, list[str]] = {}
        for alias, version in self.client.get_registered_model(name).aliases.items():
            by_version.setdefault(int(version), []).append(alias)
        infos = (self._info(mv, by_version.get(int(mv.version), [])) for mv in found)
        return sorted(infos, key=lambda v: v.version)

    def set_alias(self, name: str, version: int, alias: str) -> ModelVersionInfo:
        """Point ``alias`` (e.g. ``champion``, ``challenger``) at ``version`` of ``name``."""
        known = [v.version for v in self.versions(name)]
        if int(version) not in known:
            raise RegistryError(
                "no such model version", field=f"{name}.version", received=version, expected=f"one of {known}"
            )
        self.client.set_registered_model_alias(name, alias, str(int(version)))
        return self._info(self.client.get_model_version(name, str(int(version))))

    # -- promotion ---------------------------------------------------------------------------

    def alias_versions(self, name: str) -> dict[str, int]:
        """Every alias of ``name`` and the version it points at, e.g. ``{"champion": 3}``."""
        self._require_model(name)
        aliases = self.client.get_registered_model(name).aliases
        return {alias: int(version) for alias, version in sorted(aliases.items())}

    def champion_history(self, name: str) -> list[int]:
        """The versions that were champion of ``name``, oldest first (tag ``mlsd.champion_history``)."""
        self._require_model(name)
        return self._history(name)

    def promote(self, name: str, alias: str = "challenger") -> tuple[int | None, int]:
        """Make the version behind ``alias`` the champion: ``(old champion or None, new champion)``.

        The new champion is appended to the champion history, so :meth:`rollback` can undo it.
        ``alias`` keeps pointing at its version. Promoting the champion itself changes nothing.
        """
        if alias == "champion":
            raise RegistryError(
                "the champion cannot be promoted to champion",
                field="alias",
                received=alias,
                expected="the alias of another version, e.g. challenger",
            )
        new = int(self._resolve(name, alias))
        old = self.alias_versions(name).get("champion")
        if old == new:
            return old, new
        with _moving_champion(name, self.client, back_to=old):
            self.client.set_registered_model_alias(name, "champion", str(new))
            self._record_champion(name, new, old)
        return old, new

    def rollback(self, name: str) -> tuple[int, int]:
        """Point ``champion`` back at the previous champion: ``(from version, to version)``.

        Walks the champion history back one step (the entry of the champion it leaves is
        dropped, so a second rollback goes one further back). RegistryError when there is no
        champion or no earlier one to go back to.
        """
        current = self.alias_versions(name).get("champion")
        if current is None:
            raise RegistryError(
                f"model {name!r} has no champion to roll back",
                field="alias",
                received="champion",
                expected="a champion set by a build or by promote",
            )
        history = self._history(name)
        while history and history[-1] == current:
            history.pop()
        if not history:
            raise RegistryError(
                f"model {name!r} has no previous champion to roll back to",
                field=CHAMPION_HISTORY_TAG,
                received=self._history(name),
                expected=f"an earlier champion than version {current}",
            )
        target = history[-1]
        with _moving_champion(name, self.client, back_to=current):
            self.client.set_registered_model_alias(name, "champion", str(target))
            self.client.set_registered_model_tag(name, CHAMPION_HISTORY_TAG, json.dumps(history))
        return current, target

    def _alias_version(self, name: str, alias: str) -> int | None:
        version = self.client.get_registered_model(name).aliases.get(alias)
        return None if version is None else int(version)

    def _history(self, name: str) -> list[int]:
        text = self.client.get_registered_model(name).tags.get(CHAMPION_HISTORY_TAG)
        try:
            values = json.loads(text) if text else []
        except json.JSONDecodeError:
            values = None
        if not isinstance(values, list) or not all(isinstance(v, int) for v in values):
            raise RegistryError(
                f"model {name!r}: the champion history tag is not a list of versions",
                field=CHAMPION_HISTORY_TAG,
                received=text,
                expected="a JSON list of version numbers, e.g. [1, 3]",
            )
        return values

    def _record_champion(self, name: str, version: int, previous: int | None) -> None:
        history = self._history(name)
        if not history and previous is not None:  # a champion set before the history was kept
            history = [previous]
        if not history or history[-1] != version:
            history.append(version)
        self.client.set_registered_model_tag(name, CHAMPION_HISTORY_TAG, json.dumps(history[-_HISTORY_KEPT:]))

    def models(self) -> list[str]:
        """Names of all registered models in this workspace."""
        return sorted(m.name for m in self.client.search_registered_models())

    def uri(self, name: str, alias: str = "champion") -> str:
        """The pyfunc URI ``models:/NAME@ALIAS`` (load it inside :meth:`activated`)."""
        return f"models:/{name}@{alias}"

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

    # -- private ----------------------------------------------------------------------------

    def _local_folder(self, uri: str) -> Path:
        """The local folder of a ``file://`` artefact URI, which must lie in this workspace."""
        from mlflow.utils.file_utils import local_file_uri_to_path

        folder = Path(local_file_uri_to_path(uri)).resolve()
        if not folder.is_relative_to(self.workspace):
            raise RegistryError(
                "MLflow stored the model outside the workspace",
                field="artifact_location",
                received=uri,
                expected=f"a folder under {self.artifact_root}",
            )
        return folder

    @contextmanager
    def _no_half_logged_model(self, run_id: str) -> Iterator[None]:
        """Delete what an interrupted ``log_model`` created in ``run_id`` (it has no version yet)."""
        try:
            yield
        except BaseException:
            with suppress(MlflowException):
                experiment_id = self.client.get_run(run_id).info.experiment_id
                registered = self._registered_model_ids()
                for logged in self.client.search_logged_models(
                    [experiment_id], filter_string=f"source_run_id = '{run_id}'"
                ):
                    if logged.model_id not in registered:
                        self._delete_logged_model(logged.model_id)
            raise

    def _registered_model_ids(self) -> set[str]:
        # a version's source is ``models:/<model id>`` (search results leave ``model_id`` empty)
        return {
            (mv.source or "").removeprefix("models:/")
            for mv in self.client.search_model_versions(max_results=10_000)
        }

    def _delete_logged_model(self, model_id: str) -> None:
        """Delete a logged model and its files (best effort: it is tidying, never the point)."""
        with suppress(MlflowException, RegistryError, OSError):
            folder = self._local_folder(self.client.get_logged_model(model_id).artifact_location)
            self.client.delete_logged_model(model_id)
            # artifacts/ is the model's folder; its parent (models/<id>) holds nothing else
            shutil.rmtree(folder.parent if folder.name == "artifacts" else folder, ignore_errors=True)

    @staticmethod
    def _quote(name: str) -> str:
        return name.replace("'", "\\'")

    def _exists(self, name: str) -> bool:
        return bool(self.client.search_registered_models(f"name = '{self._quote(name)}'"))

    def _create_model(self, name: str, description: str) -> None:
        # Create-and-tolerate rather than look-then-create: two builds on one workspace may
        # both find the model missing, and the second create must not fail the build.
        try:
            self.client.create_registered_model(name, description=description or None)
        except MlflowException as exc:
            if exc.error_code != _ALREADY_EXISTS:
                raise

    def _require_model(self, name: str) -> None:
        if not self._exists(name):
            raise RegistryError(
                "no such registered model",
                field="name",
                received=name,
                expected="one of: " + (", ".join(self.models()) or "(none registered yet)"),
            )

    def _resolve(self, name: str, alias: str) -> str:
        self._require_model(name)
        aliases = self.client.get_registered_model(name).aliases
        if alias not in aliases:
            listing = ", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items())) or "(no aliases set)"
            raise RegistryError(
                f"model {name!r} has no such alias",
                field="alias",
                received=alias,
                expected=f"one of: {listing}",
            )
        return str(aliases[alias])

    @staticmethod
    def _info(mv: Any, aliases: list[str] | None = None) -> ModelVersionInfo:
        tags = dict(mv.tags or {})
        metrics = {k[len(_METRIC_TAG) :]: float(v) for k, v in tags.items() if k.startswith(_METRIC_TAG)}
        return ModelVersionInfo(
            name=mv.name,
            version=int(mv.version),
            aliases=sorted((mv.aliases or []) if aliases is None else aliases),
            run_id=mv.run_id,
            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
            source=mv.source,
            metrics=metrics,
            description=mv.description or "",
        )


def _signed_version_payload(name: str, version: int, path: str, hashes: Any) -> dict[str, Any]:
    """What a version's HMAC covers: its name, number, folder and every file's hash."""
    return {"name": name, "version": version, "path": path, "files": hashes}


def _json_object(text: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(text or "null")
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and value else None


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

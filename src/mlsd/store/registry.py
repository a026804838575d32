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

import json
import logging
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

from mlsd.errors import RegistryError
from mlsd.store.packaged import PackagedModel
from mlsd.store.pyfunc import ARTIFACT_KEY, PackagedPyfunc, model_signature, pip_requirements

__all__ = ["ModelRegistry", "ModelVersionInfo", "PackagedPyfunc"]

_METRIC_TAG = "metric."
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
        with self.activated(), mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
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
            with self.activated(), _quiet_logger("mlflow.pyfunc", "mlflow.models"), warnings.catch_warnings():
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
                )
        mv = None
        try:
            self._create_model(name, description)
            tags = {"task": model.task, **{f"{_METRIC_TAG}{k}": str(v) for k, v in metrics.items()}}
            if model.threshold is not None:
                tags["threshold"] = str(model.threshold)
            mv = self.client.create_model_version(
                name,
                source=info.model_uri,
                run_id=run_id,
                tags=tags,
                description=description or None,
                model_id=info.model_id,
            )
            if alias:
                self.client.set_registered_model_alias(name, alias, mv.version)
        except MlflowException as exc:
            if mv is not None:
                # a version without its alias would be a silent half-registration: drop it
                with suppress(MlflowException):
                    self.client.delete_model_version(name, mv.version)
            raise RegistryError(
                f"cannot register the model: {exc.message}",
                field="name",
                received=name,
                expected="a registered model name MLflow accepts and a writable mlflow.db",
            ) from exc
        return self._info(self.client.get_model_version(name, mv.version))

    def load(self, name: str, alias: str = "champion") -> PackagedModel:
        """The :class:`PackagedModel` behind ``models:/NAME@ALIAS``."""
        version = self._resolve(name, alias)
        with self.activated():
            pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        return pyfunc.unwrap_python_model().model

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

    def models(self) -> list[str]:
        """Names of all registered models in this workspace."""
        return sorted(m.name for m in self.client.search_registered_models())

    def uri(self, name: str, alias: str = "champion") -> str:
        """The pyfunc URI ``models:/NAME@ALIAS`` (load it inside :meth:`activated`)."""
        return f"models:/{name}@{alias}"

    # -- private ----------------------------------------------------------------------------

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

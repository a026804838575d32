"""The model registry: MLflow tracking + model registry in one workspace, no server.

Everything lives under the workspace folder: ``mlflow.db`` (SQLite tracking and registry
store) and ``mlartifacts/`` (run and model artefacts). Each experiment gets an explicit
artifact location there, so nothing is ever written to ``./mlruns`` of the current directory.

A :class:`PackagedModel` is registered as an MLflow pyfunc model, so the standard
``mlflow.pyfunc.load_model("models:/NAME@champion")`` predicts from raw rows;
:meth:`ModelRegistry.load` unwraps it back to the :class:`PackagedModel`.

MLflow's global tracking URI is only set inside :meth:`ModelRegistry.activated` (and the
methods that need it) and restored afterwards, so several workspaces can coexist.

The class is assembled from three modules: runs and their logging (:mod:`mlsd.store._tracking`),
champion moves and their history (:mod:`mlsd.store._promotion`), and here the versions, their
artefacts and the integrity checks done before a model is unpickled.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import joblib
import pandas as pd

from mlsd.errors import ArtifactIntegrityError, ModelError, RegistryError
from mlsd.store._promotion import CHAMPION_HISTORY_TAG, ChampionMoves
from mlsd.store._relocation import relocate_artifact_locations
from mlsd.store._tracking import _ALREADY_EXISTS, Tracking
from mlsd.store._tracking import _process_token as _process_token  # re-exported (tests)
from mlsd.store.integrity import (
    file_record,
    manifest,
    no_record_error,
    sign,
    verify_manifest,
    verify_signature,
)
from mlsd.store.packaged import PackagedModel

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlsd.store.pyfunc import PackagedPyfunc

# MLflow (~1 s to import, and as long again for a client on the store) is imported where it is
# used: checking the champion's files (serving, replay, monitoring) reads the registry's SQLite
# tables directly (:meth:`ModelRegistry._read_only`) and needs none of it.

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
# mlflow.pyfunc.load_model("models:/...") writes this (the name and version, YAML) into a local
# model folder; it is metadata for MLflow's UI, never unpickled nor imported
_WRITTEN_BY_MLFLOW_LOADER = frozenset({"registered_model_meta"})
_PACKAGED_FILE = "artifacts/packaged_model.joblib"  # where MLflow puts the pyfunc's artefact
# (ARTIFACT_KEY of mlsd.store.pyfunc, which imports MLflow; tests/store/test_registry.py checks it)
_DELETED = "Deleted_Internal"  # MLflow's stage of a deleted version (its rows stay in the store)
_MLFLOW_WORKSPACE_VARS = {"MLFLOW_WORKSPACE", "MLFLOW_ENABLE_WORKSPACES", "MLFLOW_WORKSPACE_STORE_URI"}


def __getattr__(name: str) -> Any:
    if name == "PackagedPyfunc":  # re-exported: models logged before it moved pickled it here
        from mlsd.store.pyfunc import PackagedPyfunc

        return PackagedPyfunc
    raise AttributeError(f"module 'mlsd.store.registry' has no attribute {name!r}")


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


class ModelRegistry(Tracking, ChampionMoves):
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
        self._client: MlflowClient | None = None
        self._run_id: str | None = None
        # the folders this workspace's mlflow.db pointed at before it was moved or copied here
        self.relocated_from: list[str] = relocate_artifact_locations(
            self.workspace / "mlflow.db", self.artifact_root
        )

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.workspace)!r})"

    @property
    def client(self) -> MlflowClient:
        """MLflow's client on this workspace's store, made on first use."""
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    # -- registry (runs: mlsd.store._tracking, champion moves: mlsd.store._promotion) ------

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
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException

        from mlsd.store.pyfunc import (
            ARTIFACT_KEY,
            PackagedPyfunc,
            model_signature,
            pip_requirements,
            signed_file_payload,
        )

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
        known = self._read_only(name)
        if known is not None and known.aliases.get(alias) in known.versions:
            version = str(known.aliases[alias])
            tags = dict(known.versions[int(version)].tags)
        else:  # no such model or alias, or a store this read does not know: MLflow says what
            version = self._resolve(name, alias)
            tags = dict(self.client.get_model_version(name, version).tags or {})
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
        known = self._read_only(name)
        if known is not None:
            return [self._info(mv, known.by_version.get(v, [])) for v, mv in sorted(known.versions.items())]
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

    def _read_only(self, name: str) -> SimpleNamespace | None:
        """The versions (with their tags) and aliases of ``name`` read from ``mlflow.db`` with
        sqlite3, as MLflow's client returns them, while no client was needed yet; None when no
        such model is registered or the store is not the schema read here (then the client
        reads it, and raises what it raises). One read-only snapshot: nothing is written."""
        db = self.workspace / "mlflow.db"
        # MLflow workspaces switched on: the client decides which workspace's rows are meant
        if self._client is not None or not db.is_file() or os.environ.keys() & _MLFLOW_WORKSPACE_VARS:
            return None
        where = "WHERE name = ? AND workspace = 'default'"  # MLflow's default workspace
        try:
            with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
                conn.execute("BEGIN")
                if not conn.execute(f"SELECT count(*) FROM registered_models {where}", [name]).fetchone()[0]:
                    return None
                aliases = dict(
                    conn.execute(f"SELECT alias, version FROM registered_model_aliases {where}", [name])
                )
                rows = conn.execute(
                    "SELECT version, creation_time, description, source, run_id FROM model_versions "
                    f"{where} AND current_stage != ?",
                    [name, _DELETED],
                ).fetchall()
                tags = conn.execute(
                    f"SELECT version, key, value FROM model_version_tags {where}", [name]
                ).fetchall()
        except sqlite3.Error:
            return None
        versions = {
            int(v): SimpleNamespace(
                name=name,
                version=int(v),
                creation_timestamp=created,
                description=description,
                source=source,
                run_id=run_id,
                tags={},
                aliases=None,
            )
            for v, created, description, source, run_id in rows
        }
        for v, key, value in tags:
            if int(v) in versions:
                versions[int(v)].tags[key] = value
        by_version: dict[int, list[str]] = {}
        for a, v in aliases.items():
            by_version.setdefault(int(v), []).append(a)
        return SimpleNamespace(
            versions=versions, aliases={a: int(v) for a, v in aliases.items()}, by_version=by_version
        )

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
        from mlflow.exceptions import MlflowException

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
        from mlflow.exceptions import MlflowException

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
        from mlflow.exceptions import MlflowException

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

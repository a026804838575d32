"""A registered model's files are checked against the hashes its build recorded before anything is unpickled.

Each test registers a tiny pipeline in its own workspace, changes the stored files the way an
attacker or a crash would, and loads it through every loader: ``ModelRegistry.load`` (what
``mlsd serve`` uses), ``ModelRegistry.verify`` (``replay`` and ``monitor``) and MLflow's
``mlflow.pyfunc.load_model`` (the :class:`PackagedPyfunc` loader).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlsd.errors import ArtifactIntegrityError, RegistryError
from mlsd.store import ModelRegistry, PackagedModel
from mlsd.store.integrity import SIGNING_KEY_ENV, manifest
from mlsd.store.registry import HASHES_TAG, PATH_TAG, SIGNATURE_TAG

NAME = "tiny"


class _RunsCode:
    """A pickle that runs code when it is loaded: it writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (self.marker, "unpickled"))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def packaged() -> PackagedModel:
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"x": rng.normal(size=200), "z": rng.normal(size=200)})
    y = (rows["x"] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    return PackagedModel(LogisticRegression().fit(rows, y), "binary", threshold=0.4, classes=[0, 1])


@pytest.fixture()
def registry(tmp_path: Path, packaged: PackagedModel, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    registry = ModelRegistry(tmp_path / "ws")
    registry.register(packaged, NAME)
    return registry


def _folder(registry: ModelRegistry) -> Path:
    version = registry.versions(NAME)[-1]
    tags = registry.client.get_model_version(NAME, str(version.version)).tags
    return registry.workspace / tags[PATH_TAG]


def _joblib(registry: ModelRegistry) -> Path:
    return _folder(registry) / "artifacts" / "packaged_model.joblib"


def _every_loader_refuses(registry: ModelRegistry, match: str) -> list[ArtifactIntegrityError]:
    errors = []
    for load in (registry.load, registry.verify):
        with pytest.raises(ArtifactIntegrityError, match=match) as info:
            load(NAME)
        errors.append(info.value)
    return errors


def test_an_untouched_model_loads_and_its_record_names_every_file(registry: ModelRegistry) -> None:
    folder = registry.verify(NAME)
    recorded = json.loads(registry.client.get_model_version(NAME, "1").tags[HASHES_TAG])
    assert recorded == manifest(folder)
    assert {"MLmodel", "python_model.pkl", "artifacts/packaged_model.joblib"} <= set(recorded)
    assert registry.load(NAME).threshold == 0.4


def test_a_replaced_pickle_is_refused_before_it_runs(registry: ModelRegistry, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _joblib(registry).write_bytes(pickle.dumps(_RunsCode(marker)))
    errors = _every_loader_refuses(registry, "does not match the SHA-256 recorded|truncated or replaced")
    with pytest.raises(ArtifactIntegrityError), registry.activated():
        mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    assert not marker.exists()  # nothing was unpickled
    assert all(e.field == str(_joblib(registry)) for e in errors)
    assert isinstance(errors[0], RegistryError) and "packaged_model.joblib" in str(errors[0])


def test_a_replaced_mlflow_wrapper_pickle_is_refused(registry: ModelRegistry, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (_folder(registry) / "python_model.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))
    (error, _) = _every_loader_refuses(registry, "does not match|truncated or replaced")
    assert error.field.endswith("python_model.pkl") and not marker.exists()


def test_a_truncated_artifact_gets_the_same_clear_error(registry: ModelRegistry) -> None:
    path = _joblib(registry)
    whole = path.read_bytes()
    path.write_bytes(whole[:100])
    (error, _) = _every_loader_refuses(registry, rf"truncated or replaced \(100 of {len(whole)} bytes\)")
    assert error.field == str(path)
    with pytest.raises(ArtifactIntegrityError, match="truncated"), registry.activated():
        mlflow.pyfunc.load_model(f"models:/{NAME}@champion")


def test_a_missing_or_added_file_is_refused(registry: ModelRegistry) -> None:
    extra = _folder(registry) / "artifacts" / "helper.py"
    extra.write_text("print('hello')")
    (error, _) = _every_loader_refuses(registry, "not written by the build")
    assert error.field == str(extra)
    extra.unlink()
    _joblib(registry).unlink()
    _every_loader_refuses(registry, "the file is missing")


def test_a_version_without_a_record_is_refused(registry: ModelRegistry) -> None:
    registry.client.delete_model_version_tag(NAME, "1", HASHES_TAG)
    (error, _) = _every_loader_refuses(registry, "no SHA-256 of its files is recorded")
    assert error.field == f"{NAME}/1.tags.{HASHES_TAG}"


def _rewrite_file_and_record(registry: ModelRegistry, other: PackagedModel) -> None:
    """What someone who can write the workspace's files and mlflow.db can do: every record agrees."""
    import joblib
    import yaml

    from mlsd.store.integrity import file_record

    joblib.dump(other, _joblib(registry))
    mlmodel = _folder(registry) / "MLmodel"
    spec = yaml.safe_load(mlmodel.read_text())
    spec["flavors"]["python_function"]["config"].update(file_record(_joblib(registry)))
    mlmodel.write_text(yaml.safe_dump(spec))
    registry.client.set_model_version_tag(NAME, "1", HASHES_TAG, json.dumps(manifest(_folder(registry))))


def test_the_signature_catches_a_file_and_record_rewritten_together(
    tmp_path: Path, packaged: PackagedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIGNING_KEY_ENV, "s3cret")
    registry = ModelRegistry(tmp_path / "signed")
    registry.register(packaged, NAME)
    assert registry.client.get_model_version(NAME, "1").tags[SIGNATURE_TAG]
    assert registry.load(NAME).threshold == 0.4  # signed and intact: loads
    other = PackagedModel(packaged.pipeline, "binary", threshold=0.99, classes=[0, 1])
    _rewrite_file_and_record(registry, other)
    _every_loader_refuses(registry, "do not match their HMAC signature")
    # the pyfunc loader's own record (model_config in MLmodel) is signed as well
    with pytest.raises(ArtifactIntegrityError, match="do not match their HMAC"), registry.activated():
        mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    # another key is no better than none
    monkeypatch.setenv(SIGNING_KEY_ENV, "guess")
    _every_loader_refuses(registry, "HMAC signature")


def test_without_a_key_a_rewritten_record_is_not_detected(
    registry: ModelRegistry, packaged: PackagedModel
) -> None:
    # the documented limit: hashes alone catch corruption and a swapped file, not a writer of both
    other = PackagedModel(packaged.pipeline, "binary", threshold=0.99, classes=[0, 1])
    _rewrite_file_and_record(registry, other)
    assert registry.load(NAME).threshold == 0.99
    with registry.activated():
        assert (
            mlflow.pyfunc.load_model(f"models:/{NAME}@champion").unwrap_python_model().model.threshold == 0.99
        )


def test_with_a_key_an_unsigned_version_is_refused(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIGNING_KEY_ENV, "s3cret")
    (error, _) = _every_loader_refuses(registry, "no HMAC signature is recorded")
    assert error.field == f"{NAME}/1.tags.{SIGNATURE_TAG}"
    with pytest.raises(ArtifactIntegrityError, match="no HMAC signature"), registry.activated():
        mlflow.pyfunc.load_model(f"models:/{NAME}@champion")


def test_a_record_pointing_outside_the_workspace_is_refused(registry: ModelRegistry) -> None:
    registry.client.set_model_version_tag(NAME, "1", PATH_TAG, "../../elsewhere")
    (error, _) = _every_loader_refuses(registry, "outside the workspace")
    assert error.received == "../../elsewhere"


def test_a_file_swapped_right_after_the_check_is_not_unpickled(
    registry: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlsd.store import registry as registry_module

    marker = tmp_path / "pwned"
    real = registry_module.verify_manifest

    def check_then_swap(*args: object, **kwargs: object) -> None:
        real(*args, **kwargs)  # type: ignore[arg-type]
        _joblib(registry).write_bytes(pickle.dumps(_RunsCode(marker)))

    monkeypatch.setattr(registry_module, "verify_manifest", check_then_swap)
    with pytest.raises(ArtifactIntegrityError, match="changed while it was being checked"):
        registry.load(NAME)
    assert not marker.exists()


def test_mlflows_own_loader_leaves_a_model_that_still_verifies(registry: ModelRegistry) -> None:
    # loading models:/NAME@ALIAS writes registered_model_meta into the model's folder
    with registry.activated():
        mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    assert (_folder(registry) / "registered_model_meta").is_file()
    assert registry.load(NAME).threshold == 0.4

"""Registry round trip in a temporary workspace with a real (tiny) sklearn pipeline."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking._model_registry import utils as registry_utils
from mlflow.tracking._tracking_service import utils as tracking_utils
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlsd.errors import ArtifactIntegrityError, RegistryError
from mlsd.store import ModelRegistry, ModelVersionInfo, PackagedModel


def _rows(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame(
        {
            "distance": rng.integers(100, 3000, n),
            "carrier": rng.choice(["AA", "UA", "DL"], n),
            "temp": rng.normal(50, 10, n),
        }
    )
    y = (rows["distance"] / 3000 + rng.random(n) > 1).astype(int).to_numpy()
    return rows, y


@pytest.fixture(scope="module")
def packaged() -> PackagedModel:
    rows, y = _rows(400)
    features = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["carrier"]), (StandardScaler(), ["distance", "temp"])
    )
    pipe = make_pipeline(features, LogisticRegression()).fit(rows, y)
    return PackagedModel(
        pipeline=pipe,
        task="binary",
        threshold=0.3,
        input_columns=list(rows.columns),
        schema={"columns": {"distance": "int64", "carrier": "string", "temp": "float64"}},
        classes=[0, 1],
        metadata={"design": "flight-delay", "metrics": {"roc_auc": 0.71, "ece": 0.02}},
    )


@pytest.fixture(scope="module")
def workspace(
    tmp_path_factory: pytest.TempPathFactory, packaged: PackagedModel
) -> tuple[ModelRegistry, list]:
    cwd = Path.cwd()
    run_dir = tmp_path_factory.mktemp("cwd")
    os.chdir(run_dir)  # anything written to ./mlruns would land here
    try:
        registry = ModelRegistry(tmp_path_factory.mktemp("ws") / "flight-delay")
        rows, _ = _rows(20, seed=1)
        first = registry.register(
            packaged, "flight-delay", description="first <b>cut</b>", input_example=rows
        )
        second = registry.register(packaged, "flight-delay")
    finally:
        os.chdir(cwd)
    # MLflow 3 defaults to ./mlflow.db (older versions to ./mlruns): neither may appear
    assert not (run_dir / "mlruns").exists() and not (run_dir / "mlflow.db").exists()
    return registry, [first, second]


def test_register_twice_moves_champion(workspace: tuple[ModelRegistry, list]) -> None:
    registry, (first, second) = workspace
    assert isinstance(first, ModelVersionInfo)
    assert (first.version, second.version) == (1, 2)
    assert first.aliases == ["champion"]
    versions = registry.versions("flight-delay")
    assert [v.version for v in versions] == [1, 2]
    assert [v.aliases for v in versions] == [[], ["champion"]]
    assert versions[0].metrics == {"roc_auc": 0.71, "ece": 0.02}
    assert versions[0].description == "first <b>cut</b>"
    assert versions[1].run_id and versions[1].source.startswith("models:/")
    assert versions[1].to_dict()["uri"] == "models:/flight-delay/2"


def test_files_stay_in_workspace(workspace: tuple[ModelRegistry, list]) -> None:
    registry, _ = workspace
    assert (registry.workspace / "mlflow.db").is_file()
    assert any((registry.workspace / "mlartifacts").rglob("packaged_model.joblib"))


def test_load_returns_packaged_model(workspace: tuple[ModelRegistry, list], packaged: PackagedModel) -> None:
    registry, _ = workspace
    loaded = registry.load("flight-delay")
    rows, _ = _rows(50, seed=2)
    assert isinstance(loaded, PackagedModel)
    assert loaded.threshold == 0.3 and loaded.metadata["design"] == "flight-delay"
    pd.testing.assert_frame_equal(loaded.predict_frame(rows), packaged.predict_frame(rows))


def test_pyfunc_champion_predicts_from_raw_rows(
    workspace: tuple[ModelRegistry, list], packaged: PackagedModel
) -> None:
    registry, _ = workspace
    rows, _ = _rows(30, seed=3)
    rows["unused"] = "x"  # extra raw columns are ignored, as in serving
    with registry.activated():
        model = mlflow.pyfunc.load_model(registry.uri("flight-delay"))
        out = model.predict(rows)
    assert list(out.columns) == ["score", "decision"]
    np.testing.assert_allclose(out["score"], packaged.predict_frame(rows)["score"])
    assert (out["decision"] == (out["score"] >= 0.3)).all()
    assert mlflow.get_tracking_uri() != registry.tracking_uri  # restored after the block


def test_set_alias_and_errors(workspace: tuple[ModelRegistry, list]) -> None:
    registry, _ = workspace
    info = registry.set_alias("flight-delay", 1, "challenger")
    assert info.aliases == ["challenger"]
    assert registry.load("flight-delay", alias="challenger").task == "binary"
    with pytest.raises(RegistryError, match=r"no such registered model.*nope.*flight-delay"):
        registry.load("nope")
    with pytest.raises(RegistryError, match=r"no such alias.*staging.*champion -> v2") as err:
        registry.load("flight-delay", alias="staging")
    assert err.value.field == "alias"
    with pytest.raises(RegistryError, match="no such model version"):
        registry.set_alias("flight-delay", 9, "champion")
    with pytest.raises(RegistryError, match="no such registered model"):
        registry.versions("nope")


def test_run_helpers_log_into_workspace(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(RegistryError, match="needs an active run"):
        registry.log_metrics({"auc": 0.5})
    with registry.start_run("flight-delay", "build") as run:
        registry.log_params({"split": {"by": "time"}, "features": ["a", "b"]})
        registry.log_metrics({"valid": {"roc_auc": 0.7}, "skipped": None})
        registry.log_table("tradeoff", [{"name": "logreg", "auc": 0.7}, {"name": "gbdt", "auc": 0.75}])
        (tmp_path / "note.txt").write_text("hello")
        registry.log_artifact(tmp_path / "note.txt")
        with pytest.raises(RegistryError, match="refused to log params"):
            registry.log_params({"split": {"by": "random"}})
        with pytest.raises(RegistryError, match=r"valid.auc: .*received 'high'"):
            registry.log_metrics({"valid": {"auc": "high"}})
    data = registry.client.get_run(run.info.run_id).data
    assert data.params == {"split.by": "time", "features": '["a", "b"]'}
    assert data.metrics == {"valid.roc_auc": 0.7}
    names = {a.path for a in registry.client.list_artifacts(run.info.run_id, "tables")}
    assert names == {"tables/tradeoff.json", "tables/tradeoff.csv"}
    assert any((tmp_path / "mlartifacts").rglob("note.txt"))


def test_register_rejects_non_packaged(workspace: tuple[ModelRegistry, list]) -> None:
    registry, _ = workspace
    with pytest.raises(RegistryError, match="only a PackagedModel"):
        registry.register(object(), "m")  # type: ignore[arg-type]
    assert registry.models() == ["flight-delay"]


def test_activated_restores_unset_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.setenv(var, "x")  # so that monkeypatch restores the variable's absence
        monkeypatch.delenv(var)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    registry = ModelRegistry(tmp_path)
    with registry.activated():
        assert mlflow.get_registry_uri() == registry.tracking_uri
    # nothing pinned: no variable inherited by subprocesses, the registry follows the tracking URI
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    other = f"sqlite:///{tmp_path / 'other.db'}"
    mlflow.set_tracking_uri(other)
    assert mlflow.get_registry_uri() == other
    # a URI the user chose through the environment stays theirs, and stays live
    mlflow.set_tracking_uri(None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    with registry.activated():
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == other and tracking_utils._tracking_uri is None


@pytest.fixture()
def shared_workspace(tmp_path: Path, packaged: PackagedModel) -> ModelRegistry:
    registry = ModelRegistry(tmp_path)
    registry.register(packaged, "m")
    return registry


def test_concurrent_build_registers_next_version(
    shared_workspace: ModelRegistry, packaged: PackagedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a second build on the same workspace that looked before the first one created the
    # experiment and the registered model: both creations then collide
    other = ModelRegistry(shared_workspace.workspace)
    real_get = other.client.get_experiment_by_name
    looked: list[str] = []

    def stale_get(name: str) -> object:
        looked.append(name)
        return None if len(looked) == 1 else real_get(name)

    monkeypatch.setattr(other.client, "get_experiment_by_name", stale_get)
    monkeypatch.setattr(other.client, "search_registered_models", lambda *a, **k: [])
    info = other.register(packaged, "m")
    assert (info.version, info.aliases) == (2, ["champion"])
    assert [v.version for v in shared_workspace.versions("m")] == [1, 2]


def test_failed_alias_leaves_no_half_registered_version(
    shared_workspace: ModelRegistry, packaged: PackagedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise MlflowException("database is locked")

    monkeypatch.setattr(shared_workspace.client, "set_registered_model_alias", refuse)
    with pytest.raises(RegistryError, match="cannot register the model") as err:
        shared_workspace.register(packaged, "m")
    assert err.value.field == "name" and err.value.expected
    versions = shared_workspace.versions("m")
    assert [(v.version, v.aliases) for v in versions] == [(1, ["champion"])]
    assert shared_workspace.load("m").threshold == 0.3


def test_old_pyfunc_path_still_importable() -> None:
    # models logged before the wrapper moved pickled it as mlsd.store.registry.PackagedPyfunc
    from mlsd.store import pyfunc, registry

    assert registry.PackagedPyfunc is pyfunc.PackagedPyfunc


def test_the_read_only_champion_check_sees_what_mlflow_sees(
    tmp_path: Path, packaged: PackagedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # checking the champion (serving, replay, monitoring) reads mlflow.db with sqlite3 and never
    # imports MLflow: its versions, aliases, tags and verdicts must be the client's
    import subprocess
    import sys

    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    from mlsd.store import _tracking, pyfunc
    from mlsd.store import registry as registry_module

    writer = ModelRegistry(tmp_path / "ws")
    for _ in range(3):
        writer.register(packaged, "flight-delay")
    writer.set_alias("flight-delay", 1, "challenger")
    writer.client.delete_model_version("flight-delay", "2")  # a deleted version's rows stay
    writer.register(packaged, "other")

    fresh = ModelRegistry(tmp_path / "ws")
    assert fresh._read_only("flight-delay") is not None
    assert fresh.versions("flight-delay") == writer.versions("flight-delay")
    assert [v.version for v in fresh.versions("flight-delay")] == [1, 3]
    assert fresh.verify("flight-delay", "challenger") == writer.verify("flight-delay", "challenger")
    assert fresh.verify("flight-delay") == writer.verify("flight-delay")  # champion: v3
    assert fresh._client is None, "the read-only path made an MLflow client"
    with monkeypatch.context() as m:  # MLflow workspaces in use: the client decides which rows
        m.setenv("MLFLOW_WORKSPACE", "default")
        assert ModelRegistry(tmp_path / "ws")._read_only("flight-delay") is None
    # what it does not know goes to MLflow's client, which raises as before
    for name, alias in (("nope", "champion"), ("flight-delay", "shadow")):
        with pytest.raises(RegistryError):
            ModelRegistry(tmp_path / "ws").verify(name, alias)
    # a changed file is still refused by the read-only path
    folder = fresh.verify("flight-delay")
    (folder / "MLmodel").write_text((folder / "MLmodel").read_text() + "\n# edited\n")
    with pytest.raises(ArtifactIntegrityError):
        ModelRegistry(tmp_path / "ws").verify("flight-delay")

    code = (
        "import sys; from mlsd.store import ModelRegistry; "
        f"r = ModelRegistry({str(tmp_path / 'ws')!r}); r.versions('flight-delay'); "
        "r.verify('flight-delay', 'challenger'); print('mlflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    # the constants kept here so that checking needs no MLflow import
    assert f"artifacts/{pyfunc.ARTIFACT_KEY}.joblib" == registry_module._PACKAGED_FILE
    assert ErrorCode.Name(RESOURCE_ALREADY_EXISTS) == _tracking._ALREADY_EXISTS

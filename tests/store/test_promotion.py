"""Promotion and rollback in a real MLflow registry: aliases and the champion history tag.

One workspace with three registered versions is built per module (v1 and v2 registered as
champion, v3 as challenger); each test works on its own copy of it (a moved workspace is a
supported case), so the tests do not depend on each other's order.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression

from mlsd.errors import RegistryError
from mlsd.store import ModelRegistry, PackagedModel
from mlsd.store.registry import CHAMPION_HISTORY_TAG


def tiny_model(c: float) -> PackagedModel:
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"x": rng.normal(size=60)})
    y = (rows["x"] + rng.normal(scale=0.5, size=60) > 0).astype(int).to_numpy()
    return PackagedModel(
        pipeline=LogisticRegression(C=c).fit(rows, y),
        task="binary",
        threshold=0.5,
        input_columns=["x"],
        schema={"columns": {"x": "float64"}},
        classes=[0, 1],
        metadata={"c": c},
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("built") / "ws"
    registry = ModelRegistry(folder)
    registry.register(tiny_model(1.0), "m")
    registry.register(tiny_model(0.5), "m")
    registry.register(tiny_model(0.1), "m", alias="challenger")
    return folder


@pytest.fixture
def registry(built: Path, tmp_path: Path) -> ModelRegistry:
    copy = tmp_path / "ws"
    shutil.copytree(built, copy)
    return ModelRegistry(copy)


def test_register_as_champion_appends_to_the_history(registry: ModelRegistry) -> None:
    assert registry.alias_versions("m") == {"champion": 2, "challenger": 3}
    assert registry.champion_history("m") == [1, 2]  # v3 was registered as challenger only
    tag = registry.client.get_registered_model("m").tags[CHAMPION_HISTORY_TAG]
    assert json.loads(tag) == [1, 2]


def test_promote_then_rollback_walks_the_history(registry: ModelRegistry) -> None:
    assert registry.promote("m") == (2, 3)
    assert registry.alias_versions("m") == {"champion": 3, "challenger": 3}
    assert registry.champion_history("m") == [1, 2, 3]
    assert registry.load("m").metadata == {"c": 0.1}  # the champion really is v3 now
    assert registry.promote("m") == (3, 3)  # already champion: nothing changes
    assert registry.champion_history("m") == [1, 2, 3]
    assert registry.rollback("m") == (3, 2)
    assert registry.alias_versions("m")["champion"] == 2
    assert registry.load("m").metadata == {"c": 0.5}
    assert registry.rollback("m") == (2, 1)
    assert registry.champion_history("m") == [1]
    with pytest.raises(RegistryError, match="no previous champion") as caught:
        registry.rollback("m")
    assert caught.value.field == CHAMPION_HISTORY_TAG
    assert registry.alias_versions("m")["champion"] == 1


def test_promote_any_alias_and_refuse_unknown_ones(registry: ModelRegistry) -> None:
    registry.set_alias("m", 1, "candidate-b")
    assert registry.promote("m", alias="candidate-b") == (2, 1)
    assert registry.champion_history("m") == [1, 2, 1]
    assert registry.rollback("m") == (1, 2)
    with pytest.raises(RegistryError, match="no such alias") as caught:
        registry.promote("m", alias="nobody")
    assert caught.value.field == "alias"
    with pytest.raises(RegistryError):
        registry.promote("m", alias="champion")
    with pytest.raises(RegistryError, match="no such registered model"):
        registry.alias_versions("other")


def test_a_champion_moved_outside_mlsd_rolls_back_to_the_one_before(registry: ModelRegistry) -> None:
    registry.client.set_registered_model_alias("m", "champion", "3")  # e.g. in MLflow's UI
    assert registry.rollback("m") == (3, 2)
    assert registry.rollback("m") == (2, 1)


def test_a_registry_from_before_the_history_keeps_its_champion(registry: ModelRegistry) -> None:
    registry.client.delete_registered_model_tag("m", CHAMPION_HISTORY_TAG)
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("m")
    assert registry.promote("m") == (2, 3)
    assert registry.champion_history("m") == [2, 3]  # the old champion starts the history
    assert registry.rollback("m") == (3, 2)


def test_without_a_champion_promote_starts_one_and_rollback_refuses(registry: ModelRegistry) -> None:
    registry.client.delete_registered_model_alias("m", "champion")
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback("m")
    assert registry.promote("m") == (None, 3)


def test_a_broken_history_tag_is_an_error_naming_the_tag(registry: ModelRegistry) -> None:
    registry.client.set_registered_model_tag("m", CHAMPION_HISTORY_TAG, "not json")
    with pytest.raises(RegistryError) as caught:
        registry.rollback("m")
    assert caught.value.field == CHAMPION_HISTORY_TAG


def test_a_failed_history_write_leaves_the_previous_champion(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise MlflowException("database is locked")

    monkeypatch.setattr(registry.client, "set_registered_model_tag", refuse)
    with pytest.raises(RegistryError, match="cannot register"):
        registry.register(tiny_model(2.0), "m")
    assert registry.alias_versions("m") == {"champion": 2, "challenger": 3}
    with pytest.raises(RegistryError, match="cannot move the champion"):
        registry.promote("m")
    assert registry.alias_versions("m") == {"champion": 2, "challenger": 3}
    with pytest.raises(RegistryError, match="cannot move the champion"):
        registry.rollback("m")
    assert registry.alias_versions("m")["champion"] == 2
    monkeypatch.undo()
    assert registry.champion_history("m") == [1, 2]
    assert registry.promote("m") == (2, 3)

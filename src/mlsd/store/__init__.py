"""Storage of what a build produces and a server sees: the model registry and the prediction log.

``PackagedModel`` is the object that is registered, loaded and served: a fitted raw-rows
pipeline plus task, threshold, input columns, schema, classes and metadata.
``ModelRegistry`` keeps its versions and aliases (champion, challenger) in the workspace's
``mlflow.db`` and ``mlartifacts/``. The registry imports MLflow, which takes seconds, so it
is imported on first use: ``from mlsd.store import PackagedModel`` stays fast.

``PredictionLog`` is the durable log of every served prediction (``PredictionRecord``),
every HTTP call (``RequestRecord``), every feedback outcome and every shadow answer
(``ShadowRecord``), plus the shared rollout state and its events, behind any SQLAlchemy URL
(SQLite WAL ``predictions.db`` in the workspace by default), written by group commit.

>>> from mlsd.store import ModelRegistry, PackagedModel
>>> from mlsd.store import PredictionLog
>>> ModelRegistry.__name__, PackagedModel.__name__, PredictionLog.__name__
('ModelRegistry', 'PackagedModel', 'PredictionLog')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlsd.store.files import write_json_atomic
from mlsd.store.packaged import PackagedModel
from mlsd.store.prediction_log import PredictionLog, PredictionRecord, RequestRecord, ShadowRecord

if TYPE_CHECKING:
    from mlsd.store.registry import ModelRegistry, ModelVersionInfo

__all__ = [
    "ModelRegistry",
    "ModelVersionInfo",
    "PackagedModel",
    "PredictionLog",
    "PredictionRecord",
    "RequestRecord",
    "ShadowRecord",
    "write_json_atomic",
]

_LAZY = {"ModelRegistry", "ModelVersionInfo"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from mlsd.store import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'mlsd.store' has no attribute {name!r}")

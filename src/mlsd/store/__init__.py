"""Storage of what a build produces: the model registry (MLflow, SQLite by default).

``PackagedModel`` is the object that is registered, loaded and served: a fitted raw-rows
pipeline plus task, threshold, input columns, schema, classes and metadata.
``ModelRegistry`` keeps its versions and aliases (champion, challenger) in the workspace's
``mlflow.db`` and ``mlartifacts/``. The registry imports MLflow, which takes seconds, so it
is imported on first use: ``from mlsd.store import PackagedModel`` stays fast.

>>> from mlsd.store import ModelRegistry, PackagedModel
>>> ModelRegistry.__name__, PackagedModel.__name__
('ModelRegistry', 'PackagedModel')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlsd.store.packaged import PackagedModel

if TYPE_CHECKING:
    from mlsd.store.registry import ModelRegistry, ModelVersionInfo

__all__ = ["ModelRegistry", "ModelVersionInfo", "PackagedModel"]

_LAZY = {"ModelRegistry", "ModelVersionInfo"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from mlsd.store import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'mlsd.store' has no attribute {name!r}")

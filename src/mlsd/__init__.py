"""mlsd: an ML system design, executable.

Write the five segments of a design review (goals, data, features, models and deployment,
monitoring) as one ``design.yaml``; mlsd builds, evaluates, registers and documents the system.

The public API:

- :func:`load_design` / :class:`Design`: the typed design file;
- :class:`System`: build, report and inspect one design's workspace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mlsd._threads  # noqa: F401  first: OpenMP reads its settings when it loads
from mlsd.design import Design, load_design
from mlsd.errors import MlsdError

if TYPE_CHECKING:
    from mlsd.system import System

__all__ = ["Design", "MlsdError", "System", "load_design"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # System pulls in the stage libraries (sklearn, MLflow); import it only when asked for.
    if name == "System":
        from mlsd.system import System

        return System
    raise AttributeError(name)

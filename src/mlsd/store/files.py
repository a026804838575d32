"""Files of the workspace written so that a crash never leaves half of one behind.

>>> import tempfile, pathlib, numpy as np
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = write_json_atomic(pathlib.Path(tmp) / "a" / "x.json", {"n": np.int64(3)})
...     path.read_text().replace(" ", "").replace("\\n", "")
'{"n":3}'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["write_json_atomic"]


def write_json_atomic(path: Path, payload: Any) -> Path:
    """Write ``payload`` as JSON beside ``path`` and rename it into place (the parent is made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default))
    tmp.replace(path)  # atomic on one file system: readers see the old file or the new one
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

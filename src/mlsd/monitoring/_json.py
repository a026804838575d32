"""JSON-ready values for monitoring results (numpy -> Python, timestamps -> ISO, NaN -> null).

>>> import numpy as np
>>> jsonable({"p": np.float64(0.5), "n": np.int64(3), "auc": float("nan"), "ts": [np.nan]})
{'p': 0.5, 'n': 3, 'auc': None, 'ts': [None]}
>>> finite_or_none(np.inf) is None, finite_or_none(np.float32(2.0))
(True, 2.0)
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["finite_or_none", "jsonable"]


def finite_or_none(v: Any) -> float | None:
    """A finite float, or ``None`` for a missing, NaN or infinite number."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def jsonable(v: Any) -> Any:
    """Plain JSON types, recursively: numpy -> Python, timestamps -> ISO strings, NaN/inf -> None."""
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | np.ndarray):
        return [jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, pd.Timestamp | dt.datetime):
        return pd.Timestamp(v).isoformat()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v

"""Label lag: how long natural labels take to arrive, and which windows can be judged yet.

Feedback is joined to its prediction by request id (``PredictionLog.read_predictions`` does it);
a prediction's label delay is ``feedback_at - event time`` (``logged_at`` where the row has no
event time). Per window, :func:`label_lag` reports the median and 90th percentile delay of the
labelled rows, the share still unlabelled, and whether the window is **mature**: its end lies
at least ``monitoring.label_maturity`` before the newest event of the log (the log's "now" on
the event-time axis, so a replay of months judges windows as live traffic would). A window that
is not mature has had no time to receive its labels: its performance is not judged (not
computed, no alert), so late feedback is not mistaken for a performance drop.

>>> import pandas as pd
>>> t = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00"], utc=True)
>>> frame = pd.DataFrame({"event_time": t, "logged_at": t,
...     "feedback_at": [t[0] + pd.Timedelta("2h"), t[1] + pd.Timedelta("4h"), pd.NaT]})
>>> lag = label_lag(frame, end=pd.Timestamp("2024-01-02", tz="UTC"),
...                 as_of=pd.Timestamp("2024-01-09", tz="UTC"), maturity=pd.Timedelta("3d"))
>>> lag.median_delay_s / 3600, lag.p90_delay_s / 3600, round(lag.share_unlabelled, 3), lag.mature
(3.0, 3.8, 0.333, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlsd.monitoring._json import jsonable

__all__ = ["LabelLag", "event_times", "label_lag"]


@dataclasses.dataclass(frozen=True)
class LabelLag:
    """One window's label delays (seconds) and maturity (``None`` without a maturity set)."""

    n: int
    n_labelled: int
    share_unlabelled: float | None
    median_delay_s: float | None
    p90_delay_s: float | None
    mature: bool | None
    maturity_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelLag:
        fields: dict[str, Any] = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        return cls(**fields)


def event_times(frame: pd.DataFrame) -> pd.Series:
    """Each row's event time, its logging time where it has none (tz-aware UTC)."""
    logged = pd.to_datetime(frame["logged_at"], utc=True) if "logged_at" in frame.columns else None
    if "event_time" not in frame.columns:
        return (
            logged
            if logged is not None
            else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
        )
    t = pd.to_datetime(frame["event_time"], utc=True)
    return t if logged is None else t.where(t.notna(), logged.astype(t.dtype))  # one time unit for both


def label_lag(
    frame: pd.DataFrame,
    *,
    end: pd.Timestamp | None,
    as_of: pd.Timestamp | None,
    maturity: pd.Timedelta | None,
) -> LabelLag:
    """The label lag of the predictions ``frame`` (read_predictions columns) of a window ending at ``end``."""
    n = len(frame)
    if "feedback_at" in frame.columns and n:
        arrived = pd.to_datetime(frame["feedback_at"], utc=True)
        at = event_times(frame)
        delay = (arrived.astype(at.dtype) - at).dt.total_seconds().to_numpy(dtype=float)
    else:
        delay = np.full(n, np.nan)
    known = delay[np.isfinite(delay)]
    median, p90 = np.quantile(known, [0.5, 0.9]).tolist() if known.size else (None, None)
    mature = None
    if maturity is not None:
        mature = bool(end is not None and as_of is not None and end + maturity <= as_of)
    return LabelLag(
        n=n,
        n_labelled=int(known.size),
        share_unlabelled=(n - known.size) / n if n else None,
        median_delay_s=median,
        p90_delay_s=p90,
        mature=mature,
        maturity_s=None if maturity is None else float(maturity.total_seconds()),
    )

"""Labelled traffic from the prediction log, as training rows: what ``mlsd retrain`` learns from.

The log keeps every prediction's inputs (as the server received them, after ``data.privacy``),
its event time and, once feedback arrived, its outcome. :func:`labelled_traffic` turns the
labelled predictions into rows shaped like the design's training split (the input columns, the
label under ``goals.target`` and ``data.time``) and cuts them by event time into three: the
newest ``holdout`` (where the challenger and the champion are compared, on traffic neither was
trained on), the ``holdout`` before it (where the retrained candidates are chosen and their
thresholds set, so the choice reads today's labels rather than the build's), and the rest,
which joins the training data.

>>> import pandas as pd
>>> log = pd.DataFrame({"request_id": ["a", "b", "c", "d"], "outcome": [1, None, 0, 1],
...     "event_time": pd.to_datetime(["2013-05-01", "2013-05-02", "2013-05-20", "2013-05-28"], utc=True),
...     "variant": "champion", "distance": [100.0, 200.0, 300.0, 400.0]})
>>> t = labelled_traffic(log, ["distance"], target="label", time_column="time_hour", holdout="1w")
>>> t.train["distance"].tolist(), t.valid["distance"].tolist(), t.holdout["distance"].tolist()
([100.0], [300.0], [400.0])
>>> t.valid_from.date().isoformat(), t.holdout_from.date().isoformat()
('2013-05-14', '2013-05-21')
>>> t.train.columns.tolist()
['distance', 'label', 'time_hour']
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from mlsd.design import parse_duration
from mlsd.errors import DataError

__all__ = ["LabelledTraffic", "cast_like", "labelled_traffic"]


@dataclasses.dataclass
class LabelledTraffic:
    """Labelled predictions as rows of the training split's shape, cut by event time."""

    train: pd.DataFrame  # older than valid_from: joins the training data
    valid: pd.DataFrame  # [valid_from, holdout_from): the retrained candidates are chosen on it
    holdout: pd.DataFrame  # from holdout_from on: the challenger and the champion are compared on it
    valid_from: pd.Timestamp
    holdout_from: pd.Timestamp
    n_unlabelled: int  # predictions in the log whose outcome has not arrived

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts and dates, for the document and ``mlsd retrain --json``."""
        return {
            "train_rows": len(self.train),
            "valid_rows": len(self.valid),
            "holdout_rows": len(self.holdout),
            "valid_from": self.valid_from.isoformat(),
            "holdout_from": self.holdout_from.isoformat(),
            "unlabelled": self.n_unlabelled,
        }


def labelled_traffic(
    predictions: pd.DataFrame,
    input_columns: list[str],
    *,
    target: str,
    time_column: str | None,
    holdout: str,
    like: pd.DataFrame | None = None,
) -> LabelledTraffic:
    """The labelled rows of ``predictions`` (``PredictionLog.read_predictions``), cut at
    ``newest event time - holdout`` and one ``holdout`` before that.

    A logged input column named like a log column is read from ``input_<name>``. ``like`` (the
    training split) gives each column its dtype there, so the rows concatenate cleanly: a
    timezone-naive time column stays naive, an integer label stays an integer.
    """
    labelled = predictions[predictions["outcome"].notna()]
    missing = [c for c in input_columns if _logged(predictions, c) is None]
    if missing:
        raise DataError(
            "the prediction log does not hold every input column of the design",
            field="features",
            received=missing,
            expected="predictions logged by a server of this design",
        )
    times = pd.to_datetime(labelled["event_time"], utc=True)
    if "logged_at" in labelled:  # a request without data.time is placed at the time it was received
        times = times.fillna(pd.to_datetime(labelled["logged_at"], utc=True))
    columns = {c: labelled[_logged(predictions, c)] for c in input_columns}
    rows = pd.DataFrame(columns, index=labelled.index)
    rows[target] = labelled["outcome"].to_numpy()
    if time_column is not None and time_column not in rows:
        rows[time_column] = times.to_numpy()
    if like is not None:
        rows = cast_like(rows, like)
    newest = times.max() if len(times) else pd.Timestamp.now(tz="UTC")
    cut = newest - parse_duration(holdout)
    valid_from = cut - parse_duration(holdout)
    old, recent = (times < valid_from).to_numpy(), (times >= cut).to_numpy()
    return LabelledTraffic(
        train=rows[old].reset_index(drop=True),
        valid=rows[~old & ~recent].reset_index(drop=True),
        holdout=rows[recent].reset_index(drop=True),
        valid_from=valid_from,
        holdout_from=cut,
        n_unlabelled=int(len(predictions) - len(labelled)),
    )


def _logged(predictions: pd.DataFrame, column: str) -> str | None:
    for name in (f"input_{column}", column):
        if name in predictions.columns:
            return name
    return None


def cast_like(rows: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with each column in the dtype ``like`` has for it (time, bool and numbers; text and
    categories as they are), so that concatenating the two keeps the training split's types."""
    out = {}
    for column in rows.columns:
        values = rows[column]
        if column not in like.columns:
            out[column] = values
            continue
        dtype = like[column].dtype
        if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(dtype):
            t = pd.to_datetime(values, utc=True)
            out[column] = t if isinstance(dtype, pd.DatetimeTZDtype) else t.dt.tz_localize(None)
        elif pd.api.types.is_bool_dtype(dtype):
            out[column] = values.astype(bool)
        elif pd.api.types.is_numeric_dtype(dtype):
            number = pd.to_numeric(values, errors="coerce")  # a missing value makes an int column float
            out[column] = number.astype(dtype if number.notna().all() else float)
        else:  # text and categories stay as logged: a category seen only in traffic is kept
            out[column] = values
    return pd.DataFrame(out, index=rows.index)

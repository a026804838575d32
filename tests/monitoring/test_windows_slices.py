"""Windows are cut as slices of the frame; they must be what ``groupby`` on the window starts gives."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlsd.monitoring.monitor import _windows, assign_windows


@pytest.mark.parametrize("shuffled", [False, True])
def test_window_slices_equal_the_groupby(shuffled: bool) -> None:
    rng = np.random.default_rng(0)
    times = pd.Series(
        pd.to_datetime("2024-01-01", utc=True) + pd.to_timedelta(rng.integers(0, 90 * 24, 2_000), "h")
    )
    times = times.sort_values(ignore_index=True)
    if shuffled:
        times = times.sample(frac=1.0, random_state=1, ignore_index=True)
        times[::97] = pd.NaT  # rows without a time belong to no window
    frame = pd.DataFrame(
        {"t": times, "x": rng.normal(size=len(times)), "c": rng.choice(list("abc"), len(times))}
    )
    starts = assign_windows(frame["t"], dt.timedelta(weeks=1))
    expected = {pd.Timestamp(k): part for k, part in frame.groupby(starts, sort=True)}
    got = _windows(frame, starts)
    assert list(got) == list(expected)
    for key, part in expected.items():
        pd.testing.assert_frame_equal(got[key], part)

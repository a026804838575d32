"""bench/serving_wrk.py's request bodies: one valid JSON document a line, one row each, in each
server's shape (the Lua script sends the lines as they are), and the /proc/stat arithmetic."""

from __future__ import annotations

import doctest
import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from mlsd.serving.replay import json_records
from support import ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("serving_wrk", ROOT / "bench" / "serving_wrk.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_body_lines_are_one_json_row_each_in_each_servers_shape(bench) -> None:
    rows = pd.DataFrame(
        {
            "carrier": ["UA", None, "B6"],
            "distance": [1400.0, np.nan, 200.0],
            "time_hour": pd.to_datetime(["2013-11-01 05:00", None, "2013-12-31 23:00"]),
        }
    )
    records = json_records(rows)
    for server, unwrap in (
        ("mlsd", lambda b: b["inputs"]),
        ("bentoml", lambda b: b["inputs"]),
        ("mlflow", lambda b: b["dataframe_records"][0]),
    ):
        lines = bench.body_lines(records, server).splitlines()
        assert len(lines) == len(rows)
        assert [unwrap(json.loads(line)) for line in lines] == records
    second = json.loads(bench.body_lines(records, "mlsd").splitlines()[1])["inputs"]
    assert second == {"carrier": None, "distance": None, "time_hour": None}
    # a NaN that escaped json_records would be invalid JSON on the wire: refused, not sent
    with pytest.raises(ValueError):
        bench.body_lines([{"distance": float("nan")}], "mlsd")


def test_idle_share_from_proc_stat_deltas(bench) -> None:
    before = {"cpu": [100, 0, 50, 800, 50, 0, 0, 0], "cpu0": [10, 0, 0, 90, 0, 0, 0, 0]}
    after = {"cpu": [200, 0, 100, 900, 50, 0, 0, 50], "cpu0": [110, 0, 0, 90, 0, 0, 0, 0]}
    shares = bench.idle_shares(before, after)
    assert shares["cpu"] == {"idle": 100 / 300, "steal": 50 / 300}
    assert shares["cpu0"] == {"idle": 0.0, "steal": 0.0}
    assert set(bench.cpu_times()) >= {"cpu", "cpu0"}


def test_the_bench_module_doctests_pass(bench) -> None:
    assert doctest.testmod(bench).failed == 0

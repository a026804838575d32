"""`mlsd simulate` refuses what it cannot run before reading data, and writes the designs it serves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from ruamel.yaml import YAML

from mlsd._simulate import SimulationSpec, _write_designs, check_spec
from mlsd.design import load_design
from mlsd.errors import DesignError
from support import ROOT, write_tiny_design

FLIGHTS = ROOT / "examples" / "flights" / "design.yaml"
START, END = pd.Timestamp("2013-05-01", tz="UTC"), pd.Timestamp("2013-07-01", tz="UTC")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"end": pd.Timestamp("2013-04-01", tz="UTC")}, "--end"),
        ({"sample": 0.0}, "--sample"),
        ({"policies": ("never", "weekly")}, "--policies"),
        ({"plant_bad_challenger": 9}, "--plant-bad-challenger"),  # 9 windows: 0..8
    ],
)
def test_bad_options_are_refused_naming_the_option(change: dict, field: str) -> None:
    spec = SimulationSpec(**{"start": START, "end": END, **change})
    with pytest.raises(DesignError) as err:
        check_spec(load_design(FLIGHTS), spec)
    assert err.value.field == field


def test_a_design_without_event_time_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DesignError) as err:
        check_spec(load_design(write_tiny_design(tmp_path)), SimulationSpec(start=START, end=END))
    assert err.value.field == "data.time"


def test_the_served_designs_keep_the_design_and_change_only_split_and_deployment(tmp_path: Path) -> None:
    spec = SimulationSpec(start=START, end=END, plant_bad_challenger=2)
    files = _write_designs(FLIGHTS, spec, tmp_path, first=pd.Timestamp("2013-01-01", tz="UTC"))
    yaml = YAML(typ="safe", pure=True)
    original = yaml.load(FLIGHTS.read_text())
    single, canary, bad = (yaml.load(files[k].read_text()) for k in ("single", "canary", "bad"))
    # 120 days before start: validation from 40% before the end, test from 20%
    assert single["data"]["split"] == {"by": "time", "valid_from": "2013-03-14", "test_from": "2013-04-07"}
    assert single["data"]["join"][0]["on"] == ["origin", "time_hour"]  # YAML 1.2: `on` is a key, not True
    assert single["deployment"] == {"strategy": "single", "state_refresh_s": 0.5}
    wanted = {
        k: original["deployment"][k] for k in ("steps", "step_min_requests", "step_min_labelled", "sticky_by")
    }
    assert {k: canary["deployment"][k] for k in wanted} == wanted and canary["deployment"][
        "strategy"
    ] == "canary"
    assert bad["data"]["label"] == f"not ({original['data']['label']})"
    for key in ("goals", "features", "models", "monitoring"):
        assert single[key] == original[key] == canary[key]
    for path in files.values():  # each one is a design mlsd loads
        assert load_design(path).name == original["name"]

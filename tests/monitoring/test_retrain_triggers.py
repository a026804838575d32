"""``monitoring.retrain``: each trigger fires on its side of its bound and says why."""

from __future__ import annotations

import datetime as dt

import pytest

from mlsd.design import RetrainSpec
from mlsd.errors import DesignError
from mlsd.monitoring.retrain_triggers import TRIGGERS, check_trigger, required_key

SPEC = RetrainSpec(drifted_share_above=0.25, metric_worse_than=0.7, every="2w")
# (trigger, measurement on the firing side, on the other side)
SIDES = {
    "drift": ({"drifted_share": 0.26}, {"drifted_share": 0.25}),
    "performance": (
        {"metric": "roc_auc", "metric_value": 0.69},
        {"metric": "roc_auc", "metric_value": 0.70},
    ),
    "schedule": ({"champion_age": dt.timedelta(days=14, seconds=1)}, {"champion_age": dt.timedelta(days=14)}),
}


@pytest.mark.parametrize("trigger", [t for t in TRIGGERS if t != "manual"])
def test_every_trigger_fires_only_beyond_its_bound(trigger: str) -> None:
    fires, holds = SIDES[trigger]  # a new trigger without a row here fails this test
    assert check_trigger(SPEC, trigger, **fires).fired
    decision = check_trigger(SPEC, trigger, **holds)
    assert not decision.fired and decision.reason


def test_lower_is_better_metrics_fire_above_the_bound() -> None:
    spec = RetrainSpec(metric_worse_than=3.0)
    assert check_trigger(spec, "performance", metric="rmse", metric_value=3.1).fired
    assert not check_trigger(spec, "performance", metric="rmse", metric_value=2.9).fired


def test_missing_measurements_do_not_fire() -> None:
    for trigger in ("drift", "performance", "schedule"):
        assert not check_trigger(SPEC, trigger).fired


def test_a_trigger_without_its_key_and_an_unknown_trigger_are_refused() -> None:
    with pytest.raises(DesignError) as err:
        check_trigger(RetrainSpec(), "drift", drifted_share=0.9)
    assert err.value.field == f"monitoring.retrain.{required_key('drift')}"
    with pytest.raises(DesignError) as err:
        check_trigger(SPEC, "hourly")
    assert err.value.field == "--trigger" and err.value.received == "hourly"
    assert check_trigger(None, "manual").fired

"""``monitoring.retrain``: whether a trigger fires, read off a monitoring run and the champion's age.

Three rules, each optional (docs/retraining.md):

* ``drift``: the latest window's share of drifted features (after the design's multiple-testing
  correction and effect thresholds) is above ``drifted_share_above``;
* ``performance``: ``goals.metric`` on the latest window's labelled traffic is worse than
  ``metric_worse_than`` (the window's performance measurement, with its label coverage);
* ``schedule``: the champion was registered longer ago than ``every``.

``manual`` always fires. :func:`check_trigger` says which fired and why in one sentence, which
``mlsd retrain`` prints and the challenger's document keeps.

>>> from mlsd.design import RetrainSpec
>>> spec = RetrainSpec(drifted_share_above=0.3, every="4w")
>>> check_trigger(spec, "drift", drifted_share=0.5).describe()
'drift: 50% of the features drifted in the latest window (more than 30%)'
>>> import datetime as dt
>>> check_trigger(spec, "schedule", champion_age=dt.timedelta(days=10)).fired
False
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from mlsd.design import RetrainSpec, parse_duration
from mlsd.errors import DesignError

__all__ = ["PERFORMANCE_METRICS", "TRIGGERS", "TriggerDecision", "check_trigger", "required_key"]

TRIGGERS = ("manual", "drift", "performance", "schedule")
# goals.metric values a monitoring window measures on labelled traffic (PerformanceResult fields),
# and whether larger is better
PERFORMANCE_METRICS = {"roc_auc": True, "accuracy": True, "rmse": False, "mae": False}
_KEY = {"drift": "drifted_share_above", "performance": "metric_worse_than", "schedule": "every"}


@dataclasses.dataclass(frozen=True)
class TriggerDecision:
    trigger: str
    fired: bool
    reason: str

    def describe(self) -> str:
        return f"{self.trigger}: {self.reason}"


def required_key(trigger: str) -> str | None:
    """The ``monitoring.retrain`` key a trigger reads (``None`` for manual)."""
    return _KEY.get(trigger)


def check_trigger(
    spec: RetrainSpec | None,
    trigger: str,
    *,
    drifted_share: float | None = None,
    metric: str | None = None,
    metric_value: float | None = None,
    champion_age: dt.timedelta | None = None,
) -> TriggerDecision:
    """Whether ``trigger`` fires, given the measurements it reads."""
    if trigger not in TRIGGERS:
        raise DesignError(
            "unknown retrain trigger", field="--trigger", received=trigger, expected=", ".join(TRIGGERS)
        )
    if trigger == "manual":
        return TriggerDecision(trigger, True, "asked for by hand")
    key = _KEY[trigger]
    bound = getattr(spec, key) if spec is not None else None
    if bound is None:
        raise DesignError(
            f"the {trigger} trigger needs monitoring.retrain.{key}",
            field=f"monitoring.retrain.{key}",
            received=None,
            expected="a value in the design (docs/retraining.md)",
        )
    if trigger == "drift":
        if drifted_share is None:
            return TriggerDecision(trigger, False, "no monitoring window measured drift")
        fired = drifted_share > bound
        word = "more" if fired else "not more"
        return TriggerDecision(
            trigger,
            fired,
            f"{drifted_share:.0%} of the features drifted in the latest window ({word} than {bound:.0%})",
        )
    if trigger == "performance":
        if metric_value is None:
            return TriggerDecision(
                trigger, False, f"no labelled traffic in the latest window to measure {metric}"
            )
        greater = PERFORMANCE_METRICS.get(str(metric), True)
        fired = metric_value < bound if greater else metric_value > bound
        side = ("below" if greater else "above") if fired else ("not below" if greater else "not above")
        return TriggerDecision(
            trigger,
            fired,
            f"{metric} {metric_value:.4f} on the latest window's labelled traffic ({side} {bound:g})",
        )
    every = parse_duration(str(bound))
    if champion_age is None:
        return TriggerDecision(trigger, False, "the champion's registration time is unknown")
    fired = champion_age > every
    days = champion_age.total_seconds() / 86400
    return TriggerDecision(
        trigger,
        fired,
        f"the champion is {days:.1f} days old ({'older' if fired else 'not older'} than {bound})",
    )

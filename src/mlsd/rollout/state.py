"""The shared rollout state every server process reads: current weights and the canary's step.

It is stored as JSON in the prediction log (``PredictionLog.read_state/write_state``, keyed by
the registered model name), so :meth:`RolloutState.to_dict` returns only JSON types and
:meth:`RolloutState.from_dict` refuses anything else with a clear error.

What ``weights`` means depends on the strategy (:func:`initial_state`):

- ``ab``: the traffic split by alias (from ``deployment.traffic``; ``/v1/admin/traffic`` moves it);
- ``canary``: ``{champion: 100 - p, challenger: p}`` with ``p`` the current step's percent
  (informational: the router reads ``steps[canary_step]`` and ``rolled_back``);
- ``single``, ``shadow``, ``bandit``: ``{champion: 100}`` -- the alias that answers when nothing
  else applies (shadow scores the challenger beside it; a bandit's split comes from its arms).

>>> from mlsd.design import DeploymentSpec
>>> s = initial_state(DeploymentSpec(strategy="canary", steps=[5, 50, 100]))
>>> s.weights
{'champion': 95.0, 'challenger': 5.0}
>>> RolloutState.from_dict(s.to_dict()) == s
True
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mlsd._deployment import DeploymentSpec
from mlsd.errors import DesignError

__all__ = ["RolloutState", "initial_state"]


@dataclasses.dataclass
class RolloutState:
    """Weights by alias; the canary's step, when it began (ISO 8601 UTC), why it rolled back."""

    weights: dict[str, float]
    canary_step: int = 0
    step_started_at: str | None = None
    rolled_back: str | None = None  # the reason; None while not rolled back
    complete: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (str keys, floats, ints, str/None, bool)."""
        return {
            "weights": {str(k): float(v) for k, v in self.weights.items()},
            "canary_step": int(self.canary_step),
            "step_started_at": self.step_started_at,
            "rolled_back": self.rolled_back,
            "complete": bool(self.complete),
        }

    @classmethod
    def from_dict(cls, data: Any) -> RolloutState:
        """From :meth:`to_dict`'s output; a :class:`DesignError` naming the bad field otherwise.

        >>> RolloutState.from_dict({"weights": {"champion": -1}})
        Traceback (most recent call last):
        ...
        mlsd.errors.DesignError: rollout_state.weights: weights must be finite numbers >= 0 \
(received {'champion': -1}; expected e.g. {'champion': 90, 'challenger': 10})
        """
        if not isinstance(data, dict):
            raise DesignError(
                "the rollout state must be a JSON object",
                field="rollout_state",
                received=type(data).__name__,
                expected="an object with weights",
            )
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise DesignError(
                "unknown keys in the rollout state",
                field="rollout_state",
                received=unknown,
                expected="weights, canary_step, step_started_at, rolled_back, complete",
            )
        weights = data.get("weights")
        ok = isinstance(weights, dict) and all(
            isinstance(k, str)
            and isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and v >= 0
            for k, v in weights.items()
        )
        if not ok:
            raise DesignError(
                "weights must be finite numbers >= 0",
                field="rollout_state.weights",
                received=weights,
                expected="e.g. {'champion': 90, 'challenger': 10}",
            )
        step = data.get("canary_step", 0)
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise DesignError(
                "the canary step must be an integer >= 0",
                field="rollout_state.canary_step",
                received=step,
                expected="0, 1, 2, ...",
            )
        for key in ("step_started_at", "rolled_back"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise DesignError(
                    "must be a string or null",
                    field=f"rollout_state.{key}",
                    received=data[key],
                    expected="a string or null",
                )
        complete = data.get("complete", False)
        if not isinstance(complete, bool):
            raise DesignError(
                "must be true or false",
                field="rollout_state.complete",
                received=complete,
                expected="true or false",
            )
        return cls(
            weights={k: float(v) for k, v in weights.items()},
            canary_step=step,
            step_started_at=data.get("step_started_at"),
            rolled_back=data.get("rolled_back"),
            complete=complete,
        )


def initial_state(spec: DeploymentSpec) -> RolloutState:
    """The state a rollout starts from (see the module's docstring for what weights mean).

    >>> initial_state(DeploymentSpec(strategy="ab", traffic={"champion": 9, "b": 1})).weights
    {'champion': 9.0, 'b': 1.0}
    >>> initial_state(DeploymentSpec(strategy="bandit")).weights
    {'champion': 100.0}
    """
    if spec.strategy == "ab":
        weights = {k: float(v) for k, v in spec.traffic.items()}
    elif spec.strategy == "canary":
        if not spec.steps:
            raise DesignError(
                "a canary needs steps",
                field="deployment.steps",
                received=[],
                expected="increasing percents, e.g. [5, 25, 50, 100]",
            )
        first = float(spec.steps[0])
        weights = {"champion": 100.0 - first, spec.challenger: first}
    else:
        weights = {"champion": 100.0}
    return RolloutState(weights=weights)

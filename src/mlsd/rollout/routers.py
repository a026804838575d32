"""One router per rollout strategy: which alias answers each request, with what probability.

A router is pure: given the request units (the ``sticky_by`` value or the ``X-Mlsd-Unit``
header; None for neither), the shared :class:`~mlsd.rollout.state.RolloutState`, the bandit's
arm stats and a random generator, it returns an :class:`Assignment` per row. The propensity is
the probability of the chosen variant under the router's distribution for that row; for a
sticky row, the weight of its variant (the split the design intends), so inverse-propensity
estimates read the same for sticky and random rows.

Sticky rows hash ``(seed, unit)`` (:func:`~mlsd.rollout.assignment.unit_hash`): every process
agrees, and a unit keeps its variant while the weights stay. Rows without a unit draw from the
generator and are marked ``random``.

>>> import numpy as np
>>> from mlsd.design import DeploymentSpec
>>> from mlsd.rollout.state import initial_state
>>> spec = DeploymentSpec(strategy="ab", traffic={"champion": 50, "challenger": 50}, sticky_by="user")
>>> a = router_for(spec).assign(["u1", None, "u1"], initial_state(spec), None, np.random.default_rng(0))
>>> a.variant[0] == a.variant[2], a.assignment.tolist(), a.propensity.tolist()
(True, ['sticky', 'random', 'sticky'], [0.5, 0.5, 0.5])
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from mlsd._deployment import DeploymentSpec
from mlsd.errors import DesignError
from mlsd.rollout.assignment import choose, normalised, unit_hash
from mlsd.rollout.bandits import ArmStats, Policy, policy_for
from mlsd.rollout.state import RolloutState

__all__ = [
    "STRATEGIES",
    "AbRouter",
    "Assignment",
    "BanditRouter",
    "CanaryRouter",
    "Router",
    "ShadowRouter",
    "SingleRouter",
    "router_for",
]


@dataclasses.dataclass
class Assignment:
    """Per row: the variant chosen, its propensity, the unit, how it was chosen, shadow or not."""

    variant: np.ndarray  # object: alias
    propensity: np.ndarray  # float in (0, 1]
    unit: list[str | None]
    assignment: np.ndarray  # object: "sticky" | "random" | "fixed"
    shadow: np.ndarray  # bool: also score the challenger off the request path

    def __len__(self) -> int:
        return len(self.variant)


def _units(units: Sequence[str | None]) -> tuple[list[str | None], np.ndarray]:
    listed = [None if u is None else str(u) for u in units]
    return listed, np.fromiter((u is not None for u in listed), dtype=bool, count=len(listed))


def _uniforms(
    prefix: int | str, units: list[str | None], has: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The hash of each unit where there is one, a fresh random number elsewhere."""
    u = np.empty(len(units), dtype=float)
    if has.any():
        u[has] = unit_hash(prefix, [x for x in units if x is not None])
    u[~has] = rng.random(int((~has).sum()))
    return u


def _probability_of(share: Mapping[str, float], variant: np.ndarray) -> np.ndarray:
    """Each row's probability of its variant (a vectorised lookup, not a loop over rows)."""
    names = np.array(list(share), dtype=object)
    order = np.argsort(names)
    idx = order[np.searchsorted(names[order], variant)]
    return np.asarray(list(share.values()), dtype=float)[idx]


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


class Router(abc.ABC):
    """Routes rows between the aliases of one strategy."""

    strategy: ClassVar[str]

    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec = spec

    @property
    def variants(self) -> list[str]:
        """The aliases this router may choose, the champion first."""
        return self.spec.routed_aliases()

    @abc.abstractmethod
    def weights(self, state: RolloutState) -> dict[str, float]:
        """The intended split in percent (for the SRM test and ``/v1/admin/state``)."""

    @abc.abstractmethod
    def assign(
        self,
        units: Sequence[str | None],
        state: RolloutState,
        arms: Mapping[str, ArmStats] | None = None,
        rng: np.random.Generator | None = None,
    ) -> Assignment:
        """The assignment of each row."""

    def _weighted(
        self,
        weights: Mapping[str, float],
        units: Sequence[str | None],
        rng: np.random.Generator | None,
        seed: int | str,
    ) -> Assignment:
        """Sticky by unit hash where a unit exists, else random; propensity = the variant's weight."""
        listed, has = _units(units)
        share = normalised(weights, field="rollout_state.weights")
        variant = choose(share, _uniforms(seed, listed, has, _rng(rng)))
        propensity = _probability_of(share, variant)
        return Assignment(
            variant=variant,
            propensity=propensity,
            unit=listed,
            assignment=np.where(has, "sticky", "random").astype(object),
            shadow=np.zeros(len(listed), dtype=bool),
        )


def _fixed(alias: str, units: Sequence[str | None]) -> Assignment:
    listed, _ = _units(units)
    n = len(listed)
    return Assignment(
        variant=np.full(n, alias, dtype=object),
        propensity=np.ones(n),
        unit=listed,
        assignment=np.full(n, "fixed", dtype=object),
        shadow=np.zeros(n, dtype=bool),
    )


class SingleRouter(Router):
    """The champion answers every request."""

    strategy = "single"

    @property
    def variants(self) -> list[str]:
        return ["champion"]

    def weights(self, state: RolloutState) -> dict[str, float]:
        return {"champion": 100.0}

    def assign(
        self,
        units: Sequence[str | None],
        state: RolloutState,
        arms: Mapping[str, ArmStats] | None = None,
        rng: np.random.Generator | None = None,
    ) -> Assignment:
        return _fixed("champion", units)


class ShadowRouter(Router):
    """The champion answers; ``shadow_percent`` of rows are also scored by the challenger.

    The shadow share is sticky by unit (a salt of its own, so it is independent of any A/B
    split of the same seed), random without a unit.
    """

    strategy = "shadow"

    def weights(self, state: RolloutState) -> dict[str, float]:
        return {"champion": 100.0}

    def assign(
        self,
        units: Sequence[str | None],
        state: RolloutState,
        arms: Mapping[str, ArmStats] | None = None,
        rng: np.random.Generator | None = None,
    ) -> Assignment:
        out = _fixed("champion", units)
        _, has = _units(units)
        # "<seed>/shadow" never equals str(int): no seed of an A/B hash collides with it
        u = _uniforms(f"{self.spec.seed}/shadow", out.unit, has, _rng(rng))
        out.shadow = u < self.spec.shadow_percent / 100.0
        return out


class _WeightedRouter(Router):
    """Routes by :meth:`weights`, sticky by ``unit_hash(seed, unit)`` where a unit exists."""

    def assign(
        self,
        units: Sequence[str | None],
        state: RolloutState,
        arms: Mapping[str, ArmStats] | None = None,
        rng: np.random.Generator | None = None,
    ) -> Assignment:
        return self._weighted(self.weights(state), units, rng, self.spec.seed)


class CanaryRouter(_WeightedRouter):
    """``steps[canary_step]`` percent to the challenger (0 once rolled back).

    Sticky by unit: the champion takes ``u < 1 - p``, so as ``p`` grows units only move from
    the champion to the challenger, never back.
    """

    strategy = "canary"

    def percent(self, state: RolloutState) -> float:
        """The challenger's percent in this state."""
        if state.rolled_back is not None or not self.spec.steps:
            return 0.0
        return float(self.spec.steps[min(state.canary_step, len(self.spec.steps) - 1)])

    def weights(self, state: RolloutState) -> dict[str, float]:
        p = self.percent(state)
        return {"champion": 100.0 - p, self.spec.challenger: p}


class AbRouter(_WeightedRouter):
    """``state.weights`` (initially ``traffic``), sticky by ``unit_hash(seed, unit)``."""

    strategy = "ab"

    def weights(self, state: RolloutState) -> dict[str, float]:
        weights = dict(state.weights) or {k: float(v) for k, v in self.spec.traffic.items()}
        unknown = sorted(set(weights) - set(self.variants))
        if unknown:
            raise DesignError(
                "the rollout state routes to aliases this design does not serve",
                field="rollout_state.weights",
                received=unknown,
                expected=f"some of {self.variants}",
            )
        return weights


class BanditRouter(Router):
    """Each row's arm drawn from the policy's probabilities; propensity = that probability."""

    strategy = "bandit"

    def __init__(self, spec: DeploymentSpec) -> None:
        super().__init__(spec)
        self.policy: Policy = policy_for(spec)

    @property
    def variants(self) -> list[str]:
        return list(self.spec.arms) or list(dict.fromkeys(["champion", self.spec.challenger]))

    def probabilities(
        self, arms: Mapping[str, ArmStats] | None, rng: np.random.Generator | None = None
    ) -> dict[str, float]:
        """The policy's probabilities over this router's arms (missing stats: untried)."""
        arms = arms or {}
        return self.policy.probabilities({a: arms.get(a, ArmStats()) for a in self.variants}, _rng(rng))

    def weights(
        self,
        state: RolloutState,
        arms: Mapping[str, ArmStats] | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        """The policy's current split in percent (uniform without stats): it moves with feedback."""
        return {k: 100.0 * v for k, v in self.probabilities(arms, rng).items()}

    def assign(
        self,
        units: Sequence[str | None],
        state: RolloutState,
        arms: Mapping[str, ArmStats] | None = None,
        rng: np.random.Generator | None = None,
    ) -> Assignment:
        rng = _rng(rng)
        listed, _ = _units(units)
        probs = self.probabilities(arms, rng)
        variant = choose(probs, rng.random(len(listed)))
        return Assignment(
            variant=variant,
            propensity=_probability_of(probs, variant),
            unit=listed,
            assignment=np.full(len(listed), "random", dtype=object),
            shadow=np.zeros(len(listed), dtype=bool),
        )


STRATEGIES: dict[str, type[Router]] = {
    r.strategy: r for r in (SingleRouter, ShadowRouter, CanaryRouter, AbRouter, BanditRouter)
}


def router_for(spec: DeploymentSpec) -> Router:
    """The router of ``spec.strategy``.

    >>> router_for(DeploymentSpec(strategy="shadow", shadow_percent=10)).variants
    ['champion', 'challenger']
    """
    try:
        cls = STRATEGIES[spec.strategy]
    except KeyError:
        raise DesignError(
            "this strategy is not built",
            field="deployment.strategy",
            received=spec.strategy,
            expected=", ".join(STRATEGIES),
        ) from None
    return cls(spec)

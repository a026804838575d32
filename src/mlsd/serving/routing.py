"""The rollout inside a running server: the loaded variants, who answers each row, the fallback,
the shadow, and the shared state re-read from the prediction log.

:mod:`mlsd.rollout` decides (routers, bandit policies, the canary's gates); this module holds
what a process needs to act on it:

- **variants**: every alias the strategy routes between, loaded once; a moved alias (``mlsd
  promote``, ``mlsd rollback`` or the admin API, in any process) is loaded by :meth:`refresh`
  and swapped in whole, so a batch that is being scored finishes on the model it started with;
- **scoring with a fallback**: a variant other than the champion is scored in a worker pool
  and waited for at most ``variant_timeout_ms``; when it raises, times out or its circuit is
  open, the champion answers its rows and each record says why (``fallback``); when the
  champion itself raises (or answers the wrong number of rows), the design's rule baseline
  answers them (variant ``baseline``), or, without one, the batch fails saying so. The champion
  has no circuit: it is tried again with every batch;
- **shadow**: after the answer is committed, the shadow variant scores a copy of the rows in
  a low-priority process of its own, a backlog in one call (:mod:`mlsd.serving.shadow`); a
  queue bounded in rows drops (and counts) rather than slow anything down;
- **shared state**: weights, canary step and bandit statistics come from the log database
  (``rollout_state`` compare-and-set; rewards from the feedback joined to predictions), so a
  restarted server continues where it stopped and replicas on one PostgreSQL route alike.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import ServingError
from mlsd.rollout.bandits import ArmStats, arm_stats
from mlsd.rollout.canary import judge_canary, next_state, window_stats
from mlsd.rollout.routers import Assignment, Router, router_for
from mlsd.rollout.state import RolloutState, initial_state
from mlsd.serving.breaker import CircuitBreaker
from mlsd.serving.shadow import ShadowScorer

__all__ = ["BASELINE", "Routing", "Variant", "VariantScores"]

_log = logging.getLogger("mlsd.serving")

#: the ``variant`` of rows the design's rule baseline answered because the champion failed
BASELINE = "baseline"


@dataclass(frozen=True)
class Variant:
    """One loaded registry version behind an alias."""

    alias: str
    model: Any  # PackagedModel
    version: int


@dataclass
class VariantScores:
    """What a batch's rows got: score, decision, who answered and why another did."""

    score: np.ndarray
    decision: list[Any]
    answered_by: np.ndarray  # object: alias
    version: np.ndarray  # int
    fallback: list[str | None]
    # the CPU time of the model call that answered each row (its batch's), ms: what the canary's
    # latency gate judges, free of the queue, of other variants' calls in the same batch and of
    # how busy the machine is (see _timed_predict)
    scoring_ms: np.ndarray | None = None


def _timed_predict(model: Any, frame: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """The model's answers and the CPU time of the call in ms.

    Thread CPU time, not wall time: on a busy machine the wall time of a 2 ms call stretches to
    20-40 ms while the thread waits for a core (the flights simulation rolled back four good
    challengers on it), and a rollout decision must not depend on the machine's load. Served
    models predict on one thread (``predict_on_one_thread``), so the calling thread's CPU time
    is the model's whole cost; the wall time a client sees is ``latency_ms``, which the
    monitor's SLOs judge.
    """
    start = time.thread_time()
    pred = model.predict_frame(frame)
    return pred, (time.thread_time() - start) * 1000


def _fill(score: np.ndarray, decision: list[Any], rows: np.ndarray, pred: pd.DataFrame) -> None:
    """Put a model's answers for ``rows`` in place."""
    score[rows] = pred["score"].to_numpy(dtype="float64")
    for i, d in zip(rows.tolist(), pred["decision"].tolist(), strict=True):
        decision[i] = d


@dataclass
class _Counters:
    fallbacks: Callable[[str, str, int], None] = lambda variant, reason, n: None
    shadow_dropped: Callable[[int], None] = lambda rows: None


class Routing:
    """The rollout of one server process (see the module docstring)."""

    def __init__(
        self,
        spec: Any,  # DeploymentSpec
        variants: dict[str, Variant],
        *,
        log: Any,
        model_name: str,
        task: str,
        costs: Any = None,
        positive_class: Any = None,
        p99_limit_ms: float | None = None,
        reload: Callable[[], dict[str, int]] | None = None,
        load: Callable[[str], Variant] | None = None,
        promote: Callable[[str], tuple[int | None, int]] | None = None,
        rollback: Callable[[], tuple[int, int]] | None = None,
        counters: _Counters | None = None,
        baseline: Variant | None = None,
        no_baseline: str | None = None,
        shadow_cpus: frozenset[int] | None = None,
    ) -> None:
        self.spec = spec
        self.router: Router = router_for(spec)
        missing = [a for a in self.router.variants if a not in variants]
        if missing:
            raise ServingError(
                f"the {spec.strategy} rollout routes to {', '.join(missing)}, which is not loaded",
                field="deployment.strategy",
                received=sorted(variants),
                expected=f"every alias of {self.router.variants} registered (mlsd build FILE --alias NAME)",
            )
        self.variants = dict(variants)
        self.log = log
        self.key = model_name
        self.task = task
        self.costs = costs
        self.positive_class = positive_class
        self.p99_limit_ms = p99_limit_ms
        self._reload = reload
        self._load = load
        self.promote, self.rollback = promote, rollback  # the registry's, for the admin API
        self.counters = counters or _Counters()
        # answers for the champion when it fails (settings.rule_baseline); else why there is none
        self.baseline = baseline
        self.no_baseline = no_baseline or "no rule baseline was loaded"
        self.state: RolloutState = initial_state(spec)
        self.revision: int | None = None
        self.arms: dict[str, ArmStats] = {}
        self.breakers = {
            a: CircuitBreaker(spec.breaker_failures, spec.breaker_cooldown_s)
            for a in self.router.variants
            if a != "champion"
        }
        # variants other than the champion run here so that a slow one can be given up on
        self._pool = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="mlsd-variant")
        alias = self.shadow_alias
        self._shadow = (
            None
            if alias is None
            else ShadowScorer(
                lambda: self.variants[alias],
                log,
                model_name,
                lambda rows: self.counters.shadow_dropped(rows),
                cpus=shadow_cpus,
            )
        )
        self._rng = np.random.default_rng()
        self._example: pd.DataFrame | None = None  # a checked request frame (warm)
        self.last_refresh_problem: str | None = None

    @property
    def shadow_alias(self) -> str | None:
        return self.spec.challenger if self.spec.strategy == "shadow" else None

    def close(self) -> None:
        if self._shadow is not None:
            self._shadow.close()  # every queued shadow reaches the log writer
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- assignment (on the event loop, per request) ------------------------------------------
    def assign(self, units: Sequence[str | None]) -> Assignment:
        return self.router.assign(units, self.state, self.arms, self._rng)

    def weights(self) -> dict[str, float]:
        if self.spec.strategy == "bandit":
            return self.router.weights(self.state, self.arms, self._rng)  # type: ignore[call-arg]
        return self.router.weights(self.state)

    # -- scoring (in the batcher's worker thread) ---------------------------------------------
    def score(self, frame: pd.DataFrame, assigned: np.ndarray, *, one_request: bool = True) -> VariantScores:
        """Score each row of ``frame`` with its assigned variant; the champion answers for a
        variant that fails, times out or whose circuit is open, and the rule baseline for a
        champion that fails. The champion failing without a baseline raises ServingError.

        Rows of several requests (``one_request`` False) are not handed to the baseline: the
        champion's error is raised, so that the batcher scores each request again alone and
        only the request that broke the champion is answered by the baseline."""
        n = len(frame)
        score = np.full(n, np.nan)
        decision: list[Any] = [None] * n
        answered = np.asarray(assigned, dtype=object).copy()
        fallback: list[str | None] = [None] * n
        scoring_ms = np.full(n, np.nan)
        variants = self.variants  # one snapshot per batch: a reload swaps the dict, not its models
        # counted once the batch is answered: a batch that raises is scored again request by request
        counts: list[tuple[str, str, int]] = []
        champion_rows: list[np.ndarray] = [np.flatnonzero(answered == "champion")]
        for alias in dict.fromkeys(answered.tolist()):
            if alias == "champion":
                continue
            rows = np.flatnonzero(answered == alias)
            pred, why, took = self._score_variant(variants[alias], frame.iloc[rows])
            if pred is None:
                answered[rows] = "champion"
                for i in rows.tolist():
                    fallback[i] = why
                counts.append((alias, why.split(":")[0], len(rows)))
                champion_rows.append(rows)
                continue
            _fill(score, decision, rows, pred)
            scoring_ms[rows] = took
        rows = np.sort(np.concatenate(champion_rows))
        if len(rows):
            start = time.thread_time()  # CPU time, as _timed_predict says why
            # every row the champion's (single, or no challenger row in this batch): no copy
            champion_frame = frame if len(rows) == n else frame.iloc[rows]
            pred, error = self._score_champion(variants["champion"].model, champion_frame)
            if error is not None and not one_request and self.baseline is not None:
                raise error
            if error is not None:  # the rule baseline answers, or this raises
                why = f"failed: champion raised {type(error).__name__}: {str(error)[:200]}"
                pred = self._score_baseline(champion_frame, why, error)
                answered[rows] = BASELINE
                for i in rows.tolist():  # a variant's failure before it stays in the reason
                    fallback[i] = why if fallback[i] is None else f"{why}; after {fallback[i]}"
                counts.append(("champion", why.split(":")[0], len(rows)))
            _fill(score, decision, rows, pred)
            scoring_ms[rows] = (time.thread_time() - start) * 1000
        versions = {a: v.version for a, v in variants.items()}
        if self.baseline is not None:
            versions[BASELINE] = self.baseline.version
        version = np.array([versions[a] for a in answered], dtype=np.int64)
        for alias, reason, count in counts:
            self.counters.fallbacks(alias, reason, count)
        return VariantScores(score, decision, answered, version, fallback, scoring_ms)

    @staticmethod
    def _score_champion(model: Any, frame: pd.DataFrame) -> tuple[pd.DataFrame, Exception | None]:
        """The champion's answers, or what it raised. Scored in this thread, with no timeout and
        no circuit: it is the model of record, tried again with every batch."""
        try:
            pred = model.predict_frame(frame)
            if len(pred) != len(frame):
                raise ValueError(f"{len(pred)} answers for {len(frame)} rows")
        except Exception as exc:
            return pd.DataFrame(), exc
        return pred, None

    def _score_baseline(self, frame: pd.DataFrame, why: str, error: Exception) -> pd.DataFrame:
        """The rule baseline's answers for rows the champion failed on (``why``), or ServingError.

        The error's message becomes the 500's: it names the exception's type only, as the 500
        always did; the champion's text and why there is no baseline go to the server log."""
        kind = type(error).__name__
        if self.baseline is None:
            _log.error(
                "the champion failed on %d rows and no fallback model was available (%s): %s",
                len(frame),
                self.no_baseline,
                why,
            )
            raise ServingError(
                f"the champion raised {kind} and no fallback model was available "
                "(no usable rule baseline; the server log says why)",
                field="models.baseline",
                received=self.no_baseline,
                expected="a rule baseline in the design (models.baseline: {rule: ...}) to answer "
                "when the champion fails",
            ) from error
        try:
            pred = self.baseline.model.predict_frame(frame)
            if len(pred) != len(frame):
                raise ValueError(f"{len(pred)} answers for {len(frame)} rows")
        except Exception as exc:
            _log.error("the champion failed (%s) and so did the rule baseline: %s", why, exc)
            raise ServingError(
                f"the champion raised {kind} and the rule baseline, its fallback, "
                f"raised {type(exc).__name__}",
                field="models.baseline",
                received=type(exc).__name__,
                expected="a rule that reads the request's columns",
            ) from exc
        _log.warning("the champion failed on %d rows; the rule baseline answered (%s)", len(frame), why)
        return pred

    def _score_variant(self, variant: Variant, frame: pd.DataFrame) -> tuple[pd.DataFrame | None, str, float]:
        """The variant's answers, "" and its call's duration (ms); or None, why, NaN."""
        breaker = self.breakers.get(variant.alias)
        if breaker is not None and not breaker.allow():
            return None, f"circuit open: {variant.alias} failed {breaker.failures} times in a row", math.nan
        timeout = self.spec.variant_timeout_ms
        future = self._pool.submit(_timed_predict, variant.model, frame)
        try:
            pred, took = future.result(timeout=None if timeout is None else timeout / 1000)
            if len(pred) != len(frame):
                raise ValueError(f"{len(pred)} answers for {len(frame)} rows")
        except cf.TimeoutError:
            why = f"timed out: {variant.alias} took longer than {timeout:g} ms"
        except Exception as exc:
            why = f"failed: {variant.alias} raised {type(exc).__name__}: {str(exc)[:200]}"
        else:
            if breaker is not None:
                breaker.record_success()
            return pred, "", took
        _log.warning("variant %s fell back to the champion (%s)", variant.alias, why)
        if breaker is not None:
            breaker.record_failure()
        return None, why, math.nan

    # -- shadow (off the request path) --------------------------------------------------------
    def shadow(self, rows: list[Any], request_ids: list[str], logged_at: datetime) -> None:
        """Queue the shadow's scoring of ``rows`` (request rows already answered and logged)."""
        if self._shadow is not None:
            self._shadow.submit(rows, request_ids, logged_at)

    def warm(self, rows: list[Any], validator: Any) -> None:
        """Score ``rows`` (an example request that ``validator``, the server's
        :class:`~mlsd.serving.validation.RowValidator`, accepts) with every variant, and keep its
        frame to warm the versions a moved alias loads before they answer. The shadow process
        gets the validator here. Best effort: a model that fails here fails again on a request,
        and is handled there."""
        self._example = validator.check(rows).frame
        for variant in [*self.variants.values(), *filter(None, [self.baseline])]:
            self._warm(variant)
        if self._shadow is not None:
            self._shadow.warm(rows, validator)

    def _warm(self, variant: Variant) -> None:
        if self._example is None or variant.alias == self.shadow_alias:
            return  # the shadow scores in its own process, which ShadowScorer warms
        try:
            variant.model.predict_frame(self._example)
        except Exception as exc:
            _log.warning(
                "warming %s (version %s) failed: %s: %s",
                variant.alias,
                variant.version,
                type(exc).__name__,
                exc,
            )

    # -- shared state (in a worker thread, every state_refresh_s) -----------------------------
    def refresh(self, now: datetime | None = None) -> None:
        """Re-read the state, judge the canary, count the bandit's rewards, reload moved aliases."""
        now = now or datetime.now(UTC)
        try:
            if self.spec.strategy != "single":  # single has no state: it only follows its alias
                self._read_state(now)
            if self.spec.strategy == "bandit":
                counts = self.log.reward_counts()
                self.arms = arm_stats(
                    counts, self.router.variants, self.spec.reward, self.costs, self.positive_class
                )
            if self.spec.strategy == "canary" and not (self.state.rolled_back or self.state.complete):
                self._judge_canary(now)
            self._reload_aliases()
            self.last_refresh_problem = None
        except Exception as exc:  # the server keeps answering with the state it has
            self.last_refresh_problem = f"{type(exc).__name__}: {exc}"
            _log.warning("rollout state refresh failed: %s", self.last_refresh_problem)

    def _read_state(self, now: datetime) -> None:
        got = self.log.read_state(self.key)
        if got is None:
            fresh = initial_state(self.spec)
            if self.spec.strategy == "canary":
                fresh.step_started_at = now.isoformat()
            revision = self.log.write_state(self.key, fresh.to_dict(), expected_revision=None)
            if revision is not None:
                self.log.add_event(
                    "start",
                    reason=f"{self.spec.strategy} rollout started with weights {fresh.weights}",
                    actor="server",
                    details=fresh.to_dict(),
                )
            got = self.log.read_state(self.key)
        if got is not None:
            self.revision, state = got
            self.state = RolloutState.from_dict(state)

    def _judge_canary(self, now: datetime) -> None:
        since = self.state.step_started_at
        frame = self.log.read_outcomes(since=None if since is None else datetime.fromisoformat(since))
        # with goals.costs a binary canary is judged on the cost of its decisions (what each
        # model's threshold minimises), not on their accuracy
        by_cost = self.task == "binary" and self.costs is not None
        costs = {"costs": self.costs, "positive_class": self.positive_class} if by_cost else {}
        champion = window_stats(frame, "champion", self.task, **costs)
        challenger = window_stats(frame, self.spec.challenger, self.task, **costs)
        scale = max(abs(self.costs.false_positive), abs(self.costs.false_negative)) if by_cost else None
        decision = judge_canary(
            self.spec, self.p99_limit_ms, self.state, champion, challenger, self.task, cost_scale=scale
        )
        if decision.action == "hold":
            return
        new = next_state(self.spec, self.state, decision, now)
        revision = self.log.write_state(self.key, new.to_dict(), expected_revision=self.revision)
        if revision is None:  # another replica judged first: take what it wrote
            self._read_state(now)
            return
        self.revision, self.state = revision, new
        self.log.add_event(
            decision.action,
            reason=decision.reason,
            actor="canary",
            variant=self.spec.challenger,
            details={**decision.details, "weights": new.weights},
        )

    def write_state(self, new: RolloutState, *, kind: str, reason: str, actor: str) -> bool:
        """Compare-and-set ``new`` (admin changes); False when another writer changed it first."""
        revision = self.log.write_state(self.key, new.to_dict(), expected_revision=self.revision)
        if revision is None:
            return False
        self.revision, self.state = revision, new
        self.log.add_event(kind, reason=reason, actor=actor, details=new.to_dict())
        return True

    def _reload_aliases(self) -> None:
        if self._reload is None or self._load is None:
            return
        current = self._reload()
        moved = [a for a in self.router.variants if a in current and current[a] != self.variants[a].version]
        if not moved:
            return
        loaded = {a: self._load(a) for a in moved}
        for alias, variant in loaded.items():
            expected = list(self.variants["champion"].model.input_columns)
            if list(variant.model.input_columns) != expected:
                raise ServingError(
                    f"{alias} moved to version {variant.version}, whose input columns differ",
                    field=alias,
                    received=list(variant.model.input_columns),
                    expected=", ".join(expected),
                )
        for variant in loaded.values():  # warm before swapping in: no request meets it cold
            self._warm(variant)
        old = {a: self.variants[a].version for a in moved}
        self.variants = {**self.variants, **loaded}  # one assignment: a batch sees old or new
        for alias in moved:
            self.log.add_event(
                "reload",
                reason=f"{alias} moved from version {old[alias]} to {loaded[alias].version}",
                actor="server",
                variant=alias,
                details={"from": old[alias], "to": loaded[alias].version},
            )

"""The canary's gate: advance, hold, roll back or complete, from one window of the log.

:func:`window_stats` summarises a variant's rows of ``PredictionLog.read_outcomes(since=
step_started_at)``; :func:`judge_canary` compares the challenger with the champion and
:func:`next_state` applies the decision to the shared state. The statistics are in
docs/rollout-statistics.md: a one-sided normal (Welch) bound on the difference of mean losses,
rolled back when the challenger is significantly worse by more than the margin, advanced when it
is shown non-inferior (or no labels have arrived, unless ``step_min_labelled`` asks for them)
after ``step_min_requests``.

>>> from mlsd.design import DeploymentSpec
>>> from mlsd.rollout.state import initial_state
>>> spec = DeploymentSpec(strategy="canary", steps=[10, 100], step_min_requests=100)
>>> champ = VariantWindow(900, 0, 12.0, 0, 0.0, 0.0)
>>> def judge(failures):
...     canary = VariantWindow(100, failures, 13.0, 0, 0.0, 0.0)
...     return judge_canary(spec, None, initial_state(spec), champ, canary, "binary")
>>> judge(0).action
'advance'
>>> judge(5).reason
'challenger error rate 5.0% above max_error_rate 1.0% (5 of 100 requests)'
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from mlsd._deployment import DeploymentSpec
from mlsd.errors import DesignError
from mlsd.rollout.state import RolloutState

__all__ = [
    "LATENCY_RATIO",
    "LATENCY_RUNS",
    "LATENCY_RUN_ROWS",
    "MIN_LABELLED",
    "MIN_LATENCY_ROWS",
    "MIN_REQUESTS_FOR_ERRORS",
    "Action",
    "CanaryDecision",
    "VariantWindow",
    "judge_canary",
    "loss_difference_bounds",
    "next_state",
    "robust_p99",
    "window_stats",
]

#: the challenger's p99 must exceed the champion's by this factor to count as slower
LATENCY_RATIO = 1.25
#: fewer rows than this give no p99 (the 99th percentile of 19 numbers is just the maximum)
MIN_LATENCY_ROWS = 20
#: the latency gate's p99 is the median of the p99s of this many consecutive runs of rows ...
LATENCY_RUNS = 5
#: ... once each run has this many rows (a p99 of 100 rows is its second-largest value)
LATENCY_RUN_ROWS = 100
#: the error-rate gate needs this many challenger requests (1 failure in 3 is no evidence)
MIN_REQUESTS_FOR_ERRORS = 20
#: labelled rows each side before the loss comparison counts (the normal approximation)
MIN_LABELLED = 30

Action = Literal["advance", "rollback", "hold", "complete"]


@dataclasses.dataclass(frozen=True)
class VariantWindow:
    """One variant in one window: requests assigned, failures, p99 latency, labelled losses."""

    requests: int
    failures: int
    p99_latency_ms: float | None
    labelled: int
    loss_sum: float
    loss_sq_sum: float
    #: the variance of the mean loss clustered by unit (sticky assignment: a unit's rows share
    #: its variant and are correlated, e.g. the flights of one aircraft); None: rows independent
    clustered_mean_var: float | None = None

    @property
    def mean_var(self) -> float:
        """The variance of :attr:`mean_loss`: clustered by unit where known, else ``s² / n``."""
        if self.clustered_mean_var is not None:
            return self.clustered_mean_var
        return self.loss_var / self.labelled if self.labelled else math.nan

    @property
    def mean_loss(self) -> float:
        """Mean loss over the labelled rows (NaN without labels)."""
        return self.loss_sum / self.labelled if self.labelled else math.nan

    @property
    def loss_var(self) -> float:
        """Sample variance (ddof=1) of the losses (NaN under 2 labels)."""
        if self.labelled < 2:
            return math.nan
        return max(self.loss_sq_sum - self.loss_sum**2 / self.labelled, 0.0) / (self.labelled - 1)


@dataclasses.dataclass(frozen=True)
class CanaryDecision:
    """What the gate decided, why (one sentence) and the numbers it decided on (JSON-safe)."""

    action: Action
    reason: str
    details: dict[str, Any]


def _losses(frame: pd.DataFrame, task: str, costs: Any = None, positive_class: Any = None) -> np.ndarray:
    if task == "binary" and costs is not None:
        # the cost of each decision's cell (goals.costs): what the cost-optimal threshold minimises,
        # so a challenger whose threshold trades accuracy for cost is judged on what it optimises
        from mlsd.goals.costs import CostMatrix

        m = CostMatrix.from_spec(costs)
        truth = (frame["outcome"].astype(object) == positive_class).to_numpy()
        said = (frame["decision"].astype(object) == positive_class).to_numpy()
        return np.where(
            truth,
            np.where(said, m.true_positive, m.false_negative),
            np.where(said, m.false_positive, m.true_negative),
        ).astype(float)
    if task in ("binary", "multiclass"):
        # object columns compare with Python equality of the decoded JSON values (1 == 1.0)
        same = frame["decision"].astype(object) == frame["outcome"].astype(object)
        return 1.0 - same.to_numpy(dtype=float)
    if task == "regression":
        score = pd.to_numeric(frame["score"], errors="coerce").to_numpy(dtype=float)
        outcome = pd.to_numeric(frame["outcome"], errors="coerce").to_numpy(dtype=float)
        return np.abs(score - outcome)
    raise DesignError(
        "the canary compares losses of binary, multiclass or regression tasks",
        field="goals.task",
        received=task,
        expected="binary, multiclass or regression",
    )


def robust_p99(latency: np.ndarray) -> float | None:
    """The p99 a latency gate judges: with at least ``LATENCY_RUNS`` x ``LATENCY_RUN_ROWS`` rows,
    the median of the p99s of that many consecutive runs (the build's estimator,
    docs/threads-and-timing.md), so a burst confined to one or two stretches of the window (a
    garbage collection, a reload, a noisy neighbour) does not decide, while a model slow
    throughout does; with fewer rows the plain p99; below ``MIN_LATENCY_ROWS`` rows none.

    >>> steady = np.full(1000, 5.0)
    >>> burst = steady.copy(); burst[100:160] = 80.0  # 6 % of the rows, all in the first run
    >>> robust_p99(steady), robust_p99(burst), float(np.percentile(burst, 99))
    (5.0, 5.0, 80.0)
    >>> robust_p99(np.full(1000, 30.0)), round(robust_p99(np.arange(25.0)), 2), robust_p99(np.ones(5))
    (30.0, 23.76, None)
    """
    if latency.size < MIN_LATENCY_ROWS:
        return None
    if latency.size < LATENCY_RUNS * LATENCY_RUN_ROWS:
        return float(np.percentile(latency, 99))
    return float(np.median([np.percentile(run, 99) for run in np.array_split(latency, LATENCY_RUNS)]))


def window_stats(
    frame: pd.DataFrame, variant: str, task: str, *, costs: Any = None, positive_class: Any = None
) -> VariantWindow:
    """A variant's window from ``read_outcomes`` rows (any order; other variants' rows ignored).

    - requests: rows assigned to the variant (``assigned_variant``, else ``variant``);
    - failures: those answered by a fallback (``fallback`` not null);
    - p99 / losses: rows the variant answered itself (``variant`` is it, no fallback), so the
      champion's figures never absorb the time or the errors of a challenger it stood in for;
    - p99 of ``scoring_ms``, the model call that answered the row, where the log has it (else
      the request's ``latency_ms``): a row queued behind another variant's call in the same
      micro-batch, or behind a busy machine's other requests, is not its model's latency;
    - the variance of the mean loss clustered by ``unit`` where the log has units (sticky
      assignment), since a unit's rows are correlated;
    - loss: ``1 - (decision == outcome)`` (binary, multiclass) or ``|score - outcome|``
      (regression), over rows with an outcome; with ``costs`` (``goals.costs``, binary) the
      cost of each decision's cell, ``positive_class`` naming the positive outcome.

    >>> rows = pd.DataFrame({"variant": ["a", "a", "b"], "assigned_variant": [None, "b", None],
    ...     "fallback": [None, "timeout", None], "latency_ms": [3.0, 9.0, 4.0],
    ...     "decision": [1, 1, 0], "outcome": [1, None, 1], "score": [0.9, 0.8, 0.2]})
    >>> w = window_stats(rows, "b", "binary")
    >>> w.requests, w.failures, w.p99_latency_ms, w.labelled, w.loss_sum, w.clustered_mean_var
    (2, 1, None, 1, 1.0, None)
    """
    needed = {"variant", "assigned_variant", "fallback", "latency_ms", "decision", "outcome", "score"}
    missing = sorted(needed - set(frame.columns))
    if missing:
        raise DesignError(
            "the outcomes frame lacks columns",
            field="read_outcomes",
            received=missing,
            expected=", ".join(sorted(needed)),
        )
    answered_by = frame["variant"].astype(object)
    assigned = frame["assigned_variant"].astype(object).where(frame["assigned_variant"].notna(), answered_by)
    fell_back = frame["fallback"].notna().to_numpy()
    mine = (assigned == variant).to_numpy()
    own = (answered_by == variant).to_numpy() & ~fell_back

    latency = pd.to_numeric(frame["latency_ms"], errors="coerce")
    if "scoring_ms" in frame.columns:  # a log written before scoring_ms: the request's time
        latency = pd.to_numeric(frame["scoring_ms"], errors="coerce").fillna(latency)
    in_time = np.arange(len(frame))
    if "logged_at" in frame.columns:  # robust_p99's runs are stretches of time
        in_time = np.argsort(pd.to_datetime(frame["logged_at"], utc=True).to_numpy(), kind="stable")
    p99 = robust_p99(latency.iloc[in_time][own[in_time]].dropna().to_numpy(dtype=float))

    rows = frame[own & frame["outcome"].notna().to_numpy()]
    loss = _losses(rows, task, costs, positive_class)  # also on no rows: an unsupported task fails at once
    finite = np.isfinite(loss)  # a regression row whose score or outcome is not a number
    loss = loss[finite]
    units = rows["unit"].to_numpy(dtype=object)[finite] if "unit" in rows.columns else None
    return VariantWindow(
        requests=int(mine.sum()),
        failures=int((mine & fell_back).sum()),
        p99_latency_ms=p99,
        labelled=int(loss.size),
        loss_sum=float(loss.sum()),
        loss_sq_sum=float((loss**2).sum()),
        clustered_mean_var=_clustered_mean_var(loss, units),
    )


def _clustered_mean_var(loss: np.ndarray, units: np.ndarray | None) -> float | None:
    """Cluster-robust variance of the mean of ``loss`` by ``units`` (rows without a unit are
    their own cluster): ``G/(G-1) · Σ_g (S_g - m n_g)² / N²``, statsmodels' cluster covariance of
    an intercept-only OLS. None when no unit has two rows (the row variance is the same then)."""
    if units is None or loss.size < 2:
        return None
    keys = pd.Series(units).astype(object)
    missing = keys.isna().to_numpy()
    keys = keys.where(~missing, pd.Series(np.arange(loss.size), dtype=object).map(lambda i: ("row", i)))
    codes, uniques = pd.factorize(keys)
    groups = len(uniques)
    if groups == loss.size or groups < 2:
        return None
    n = loss.size
    m = loss.mean()
    sums = np.bincount(codes, weights=loss - m, minlength=groups)
    return float(groups / (groups - 1) * np.sum(sums**2) / n**2)


def loss_difference_bounds(
    champion: VariantWindow, challenger: VariantWindow, confidence: float
) -> tuple[float, float, float]:
    """``(difference, lower, upper)`` of challenger minus champion mean loss.

    Each bound is one-sided at ``confidence``: a normal approximation with each side's own
    variance (Welch's standard error), ``diff -+ z * sqrt(var_c / n_c + var_0 / n_0)``; where the
    rows are clustered by sticky units, each side's variance of the mean is the clustered one.

    >>> d, lo, hi = loss_difference_bounds(VariantWindow(0, 0, None, 100, 20.0, 20.0),
    ...                                    VariantWindow(0, 0, None, 100, 30.0, 30.0), 0.95)
    >>> round(d, 3), round(lo, 3), round(hi, 3)
    (0.1, -0.001, 0.201)
    """
    diff = challenger.mean_loss - champion.mean_loss
    se = math.sqrt(challenger.mean_var + champion.mean_var)
    z = float(stats.norm.ppf(confidence))
    return diff, diff - z * se, diff + z * se


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def judge_canary(
    spec: DeploymentSpec,
    p99_limit_ms: float | None,
    state: RolloutState,
    champion: VariantWindow,
    challenger: VariantWindow,
    task: str,
    *,
    cost_scale: float | None = None,
) -> CanaryDecision:
    """The decision for the current step; the gates in order: errors, latency, loss, volume.

    ``p99_limit_ms`` is ``goals.constraints["p99_latency_ms"]`` (None: no latency gate).
    ``cost_scale``: the windows' losses are decision costs (:func:`window_stats` with costs) and
    this is the costliest wrong decision (``max(|false_positive|, |false_negative|)``); the margin
    is ``max_degradation`` wrong decisions more per prediction, priced at it.
    """
    steps = spec.steps
    step = min(state.canary_step, len(steps) - 1) if steps else 0
    details: dict[str, Any] = {
        "step": step,
        "percent": float(steps[step]) if steps else None,
        "challenger_requests": challenger.requests,
        "challenger_failures": challenger.failures,
        "champion_p99_latency_ms": champion.p99_latency_ms,
        "challenger_p99_latency_ms": challenger.p99_latency_ms,
        "p99_limit_ms": p99_limit_ms,
        "champion_labelled": champion.labelled,
        "challenger_labelled": challenger.labelled,
    }
    if state.rolled_back is not None:
        return CanaryDecision("hold", f"rolled back earlier: {state.rolled_back}", details)
    if state.complete:
        return CanaryDecision("hold", "the canary is complete", details)

    if challenger.requests >= MIN_REQUESTS_FOR_ERRORS:
        rate = challenger.failures / challenger.requests
        details["challenger_error_rate"] = rate
        if rate > spec.max_error_rate:
            return CanaryDecision(
                "rollback",
                f"challenger error rate {_percent(rate)} above max_error_rate "
                f"{_percent(spec.max_error_rate)} "
                f"({challenger.failures} of {challenger.requests} requests)",
                details,
            )

    c99, o99 = challenger.p99_latency_ms, champion.p99_latency_ms
    # The challenger is blamed only when it is over the limit AND clearly slower than the
    # champion in the same window (by LATENCY_RATIO: two p99s of one window differ by noise).
    # Without a champion p99 (too few rows, e.g. at 100 %) the limit alone decides, which is
    # why the serving side logs CPU time (serving/routing.py): it does not grow with the load.
    slower = o99 is None or (c99 is not None and c99 > LATENCY_RATIO * o99)
    if p99_limit_ms is not None and c99 is not None and c99 > p99_limit_ms and slower:
        versus = f", champion {o99:.1f} ms" if o99 is not None else ""
        return CanaryDecision(
            "rollback",
            f"challenger p99 latency {c99:.1f} ms above the limit {p99_limit_ms:g} ms{versus}",
            details,
        )

    labels = champion.labelled >= MIN_LABELLED and challenger.labelled >= MIN_LABELLED
    upper = None
    if labels:
        diff, lower, upper = loss_difference_bounds(champion, challenger, spec.confidence)
        # classification: losses are error rates, the margin is absolute accuracy points;
        # regression: absolute errors have the target's unit, the margin is relative
        # costs: as many more wrong decisions as max_degradation allows, each at the costliest price
        if cost_scale is not None:
            margin = spec.max_degradation * cost_scale
        elif task == "regression":
            margin = spec.max_degradation * champion.mean_loss
        else:
            margin = spec.max_degradation
        details.update(
            champion_mean_loss=champion.mean_loss,
            challenger_mean_loss=challenger.mean_loss,
            loss_difference=diff,
            lower_bound=lower,
            upper_bound=upper,
            margin=margin,
            confidence=spec.confidence,
        )
        if lower > margin:
            return CanaryDecision(
                "rollback",
                f"challenger loss worse by {diff:.4g} (at {_percent(spec.confidence)} confidence at least "
                f"{lower:.4g}) than the champion, beyond the margin {margin:.4g}",
                details,
            )

    if challenger.requests < spec.step_min_requests:
        return CanaryDecision(
            "hold",
            f"{challenger.requests} of {spec.step_min_requests} challenger requests in this step",
            details,
        )
    # at 100 % the champion answers nothing, so no comparison is possible there: the earlier
    # steps showed non-inferiority, and this one only needs its own labelled rows (waiting for
    # champion labels as well would hold the canary at its last step for ever)
    compared = bool(steps) and steps[step] < 100
    if challenger.labelled < spec.step_min_labelled or (spec.step_min_labelled and compared and not labels):
        # outcomes arrive late: a step that needs labels waits for them, or the canary could
        # promote a challenger no outcome has judged (a label delay longer than a step)
        need = max(spec.step_min_labelled, MIN_LABELLED if compared else 0)
        return CanaryDecision(
            "hold",
            f"{challenger.labelled} of {need} labelled challenger rows in this step (step_min_labelled)",
            details,
        )
    if labels and upper is not None and upper > details["margin"]:
        return CanaryDecision(
            "hold",
            f"challenger not yet shown non-inferior: loss difference up to {upper:.4g} at "
            f"{_percent(spec.confidence)} confidence, margin {details['margin']:.4g}",
            details,
        )
    if labels:
        evidence = "non-inferior on labels"
    elif not compared and steps:
        evidence = f"{challenger.labelled} labelled challenger rows (the champion serves none at 100%)"
    else:
        evidence = f"no comparison yet (under {MIN_LABELLED} labels a side)"
    if step >= len(steps) - 1:
        return CanaryDecision(
            "complete", f"last step reached {spec.step_min_requests} requests, {evidence}", details
        )
    return CanaryDecision(
        "advance",
        f"{challenger.requests} challenger requests at {steps[step]:g}%, {evidence}: "
        f"on to {steps[step + 1]:g}%",
        details,
    )


def next_state(
    spec: DeploymentSpec, state: RolloutState, decision: CanaryDecision, now: dt.datetime
) -> RolloutState:
    """The state after ``decision`` (hold: unchanged). ``now`` naive is taken as UTC.

    >>> from mlsd.rollout.state import initial_state
    >>> spec = DeploymentSpec(strategy="canary", steps=[10, 50, 100])
    >>> now = dt.datetime(2026, 12, 2, 14, 0, tzinfo=dt.UTC)
    >>> s = next_state(spec, initial_state(spec), CanaryDecision("advance", "ok", {}), now)
    >>> s.canary_step, s.weights, s.step_started_at
    (1, {'champion': 50.0, 'challenger': 50.0}, '2026-12-02T14:00:00+00:00')
    >>> next_state(spec, s, CanaryDecision("rollback", "p99", {}), now).weights
    {'champion': 100.0, 'challenger': 0.0}
    """
    stamp = (now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)).isoformat()
    last = len(spec.steps) - 1
    if decision.action == "advance":
        step = min(state.canary_step + 1, last)
        p = float(spec.steps[step])
        return dataclasses.replace(
            state,
            canary_step=step,
            step_started_at=stamp,
            weights={"champion": 100.0 - p, spec.challenger: p},
        )
    if decision.action == "rollback":
        return dataclasses.replace(
            state, rolled_back=decision.reason, weights={"champion": 100.0, spec.challenger: 0.0}
        )
    if decision.action == "complete":
        return dataclasses.replace(state, complete=True)
    if decision.action == "hold":
        return dataclasses.replace(state)
    raise DesignError(
        "unknown canary action",
        field="decision.action",
        received=decision.action,
        expected="advance, rollback, hold or complete",
    )

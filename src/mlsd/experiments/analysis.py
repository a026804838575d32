"""The analysis of an experiment over the prediction log: :func:`analyse_experiment`.

From the rows of ``PredictionLog.read_predictions`` (one per answered request) it builds an
:class:`ExperimentAnalysis`:

- **per variant** (the variant routing *assigned*, ``assigned_variant``, else the one that
  answered: intention to treat, so a challenger whose failures fell back to the champion is
  still charged with them): units, requests, labelled requests, decision accuracy, the business
  cost per 1,000 decisions (``goals.costs``), the ML metric where labels exist (ROC AUC or RMSE,
  as :func:`mlsd.monitoring.variants.compare_variants` reads it), latency and fallbacks;
- the **sample-ratio mismatch**: :func:`mlsd.rollout.srm.sample_ratio_mismatch` of the units
  (sticky assignment) or requests per variant against the intended weights; ``srm_detected``
  (p < 0.001) means the comparison below cannot be trusted;
- per challenger and metric, the **lift** over the baseline with its interval and p-value,
  Holm-corrected across the metrics (:mod:`mlsd.experiments.frequentist`): when units were
  assigned (``assignment == "sticky"``) and some unit sent several requests, each metric is a
  ratio of sums over units (delta method), else the two-proportion z test or Welch's t, with
  CUPED on ``deployment.experiment.cuped_covariate``;
- its **Bayesian** read-out (:mod:`mlsd.experiments.bayesian`) and the **sequential** verdict
  (:mod:`mlsd.experiments.sequential`: always-valid p-values over ``checkpoints`` batches);
- for a log with propensities (a bandit): each arm's reward and regret, and IPS / SNIPS / DR
  estimates of always serving each arm (:mod:`mlsd.experiments.off_policy`);
- with ``plan=True``: the sample and the days each metric needs for ``mde`` at the traffic
  observed, and the smallest effect detectable with the sample logged
  (:mod:`mlsd.experiments.power`).

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> n = 4000
>>> arm = np.where(rng.random(n) < 0.5, "champion", "challenger")
>>> right = rng.random(n) < np.where(arm == "challenger", 0.80, 0.75)
>>> rows = pd.DataFrame({"variant": arm, "assigned_variant": arm, "score": 0.5,
...     "decision": True, "outcome": right, "latency_ms": 5.0,
...     "logged_at": pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC")})
>>> a = analyse_experiment(rows, task="binary", weights={"champion": 0.5, "challenger": 0.5})
>>> c = a.comparison("challenger", "accuracy")
>>> round(c.difference, 3), c.p_value < 0.001, a.srm_detected
(0.044, True, False)
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlsd.design import ExperimentSpec
from mlsd.errors import DataError, DesignError
from mlsd.experiments import off_policy, power
from mlsd.experiments._arms import (
    Arms,
    bayes_read_out,
    compare_arms,
    enough_per_arm,
    implied_sd,
    sequential_read_out,
)
from mlsd.experiments.frequentist import Comparison, adjust
from mlsd.experiments.metrics import METRICS, default_metrics, metric_values
from mlsd.monitoring._json import jsonable
from mlsd.monitoring.variants import compare_variants
from mlsd.rollout.srm import sample_ratio_mismatch

__all__ = ["ExperimentAnalysis", "MetricComparison", "VariantSummary", "analyse_experiment"]

SRM_ALARM = 0.001  # the usual SRM level: a split this unlikely is a bug, not chance


@dataclasses.dataclass
class VariantSummary:
    """What one assigned variant served and scored in the period."""

    variant: str
    units: int
    requests: int
    labelled: int
    accuracy: float | None = None
    cost_per_1000: float | None = None
    metric: str | None = None  # roc_auc (binary), rmse (regression)
    metric_value: float | None = None
    latency_mean_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    fallbacks: int = 0  # assigned here, answered by another model

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


@dataclasses.dataclass
class MetricComparison:
    """One challenger against the baseline on one metric."""

    variant: str
    baseline: str
    metric: str
    kind: str
    higher_is_better: bool
    comparison: Comparison
    p_adjusted: float
    significant: bool
    verdict: str  # "better", "worse", "no significant difference"
    cuped: dict[str, Any] | None = None  # covariate, theta, variance_reduction
    bayesian: dict[str, Any] | None = None
    sequential: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:  # c.difference, c.ci, c.p_value ... of the test
        if name.startswith("__") or name == "comparison":
            raise AttributeError(name)
        return getattr(self.comparison, name)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "variant": self.variant,
                "baseline": self.baseline,
                "metric": self.metric,
                "kind": self.kind,
                "higher_is_better": self.higher_is_better,
                **self.comparison.to_dict(),
                "p_adjusted": self.p_adjusted,
                "significant": self.significant,
                "verdict": self.verdict,
                "cuped": self.cuped,
                "bayesian": self.bayesian,
                "sequential": self.sequential,
            }
        )


@dataclasses.dataclass
class ExperimentAnalysis:
    """The analysis of one period of the log; :meth:`to_dict` is plain JSON."""

    task: str
    baseline: str
    n: int
    unit_level: bool  # metrics are ratios over units (sticky assignment, several requests a unit)
    alpha: float
    correction: str
    variants: list[VariantSummary]
    comparisons: list[MetricComparison]
    weights: dict[str, float] | None = None
    srm_p_value: float | None = None
    srm_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    srm_counted: str = "requests"
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    off_policy: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def srm_detected(self) -> bool:
        return self.srm_p_value is not None and self.srm_p_value < SRM_ALARM

    def comparison(self, variant: str, metric: str) -> MetricComparison:
        for c in self.comparisons:
            if c.variant == variant and c.metric == metric:
                return c
        raise KeyError((variant, metric))

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "task": self.task,
                "baseline": self.baseline,
                "n": self.n,
                "unit_level": self.unit_level,
                "alpha": self.alpha,
                "correction": self.correction,
                "period": {"first": self.first, "last": self.last},
                "variants": [v.to_dict() for v in self.variants],
                "srm": {
                    "p_value": self.srm_p_value,
                    "detected": self.srm_detected,
                    "counts": self.srm_counts,
                    "counted": self.srm_counted,
                    "weights": self.weights,
                },
                "comparisons": [c.to_dict() for c in self.comparisons],
                "off_policy": self.off_policy,
                "plan": self.plan,
                "warnings": list(self.warnings),
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


# --- the analysis ---------------------------------------------------------------------------


def _arm_column(frame: pd.DataFrame) -> pd.Series:
    variant = frame["variant"].fillna("(none)").astype(str)
    if "assigned_variant" in frame.columns:
        return frame["assigned_variant"].where(frame["assigned_variant"].notna(), variant).astype(str)
    return variant


def _units(frame: pd.DataFrame) -> pd.Series:
    """The unit of assignment of each request: its unit when assignment was sticky, else itself."""
    own = (
        frame["request_id"].astype(str)
        if "request_id" in frame.columns
        else pd.Series(np.arange(len(frame)).astype(str), index=frame.index)
    )
    if "unit" not in frame.columns:
        return own
    sticky = frame["unit"].notna()
    if "assignment" in frame.columns:
        sticky &= frame["assignment"].astype(str).eq("sticky")
    return ("u:" + frame["unit"].astype(str)).where(sticky, "r:" + own)


def _times(frame: pd.DataFrame) -> pd.Series:
    if "event_time" in frame.columns:
        t = pd.to_datetime(frame["event_time"], utc=True)
        if "logged_at" in frame.columns:
            t = t.fillna(pd.to_datetime(frame["logged_at"], utc=True))
        return t
    if "logged_at" in frame.columns:
        return pd.to_datetime(frame["logged_at"], utc=True)
    return pd.Series(
        pd.Timestamp("1970-01-01", tz="UTC") + pd.to_timedelta(np.arange(len(frame)), "s"), index=frame.index
    )


def analyse_experiment(
    predictions: pd.DataFrame,
    *,
    task: str,
    spec: ExperimentSpec | None = None,
    weights: Mapping[str, float] | None = None,
    srm_since: Any = None,
    order: Sequence[str] | None = None,
    positive_class: Any = None,
    costs: Any = None,
    reward: str = "match",
    plan: bool = False,
    mde: Mapping[str, float] | float | None = None,
) -> ExperimentAnalysis:
    """The experiment analysis of ``predictions`` (see the module docstring).

    ``weights`` is the intended split (None: no SRM test, e.g. a bandit), counted from
    ``srm_since``; ``order`` lists variants first; ``costs`` a :class:`~mlsd.goals.CostMatrix`;
    ``reward`` the bandit's (``match`` or ``cost``); ``mde`` the effect to plan for, relative
    to the baseline's value (0.05: a 5 % improvement), one for every metric or one per metric.
    """
    spec = spec or ExperimentSpec()
    if spec.sequential == "obrien_fleming" and spec.horizon is None:
        raise DesignError(
            "an O'Brien-Fleming test needs the planned horizon",
            field="deployment.experiment.horizon",
            received=None,
            expected="the planned units of the baseline arm",
        )
    for col in ("variant", "latency_ms"):
        if col not in predictions.columns:
            raise DataError(
                "the prediction frame lacks a column",
                field=col,
                received=list(predictions.columns)[:14],
                expected="the columns of PredictionLog.read_predictions",
            )
    frame = predictions.reset_index(drop=True)
    if "outcome" not in frame.columns:
        frame = frame.assign(outcome=None)
    arm = _arm_column(frame)
    times = _times(frame).dt.as_unit("ns")  # one unit, so the int64 view is nanoseconds
    frame = frame.assign(_arm=arm, _unit=_units(frame), _t=times).sort_values("_t", kind="stable")
    arm = frame["_arm"]
    counts = arm.value_counts()
    names = [v for v in (order or []) if v in counts.index]
    names += [v for v in counts.index if v not in names]
    baseline = spec.baseline
    if baseline not in counts.index:
        raise DataError(
            "the baseline served no request in this period",
            field="deployment.experiment.baseline",
            received={"baseline": baseline, "variants": {k: int(v) for k, v in counts.items()}},
            expected="a period where the baseline and a challenger served",
        )
    challengers = [v for v in names if v != baseline]
    warnings: list[str] = []
    if not challengers:
        warnings.append(f"only {baseline} served in this period: there is nothing to compare")

    # units seen under several variants: a split that moved (canary steps) or a broken assignment
    arms_per_unit = frame.groupby("_unit")["_arm"].nunique()
    mixed = int((arms_per_unit > 1).sum())
    if mixed:
        warnings.append(
            f"{mixed:,} units were assigned to more than one variant (the split changed within the "
            "period, e.g. a canary step): their requests count in each variant they saw"
        )
    unit_level = bool(
        frame["_unit"].str.startswith("u:").any() and frame.groupby(["_arm", "_unit"]).size().max() > 1
    )

    # -- per variant (the monitoring's reading of the log, on the assigned variant) --
    itt = frame.assign(variant=arm).drop(columns=["assigned_variant", "fallback"], errors="ignore")
    if "score" not in itt.columns:
        itt = itt.assign(score=np.nan)
    monitored = compare_variants(itt, task=task, positive_class=positive_class, order=names)
    has_costs = costs is not None and task == "binary"
    metric_names = (
        list(spec.metrics) if spec.metrics is not None else default_metrics(task, has_costs=has_costs)
    )
    values = {
        m: metric_values(
            m, frame, task=task, positive_class=positive_class, costs=costs if has_costs else None
        )
        for m in metric_names
    }
    cost = values.get("cost")
    if cost is None and has_costs:
        cost = metric_values("cost", frame, task=task, positive_class=positive_class, costs=costs)
    latency = pd.to_numeric(frame["latency_ms"], errors="coerce")
    fell_back = (
        frame["fallback"].notna() if "fallback" in frame.columns else pd.Series(False, index=frame.index)
    )
    summaries = []
    for name in names:
        in_arm = (arm == name).to_numpy()
        s = monitored.variant(name)
        arm_cost = None if cost is None else cost[in_arm]
        summaries.append(
            VariantSummary(
                variant=name,
                units=int(frame.loc[in_arm, "_unit"].nunique()),
                requests=int(in_arm.sum()),
                labelled=s.labelled,
                accuracy=s.accuracy,
                cost_per_1000=None
                if arm_cost is None or not np.isfinite(arm_cost).any()
                else float(np.nanmean(arm_cost)),
                metric=s.metric,
                metric_value=s.metric_value,
                latency_mean_ms=float(latency[in_arm].mean()) if in_arm.any() else None,
                latency_p50_ms=s.latency_p50_ms,
                latency_p99_ms=s.latency_p99_ms,
                fallbacks=int(fell_back[in_arm].sum()),
            )
        )

    # -- sample-ratio mismatch on the units (or requests) of the current split --
    normalised, srm_p, srm_counts = None, None, {}
    counted = "units" if unit_level or frame["_unit"].str.startswith("u:").any() else "requests"
    if weights:
        total_w = sum(float(w) for w in weights.values() if w and float(w) > 0)
        normalised = {k: (float(w) / total_w if total_w else 0.0) for k, w in weights.items()}
        in_step = pd.Series(True, index=frame.index)
        if srm_since is not None and "logged_at" in frame.columns:
            since = pd.Timestamp(srm_since)
            since = since.tz_localize("UTC") if since.tzinfo is None else since.tz_convert("UTC")
            in_step = pd.to_datetime(frame["logged_at"], utc=True) >= since
        if not in_step.all():
            warnings.append(
                f"{int((~in_step).sum()):,} requests were logged before the current split started "
                f"({since.isoformat()}): the lifts pool traffic under different splits; "
                f"--since {since.isoformat()} compares the current step alone"
            )
        step = frame[in_step]
        per_arm = (
            step.groupby("_arm")["_unit"].nunique() if counted == "units" else step["_arm"].value_counts()
        )
        srm_counts = {str(k): int(v) for k, v in per_arm.items()}
        srm_p = sample_ratio_mismatch(srm_counts, normalised)
        if srm_p is not None and srm_p < SRM_ALARM:
            warnings.append(
                f"sample-ratio mismatch (p = {srm_p:.2g}): the {counted} per variant are not the intended "
                "split; the comparisons below cannot be trusted until the cause is found"
            )

    # -- lifts --
    covariate = spec.cuped_covariate
    x_all = None
    if covariate is not None:
        if covariate not in frame.columns:
            raise DataError(
                "the CUPED covariate is not logged with the requests",
                field="deployment.experiment.cuped_covariate",
                received=covariate,
                expected="a numeric input field the requests carry",
            )
        x_all = pd.to_numeric(frame[covariate], errors="coerce").to_numpy(dtype=float)
        if unit_level:
            warnings.append(
                "CUPED is not applied to unit-level (ratio) metrics: the covariate is per request"
            )
            x_all = None
    t_ns = frame["_t"].astype("int64").to_numpy()
    unit_codes = pd.factorize(frame["_unit"])[0]  # integer codes: bincounts, not string sorts
    comparisons: list[MetricComparison] = []
    for challenger in challengers:
        ia, ib = (arm == baseline).to_numpy(), (arm == challenger).to_numpy()
        rows: list[tuple[str, Comparison, dict[str, Any] | None, dict[str, Any] | None]] = []
        for m in metric_names:
            meta = METRICS[m]
            v = values[m]
            arms = Arms(
                v[ia],
                v[ib],
                unit_codes[ia] if unit_level else None,
                unit_codes[ib] if unit_level else None,
                None if x_all is None else x_all[ia],
                None if x_all is None else x_all[ib],
            )
            if not enough_per_arm(arms, (len(arms.a), len(arms.b))):
                warnings.append(
                    f"{m}: fewer than 2 {'units' if unit_level else 'values'} in an arm, not compared"
                )
                continue
            c, cup = compare_arms(arms, meta.kind, spec.alpha)
            if cup is not None:
                cup = {"covariate": covariate, **cup}
            seq = (
                None
                if spec.sequential == "none"
                else sequential_read_out(arms, meta.kind, spec, meta.higher_is_better, t_ns[ia], t_ns[ib])
            )
            rows.append((m, c, cup, seq))
        reject, adjusted = adjust([r[1].p_value for r in rows], method=spec.correction, alpha=spec.alpha)
        for (m, c, cup, seq), sig, p_adj in zip(rows, reject, adjusted, strict=True):
            meta = METRICS[m]
            better = (c.difference > 0) == meta.higher_is_better
            comparisons.append(
                MetricComparison(
                    variant=challenger,
                    baseline=baseline,
                    metric=m,
                    kind=meta.kind,
                    higher_is_better=meta.higher_is_better,
                    comparison=c,
                    p_adjusted=p_adj,
                    significant=sig,
                    verdict=("better" if better else "worse") if sig else "no significant difference",
                    cuped=cup,
                    bayesian=bayes_read_out(c, meta.kind, meta.higher_is_better, unit_level),
                    sequential=seq,
                )
            )

    first, last = (frame["_t"].iloc[0], frame["_t"].iloc[-1]) if len(frame) else (None, None)
    return ExperimentAnalysis(
        task=task,
        baseline=baseline,
        n=len(frame),
        unit_level=unit_level,
        alpha=spec.alpha,
        correction=spec.correction,
        variants=summaries,
        comparisons=comparisons,
        weights=normalised,
        srm_p_value=srm_p,
        srm_counts=srm_counts,
        srm_counted=counted,
        first=first,
        last=last,
        off_policy=_off_policy(frame, names, task, positive_class, costs, reward),
        plan=_plan(frame, comparisons, summaries, baseline, spec, mde) if plan else None,
        warnings=warnings,
    )


def _off_policy(
    frame: pd.DataFrame, names: list[str], task: str, positive_class: Any, costs: Any, reward: str
) -> dict[str, Any] | None:
    """Arm rewards and off-policy values of always serving each arm, for a log with propensities
    below 1 (a bandit's): the logged reward is the bandit's (``match`` or ``cost``)."""
    if "propensity" not in frame.columns or task not in ("binary", "multiclass"):
        return None
    p = pd.to_numeric(frame["propensity"], errors="coerce").to_numpy(dtype=float)
    if not (np.isfinite(p) & (p < 1)).any():
        return None  # fixed splits log no propensity, single models 1: nothing to re-weigh
    if reward == "cost":
        if costs is None:
            raise DesignError("reward: cost needs goals.costs", field="deployment.reward", received=reward)
        r = -metric_values("cost", frame, task=task, positive_class=positive_class, costs=costs) / 1000.0
    else:
        r = metric_values("accuracy", frame, task=task, positive_class=positive_class)
    ok = np.isfinite(r) & np.isfinite(p) & (p > 0) & (p <= 1)
    index = {name: i for i, name in enumerate(names)}
    action = frame["_arm"].map(index).to_numpy()
    r, p, action = r[ok], p[ok], action[ok].astype(np.int64)
    if r.size < 2:
        return None
    per_arm = off_policy.arm_rewards(r, action, names)
    candidates = {}
    for i, name in enumerate(names):
        target = np.zeros((r.size, len(names)))
        target[:, i] = 1.0
        est = off_policy.off_policy_estimates(r, p, action, target)
        candidates[f"always {name}"] = {k: e.to_dict() for k, e in est.items()}
    return {"reward": reward, "labelled": int(r.size), "arms": per_arm, "policies": candidates}


def _plan(
    frame: pd.DataFrame,
    comparisons: list[MetricComparison],
    summaries: list[VariantSummary],
    baseline: str,
    spec: ExperimentSpec,
    mde: Mapping[str, float] | float | None,
) -> dict[str, Any]:
    """Per compared metric (against the first challenger): the smallest effect the logged sample
    can detect, and with ``mde`` (relative to the baseline's value: 0.05 = 5 %) the units per
    arm and the days needed at the units per day the log shows (on logging time: how fast the
    servers receive them; returning units make this an upper bound on the days)."""
    t = pd.to_datetime(frame["logged_at"], utc=True) if "logged_at" in frame.columns else frame["_t"]
    span = (t.max() - t.min()).total_seconds() / 86_400 if len(t) > 1 else math.nan
    span_days = max(span, 1 / 86_400) if np.isfinite(span) else math.nan
    per_day = {s.variant: s.units / span_days for s in summaries}
    out: dict[str, Any] = {
        "alpha": spec.alpha,
        "power": spec.power,
        "days_logged": span,
        "units_per_day": per_day,
        "metrics": [],
    }
    first = next((c.variant for c in comparisons), None)
    for c in comparisons:
        if c.variant != first:
            continue  # the baseline's numbers: once per metric
        cmp_ = c.comparison
        ratio = cmp_.n_b / cmp_.n_a
        sd = implied_sd(cmp_)
        proportion = c.kind == "proportion" and c.test == "two-proportion z"
        base = cmp_.estimate_a
        row: dict[str, Any] = {"metric": c.metric, "baseline_value": base, "sd": sd, "n_baseline": cmp_.n_a}
        kwargs = {"alpha": spec.alpha, "power": spec.power, "ratio": ratio}
        if proportion and 0 < base < 1:
            row["mde_now"] = power.mde_proportion(base, cmp_.n_a, **kwargs)
        elif sd > 0:
            row["mde_now"] = power.mde_mean(sd, cmp_.n_a, **kwargs)
        if row.get("mde_now") is not None and base:
            row["mde_now_relative"] = row["mde_now"] / abs(base)
        want = mde.get(c.metric) if isinstance(mde, Mapping) else mde
        if want is not None and base:
            absolute = want * abs(base) * (1 if c.higher_is_better else -1)  # an improvement
            if proportion:
                n = power.sample_size_proportion(base, absolute, **kwargs)
            else:
                n = power.sample_size_mean(sd, absolute, **kwargs)
            need = {baseline: n, c.variant: math.ceil(n * ratio)}
            row |= {
                "mde_relative": want,
                "mde": absolute,
                "n_per_arm": need,
                "days_needed": power.days_needed(need, per_day=per_day),
            }
        out["metrics"].append(row)
    return out

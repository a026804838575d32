"""The decision rule: pick the winning candidate from a trade-off table, and say why.

``select_model(table, maximize="roc_auc", subject_to={"p99_latency_ms": 20})`` keeps the
candidates meeting every constraint (and beating the best baseline), ranks them by the metric
and returns a :class:`Decision` whose ``reason`` is a sentence with the numbers. Baselines are
never the winner. If no candidate passes, :class:`~mlsd.errors.GateError` names each rejection.

Constraint keys (``subject_to``): ``p50_latency_ms``, ``p99_latency_ms``, ``size_mb``,
``train_seconds``, ``ece`` and ``brier`` are upper bounds; ``min_<name>`` and ``max_<name>``
bound any measured metric (``min_recall``) or ``throughput_rows_per_s``.

>>> from mlsd.goals import MetricEstimate
>>> def ev(name, kind, auc, p99):
...     metrics = {"valid": {"roc_auc": MetricEstimate(*auc)}}
...     return CandidateEvaluation(name, kind, "binary", "roc_auc", metrics, p50_latency_ms=p99 / 2,
...                                p99_latency_ms=p99, throughput_rows_per_s=1e5, size_mb=1.0,
...                                train_seconds=2.0)
>>> table = TradeOffTable([ev("majority", "baseline", (0.5,), 0.1), ev("rf", "candidate", (0.75,), 34),
...                        ev("gbdt", "candidate", (0.742, 0.735, 0.749), 8),
...                        ev("logreg", "candidate", (0.701,), 1)])
>>> d = select_model(table, maximize="roc_auc", subject_to={"p99_latency_ms": 20})
>>> d.winner, d.ranking
('gbdt', ['gbdt', 'logreg'])
>>> print(d.reason)
gbdt: roc_auc 0.742 [0.735, 0.749] on valid, best of 2 candidates meeting p99_latency_ms <= 20 and \
beating baseline majority (0.500); logreg 0.701; rf rejected: p99 latency 34 ms > 20 ms

``decision.gates[model]`` holds each candidate's :class:`Gate` per constraint: the measured value,
the bound, whether it passed and by what relative margin; ``close`` flags a margin within
:data:`CLOSE_MARGIN` of the bound, where a noisier measurement could have decided otherwise.

>>> [(g.constraint, g.value, g.passed, g.margin, g.close) for g in d.gates["gbdt"]]
[('p99_latency_ms', 8.0, True, 0.6, False)]
>>> d.gates["rf"][0].margin, d.gates["rf"][0].close
(-0.7, False)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mlsd.errors import DesignError, GateError, ModelError
from mlsd.goals.metrics import get_metric
from mlsd.modeling.evaluation import CandidateEvaluation, TradeOffTable

__all__ = ["CLOSE_MARGIN", "Decision", "Gate", "check_constraints", "list_constraint_keys", "select_model"]

# A gate passed or failed within this fraction of its bound is flagged as close: for latency,
# that is within what a busier or quieter machine can move a measurement.
CLOSE_MARGIN = 0.2

_UPPER = ("p50_latency_ms", "p99_latency_ms", "size_mb", "train_seconds", "ece", "brier")
_OPERATIONAL = ("p50_latency_ms", "p99_latency_ms", "size_mb", "train_seconds", "throughput_rows_per_s")
_LABELS = {
    "p50_latency_ms": ("p50 latency", " ms"),
    "p99_latency_ms": ("p99 latency", " ms"),
    "size_mb": ("size", " MB"),
    "train_seconds": ("training time", " s"),
    "throughput_rows_per_s": ("throughput", " rows/s"),
}


@dataclasses.dataclass(frozen=True)
class Gate:
    """One constraint as measured for one candidate.

    ``margin`` is the distance to the bound relative to it, positive inside (passed) and negative
    outside: ``(bound - value) / |bound|`` for an upper bound, ``(value - bound) / |bound|`` for
    a lower one; ``None`` when the value is undefined or the bound is 0. ``close`` is
    ``|margin| <= CLOSE_MARGIN``. Iterating gives ``(field, value)`` pairs, so ``dict(gate)``
    works.
    """

    constraint: str  # as written in the design, e.g. p99_latency_ms
    value: float | None
    bound: float
    op: str  # "<=" or ">="
    passed: bool
    margin: float | None
    close: bool

    def __iter__(self) -> Any:
        return iter(dataclasses.asdict(self).items())


@dataclasses.dataclass(frozen=True)
class Decision:
    """The winner, the sentence explaining it, the ranking of passing candidates and why others
    failed; ``gates[name]`` is each candidate's :class:`Gate` per constraint, in design order."""

    winner: str
    reason: str
    ranking: list[str]
    rejected: dict[str, str]
    metric: str
    split: str
    gates: dict[str, list[Gate]] = dataclasses.field(default_factory=dict)

    @property
    def close_gates(self) -> dict[str, list[Gate]]:
        """The gates decided by a small margin, per candidate (candidates without any left out)."""
        return {n: close for n, gs in self.gates.items() if (close := [g for g in gs if g.close])}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _Bound:
    key: str  # as written in the design
    measure: str  # metric name or operational attribute
    upper: bool
    limit: float

    def observed(self, e: CandidateEvaluation, split: str) -> float:
        return (
            float(getattr(e, self.measure)) if self.measure in _OPERATIONAL else e.value(self.measure, split)
        )

    def describe(self) -> str:
        return f"{self.key} {'<=' if self.upper else '>='} {self.limit:g}"

    def violation(self, e: CandidateEvaluation, split: str) -> str | None:
        v = self.observed(e, split)
        label, unit = _LABELS.get(self.measure, (self.measure, ""))
        if math.isnan(v):
            return f"{label} is undefined"
        if (v > self.limit) if self.upper else (v < self.limit):
            return f"{label} {_fmt(v)}{unit} {'>' if self.upper else '<'} {self.limit:g}{unit}"
        return None

    def gate(self, e: CandidateEvaluation, split: str) -> Gate:
        v = self.observed(e, split)
        passed = not math.isnan(v) and ((v <= self.limit) if self.upper else (v >= self.limit))
        margin = None
        if not math.isnan(v) and self.limit != 0:
            margin = round(((self.limit - v) if self.upper else (v - self.limit)) / abs(self.limit), 6)
        return Gate(
            constraint=self.key,
            value=None if math.isnan(v) else v,
            bound=self.limit,
            op="<=" if self.upper else ">=",
            passed=passed,
            margin=margin,
            close=margin is not None and abs(margin) <= CLOSE_MARGIN,
        )


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1 else f"{v:.3f}"


def _bounds(subject_to: dict[str, float], measured: set[str]) -> list[_Bound]:
    known = [*_UPPER, "min_<metric>", "max_<metric>", "min_throughput_rows_per_s"]
    out = []
    for key, limit in subject_to.items():
        field = f"models.select.subject_to.{key}"
        if isinstance(limit, bool) or not isinstance(limit, int | float) or math.isnan(limit):
            raise DesignError(
                "a constraint limit must be a number", field=field, received=limit, expected="e.g. 20"
            )
        if key in _UPPER:
            measure, upper = key, True
        elif key.startswith(("min_", "max_")):
            measure, upper = key[4:], key.startswith("max_")
        else:
            raise DesignError(
                "unknown constraint", field=field, received=key, expected=f"one of: {', '.join(known)}"
            )
        if measure not in _OPERATIONAL and measure not in measured:
            raise DesignError(
                "the constraint bounds something that was not measured",
                field=field,
                received=key,
                expected=f"a bound on one of: {', '.join(sorted(measured | set(_OPERATIONAL)))}",
            )
        out.append(_Bound(key, measure, upper, float(limit)))
    return out


def _direction(maximize: str | None, minimize: str | None) -> tuple[str, bool]:
    if (maximize is None) == (minimize is None):
        raise DesignError(
            "give exactly one of maximize or minimize",
            field="models.select",
            received={"maximize": maximize, "minimize": minimize},
            expected="e.g. maximize: roc_auc",
        )
    metric, greater = (maximize, True) if maximize is not None else (str(minimize), False)
    if get_metric(metric, field="models.select").greater_is_better != greater:
        right = "minimize" if greater else "maximize"
        raise DesignError(
            f"for {metric} {'lower' if greater else 'higher'} is better",
            field=f"models.select.{'maximize' if greater else 'minimize'}",
            received=metric,
            expected=f"{right}: {metric}",
        )
    return metric, greater


def select_model(
    table: TradeOffTable,
    *,
    maximize: str | None = None,
    minimize: str | None = None,
    subject_to: dict[str, float] | None = None,
    split: str = "valid",
    require_beats_baseline: bool = True,
    variants: dict[str, tuple[str, bool]] | None = None,
) -> Decision:
    """Pick the best candidate on ``split`` meeting ``subject_to``; see the module docstring.

    ``variants`` maps a compressed row to ``(its source row, exact)`` (``models.compress``). An
    exact variant (the same model in ONNX, within the build's tolerance) ranks on its source's
    metric, so the faster of the two wins rather than the one whose metric differs in its last
    digits. A lossy variant (quantised, distilled) wins only when its source fails a constraint:
    its metric beating the source's is noise the compression added, not a reason to ship it.

    >>> from mlsd.goals import MetricEstimate
    >>> def ev(name, auc, p99, kind="candidate"):
    ...     metrics = {"valid": {"roc_auc": MetricEstimate(auc)}}
    ...     return CandidateEvaluation(name, kind, "binary", "roc_auc", metrics, p50_latency_ms=p99,
    ...                                p99_latency_ms=p99, throughput_rows_per_s=1e5, size_mb=1.0,
    ...                                train_seconds=1.0)
    >>> table = TradeOffTable([ev("majority", 0.5, 0.1, "baseline"), ev("gbdt", 0.7000, 1.4),
    ...                        ev("gbdt_onnx", 0.69999, 1.1), ev("gbdt_int8", 0.7001, 1.0)])
    >>> links = {"gbdt_onnx": ("gbdt", True), "gbdt_int8": ("gbdt", False)}
    >>> select_model(table, maximize="roc_auc", variants=links).ranking
    ['gbdt_onnx', 'gbdt']
    >>> select_model(table, maximize="roc_auc", variants=links, subject_to={"p99_latency_ms": 1.05}).winner
    'gbdt_int8'
    """
    metric, greater = _direction(maximize, minimize)
    candidates = table.candidates
    if not candidates:
        raise ModelError(
            "no candidates to choose from", field="models.candidates", received=0, expected=">= 1"
        )
    measured = set(candidates[0].metrics.get(split, {}))
    if metric not in measured:
        raise DesignError(
            f"{metric} was not measured on {split}",
            field=f"models.select.{'maximize' if greater else 'minimize'}",
            received=metric,
            expected=f"one of: {', '.join(sorted(measured))}",
        )
    bounds = _bounds(subject_to or {}, measured)

    def better(a: float, b: float) -> bool:
        return a > b if greater else a < b

    best_base: CandidateEvaluation | None = None
    for b in table.baselines:
        v = b.value(metric, split)
        if not math.isnan(v) and (best_base is None or better(v, best_base.value(metric, split))):
            best_base = b

    rejected: dict[str, str] = {}
    passing: list[CandidateEvaluation] = []
    for e in candidates:
        value = e.value(metric, split)
        problems = [p for b in bounds if (p := b.violation(e, split))]
        if math.isnan(value):
            problems.insert(0, f"{metric} is undefined")
        elif require_beats_baseline and best_base is not None:
            base = best_base.value(metric, split)
            if not better(value, base):
                problems.append(f"{metric} {value:.3f} does not beat baseline {best_base.name} ({base:.3f})")
        if problems:
            rejected[e.name] = "; ".join(problems)
        else:
            passing.append(e)

    variants = variants or {}
    passing_names = {e.name for e in passing}
    for e in list(passing):
        source, exact = variants.get(e.name, (None, True))
        if source in passing_names and not exact:
            passing.remove(e)
            rejected[e.name] = f"a lossy compression of {source}, which meets every constraint itself"
    by_name = {e.name: e for e in candidates}

    def rank_value(e: CandidateEvaluation) -> float:
        source = variants.get(e.name, (None, False))
        if source[1] and source[0] in passing_names:
            return by_name[source[0]].value(metric, split)
        return e.value(metric, split)

    rules = [b.describe() for b in bounds]
    if not passing:
        detail = "; ".join(f"{n}: {r}" for n, r in rejected.items())
        raise GateError(
            f"no candidate passed the selection rule: {detail}",
            field="models.select.subject_to",
            received=rejected,
            expected=", ".join(rules) or f"a candidate beating the baseline on {metric}",
        )
    ranked = sorted(passing, key=lambda e: ((-1 if greater else 1) * rank_value(e), e.p99_latency_ms, e.name))
    winner = ranked[0]
    n = len(ranked)
    head = f"{winner.name}: {metric} {winner.estimate(metric, split)} on {split}, "
    head += f"best of {n} candidate{'s' * (n != 1)}"
    if rules:
        head += f" meeting {', '.join(rules)}"
    if require_beats_baseline and best_base is not None:
        head += f" and beating baseline {best_base.name} ({best_base.value(metric, split):.3f})"
    parts = [head]
    if len(ranked) > 1:
        parts.append(", ".join(f"{e.name} {e.value(metric, split):.3f}" for e in ranked[1:]))
    parts += [f"{name} rejected: {why}" for name, why in rejected.items()]
    return Decision(
        winner=winner.name,
        reason="; ".join(parts),
        ranking=[e.name for e in ranked],
        rejected=rejected,
        metric=metric,
        split=split,
        gates={e.name: [b.gate(e, split) for b in bounds] for e in candidates},
    )


def list_constraint_keys(measured: list[str]) -> list[str]:
    """The ``subject_to`` keys :func:`select_model` accepts when the ``measured`` metrics are measured.

    >>> keys = list_constraint_keys(["roc_auc"])
    >>> keys[:2], "min_roc_auc" in keys, "min_recall" in keys, "ece" in keys
    (['p50_latency_ms', 'p99_latency_ms'], True, False, False)
    """
    bounded = [*_OPERATIONAL, *measured]
    keys = [k for k in _UPPER if k in bounded] + [f"{d}_{m}" for m in bounded for d in ("min", "max")]
    return list(dict.fromkeys(keys))


def check_constraints(subject_to: dict[str, float], measured: list[str]) -> None:
    """Raise the :class:`DesignError` :func:`select_model` would raise for ``subject_to``, before a build.

    >>> check_constraints({"p99_latency_ms": 20, "min_roc_auc": 0.6}, ["roc_auc"])
    >>> check_constraints({"p99_latency": 20}, ["roc_auc"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlsd.errors.DesignError: models.select.subject_to.p99_latency: unknown constraint ...
    """
    _bounds(dict(subject_to), set(measured))

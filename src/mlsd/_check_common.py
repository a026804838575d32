"""What the design checks of every segment share: locating a stage's error, the measured metrics.

:mod:`mlsd._design_checks` runs the checks segment by segment; :mod:`mlsd._model_checks` holds
segment 4's (candidates, search, ensembles, compression, abstention, explanations). Both point a
stage library's error at its line of the design file the same way, and bound
``goals.constraints`` by what the build measures.
"""

from __future__ import annotations

from collections.abc import Iterator

from mlsd.data import source_columns
from mlsd.design import Design
from mlsd.errors import DesignError

__all__ = ["Problems", "constraint_problems", "derived_from", "located", "measured_metrics"]

Problems = Iterator[DesignError]

# SLO keys the monitor judges but the build cannot measure offline, and what to write instead.
# goals.constraints are the build's selection gates too, so they must be measurable by both.
_SLO_ONLY = {
    "p95_latency_ms": (
        "the build measures p50 and p99 latency, not p95, so it cannot gate on p95",
        "p99_latency_ms (gated by the build on the model, judged by mlsd monitor on the served "
        "requests) or p50_latency_ms",
    ),
    "max_error_rate": (
        "the service error rate exists only once the model serves; the build cannot gate on it",
        "the alert monitoring.alerts.max_error_rate (fires when the 5xx share of requests exceeds it)",
    ),
    "min_throughput_rps": (
        "requests per second exist only once the model serves; the build times batch throughput in rows/s",
        "min_throughput_rows_per_s (the build's batch throughput of the model)",
    ),
}


def located(
    design: Design, exc: DesignError, field: str | None = None, expected: str | None = None
) -> DesignError:
    """A stage library's error, pointed at its line of the design file."""
    return design.error(
        exc.message,
        field=field or exc.field or "",
        received=exc.received,
        expected=expected or exc.expected,
    )


def measured_metrics(design: Design) -> list[str]:
    """The metrics the build measures on every split (what a constraint can bound)."""
    g = design.goals
    return list(dict.fromkeys([g.metric, *g.metrics, *(["ece", "brier"] if g.task == "binary" else [])]))


def constraint_problems(design: Design, constraints: dict[str, float], prefix: str) -> Problems:
    from mlsd.goals.metrics import get_metric
    from mlsd.modeling.selection import check_constraints, list_constraint_keys

    measured = measured_metrics(design)
    for key, limit in constraints.items():
        field = f"{prefix}.{key}"
        if key in _SLO_ONLY and key not in list_constraint_keys(measured):
            why, instead = _SLO_ONLY[key]
            yield design.error(f"not a build constraint: {why}", field=field, received=key, expected=instead)
            continue
        try:
            check_constraints({key: limit}, measured)
        except DesignError as exc:
            expected = exc.expected
            bounded = key[4:] if key.startswith(("min_", "max_")) else key
            try:
                applies = design.goals.task in get_metric(bounded).tasks
            except DesignError:
                applies = False
            if applies and bounded not in measured:
                expected = f"{bounded} listed in goals.metrics, so the build measures it"
            elif exc.message == "unknown constraint":
                expected = "one of: " + ", ".join(list_constraint_keys(measured))
            yield located(design, exc, field=field, expected=expected)


def derived_from(design: Design, column: str) -> set[str]:
    """The raw columns a derived column reads, through chains of derived columns."""
    try:
        return set(source_columns(design, column))
    except DesignError:
        return set()  # _expressions reports the expression that does not parse

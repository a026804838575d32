"""What an experiment compares: the metrics read from each logged request.

Each :class:`ExperimentMetric` turns the prediction log's rows into one number per request
(NaN where it is undefined, e.g. an unlabelled request for accuracy): the analysis then sums
them per arm (or per unit of assignment). ``kind`` says which test fits (``proportion``: 0/1
values, the two-proportion z test and a Beta-Binomial posterior; ``mean``: Welch's t and a
Normal posterior); ``scale`` multiplies the values (cost is reported per 1,000 decisions).

>>> import pandas as pd
>>> rows = pd.DataFrame({"decision": [True, False, True], "outcome": [True, True, None],
...                      "score": [.9, .2, .7], "latency_ms": [3.0, 4.0, 5.0]})
>>> metric_values("accuracy", rows, task="binary").tolist()
[1.0, 0.0, nan]
>>> from mlsd.goals import CostMatrix
>>> metric_values("cost", rows, task="binary", costs=CostMatrix(1, 4)).tolist()
[0.0, 4000.0, nan]
>>> default_metrics("binary", has_costs=True)
['accuracy', 'cost', 'latency_ms']
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlsd.errors import DesignError
from mlsd.monitoring._shadow_timeline import decision_text
from mlsd.monitoring.performance import _as_binary

__all__ = ["METRICS", "ExperimentMetric", "default_metrics", "metric_problem", "metric_values"]


@dataclasses.dataclass(frozen=True)
class ExperimentMetric:
    """One comparable quantity per logged request."""

    name: str
    kind: Literal["proportion", "mean"]
    higher_is_better: bool
    tasks: tuple[str, ...]
    labelled: bool  # needs the request's outcome (feedback)
    description: str
    needs_costs: bool = False
    scale: float = 1.0


_CLASSIFICATION = ("binary", "multiclass")

#: the metrics ``deployment.experiment.metrics`` may name
METRICS: dict[str, ExperimentMetric] = {
    m.name: m
    for m in (
        ExperimentMetric(
            "accuracy",
            "proportion",
            True,
            _CLASSIFICATION,
            True,
            "share of labelled decisions that were right",
        ),
        ExperimentMetric(
            "cost",
            "mean",
            False,
            ("binary",),
            True,
            "business cost of 1,000 labelled decisions, from goals.costs",
            needs_costs=True,
            scale=1000.0,
        ),
        ExperimentMetric(
            "abs_error", "mean", False, ("regression",), True, "absolute error of the prediction"
        ),
        ExperimentMetric(
            "latency_ms",
            "mean",
            False,
            ("binary", "multiclass", "regression"),
            False,
            "server time of the request",
        ),
    )
}


def default_metrics(task: str, *, has_costs: bool) -> list[str]:
    """The metrics compared when ``deployment.experiment.metrics`` is not given."""
    return [name for name, m in METRICS.items() if task in m.tasks and (has_costs or not m.needs_costs)]


def metric_problem(name: str, task: str, *, has_costs: bool) -> str | None:
    """Why ``name`` cannot be compared for this design (None when it can).

    >>> metric_problem("abs_error", "binary", has_costs=False)
    'abs_error is for a regression task, and goals.task is binary'
    """
    if name not in METRICS:
        return f"unknown experiment metric {name!r}; known: {', '.join(METRICS)}"
    m = METRICS[name]
    if task not in m.tasks:
        return f"{name} is for a {' or '.join(m.tasks)} task, and goals.task is {task}"
    if m.needs_costs and not has_costs:
        return f"{name} needs goals.costs"
    return None


def metric_values(
    name: str, rows: pd.DataFrame, *, task: str, positive_class: Any = None, costs: Any = None
) -> np.ndarray:
    """The metric's value per row of ``rows`` (``PredictionLog.read_predictions`` columns)."""
    problem = metric_problem(name, task, has_costs=costs is not None)
    if problem:
        raise DesignError(
            problem, field="deployment.experiment.metrics", received=name, expected=", ".join(METRICS)
        )
    m = METRICS[name]
    if name == "latency_ms":
        return pd.to_numeric(rows["latency_ms"], errors="coerce").to_numpy(dtype=float)
    out = np.full(len(rows), np.nan)
    labelled = rows["outcome"].notna().to_numpy().copy()
    if "decision" in rows.columns:
        labelled = labelled & rows["decision"].notna().to_numpy()
    part = rows[labelled]
    if not len(part):
        return out
    if name == "abs_error":
        err = pd.to_numeric(part["score"], errors="coerce") - pd.to_numeric(part["outcome"], errors="coerce")
        out[labelled] = err.abs().to_numpy(dtype=float)
    elif task == "multiclass":  # accuracy
        out[labelled] = (decision_text(part["decision"]) == decision_text(part["outcome"])).to_numpy(
            dtype=float
        )
    else:
        y = _as_binary(part["outcome"], positive_class, "outcome")
        d = _as_binary(part["decision"], positive_class, "decision", prefer_bool=True)
        if name == "accuracy":
            out[labelled] = (y == d).astype(float)
        else:  # cost: the cell of each decision, priced by goals.costs
            tp, fp = d & y, d & (1 - y)
            fn, tn = (1 - d) & y, (1 - d) & (1 - y)
            out[labelled] = costs.total(tn, fp, fn, tp).astype(float)
    return out * m.scale

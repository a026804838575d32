"""How often to re-train, answered with numbers: update policies replayed on the same stream.

The design review asks how frequently the model is updated. :func:`compare_update_policies`
replays a stream of labelled rows window by window under each policy: at the start of a window
the policy decides whether to re-train, on everything labelled by then (the history plus the
stream rows whose outcome has arrived, ``label_delay`` after their event time), and the model it
has then scores the window. Every policy sees the same rows in the same order, so their metrics,
costs and numbers of trainings compare like with like, and the gain of each over ``never`` (the
frozen first model) gets a paired bootstrap interval on the very rows both scored.

Policies (:func:`parse_policy`): ``never``; ``every_<duration>`` (``every_4w``: re-train when
the model is at least that old); ``on_drift`` (re-train when the share of drifted features in the
last complete window, against the data the current model was trained on, is above a bound).

>>> import numpy as np, pandas as pd
>>> t = pd.date_range("2024-01-01", periods=12 * 7, freq="D", tz="UTC")
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=len(t))
>>> flip = np.where(np.arange(len(t)) < 28, 1, -1)  # the relation reverses after four weeks
>>> rows = pd.DataFrame({"when": t, "x": x, "y": (flip * x + rng.normal(0, 0.3, len(t)) > 0).astype(int)})
>>> from sklearn.linear_model import LogisticRegression
>>> fit = lambda f: LogisticRegression().fit(f[["x"]], f["y"])
>>> score = lambda m, f: m.predict_proba(f[["x"]])[:, 1]
>>> weeks = [(s, s + pd.Timedelta("7D")) for s in pd.date_range("2024-01-29", periods=8, freq="7D", tz="UTC")]
>>> out = compare_update_policies(
...     rows[rows.when < "2024-01-29"], rows[rows.when >= "2024-01-29"], windows=weeks,
...     time_column="when", target="y", fit=fit, score=score, metric="roc_auc", task="binary",
...     policies=["never", "every_1w"], n_resamples=50)
>>> [(p.policy, p.trainings, round(p.metric, 2)) for p in out]  # weekly re-training recovers
[('never', 0, 0.01), ('every_1w', 7, 0.49)]
>>> out[1].gain_vs_never["low"] > 0  # the paired interval of its gain over the frozen model
True
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlsd.design import parse_duration
from mlsd.errors import DesignError, MlsdError
from mlsd.goals.metrics import compute_metric, get_task_metric
from mlsd.modeling.holdout import compare_on_holdout

__all__ = [
    "DEFAULT_POLICIES",
    "PolicyOutcome",
    "UpdatePolicy",
    "compare_update_policies",
    "parse_policy",
]

DEFAULT_POLICIES = ("never", "every_4w", "every_1w", "on_drift")


@dataclasses.dataclass(frozen=True)
class UpdatePolicy:
    """When to re-train: never, once the model is ``every`` old, or when the inputs drifted."""

    name: str
    every: dt.timedelta | None = None
    on_drift: bool = False

    def due(self, age: dt.timedelta, drifted_share: float | None, drift_bound: float) -> bool:
        if self.every is not None:
            return age >= self.every
        if self.on_drift:
            return drifted_share is not None and drifted_share > drift_bound
        return False


def parse_policy(text: str, field: str = "--policies") -> UpdatePolicy:
    """``never``, ``on_drift`` or ``every_<duration>``.

    >>> parse_policy("every_4w").every
    datetime.timedelta(days=28)
    >>> parse_policy("weekly")
    Traceback (most recent call last):
    ...
    mlsd.errors.DesignError: --policies: unknown update policy (received 'weekly'; expected never, \
on_drift or every_<duration> such as every_4w)
    """
    if text in ("never", "on_drift"):
        return UpdatePolicy(text, on_drift=text == "on_drift")
    if text.startswith("every_"):
        try:
            return UpdatePolicy(text, every=parse_duration(text.removeprefix("every_")))
        except ValueError:
            pass
    raise DesignError(
        "unknown update policy",
        field=field,
        received=text,
        expected="never, on_drift or every_<duration> such as every_4w",
    )


@dataclasses.dataclass
class PolicyOutcome:
    """One policy over the stream: per window and overall, and its gain over the frozen model."""

    policy: str
    trainings: int
    trained_at: list[str]
    windows: list[dict[str, Any]]
    metric: float
    cost_per_1000: float | None
    gain_vs_never: dict[str, Any] | None  # HoldoutComparison.to_dict(): this policy vs never

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare_update_policies(
    history: pd.DataFrame,
    stream: pd.DataFrame,
    *,
    windows: Sequence[tuple[pd.Timestamp, pd.Timestamp]],
    time_column: str,
    target: str,
    fit: Callable[[pd.DataFrame], Any],
    score: Callable[[Any, pd.DataFrame], np.ndarray],
    metric: str,
    task: str,
    policies: Sequence[str] = DEFAULT_POLICIES,
    label_delay: dt.timedelta = dt.timedelta(0),
    cost: Callable[[np.ndarray, np.ndarray], float | None] | None = None,
    drift_share: Callable[[pd.DataFrame, pd.DataFrame], float] | None = None,
    drifted_share_above: float = 0.3,
    initial_model: Any = None,
    n_resamples: int = 200,
    seed: int = 0,
    on_window: Callable[[str, int], None] | None = None,
) -> list[PolicyOutcome]:
    """Each policy in ``policies`` replayed over ``windows`` of ``stream`` (see the module doc).

    ``fit(frame)`` trains a model on labelled rows; ``score(model, frame)`` returns what
    ``metric`` reads; ``cost(y, scores)`` the cost per 1,000 rows; ``drift_share(train, window)``
    the share of drifted features (``on_drift`` needs it). ``initial_model`` is the model trained
    on ``history`` (fitted here when not given). ``on_window(policy, i)`` reports progress.
    """
    parsed = [parse_policy(p) for p in policies]
    if any(p.on_drift for p in parsed) and drift_share is None:
        raise DesignError(
            "the on_drift policy needs a drift measurement",
            field="--policies",
            received="on_drift",
            expected="drift_share(train, window)",
        )
    get_task_metric(metric, task)  # a clear error before any fit
    when = pd.to_datetime(stream[time_column], utc=True)
    labelled_at = when + pd.Timedelta(label_delay)
    chunks = [stream[((when >= a) & (when < b)).to_numpy()] for a, b in windows]
    first = initial_model if initial_model is not None else fit(history)
    never_scores = [np.asarray(score(first, c)) for c in chunks]
    y_all = np.concatenate([c[target].to_numpy() for c in chunks]) if chunks else np.array([])
    outcomes = []
    for policy in parsed:
        model, trained_on, trained_at = first, history, windows[0][0] if windows else None
        drifted: float | None = None
        rows: list[dict[str, Any]] = []
        scores_all: list[np.ndarray] = []
        stamps: list[str] = []
        for i, ((start, _end), chunk) in enumerate(zip(windows, chunks, strict=True)):
            age = start - trained_at if trained_at is not None else dt.timedelta(0)
            retrained = policy.name != "never" and policy.due(age, drifted, drifted_share_above)
            if retrained:
                known = stream[(labelled_at <= start).to_numpy()]
                trained_on = pd.concat([history, known], ignore_index=True)
                model, trained_at = fit(trained_on), start
                stamps.append(start.isoformat())
            s = never_scores[i] if model is first else np.asarray(score(model, chunk))
            scores_all.append(s)
            y = chunk[target].to_numpy()
            if policy.on_drift and len(chunk):
                # measured at the window's end, acted on at the next window's start
                drifted = float(drift_share(trained_on, chunk))  # type: ignore[misc]
            rows.append(
                {
                    "start": start.isoformat(),
                    "rows": len(chunk),
                    "retrained": retrained,
                    "metric": _metric(metric, y, s),
                    "cost_per_1000": cost(y, s) if cost is not None and len(y) else None,
                    "drifted_share": drifted if policy.on_drift else None,
                }
            )
            if on_window is not None:
                on_window(policy.name, i)
        s_all = np.concatenate(scores_all) if scores_all else np.array([])
        gain = None
        if policy.name != "never" and len(y_all):
            gain = compare_on_holdout(
                y_all,
                s_all,
                np.concatenate(never_scores),
                metric=metric,
                task=task,
                n_resamples=n_resamples,
                seed=seed,
            ).to_dict()
        outcomes.append(
            PolicyOutcome(
                policy=policy.name,
                trainings=len(stamps),
                trained_at=stamps,
                windows=rows,
                metric=_metric(metric, y_all, s_all),
                cost_per_1000=cost(y_all, s_all) if cost is not None and len(y_all) else None,
                gain_vs_never=gain,
            )
        )
    return outcomes


def _metric(metric: str, y: np.ndarray, scores: np.ndarray) -> float:
    """The metric, or NaN where it is undefined (an empty window, or one class only)."""
    if len(y) == 0:
        return float("nan")
    try:
        with np.errstate(all="ignore"):
            return float(compute_metric(metric, y, scores))
    except (ValueError, MlsdError):  # one class in the window: the metric does not exist there
        return float("nan")

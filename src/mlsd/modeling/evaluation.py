"""Offline evaluation of baselines and candidates, gathered into a trade-off table.

:func:`evaluate_model` measures one fitted model on the validation and test splits: every
requested metric (the primary one with a bootstrap interval), calibration (ECE, Brier) for
binary tasks, single-row latency, batch throughput, size and training time. Latency and
throughput are timed with CPU time, so they measure the model and not the machine's momentary
load (:class:`LatencyMeasurement` says how; ``docs/threads-and-timing.md`` why). A
:class:`TradeOffTable` holds the evaluations of all models and renders them as a DataFrame
or JSON records (the CLI draws them); :func:`mlsd.modeling.selection.select_model` decides from it.

>>> import numpy as np, pandas as pd
>>> from sklearn.dummy import DummyClassifier
>>> X = pd.DataFrame({"a": np.arange(100.0)}); y = (X["a"] > 60).astype(int)
>>> ev = evaluate_model("majority", DummyClassifier().fit(X, y), kind="baseline", X_valid=X, y_valid=y,
...                     X_test=None, y_test=None, task="binary", metrics=["roc_auc"], primary="roc_auc",
...                     n_bootstrap=20, train_seconds=0.0, n_latency_calls=5)
>>> ev.value("roc_auc"), sorted(ev.metrics["valid"])
(0.5, ['brier', 'ece', 'roc_auc'])
>>> TradeOffTable([ev]).to_frame()[["model", "kind", "roc_auc (valid)"]].to_dict("records")
[{'model': 'majority', 'kind': 'baseline', 'roc_auc (valid)': 0.5}]
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import DataError, DesignError, ModelError
from mlsd.goals.bootstrap import MetricEstimate, bootstrap_ci
from mlsd.goals.metrics import Metric, get_metric

__all__ = [
    "CandidateEvaluation",
    "LatencyMeasurement",
    "TradeOffTable",
    "evaluate_model",
    "measure_latency",
    "model_scores",
]

ThresholdRule = Callable[[np.ndarray, np.ndarray], float]
_TASKS = ("binary", "multiclass", "regression")
_KINDS = ("baseline", "candidate")
_N_DISTINCT_LATENCY_ROWS = 10
_N_WARMUP = 3
_N_LATENCY_REPETITIONS = 5
# Each timed call predicts its row this many times back to back and keeps the cheapest: noise
# (a preemption with cold caches afterwards, a timer interrupt) only ever adds time, and it
# rarely hits all of them, while a row that is intrinsically slow is slow every time.
_N_BEST_OF = 5
_N_LATENCY_CALLS = 100
# Process CPU time above this multiple of the calling thread's means other threads did part of
# the work, which the thread clock would not count: then the gate uses the process clock.
_ONE_THREAD_RATIO = 1.5
# A thread clock this coarse (Windows ticks at 15.6 ms) cannot time a millisecond predict.
_COARSE_CLOCK_S = 1e-4
_CLOCKS = {
    "thread_cpu": "the calling thread's CPU time (the model predicts on one thread)",
    "process_cpu": "the process's CPU time (the model predicts on several threads, so this counts "
    "every thread's work)",
    "wall": "wall-clock time (this platform's thread clock is too coarse)",
}
_ESTIMATOR = (
    f"cheapest of {_N_BEST_OF} predictions per call; median over repetitions of each repetition's percentile"
)


@dataclasses.dataclass(frozen=True)
class LatencyMeasurement:
    """Single-row latency, and how it was measured.

    ``p50_ms``/``p99_ms`` are in the gated ``clock`` (``"thread_cpu"``, ``"process_cpu"`` or
    ``"wall"``): CPU time leaves out the time a request waits while other processes hold the
    cores, so a busy machine moves them little while it doubles wall-clock percentiles. Each call
    is the cheapest of a few back-to-back predictions of its row; each of ``repetitions``
    consecutive runs of ``calls / repetitions`` calls gives a percentile, and the median over runs
    is reported, so one disturbed run does not move it. ``wall_p50_ms`` and ``wall_p99_ms`` (over
    every prediction) are what a client would have seen at measurement time.
    ``threads`` is how many threads the predict kept busy (process over thread CPU time).
    """

    p50_ms: float
    p99_ms: float
    wall_p50_ms: float
    wall_p99_ms: float
    calls: int
    repetitions: int
    threads: int
    clock: str
    estimator: str = _ESTIMATOR

    @property
    def method(self) -> str:
        """One sentence for the design document; the same for every model measured alike.

        >>> m = LatencyMeasurement(1.0, 2.0, 1.5, 9.0, calls=250, repetitions=5, threads=1,
        ...                        clock="thread_cpu")
        >>> print(m.method)  # doctest: +NORMALIZE_WHITESPACE
        Single-row latency: 250 calls on one row each in 5 runs, each call the cheapest of 5
        back-to-back predictions of its row, timed with the calling thread's CPU time (the model
        predicts on one thread), so time spent waiting while other processes hold the cores does
        not count; p50 and p99 are the median over the runs of each run's percentile (wall-clock
        p50/p99 are kept for information).
        """
        waiting = (
            ""
            if self.clock == "wall"
            else (", so time spent waiting while other processes hold the cores does not count")
        )
        return (
            f"Single-row latency: {self.calls} calls on one row each in {self.repetitions} runs, "
            f"each call the cheapest of {_N_BEST_OF} back-to-back predictions of its row, "
            f"timed with {_CLOCKS.get(self.clock, self.clock)}{waiting}; p50 and p99 are the "
            "median over the runs of each run's percentile (wall-clock p50/p99 are kept for "
            "information)."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the method sentence."""
        return {**dataclasses.asdict(self), "method": self.method}


@dataclasses.dataclass
class CandidateEvaluation:
    """What one model measured offline. ``metrics[split][name]`` is a :class:`MetricEstimate`."""

    name: str
    kind: str
    task: str
    primary: str
    metrics: dict[str, dict[str, MetricEstimate]]
    p50_latency_ms: float
    p99_latency_ms: float
    throughput_rows_per_s: float
    size_mb: float
    train_seconds: float
    threshold: float = 0.5  # the decision threshold label metrics were computed at
    model: Any = dataclasses.field(default=None, repr=False, compare=False)
    # The model's scores per split, as model_scores returns them, computed once: the threshold, the
    # costs, the curves and the document read these instead of predicting again.
    scores: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    # How p50/p99_latency_ms were measured (None when built by hand, e.g. in tests).
    latency: LatencyMeasurement | None = dataclasses.field(default=None, compare=False)
    throughput_method: str = ""

    @property
    def latency_method(self) -> str:
        """The sentence saying how the gated latency was measured (empty if not measured here)."""
        return "" if self.latency is None else self.latency.method

    @property
    def p50_wall_ms(self) -> float | None:
        """Wall-clock p50 at measurement time, for information (the gate reads ``p50_latency_ms``)."""
        return None if self.latency is None else self.latency.wall_p50_ms

    @property
    def p99_wall_ms(self) -> float | None:
        """Wall-clock p99 at measurement time, for information (the gate reads ``p99_latency_ms``)."""
        return None if self.latency is None else self.latency.wall_p99_ms

    def estimate(self, metric: str, split: str = "valid") -> MetricEstimate:
        """The estimate of ``metric`` on ``split``; :class:`ModelError` if it was not measured."""
        try:
            return self.metrics[split][metric]
        except KeyError:
            measured = {s: sorted(m) for s, m in self.metrics.items()}
            raise ModelError(
                f"{self.name} has no such measurement",
                field=f"{split}.{metric}",
                received=metric,
                expected=f"one of {measured}",
            ) from None

    def value(self, metric: str, split: str = "valid") -> float:
        """The point value of ``metric`` on ``split``."""
        return self.estimate(metric, split).value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the model itself is left out)."""
        out: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("metrics", "model", "scores", "latency")
        }
        out = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
        out["metrics"] = {s: {m: e.to_dict() for m, e in ms.items()} for s, ms in self.metrics.items()}
        out["latency"] = None if self.latency is None else self.latency.to_dict()
        out["latency_method"] = self.latency_method
        return out


def model_scores(model: Any, X: Any, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """What metrics consume: ``(scores, classes)``.

    Binary: positive-class (``classes_[1]``) probability; multiclass: the probability matrix;
    regression: predictions (classes ``None``).
    """
    if task == "regression":
        return np.asarray(model.predict(X), dtype=float), None
    if not hasattr(model, "predict_proba"):
        raise ModelError(
            "a classifier must give probabilities",
            field="predict_proba",
            received=type(model).__name__,
            expected="a model with predict_proba",
        )
    proba = np.asarray(model.predict_proba(X), dtype=float)
    classes = np.asarray(model.classes_)
    if task == "binary" and classes.size != 2:
        raise ModelError(
            "a binary model must know both classes",
            field="classes_",
            received=classes.tolist(),
            expected="two classes (was it trained on one class only?)",
        )
    return (proba[:, 1], classes) if task == "binary" else (proba, classes)


def _resolve_metrics(task: str, metrics: list[str], primary: str) -> list[Metric]:
    names = list(dict.fromkeys([primary, *metrics, *(["ece", "brier"] if task == "binary" else [])]))
    resolved = []
    for i, name in enumerate(names):
        m = get_metric(name, field="goals.metric" if i == 0 else "goals.metrics")
        if task not in m.tasks:
            raise DesignError(
                f"metric {name} does not apply to a {task} task",
                field="goals.metric" if i == 0 else "goals.metrics",
                received=name,
                expected=f"a {task} metric",
            )
        resolved.append(m)
    return resolved


def _split_metrics(
    model: Any,
    X: Any,
    y: Any,
    task: str,
    metrics: list[Metric],
    n_bootstrap: int,
    seed: int,
    threshold: float | ThresholdRule,
    field: str,
) -> tuple[dict[str, MetricEstimate], float, np.ndarray, float]:
    """The split's metrics, its batch throughput in rows/s (timing the one prediction made, in
    the clock :func:`_gated_clock` picks), its scores and the decision threshold used
    (``threshold`` itself, or what the rule chose from these scores)."""
    clocks = _now()
    scores, classes = model_scores(model, X, task)
    elapsed = _now() - clocks
    _, seconds, _ = _gated_clock(*(elapsed[:, None] / 1e9))
    rows_per_s = len(scores) / max(float(seconds[0]), 1e-9)
    y = np.asarray(y)
    if task == "binary":
        assert classes is not None  # model_scores returns the classes of every classifier
        unseen = ~np.isin(y, classes)
        if unseen.any():  # they would silently count as negatives
            raise DataError(
                "labels the model has never seen",
                field=field,
                received=np.unique(y[unseen])[:5].tolist(),
                expected=f"one of {classes.tolist()}",
            )
        y = (y == classes[1]).astype(np.int64)
        classes = None
    used = float(threshold(y, scores)) if callable(threshold) else float(threshold)
    return (
        {
            m.name: bootstrap_ci(
                m,
                y,
                scores,
                n_resamples=n_bootstrap if i == 0 else 0,
                seed=seed,
                threshold=used,
                classes=None if classes is None else classes.tolist(),
            )
            for i, m in enumerate(metrics)
        },
        float(rows_per_s),
        scores,
        used,
    )


def _single_rows(rows: Any) -> list[Any]:
    n = min(_N_DISTINCT_LATENCY_ROWS, len(rows))
    if n == 0:
        raise ModelError(
            "no rows to time single predictions on", field="latency_rows", received=0, expected=">= 1"
        )
    if isinstance(rows, pd.DataFrame):
        return [rows.iloc[[i]] for i in range(n)]
    return [rows[i : i + 1] for i in range(n)]


_THREAD_CLOCK_COARSE = time.get_clock_info("thread_time").resolution > _COARSE_CLOCK_S


def _now() -> np.ndarray:
    """(wall, calling thread CPU, process CPU) in ns; the CPU clocks only advance while running."""
    return np.array([time.perf_counter_ns(), time.thread_time_ns(), time.process_time_ns()], dtype=np.int64)


def _gated_clock(wall: np.ndarray, thread: np.ndarray, process: np.ndarray) -> tuple[str, np.ndarray, int]:
    """The clock a gate reads, its timings, and the threads the work kept busy.

    The thread clock counts only the calling thread: right for a model that predicts on it
    (what :func:`~mlsd.modeling.candidates.predict_on_one_thread` arranges), an under-count for
    one that hands work to other threads, which the process clock then counts instead.

    >>> clock, t, n = _gated_clock(np.array([9.0]), np.array([1.0]), np.array([1.1]))
    >>> clock, t.tolist(), n
    ('thread_cpu', [1.0], 1)
    >>> _gated_clock(np.array([9.0]), np.array([1.0]), np.array([2.0]))[::2]
    ('process_cpu', 2)
    """
    if _THREAD_CLOCK_COARSE:
        return "wall", wall, 1
    ratio = float(process.sum()) / max(float(thread.sum()), 1e-12)
    if ratio <= _ONE_THREAD_RATIO:
        return "thread_cpu", thread, 1
    return "process_cpu", process, max(1, round(ratio))


def measure_latency(
    predict: Callable[[Any], Any],
    rows: list[Any],
    n_calls: int = _N_LATENCY_CALLS,
    repetitions: int = _N_LATENCY_REPETITIONS,
) -> LatencyMeasurement:
    """Time ``predict`` on one row per call, cycling through ``rows``, after a few warm-up calls.

    The gated p50/p99 are CPU time (see :class:`LatencyMeasurement`): a call that waits (for the
    cores, or sleeping) costs no CPU, so the load of other processes barely moves them.

    >>> m = measure_latency(lambda row: sum(range(20_000)), [None], n_calls=50)
    >>> m.clock, m.calls, m.repetitions, m.threads, 0 < m.p50_ms <= m.p99_ms
    ('thread_cpu', 50, 5, 1, True)
    """
    for value, field, what in [
        (n_calls, "n_latency_calls", "timed call"),
        (repetitions, "n_latency_repetitions", "repetition"),
    ]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DesignError(
                f"latency needs at least one {what}", field=field, received=value, expected="an integer >= 1"
            )
    for row in rows[:_N_WARMUP]:
        predict(row)
    elapsed = np.empty((n_calls, _N_BEST_OF, 3), dtype=np.int64)
    for i in range(n_calls):  # one call per request is what is being measured, so no vectorising
        row = rows[i % len(rows)]
        for k in range(_N_BEST_OF):
            t0 = _now()
            predict(row)
            elapsed[i, k] = _now() - t0
    wall_all = elapsed[:, :, 0] / 1e6
    best = elapsed[np.arange(n_calls), elapsed[:, :, 1].argmin(axis=1)]  # cheapest in thread CPU time
    wall, thread, process = (best / 1e6).T  # ms
    clock, gated, threads = _gated_clock(wall, thread, process)
    runs = min(repetitions, n_calls)
    per_run = np.array([np.percentile(run, [50, 99]) for run in np.array_split(gated, runs)])
    p50, p99 = np.median(per_run, axis=0)
    wall_p50, wall_p99 = np.percentile(wall_all, [50, 99])  # every prediction, as a client saw it
    return LatencyMeasurement(
        p50_ms=float(p50),
        p99_ms=float(p99),
        wall_p50_ms=float(wall_p50),
        wall_p99_ms=float(wall_p99),
        calls=n_calls,
        repetitions=runs,
        threads=threads,
        clock=clock,
    )


def evaluate_model(
    name: str,
    model: Any,
    *,
    kind: str,
    X_valid: Any,
    y_valid: Any,
    X_test: Any = None,
    y_test: Any = None,
    task: str,
    metrics: list[str],
    primary: str,
    n_bootstrap: int = 200,
    seed: int = 0,
    train_seconds: float,
    latency_rows: pd.DataFrame | None = None,
    n_latency_calls: int = _N_LATENCY_CALLS,
    threshold: float | ThresholdRule = 0.5,
    n_latency_repetitions: int = _N_LATENCY_REPETITIONS,
) -> CandidateEvaluation:
    """Measure a fitted ``model`` (fed the same rows it will get in serving: raw rows for a pipeline).

    The primary metric gets a bootstrap interval (``n_bootstrap`` resamples), the others point
    values; binary tasks always report ``ece`` and ``brier``. ``threshold`` is the decision
    threshold of label metrics, or a rule ``(y_valid, valid_scores) -> threshold`` applied to the
    validation scores (binary labels as 0/1) and then used on test as well. Latency is for one row per call
    (``latency_rows``, default the validation rows), after a few warm-up calls:
    ``n_latency_calls`` calls in ``n_latency_repetitions`` runs (:func:`measure_latency`).
    Throughput is the test split's (else valid's) rows over the CPU time of its one batch predict.
    """
    if kind not in _KINDS:
        raise DesignError("unknown model kind", field="kind", received=kind, expected=" or ".join(_KINDS))
    if task not in _TASKS:
        raise DesignError("unsupported task", field="goals.task", received=task, expected=", ".join(_TASKS))
    resolved = _resolve_metrics(task, metrics, primary)
    splits = {"valid": (X_valid, y_valid)}
    if X_test is not None and y_test is not None:
        splits["test"] = (X_test, y_test)
    # Latency first: its warm-up calls also warm the model for the batch timings below.
    latency = measure_latency(
        lambda X: model_scores(model, X, task),
        _single_rows(X_valid if latency_rows is None else latency_rows),
        n_latency_calls,
        n_latency_repetitions,
    )
    throughput_split = "test" if "test" in splits else "valid"
    measured, rows_per_s, scores = {}, {}, {}
    for split, (X, y) in splits.items():  # valid first: a threshold rule chooses on valid only
        measured[split], rows_per_s[split], scores[split], used = _split_metrics(
            model, X, y, task, resolved, n_bootstrap, seed, threshold, f"y_{split}"
        )
        threshold = used  # chosen on valid, kept for test
    return CandidateEvaluation(
        name=name,
        kind=kind,
        task=task,
        primary=resolved[0].name,
        metrics=measured,
        p50_latency_ms=latency.p50_ms,
        p99_latency_ms=latency.p99_ms,
        throughput_rows_per_s=rows_per_s[throughput_split],
        size_mb=len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)) / 1e6,
        train_seconds=float(train_seconds),
        threshold=used,
        model=model,
        scores=scores,
        latency=latency,
        throughput_method=(
            f"Batch throughput: the {throughput_split} split's rows scored in one predict call, over "
            f"{'its wall-clock time' if latency.clock == 'wall' else 'the CPU time it took'}."
        ),
    )


_OPERATIONAL = {
    "p50_latency_ms": "p50 latency (ms)",
    "p99_latency_ms": "p99 latency (ms)",
    "throughput_rows_per_s": "throughput (rows/s)",
    "size_mb": "size (MB)",
    "train_seconds": "train (s)",
}


@dataclasses.dataclass
class TradeOffTable:
    """The evaluations of every baseline and candidate, side by side."""

    evaluations: list[CandidateEvaluation]

    def __post_init__(self) -> None:
        names = [e.name for e in self.evaluations]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ModelError(
                "model names must be unique", field="name", received=dupes, expected="distinct names"
            )

    def __iter__(self) -> Iterator[CandidateEvaluation]:
        return iter(self.evaluations)

    def __len__(self) -> int:
        return len(self.evaluations)

    def __getitem__(self, name: str) -> CandidateEvaluation:
        for e in self.evaluations:
            if e.name == name:
                return e
        raise KeyError(name)

    @property
    def baselines(self) -> list[CandidateEvaluation]:
        return [e for e in self.evaluations if e.kind == "baseline"]

    @property
    def candidates(self) -> list[CandidateEvaluation]:
        return [e for e in self.evaluations if e.kind == "candidate"]

    def to_frame(self) -> pd.DataFrame:
        """One row per model: ``<metric> (<split>)`` columns (with ``low``/``high`` where an interval
        was computed), then latency, throughput, size and training time."""
        rows = []
        for e in self.evaluations:
            row: dict[str, Any] = {"model": e.name, "kind": e.kind}
            for split, ms in e.metrics.items():
                for metric, est in ms.items():
                    row[f"{metric} ({split})"] = est.value
                    if est.low is not None:
                        row[f"{metric} ({split}) low"] = est.low
                        row[f"{metric} ({split}) high"] = est.high
            row.update({label: getattr(e, attr) for attr, label in _OPERATIONAL.items()})
            rows.append(row)
        frame = pd.DataFrame(rows)
        ops = list(_OPERATIONAL.values())
        return frame[[c for c in frame.columns if c not in ops] + ops] if rows else frame

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready list, one dict per model."""
        return [e.to_dict() for e in self.evaluations]

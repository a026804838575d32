"""Behavioural tests of a model, stated in the design (``models.tests``).

A behavioural test changes the test rows in one controlled way and compares the model's scores
before and after. Three kinds resolve through :data:`BEHAVIOUR_TESTS`:

- ``directional``: raise one numeric feature by ``delta`` (its units) or ``delta_std`` (training
  standard deviations); ``increasing`` means no score may go down by more than
  :data:`TOLERANCE`. Metric: the share of rows that violate it, bounded by ``max_violations``.
- ``perturbation``: Gaussian noise of ``noise`` training stds on each named numeric feature,
  then (``clip``) clipped to training quantiles, or (``drop``) the features set missing. Metric:
  the share of decisions that flip (binary: at the model's own cost-optimal threshold, as the
  evaluation uses; multiclass: the most probable class), bounded by ``max_flip_rate``.
- ``invariance``: one categorical feature's values permuted among the rows. Metric: the
  **largest** absolute score change over the rows (a multiclass model: over every class's
  probability), bounded by ``max_score_change``.

Each test runs on at most :data:`MAX_ROWS` test rows drawn without replacement with the design's
seed, and costs one ``predict`` per test per model (plus one for the unchanged rows).

>>> import numpy as np, pandas as pd
>>> from sklearn.linear_model import LinearRegression
>>> X = pd.DataFrame({"x": np.arange(10.0), "c": list("ababababab")})
>>> model = LinearRegression().fit(X[["x"]], -X["x"])  # the score falls as x rises
>>> class OnX:  # reads x only, as a design's pipeline reads its features
...     def predict(self, frame): return model.predict(frame[["x"]])
>>> spec = {"name": "x_up", "kind": "directional", "feature": "x", "direction": "increasing",
...         "delta": 1.0, "max_violations": 0.0}
>>> [r] = run_behaviour_tests([spec], {"m": OnX()}, X, X, task="regression").results
>>> r.metric, r.passed, len(r.examples)
(1.0, False, 5)
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlsd.design import BehaviourTestSpec
from mlsd.modeling.evaluation import model_scores

__all__ = [
    "BEHAVIOUR_TESTS",
    "MAX_EXAMPLES",
    "MAX_ROWS",
    "TOLERANCE",
    "BehaviourReport",
    "BehaviourResult",
    "BehaviourTest",
    "FailingExample",
    "behaviour_problems",
    "run_behaviour_tests",
]

MAX_ROWS = 2_000  # test rows each test reads: enough to see a 1% violation rate ~20 times
MAX_EXAMPLES = 5
TOLERANCE = 1e-9  # a directional score may move against the direction by float noise only

# (key, message, received, expected): one validate-time problem of one test
Problem = tuple[str, str, Any, str]


@dataclasses.dataclass(frozen=True)
class FailingExample:
    """One failing row: the changed columns before and after, and the score before and after.

    A result keeps the :data:`MAX_EXAMPLES` failing rows whose score moved most (multiclass: the
    top class probability).
    """

    before: dict[str, Any]
    after: dict[str, Any]
    score_before: float
    score_after: float


@dataclasses.dataclass(frozen=True)
class BehaviourResult:
    """One test of one model: its metric against its bound, and up to 5 failing rows."""

    test: str
    kind: str
    model: str
    metric_name: str
    metric: float
    bound: float
    passed: bool
    fail_build: bool
    rows: int
    examples: list[FailingExample]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class BehaviourReport:
    """Every test of every model, in design order."""

    results: list[BehaviourResult]

    def of(self, model: str) -> list[BehaviourResult]:
        return [r for r in self.results if r.model == model]

    def blocking(self, model: str) -> list[BehaviourResult]:
        """The ``fail_build`` tests ``model`` failed: the build stops if it is the champion."""
        return [r for r in self.of(model) if r.fail_build and not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"results": [r.to_dict() for r in self.results]}


class BehaviourTest(abc.ABC):
    """A kind of test: what it reads from its spec, how it is checked and how it runs."""

    kind = ""
    doc = ""
    metric_name = ""
    bound_key = ""

    def problems(self, spec: Any, numeric: list[str], categorical: list[str], task: str) -> Iterator[Problem]:
        """What is wrong with ``spec`` before any data is read (none: nothing)."""
        if getattr(spec, self.bound_key) is None:
            yield self.bound_key, f"a {self.kind} test needs its bound", None, f"{self.bound_key}: a number"

    @abc.abstractmethod
    def change(
        self, spec: Any, X: pd.DataFrame, train: pd.DataFrame, rng: np.random.Generator
    ) -> pd.DataFrame:
        """The test rows as this test changes them (every kind in BEHAVIOUR_TESTS defines it)."""

    @abc.abstractmethod
    def failing(
        self, spec: Any, before: np.ndarray, after: np.ndarray, task: str, threshold: float
    ) -> tuple[float, np.ndarray]:
        """``(metric, per-row failing mask)`` from the scores before and after the change."""

    def columns(self, spec: Any) -> list[str]:
        return [spec.feature] if spec.feature else list(spec.features)


def _std(train: pd.DataFrame, column: str) -> float:
    std = float(pd.to_numeric(train[column], errors="coerce").std())
    return std if np.isfinite(std) else 0.0


def _numeric_problem(key: str, column: str | None, numeric: list[str], kind: str) -> Iterator[Problem]:
    if column not in numeric:
        yield (
            key,
            f"a {kind} test changes a numeric feature",
            column,
            f"one of features.numeric: {', '.join(numeric) or '(none)'}",
        )


class Directional(BehaviourTest):
    kind = "directional"
    doc = "raise a numeric feature by delta (or delta_std); the score must not move against direction"
    metric_name = "share of rows violating"
    bound_key = "max_violations"

    def problems(self, spec: Any, numeric: list[str], categorical: list[str], task: str) -> Iterator[Problem]:
        yield from super().problems(spec, numeric, categorical, task)
        yield from _numeric_problem("feature", spec.feature, numeric, self.kind)
        if spec.direction is None:
            yield "direction", "a directional test needs a direction", None, "increasing or decreasing"
        if (spec.delta is None) == (spec.delta_std is None):
            yield "delta", "give exactly one of delta or delta_std", spec.delta, "delta: 0.5 or delta_std: 1"
        if task == "multiclass":
            yield (
                "kind",
                "a multiclass model has one score per class, no single direction",
                task,
                "a binary or regression task",
            )

    def change(
        self, spec: Any, X: pd.DataFrame, train: pd.DataFrame, rng: np.random.Generator
    ) -> pd.DataFrame:
        step = spec.delta if spec.delta is not None else spec.delta_std * _std(train, spec.feature)
        out = X.copy()
        out[spec.feature] = pd.to_numeric(X[spec.feature], errors="coerce").astype(float) + step
        return out

    def failing(
        self, spec: Any, before: np.ndarray, after: np.ndarray, task: str, threshold: float
    ) -> tuple[float, np.ndarray]:
        moved = after - before
        bad = moved < -TOLERANCE if spec.direction == "increasing" else moved > TOLERANCE
        return float(bad.mean()), bad


class Perturbation(BehaviourTest):
    kind = "perturbation"
    doc = "noise (training stds), clip (training quantiles) or drop numeric features; no decision flips"
    metric_name = "share of decisions flipped"
    bound_key = "max_flip_rate"

    def problems(self, spec: Any, numeric: list[str], categorical: list[str], task: str) -> Iterator[Problem]:
        yield from super().problems(spec, numeric, categorical, task)
        if not spec.features:
            yield "features", "a perturbation test names the features it changes", None, "features: [a, b]"
        for j, column in enumerate(spec.features):
            yield from _numeric_problem(f"features[{j}]", column, numeric, self.kind)
        if spec.noise is None and not spec.drop and spec.clip is None:
            yield (
                "noise",
                "a perturbation test needs a change",
                None,
                "noise: 0.05, drop: true or clip: [0.01, 0.99]",
            )
        if spec.clip is not None and not spec.clip[0] < spec.clip[1]:
            yield "clip", "the lower quantile must be below the upper", list(spec.clip), "e.g. [0.01, 0.99]"
        if task == "regression":
            yield (
                "kind",
                "a perturbation counts flipped decisions; a regression decides nothing",
                task,
                "an invariance or directional test",
            )

    def change(
        self, spec: Any, X: pd.DataFrame, train: pd.DataFrame, rng: np.random.Generator
    ) -> pd.DataFrame:
        out = X.copy()
        for column in spec.features:
            values = pd.to_numeric(X[column], errors="coerce").to_numpy(dtype=float)
            if spec.noise:
                values = values + rng.normal(0.0, spec.noise * _std(train, column), len(values))
            if spec.clip is not None:
                low, high = np.nanquantile(pd.to_numeric(train[column], errors="coerce"), spec.clip)
                values = np.clip(values, low, high)
            if spec.drop:
                values = np.full(len(values), np.nan)
            out[column] = values
        return out

    def failing(
        self, spec: Any, before: np.ndarray, after: np.ndarray, task: str, threshold: float
    ) -> tuple[float, np.ndarray]:
        if before.ndim == 2:  # multiclass: the decision is the most probable class
            flipped = before.argmax(axis=1) != after.argmax(axis=1)
        else:
            flipped = (before >= threshold) != (after >= threshold)
        return float(flipped.mean()), flipped


class Invariance(BehaviourTest):
    kind = "invariance"
    doc = "permute a categorical feature among the rows; no score may change by more than max_score_change"
    metric_name = "largest absolute score change"
    bound_key = "max_score_change"

    def problems(self, spec: Any, numeric: list[str], categorical: list[str], task: str) -> Iterator[Problem]:
        yield from super().problems(spec, numeric, categorical, task)
        if spec.feature not in categorical:
            yield (
                "feature",
                "an invariance test permutes a categorical feature",
                spec.feature,
                (f"one of features.categorical: {', '.join(categorical) or '(none)'}"),
            )

    def change(
        self, spec: Any, X: pd.DataFrame, train: pd.DataFrame, rng: np.random.Generator
    ) -> pd.DataFrame:
        out = X.copy()
        out[spec.feature] = X[spec.feature].to_numpy()[rng.permutation(len(X))]
        return out

    def failing(
        self, spec: Any, before: np.ndarray, after: np.ndarray, task: str, threshold: float
    ) -> tuple[float, np.ndarray]:
        change = np.abs(after - before)
        change = change.max(axis=1) if change.ndim == 2 else change
        return (float(change.max()) if change.size else 0.0), change > spec.max_score_change


#: kind -> the test; ``models.tests[i].kind`` names one
BEHAVIOUR_TESTS: dict[str, BehaviourTest] = {t.kind: t for t in (Directional(), Perturbation(), Invariance())}


def _spec(spec: Any) -> Any:
    if isinstance(spec, Mapping):
        return BehaviourTestSpec.model_validate(spec)
    return spec


def behaviour_problems(spec: Any, numeric: list[str], categorical: list[str], task: str) -> list[Problem]:
    """Validate-time problems of one test: ``(key, message, received, expected)`` each.

    >>> behaviour_problems({"name": "t", "kind": "invariance", "feature": "x", "max_score_change": 0.1},
    ...                    ["x"], [], "binary")[0][:2]
    ('feature', 'an invariance test permutes a categorical feature')
    """
    spec = _spec(spec)
    test = BEHAVIOUR_TESTS.get(spec.kind)
    if test is None:
        return [("kind", "unknown behavioural test kind", spec.kind, f"one of: {', '.join(BEHAVIOUR_TESTS)}")]
    return list(test.problems(spec, numeric, categorical, task))


def _score(model: Any, X: pd.DataFrame, task: str) -> np.ndarray:
    return model_scores(model, X, task)[0]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _examples(
    bad: np.ndarray,
    columns: list[str],
    X: pd.DataFrame,
    changed: pd.DataFrame,
    before: np.ndarray,
    after: np.ndarray,
) -> list[FailingExample]:
    flat_b = before.max(axis=1) if before.ndim == 2 else before
    flat_a = after.max(axis=1) if after.ndim == 2 else after
    rows = np.flatnonzero(bad)
    # the worst first: the rows whose score moved most (stable, so ties keep their row order)
    rows = rows[np.argsort(-np.abs(flat_a[rows] - flat_b[rows]), kind="stable")][:MAX_EXAMPLES]
    return [
        FailingExample(
            before={c: _plain(X[c].iloc[i]) for c in columns},
            after={c: _plain(changed[c].iloc[i]) for c in columns},
            score_before=float(flat_b[i]),
            score_after=float(flat_a[i]),
        )
        for i in rows
    ]


def run_behaviour_tests(
    tests: Iterable[Any],
    models: Mapping[str, Any],
    X_test: pd.DataFrame,
    X_train: pd.DataFrame,
    *,
    task: str,
    thresholds: Mapping[str, float] | None = None,
    seed: int = 0,
    max_rows: int = MAX_ROWS,
) -> BehaviourReport:
    """Run every test on every model over the same seeded subsample of the test rows.

    ``X_train`` gives the standard deviations and quantiles the changes are scaled by; each
    model's decision threshold comes from ``thresholds`` (0.5 when absent). Every test draws its
    random change once, so all models see the same changed rows.
    """
    specs = [_spec(t) for t in tests]
    rng = np.random.default_rng(seed)
    n = len(X_test)
    rows = np.sort(rng.choice(n, size=max_rows, replace=False)) if n > max_rows else np.arange(n)
    X = X_test.iloc[rows].reset_index(drop=True)
    # spawned streams, one per test: never the subsample's own stream, nor a caller's stream
    # drawn from the same seed (default_rng([0, 0]) is default_rng(0): SeedSequence pads with zeros)
    streams = np.random.SeedSequence(seed).spawn(len(specs))
    changed = [
        BEHAVIOUR_TESTS[s.kind].change(s, X, X_train, np.random.default_rng(stream))
        for s, stream in zip(specs, streams, strict=True)
    ]
    results = []
    for name, model in models.items():
        before = _score(model, X, task)
        threshold = (thresholds or {}).get(name, 0.5)
        for spec, X_changed in zip(specs, changed, strict=True):
            test = BEHAVIOUR_TESTS[spec.kind]
            after = _score(model, X_changed, task)
            metric, bad = test.failing(spec, before, after, task, threshold)
            bound = float(getattr(spec, test.bound_key))
            results.append(
                BehaviourResult(
                    test=spec.name,
                    kind=spec.kind,
                    model=name,
                    metric_name=test.metric_name,
                    metric=metric,
                    bound=bound,
                    passed=bool(metric <= bound),
                    fail_build=spec.fail_build,
                    rows=len(X),
                    examples=_examples(bad, test.columns(spec), X, X_changed, before, after),
                )
            )
    return BehaviourReport(results)

"""Hyper-parameter search of one candidate with Optuna, on inner folds of the training split.

``models.candidates[i].search`` (docs/tuning.md) runs a TPE sampler seeded with ``models.seed``
and prunes, with a median pruner, a trial whose running mean over the inner folds is worse than
the median of earlier trials at the same fold. Trials are scored on folds of the **training**
split only (by time when the design splits by time, by group when it splits by group, stratified
otherwise); the validation split then decides between the searched and the untuned parameters,
and the test split is only ever reported. Trial 0 is the untuned parameters, so the search's best
is never worse than them on the folds.

``trials`` makes a search reproducible: the sampler is seeded and trials run one after another,
so the same design on the same data explores the same parameters whatever the machine's load.
``budget_s`` only caps the wall time (checked between trials): alone, it runs as many trials as
the machine manages, which depends on its load.

Optuna is the ``tuning`` extra, imported only when a design searches.

>>> space = resolve_space("logistic_regression", "binary", None)
>>> {k: (v.low, v.high, v.log) for k, v in space.items()}
{'C': (0.001, 100.0, True)}
>>> resolve_space("ridge", "regression", {"alpah": Range(0.1, 10.0)},
...               field="models.candidates[1]")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
mlsd.errors.DesignError: models.candidates[1].search.space.alpah: not a parameter of ridge; did you mean \
alpha? (received 'alpah'; expected one of: alpha, copy_X, fit_intercept, ...)
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from mlsd._progress import QUIET, Progress
from mlsd.errors import DesignError
from mlsd.goals.metrics import compute_metric, get_metric
from mlsd.modeling.candidates import make_candidate
from mlsd.modeling.evaluation import model_scores

__all__ = [
    "DEFAULT_SPACES",
    "Range",
    "TuningResult",
    "inner_folds",
    "require_optuna",
    "resolve_space",
    "tune",
]

TUNING_EXTRA = "pip install 'mlsd[tuning]'"


@dataclasses.dataclass(frozen=True)
class Range:
    """A searched interval; integers when both bounds are integers (and the parameter is not a float)."""

    low: float
    high: float
    log: bool = False

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


Space = dict[str, "Range | list[Any]"]

# Ranges around the registry's defaults (mlsd.modeling.candidates), wide enough to matter on
# tabular data and narrow enough that a 20-trial search explores them: LightGBM's own tuning
# guide names num_leaves, min_child_samples (min_data_in_leaf), the learning rate and the
# regularisation as the parameters that matter first.
_LGBM_SPACE: Space = {
    "num_leaves": Range(8, 255, log=True),
    "learning_rate": Range(0.01, 0.3, log=True),
    "min_child_samples": Range(5, 300, log=True),
    "reg_lambda": Range(1e-3, 10.0, log=True),
    "colsample_bytree": Range(0.4, 1.0),
}
DEFAULT_SPACES: dict[str, Space] = {
    "lightgbm": _LGBM_SPACE,
    "lightgbm_focal": {**_LGBM_SPACE, "gamma": Range(0.0, 5.0)},
    "logistic_regression": {"C": Range(1e-3, 100.0, log=True)},
    "ridge": {"alpha": Range(1e-3, 100.0, log=True)},
    "random_forest": {
        "min_samples_leaf": Range(1, 100, log=True),
        "max_features": Range(0.1, 1.0),
        "max_samples": Range(0.1, 1.0),
    },
    "hist_gradient_boosting": {
        "learning_rate": Range(0.01, 0.3, log=True),
        "max_leaf_nodes": Range(8, 255, log=True),
        "min_samples_leaf": Range(5, 300, log=True),
        "l2_regularization": Range(1e-3, 10.0, log=True),
    },
}


def require_optuna(field: str = "models.candidates[].search") -> Any:
    """The ``optuna`` module, or a :class:`DesignError` naming the ``tuning`` extra."""
    try:
        import optuna
    except ImportError:
        raise DesignError(
            "a search needs the tuning extra (Optuna)",
            field=field,
            received="optuna is not installed",
            expected=f"{TUNING_EXTRA}, or no search",
        ) from None
    return optuna


def _as_range(value: Any) -> Range | list[Any]:
    """A design's ``{low, high, log}`` (a SearchRange) or a list of choices, as this module's types."""
    if isinstance(value, Range | list):
        return value
    return Range(value.low, value.high, bool(value.log))


def resolve_space(
    type_name: str, task: str, space: dict[str, Any] | None, *, field: str = "models.candidates[0]"
) -> Space:
    """The space to search for ``type_name``: the design's, checked, or the type's default.

    Every parameter must be one the estimator accepts (``get_params()``), and each bound or choice
    a value it accepts; errors name ``<field>.search.space.<param>``. Integer bounds search
    integers, unless the parameter's default is a float (``C: {low: 1, high: 100}`` is real).
    """
    from mlsd.modeling.ensembles import is_ensemble

    where = f"{field}.search"
    if is_ensemble(type_name):
        raise DesignError(
            "an ensemble is not searched: search its members, the ensemble uses their tuned parameters",
            field=where,
            received=type_name,
            expected="search on the member candidates, and no search on the ensemble",
        )
    if space is None:
        if type_name not in DEFAULT_SPACES:
            raise DesignError(
                f"{type_name} has no default search space",
                field=f"{where}.space",
                received=None,
                expected="search.space: {param: {low, high, log} | [choices]}",
            )
        return dict(DEFAULT_SPACES[type_name])
    if not space:
        raise DesignError(
            "an empty search space searches nothing",
            field=f"{where}.space",
            received={},
            expected="at least one {param: {low, high, log} | [choices]}, or no space for the default",
        )
    defaults = make_candidate(type_name, task, field=field).get_params(deep=False)
    accepted = sorted(defaults)
    resolved: Space = {}
    for name, value in space.items():
        key = f"{where}.space.{name}"
        if name not in accepted:
            same = [a for a in accepted if a.lower() == name.lower()]  # c for C
            close = same or difflib.get_close_matches(name, accepted, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise DesignError(
                f"not a parameter of {type_name}{hint}",
                field=key,
                received=name,
                expected=f"one of: {', '.join(accepted)}",
            )
        rng = _as_range(value)
        if isinstance(rng, Range) and rng.integer and isinstance(defaults[name], float):
            # C: {low: 1, high: 100} means a real C in [1, 100], not the integers 1, 2, ..., 100
            rng = Range(float(rng.low), float(rng.high), rng.log)
        probes = rng if isinstance(rng, list) else [rng.low, rng.high]
        for probe in probes:
            try:
                make_candidate(type_name, task, {name: probe}, field=field)
            except DesignError as exc:
                raise DesignError(
                    f"the search would try a value {type_name} refuses: {exc.message}",
                    field=key,
                    received=probe,
                    expected=f"bounds or choices {type_name} accepts for {name}",
                ) from None
        resolved[name] = rng
    return resolved


def inner_folds(
    y: Any,
    *,
    task: str,
    folds: int,
    seed: int = 0,
    order: Any = None,
    groups: Any = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Positions ``(fit, score)`` of each inner fold of the training split.

    ``order`` (times): expanding windows, each scored on the rows after it, as the outer split
    judges; ``groups``: no group on both sides; else stratified (classification) or shuffled folds.

    >>> [(len(a), len(b)) for a, b in inner_folds([0, 1] * 6, task="binary", folds=3)]
    [(8, 4), (8, 4), (8, 4)]
    >>> later_first = np.arange(6)[::-1]
    >>> [b.tolist() for _, b in inner_folds(np.zeros(6), task="regression", folds=2, order=later_first)]
    [[3, 2], [1, 0]]
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold, TimeSeriesSplit

    y = np.asarray(y)
    if order is not None:
        by_time = np.argsort(np.asarray(order), kind="stable")
        return [(by_time[a], by_time[b]) for a, b in TimeSeriesSplit(n_splits=folds).split(by_time)]
    if groups is not None:
        return list(GroupKFold(n_splits=folds).split(y, y, np.asarray(groups)))
    splitter = (
        KFold(folds, shuffle=True, random_state=seed)
        if task == "regression"
        else StratifiedKFold(folds, shuffle=True, random_state=seed)
    )
    return list(splitter.split(np.zeros(len(y)), y))


@dataclasses.dataclass
class TuningResult:
    """What a search tried and found; ``params`` are the best trial's (``{}``: trial 0, the untuned)."""

    params: dict[str, Any]
    metric: str
    greater_is_better: bool
    best_value: float  # mean over the inner folds
    untuned_value: float  # trial 0: the untuned parameters, on the same folds
    n_trials: int
    n_pruned: int
    stopped_by: str  # "trials" or "budget"
    seconds: float
    trials: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: set by the build: True when the validation split preferred the untuned parameters
    kept_untuned: bool = False
    #: set by the build: the searched and the untuned parameters' metric on the validation split
    valid_value: float | None = None
    untuned_valid_value: float | None = None

    def summary(self) -> str:
        """One line for the trade-off table, e.g. ``tuned: 20 trials (6 pruned), roc_auc 0.71 vs 0.70``."""
        head = (
            f"searched: {self.n_trials} trials ({self.n_pruned} pruned"
            + (", stopped by budget_s" if self.stopped_by == "budget" else "")
            + f"), inner-fold {self.metric} {self.best_value:.4g} vs {self.untuned_value:.4g} untuned"
        )
        if self.kept_untuned:
            valid = f"{self.valid_value:.4g} vs {self.untuned_valid_value:.4g}" if self.valid_value else ""
            return head + f"; the untuned parameters kept (better on valid: {valid})"
        if not self.params:
            return head + "; the untuned parameters were the best trial"
        return head + "; " + ", ".join(f"{k}={_short(v)}" for k, v in self.params.items())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@contextlib.contextmanager
def _quiet_optuna(optuna: Any) -> Iterator[None]:
    """Optuna logs every trial at INFO; the build draws its own progress bar instead."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def _suggest(trial: Any, name: str, rng: Range | list[Any]) -> Any:
    if isinstance(rng, list):
        return trial.suggest_categorical(name, rng)
    if rng.integer:
        return trial.suggest_int(name, int(rng.low), int(rng.high), log=rng.log)
    return trial.suggest_float(name, float(rng.low), float(rng.high), log=rng.log)


def tune(
    build: Callable[[dict[str, Any]], Any],
    X: Any,
    y: Any,
    *,
    space: Space,
    task: str,
    metric: str,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    untuned: dict[str, Any],
    trials: int | None = None,
    budget_s: float | None = None,
    seed: int = 0,
    progress: Progress = QUIET,
    label: str = "search",
) -> TuningResult:
    """Search ``space`` for the parameters ``build(params)`` scores best on ``folds`` of ``X, y``.

    ``build`` returns an unfitted model for a parameter dict (``{}``: untuned, trial 0);
    ``untuned`` gives the searched parameters' untuned values, for the record of trial 0. The
    study is TPE seeded with ``seed`` and a median pruner on the running mean over the folds; it
    stops after ``trials`` or ``budget_s`` seconds (checked between trials), whichever comes first.
    """
    optuna = require_optuna()
    m = get_metric(metric)
    greater = m.greater_is_better
    y = np.asarray(y)

    def objective(trial: Any) -> float:
        # Trial 0 is the untuned model exactly, not suggested: an untuned value may lie outside
        # the space (LightGBM's reg_lambda is 0, below any log range). The sampler learns from
        # the trials that suggested each parameter, the pruner from every trial's folds.
        params = (
            {} if trial.number == 0 else {name: _suggest(trial, name, rng) for name, rng in space.items()}
        )
        scores = []
        for step, (fit_rows, score_rows) in enumerate(folds):
            model = build(params)
            model.fit(X.iloc[fit_rows], y[fit_rows])
            s, classes = model_scores(model, X.iloc[score_rows], task)
            scores.append(
                compute_metric(m, y[score_rows], s, classes=None if classes is None else list(classes))
            )
            trial.report(float(np.mean(scores)), step)
            if step < len(folds) - 1 and trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    n_trials = trials
    startup = 10 if n_trials is None else max(2, min(10, n_trials // 3))
    start = time.perf_counter()
    with (
        _quiet_optuna(optuna),
        progress.stage(label, total=n_trials) as advance,
    ):
        study = optuna.create_study(
            direction="maximize" if greater else "minimize",
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup),
            # a trial is pruned once its running mean is worse than the median of 3 finished ones
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
        )
        study.optimize(
            objective,
            n_trials=n_trials,
            timeout=budget_s,
            callbacks=[lambda _study, _trial: advance()],
            gc_after_trial=False,
        )
    seconds = time.perf_counter() - start
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    best = study.best_trial
    first = study.trials[0]
    return TuningResult(
        params=dict(best.params),
        metric=metric,
        greater_is_better=greater,
        best_value=float(best.value),
        untuned_value=float(first.value) if first.value is not None else float("nan"),
        n_trials=len(study.trials),
        n_pruned=len(pruned),
        stopped_by="trials" if n_trials is not None and len(study.trials) >= n_trials else "budget",
        seconds=seconds,
        trials=[
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "folds_scored": len(t.intermediate_values),
                "params": dict(t.params) if t.number else {k: untuned.get(k) for k in space},
            }
            for t in study.trials
        ],
    )

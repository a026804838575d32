"""Candidate model types a design can name, resolved through a registry (never an arbitrary import).

``make_candidate(type, task, params, class_weight, seed)`` returns an unfitted sklearn-compatible
estimator with the project's defaults, overridden by the design's ``params``. Unknown types and
parameters raise :class:`~mlsd.errors.DesignError` naming the design field.

>>> est = make_candidate("lightgbm", "binary", {"num_leaves": 15}, field="models.candidates[1]")
>>> type(est).__name__, est.num_leaves, est.n_estimators
('LGBMClassifier', 15, 300)
>>> make_candidate("random_forest", "binary", {"n_estimator": 10},
...                field="models.candidates[2]")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
mlsd.errors.DesignError: models.candidates[2].params.n_estimator: unknown parameter for random_forest; \
did you mean n_estimators? (received 'n_estimator'; expected one of: bootstrap, ccp_alpha, ...)
>>> list_candidate_types("regression")
['hist_gradient_boosting', 'lightgbm', 'linear_regression', 'random_forest', 'ridge', 'stacking', 'voting']

``stacking`` and ``voting`` combine other candidates (``members``, see :mod:`mlsd.modeling.ensembles`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints

from mlsd.errors import DesignError

__all__ = ["CandidateType", "list_candidate_types", "make_candidate", "predict_on_one_thread"]


@dataclasses.dataclass(frozen=True)
class CandidateType:
    """How to build one candidate type for one task family.

    ``factory()`` imports and returns the estimator class; ``defaults`` are the project's
    defaults; ``seed_param`` and ``class_weight_param`` name the estimator's parameters for the
    seed and the class weights (``None`` if unsupported); ``constraints`` (``{param: [...]}`` in
    sklearn's ``Interval``/``StrOptions`` language) check values of an estimator without its own.
    """

    name: str
    tasks: tuple[str, ...]
    factory: Callable[[], type[BaseEstimator]]
    defaults: dict[str, Any]
    seed_param: str | None = "random_state"
    class_weight_param: str | None = "class_weight"
    #: sklearn-style constraints for estimators that do not declare their own (LightGBM), so a
    #: bad value fails at design time too; sklearn's estimators carry ``_parameter_constraints``.
    constraints: dict[str, list[Any]] | None = None
    #: the parameter holding an ensemble's ``[(name, estimator)]`` members (``None``: not an ensemble)
    members_param: str | None = None


def _lazy(module: str, name: str) -> Callable[[], type[BaseEstimator]]:
    """A factory importing ``module.name`` on first use (lightgbm loads a shared library)."""
    return lambda: getattr(importlib.import_module(module), name)


_CLS = ("binary", "multiclass")
_REG = ("regression",)
_LGBM = {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 63, "verbose": -1}
# Forests stay fast on 100k+ rows: each tree sees 30 % of the rows and leaves hold >= 20 rows.
# LightGBM's sklearn API checks nothing before fit, and some bad values only warn there: the
# documented ranges of its parameters (https://lightgbm.readthedocs.io/en/latest/Parameters.html).
_LGBM_CONSTRAINTS: dict[str, list[Any]] = {
    "n_estimators": [Interval(Integral, 1, None, closed="left")],
    "learning_rate": [Interval(Real, 0, None, closed="neither")],
    "num_leaves": [Interval(Integral, 2, 131_072, closed="both")],
    "max_depth": [Interval(Integral, None, None, closed="neither")],
    "min_child_samples": [Interval(Integral, 0, None, closed="left")],
    "min_child_weight": [Interval(Real, 0, None, closed="left")],
    "min_split_gain": [Interval(Real, 0, None, closed="left")],
    "subsample": [Interval(Real, 0, 1, closed="right")],
    "subsample_freq": [Interval(Integral, 0, None, closed="left")],
    "colsample_bytree": [Interval(Real, 0, 1, closed="right")],
    "reg_alpha": [Interval(Real, 0, None, closed="left")],
    "reg_lambda": [Interval(Real, 0, None, closed="left")],
    "max_bin": [Interval(Integral, 2, None, closed="left")],
    "boosting_type": [StrOptions({"gbdt", "dart", "rf"})],
    "importance_type": [StrOptions({"split", "gain"})],
}
# lightgbm_focal: LightGBM on the focal loss (mlsd.modeling.focal), binary only. A type of its own
# rather than a parameter of lightgbm: the registry then refuses it for other tasks, checks gamma
# and alpha like any parameter, and the trade-off table names it.
_FOCAL_CONSTRAINTS: dict[str, list[Any]] = {
    **_LGBM_CONSTRAINTS,
    "gamma": [Interval(Real, 0, 20, closed="both")],
    "alpha": [Interval(Real, 0, 1, closed="neither"), None],
}
_RF = {"n_estimators": 100, "min_samples_leaf": 20, "max_samples": 0.3}
_THREADED = ("lightgbm", "lightgbm_focal", "random_forest")


def default_n_jobs() -> int:
    """Threads for one fit: ``MLSD_N_JOBS``, else every core this process may run on.

    Every core is the right default even on a busy machine, because mlsd makes idle OpenMP
    threads sleep instead of spin (``OMP_WAIT_POLICY=PASSIVE``, see :mod:`mlsd._threads`): a
    LightGBM fit on the flights data with two other CPU-bound processes took 11 s on two threads
    against 19 s on one. Several processes training at once (parallel test workers, two builds)
    should still set ``MLSD_N_JOBS`` to share the cores. See ``docs/threads-and-timing.md``.
    """
    raw = os.environ.get("MLSD_N_JOBS")
    if raw is None:
        # the cores the scheduler lets this process use (taskset, cgroup cpusets), not the machine's
        usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        return len(usable) if usable else (os.cpu_count() or 1)
    try:
        return max(1, int(raw))
    except ValueError:
        raise DesignError(
            "a thread count must be an integer", field="MLSD_N_JOBS", received=raw, expected="e.g. 2"
        ) from None


_REGISTRY: dict[tuple[str, str], CandidateType] = {}
for _ct in [
    CandidateType(
        "logistic_regression", _CLS, _lazy("sklearn.linear_model", "LogisticRegression"), {"max_iter": 1000}
    ),
    CandidateType(
        "lightgbm", _CLS, _lazy("lightgbm", "LGBMClassifier"), _LGBM, constraints=_LGBM_CONSTRAINTS
    ),
    CandidateType(
        "lightgbm_focal",
        ("binary",),
        _lazy("mlsd.modeling.focal", "FocalLGBMClassifier"),
        {**_LGBM, "gamma": 2.0, "alpha": None},
        constraints=_FOCAL_CONSTRAINTS,
    ),
    CandidateType("random_forest", _CLS, _lazy("sklearn.ensemble", "RandomForestClassifier"), _RF),
    CandidateType(
        "hist_gradient_boosting", _CLS, _lazy("sklearn.ensemble", "HistGradientBoostingClassifier"), {}
    ),
    CandidateType(
        "linear_regression",
        _REG,
        _lazy("sklearn.linear_model", "LinearRegression"),
        {},
        seed_param=None,
        class_weight_param=None,
    ),
    CandidateType("ridge", _REG, _lazy("sklearn.linear_model", "Ridge"), {}, class_weight_param=None),
    CandidateType(
        "lightgbm",
        _REG,
        _lazy("lightgbm", "LGBMRegressor"),
        _LGBM,
        class_weight_param=None,
        constraints=_LGBM_CONSTRAINTS,
    ),
    CandidateType(
        "random_forest",
        _REG,
        _lazy("sklearn.ensemble", "RandomForestRegressor"),
        _RF,
        class_weight_param=None,
    ),
    CandidateType(
        "hist_gradient_boosting",
        _REG,
        _lazy("sklearn.ensemble", "HistGradientBoostingRegressor"),
        {},
        class_weight_param=None,
    ),
    # Ensembles over other candidates (mlsd.modeling.ensembles): the members carry the seeds and
    # class weights; soft voting, because every classifier here must give probabilities.
    *[
        CandidateType(
            name,
            tasks,
            _lazy("sklearn.ensemble", cls),
            defaults,
            seed_param=None,
            class_weight_param=None,
            members_param="estimators",
        )
        for name, tasks, cls, defaults in [
            ("stacking", _CLS, "StackingClassifier", {}),
            ("stacking", _REG, "StackingRegressor", {}),
            ("voting", _CLS, "VotingClassifier", {"voting": "soft"}),
            ("voting", _REG, "VotingRegressor", {}),
        ]
    ],
]:
    for _task in _ct.tasks:
        _REGISTRY[(_ct.name, _task)] = _ct


def list_candidate_types(task: str) -> list[str]:
    """Registered candidate type names for ``task``, sorted."""
    return sorted(name for name, t in _REGISTRY if t == task)


def make_candidate(
    type_name: str,
    task: str,
    params: dict[str, Any] | None = None,
    class_weight: str | dict[Any, float] | None = None,
    seed: int = 0,
    *,
    field: str = "models.candidates[0]",
    class_weight_field: str = "models.class_weight",
    members: list[tuple[str, Any]] | None = None,
) -> BaseEstimator:
    """An unfitted estimator of ``type_name`` for ``task``; ``field`` prefixes error locations.

    ``class_weight`` is ``"balanced"`` or ``{class: weight}``; ``class_weight_field`` names the
    design key that set it, for the error when the type takes none. ``members`` are an ensemble
    type's ``[(name, unfitted model)]`` (:mod:`mlsd.modeling.ensembles`), refused by other types.
    """
    key = (type_name, task)
    if key not in _REGISTRY:
        known = list_candidate_types(task)
        close = difflib.get_close_matches(str(type_name), known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise DesignError(
            f"unknown candidate type for task {task}{hint}",
            field=f"{field}.type",
            received=type_name,
            expected=f"one of: {', '.join(known)}",
        )
    ct = _REGISTRY[key]
    cls = ct.factory()
    if ct.members_param is None and members:
        raise DesignError(
            f"only stacking and voting combine members; {type_name} does not",
            field=f"{field}.members",
            received=[n for n, _ in members],
            expected="no members, or type stacking or voting",
        )
    if ct.members_param is not None and len(members or []) < 2:
        raise DesignError(
            f"a {type_name} ensemble combines at least two candidates",
            field=f"{field}.members",
            received=[n for n, _ in members or []],
            expected="the names of two or more other candidates",
        )
    blank = cls(**{ct.members_param: []}) if ct.members_param else cls()
    # the members come from the design's members key, never from params
    accepted = sorted(set(blank.get_params(deep=False)) - {ct.members_param})
    params = dict(params or {})
    for name in params:
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise DesignError(
                f"unknown parameter for {type_name}{hint}",
                field=f"{field}.params.{name}",
                received=name,
                expected=f"one of: {', '.join(accepted)}",
            )
    kwargs = dict(ct.defaults)
    if ct.name in _THREADED:
        kwargs["n_jobs"] = default_n_jobs()
    if ct.seed_param:
        kwargs[ct.seed_param] = seed
    if class_weight is not None:
        if ct.class_weight_param is None:
            raise DesignError(
                f"{type_name} for {task} takes no class weights",
                field=class_weight_field,
                received=class_weight,
                expected="no class_weight (class weights apply to classification only)",
            )
        kwargs[ct.class_weight_param] = class_weight
    kwargs.update(params)
    if ct.members_param is not None:
        kwargs[ct.members_param] = list(members or [])
    estimator = cls(**kwargs)
    _check_values(estimator, ct.constraints, type_name, params, field)
    return estimator


def _check_values(
    estimator: BaseEstimator,
    constraints: dict[str, list[Any]] | None,
    type_name: str,
    params: dict[str, Any],
    field: str,
) -> None:
    """Fail at design time, not after minutes of training, on a value the estimator would reject."""
    if hasattr(estimator, "_parameter_constraints"):  # sklearn's own estimators
        validate = estimator._validate_params
    elif constraints:
        given = {k: v for k, v in params.items() if k in constraints}
        known = {k: constraints[k] for k in given}

        def validate() -> None:
            validate_parameter_constraints(known, given, caller_name=type(estimator).__name__)
    else:
        return
    try:
        validate()
    except ValueError as exc:  # InvalidParameterError: "The 'C' parameter of ... must be ..."
        bad = next((p for p in params if f"'{p}' parameter" in str(exc)), None)
        raise DesignError(
            f"invalid parameter value for {type_name}: {exc}",
            field=f"{field}.params.{bad}" if bad else f"{field}.params",
            received=params.get(bad) if bad else params,
            expected="a value the estimator accepts (see the message)",
        ) from exc


def predict_on_one_thread(model: Any) -> Any:
    """Set ``n_jobs=1`` on every fitted estimator inside ``model`` (pipelines, calibration wrappers).

    Fitting uses every core; predicting does not need to. A served model scores one row or a
    small batch at a time, where starting threads costs more than it saves: a 100-tree forest
    answers one row in ~8 ms on one thread against ~25 ms on two, and a 20k-row batch takes the
    same time either way. Returns ``model`` (changed in place).

    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> pipe = make_pipeline(StandardScaler(), RandomForestClassifier(n_jobs=4))
    >>> predict_on_one_thread(pipe).steps[-1][1].n_jobs
    1
    """
    seen: set[int] = set()
    stack = [model]
    while stack:
        est = stack.pop()
        if id(est) in seen:
            continue
        seen.add(id(est))
        if getattr(est, "n_jobs", None) not in (None, 1):
            est.n_jobs = 1
        stack += [step for _, step in getattr(est, "steps", [])]
        # a stacking or voting ensemble's fitted members and its final estimator
        stack += [m for m in getattr(est, "estimators_", []) if hasattr(m, "get_params")]
        stack += [est.final_estimator_] if hasattr(est, "final_estimator_") else []
        stack += [
            getattr(est, a)
            for a in ("estimator", "base_estimator", "pipeline_")  # pipeline_: ResampledClassifier
            if getattr(est, a, None) is not None
        ]
    return model

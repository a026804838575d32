"""Segment 4 of a design, run: fit every baseline and candidate, evaluate each once.

:func:`train_and_evaluate` fits the design's baselines and candidates on the training split
(candidates behind the feature pipeline it is given), calibrates where the design says, and
evaluates each model once on the validation and test splits. Each evaluation carries the
model's scores on both splits; the threshold, the costs, the trade-off table and the design
document all read those, so no model predicts a split twice.

For a binary task with costs, each model is judged at its own cost-optimal threshold chosen
on the validation split, and its cost per 1,000 decisions is measured on the test split.

A candidate with ``search`` (docs/tuning.md) is fitted twice: with its parameters as written (the
row ``<name>_untuned``) and with the parameters an Optuna search found on inner folds of the
training split (the row ``<name>``); the validation split keeps the untuned ones when the search's
are worse there. Ensembles (``stacking``, ``voting``) are built last, from their members' chosen
parameters; the table lists every row in design order.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from mlsd._progress import QUIET, Progress
from mlsd.design import Design
from mlsd.goals.bootstrap import MetricEstimate
from mlsd.goals.costs import CostMatrix, ThresholdChoice, expected_cost_per_1000, optimal_threshold
from mlsd.modeling.baselines import baseline_name, make_baseline
from mlsd.modeling.calibration import calibrate
from mlsd.modeling.candidates import make_candidate, predict_on_one_thread
from mlsd.modeling.ensembles import is_ensemble
from mlsd.modeling.evaluation import CandidateEvaluation, TradeOffTable, evaluate_model

__all__ = [
    "ModelingResult",
    "add_fitted_row",
    "candidate_model",
    "class_weight_for",
    "cost_interval",
    "costs_of",
    "search_candidate",
    "search_metric",
    "train_and_evaluate",
    "training_note",
]

UNTUNED_SUFFIX = "_untuned"  # the row of a searched candidate with its parameters as written

_LATENCY_ROWS = 500  # distinct test rows single-row latency cycles through


@dataclasses.dataclass
class ModelingResult:
    """Every fitted model, its evaluation, its threshold and (binary with costs) its cost."""

    table: TradeOffTable
    fitted: dict[str, Any]
    thresholds: dict[str, float]
    threshold_choices: dict[str, ThresholdChoice] = dataclasses.field(default_factory=dict)
    test_costs: dict[str, float] = dataclasses.field(default_factory=dict)  # per 1,000, own threshold
    costs: CostMatrix | None = None
    #: the test cost per 1,000 with a 95% bootstrap interval over the test rows (models.bootstrap)
    test_cost_intervals: dict[str, MetricEstimate] = dataclasses.field(default_factory=dict)
    #: models.candidates[].search: each searched candidate's TuningResult, by candidate name
    tuning: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: what a row's training did that the design alone does not say (the search's outcome)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)

    def evaluation(self, name: str) -> CandidateEvaluation:
        return self.table[name]

    def best_baseline_cost(self) -> float | None:
        """The cheapest baseline on test, each at its own cost-optimal threshold."""
        costs = [self.test_costs[e.name] for e in self.table.baselines if e.name in self.test_costs]
        return min(costs) if costs else None


def add_fitted_row(
    design: Design,
    split: Any,
    modeling: ModelingResult,
    name: str,
    model: Any,
    *,
    train_seconds: float,
    latency_rows: Any,
) -> CandidateEvaluation:
    """A model fitted outside :func:`train_and_evaluate` (a compressed variant, a fine-tuned
    champion) evaluated once like every candidate and added to ``modeling`` in place: its row,
    its threshold (cost-optimal on valid when the design has costs) and its test cost."""
    costs = costs_of(design)
    m, target = design.models, design.goals.target
    y_valid, y_test = split.valid[target].to_numpy(), split.test[target].to_numpy()

    def rule(y: np.ndarray, scores: np.ndarray) -> float:
        if costs is None:
            return 0.5
        modeling.threshold_choices[name] = choice = optimal_threshold(y, scores, costs)
        return choice.threshold

    e = evaluate_model(
        name, model, kind="candidate", X_valid=split.valid, y_valid=y_valid, X_test=split.test,
        y_test=y_test, task=design.goals.task, metrics=design.goals.metrics, primary=design.goals.metric,
        n_bootstrap=m.bootstrap, seed=m.seed, train_seconds=train_seconds, latency_rows=latency_rows,
        threshold=rule,
    )  # fmt: skip
    modeling.thresholds[name] = e.threshold
    if costs is not None:
        decisions = (e.scores["test"] >= e.threshold).astype(int)
        modeling.test_costs[name] = float(expected_cost_per_1000(y_test, decisions, costs))
        modeling.test_cost_intervals[name] = cost_interval(y_test, decisions, costs, m.bootstrap, m.seed)
    modeling.fitted[name] = model
    modeling.table = TradeOffTable([*modeling.table.evaluations, e])
    return e


def costs_of(design: Design) -> CostMatrix | None:
    """The design's cost matrix, for binary tasks that state costs."""
    g = design.goals
    return CostMatrix.from_spec(g.costs) if g.task == "binary" and g.costs is not None else None


_CHUNK_CELLS = 4_000_000  # resampled row indices drawn per block (bounds memory to ~32 MB)


def cost_interval(
    y: Any, decisions: Any, costs: CostMatrix, n_resamples: int, seed: int = 0
) -> MetricEstimate:
    """Cost per 1,000 decisions with a 95% percentile bootstrap interval over the rows.

    The decisions are fixed (the threshold was chosen on validation), so each resample only
    re-draws which rows are decided: the mean of the per-row costs, all resamples at once.

    >>> est = cost_interval([0, 1] * 50, [0, 0] * 50, CostMatrix(1, 4), n_resamples=200)
    >>> est.value, est.low < 2000 < est.high
    (2000.0, True)
    """
    y_arr, d = np.asarray(y).astype(bool), np.asarray(decisions).astype(bool)
    row_cost = (
        np.select(
            [d & y_arr, d & ~y_arr, ~d & y_arr],
            [costs.true_positive, costs.false_positive, costs.false_negative],
            costs.true_negative,
        )
        * 1000.0
    )
    n = len(row_cost)
    value = float(row_cost.mean()) if n else float("nan")
    if n_resamples <= 0 or n == 0:
        return MetricEstimate(value, n=n)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_CELLS // n)
    means = np.concatenate(
        [
            row_cost[rng.integers(0, n, size=(min(per_chunk, n_resamples - i), n))].mean(axis=1)
            for i in range(0, n_resamples, per_chunk)
        ]
    )
    low, high = np.percentile(means, [2.5, 97.5])
    return MetricEstimate(value, float(low), float(high), n)


def class_weight_for(design: Design, index: int) -> str | dict[Any, float] | None:
    """Candidate ``index``'s class weights: ``"balanced"``, ``{class: weight}`` (costs) or ``None``."""
    weight = design.models.class_weight_of(design.models.candidates[index])
    if weight == "costs":
        from mlsd.modeling.imbalance import cost_class_weights

        if design.goals.costs is None:  # validate refuses it; a clear error for library callers too
            raise design.error(
                "class weights from costs need goals.costs",
                field=design.models.option_field(index, "class_weight"),
                received="costs",
                expected="goals.costs, or class_weight: balanced",
            )
        return cost_class_weights(design.goals.costs)
    return weight


def training_note(design: Design, index: int) -> str:
    """How candidate ``index`` faces class imbalance and what that does to its probabilities.

    One line for the trade-off table of the design document (``""`` when it does nothing), e.g.
    ``"smote; probabilities prior-corrected"``. Every option is named with the same wording as
    docs/imbalance.md's table "What each option does to probabilities and cost".
    """
    m, task = design.models, design.goals.task
    if task == "regression":
        return ""
    cand = m.candidates[index]
    if is_ensemble(cand.type):
        return f"{cand.type} of {', '.join(cand.members)}"
    parts, effects = [], []
    imbalance, weight = m.imbalance_of(cand), m.class_weight_of(cand)
    if imbalance.endswith("_then_finetune"):
        parts.append(imbalance)
        effects.append("re-learnt on the original rows, not prior-corrected")
    elif imbalance != "none":
        parts.append(imbalance)
        effects.append("prior-corrected")
    if weight is not None:
        parts.append(f"class_weight: {weight}")
        effects.append("class-weighted, not corrected")
    if cand.type == "lightgbm_focal":
        parts.append("focal loss")
        effects.append("sigmoid of the focal margin, not corrected")
    if m.calibrate != "none" and parts:
        effects.append(f"then calibrated ({m.calibrate}) on valid")
    return f"{', '.join(parts)}; probabilities {', '.join(effects)}" if parts else ""


def candidate_model(
    design: Design,
    index: int,
    feature_pipeline: Pipeline,
    *,
    params: dict[str, Any] | None = None,
    member_params: dict[str, dict[str, Any]] | None = None,
) -> Any:
    """Candidate ``index`` of the design, unfitted: features → (resampler →) estimator.

    Its own ``imbalance`` and ``class_weight`` override the ``models`` ones. Any resampler, and
    the ``data.augment`` sampler, sits inside the model (fitted on the rows the model is fitted
    on, i.e. the training split only). ``params`` replace the design's (a search's trial); an
    ensemble's members are their own candidates' models, with ``member_params[name]`` if given.
    """
    task, m = design.goals.task, design.models
    cand = m.candidates[index]
    if is_ensemble(cand.type):
        names = [c.name for c in m.candidates]
        chosen = member_params or {}
        members = [
            (
                name,
                candidate_model(design, names.index(name), feature_pipeline, params=chosen.get(name)),
            )
            for name in cand.members
        ]
        return make_candidate(
            cand.type,
            task,
            cand.params if params is None else params,
            members=members,
            field=f"models.candidates[{index}]",
        )
    est = make_candidate(
        cand.type,
        task,
        params=cand.params if params is None else params,
        class_weight=class_weight_for(design, index),
        seed=m.seed,
        field=f"models.candidates[{index}]",
        class_weight_field=m.option_field(index, "class_weight"),
    )
    features = clone(feature_pipeline)
    if cand.text:  # models.candidates[].text: this candidate's own text encoders
        from mlsd.features.text import text_override

        encoders = text_override(design.features.text, cand.text, f"models.candidates[{index}].text")
        features.set_params(features__text=encoders)
    steps = features.steps
    imbalance = m.imbalance_of(cand)
    if imbalance != "none" and task != "regression":
        # lazy: imbalanced-learn is imported only by designs that resample
        from mlsd.modeling.imbalance import resampled_model

        model: Any = resampled_model(steps, est, imbalance, seed=m.seed)
    else:
        model = Pipeline([*steps, ("model", est)])
    if design.data.augment is not None:  # a sampler step: each fit's training rows only
        from mlsd.data.augment import make_augmenter, with_augmenter

        augmenter = make_augmenter(design.data.augment, task, list(design.features.numeric))
        model = with_augmenter(model, augmenter)
    if cand.self_training is not None:  # the pool's rows are handed over by train_and_evaluate
        from mlsd.modeling.self_training import PoolSelfTraining

        model = PoolSelfTraining(model, cand.self_training.threshold, cand.self_training.max_iter)
    return model


def train_and_evaluate(
    design: Design,
    split: Any,
    feature_pipeline: Pipeline,
    input_columns: list[str],
    *,
    progress: Progress = QUIET,
    unlabelled: Any = None,
) -> ModelingResult:
    """Fit every baseline and candidate on train; evaluate each once at its cost-optimal threshold.

    ``unlabelled``: the pool rows without an answer, for the candidates with ``self_training``."""
    task, target, m = design.goals.task, design.goals.target, design.models
    y_train = split.train[target].to_numpy()
    y_valid = split.valid[target].to_numpy()
    y_test = split.test[target].to_numpy()
    costs = costs_of(design)
    result = ModelingResult(table=TradeOffTable([]), fitted={}, thresholds={}, costs=costs)
    evaluations: list[CandidateEvaluation] = []

    def choose_threshold(name: str) -> Any:
        def choose(y: np.ndarray, scores: np.ndarray) -> float:
            if costs is None:
                return 0.5
            choice = optimal_threshold(y, scores, costs)
            result.threshold_choices[name] = choice
            return choice.threshold

        return choose

    def evaluate(name: str, model: Any, kind: str, seconds: float, latency_rows: Any) -> CandidateEvaluation:
        e = evaluate_model(
            name,
            model,
            kind=kind,
            X_valid=split.valid,
            y_valid=y_valid,
            X_test=split.test,
            y_test=y_test,
            task=task,
            metrics=design.goals.metrics,
            primary=design.goals.metric,
            n_bootstrap=m.bootstrap,
            seed=m.seed,
            train_seconds=seconds,
            latency_rows=latency_rows,
            threshold=choose_threshold(name),
        )
        result.thresholds[name] = e.threshold
        if costs is not None:
            decisions = (e.scores["test"] >= e.threshold).astype(int)
            result.test_costs[name] = float(expected_cost_per_1000(y_test, decisions, costs))
            result.test_cost_intervals[name] = cost_interval(y_test, decisions, costs, m.bootstrap, m.seed)
        evaluations.append(e)
        result.fitted[name] = model
        return e

    baselines = m.baselines()
    with progress.stage("baselines", total=len(baselines)) as advance:
        for i, spec in enumerate(baselines):
            where = f"models.baseline[{i}]" if isinstance(m.baseline, list) else "models.baseline"
            model = make_baseline(spec, task, seed=m.seed, field=where)
            t = time.perf_counter()
            model.fit(split.train, y_train)
            evaluate(
                baseline_name(spec),
                model,
                "baseline",
                time.perf_counter() - t,
                split.test.head(_LATENCY_ROWS),
            )
            advance()
    latency_rows = split.test[input_columns].head(_LATENCY_ROWS)

    def fit_evaluate(name: str, cand: Any, model: Any) -> CandidateEvaluation:
        with progress.stage(f"candidate {name} ({cand.type}): fit, calibrate, evaluate", total=3) as advance:
            t = time.perf_counter()
            if cand.self_training is not None:
                model.with_pool(unlabelled)
            # data.labels.quality action down_weight: per-row weights for the candidate's estimator
            weight = getattr(split, "train_weight", None)
            model.fit(split.train, y_train, **({} if weight is None else {"model__sample_weight": weight}))
            seconds = time.perf_counter() - t
            if cand.self_training is not None:
                progress.note(
                    f"self-training {name}: {model.n_pseudo_labelled_:,} of {model.n_unlabelled_:,} "
                    f"unlabelled pool rows pseudo-labelled (threshold {cand.self_training.threshold:g})"
                )
            predict_on_one_thread(model)
            advance()
            if m.calibrate != "none" and task != "regression":
                model = calibrate(model, split.valid, y_valid, method=m.calibrate)
            advance()
            e = evaluate(name, model, "candidate", seconds, latency_rows)
            advance()
        return e

    metric, greater = search_metric(design)
    chosen: dict[str, dict[str, Any]] = {}  # a searched candidate's parameters, for the ensembles
    # ensembles last: they are built from their members' chosen parameters
    order = sorted(range(len(m.candidates)), key=lambda i: is_ensemble(m.candidates[i].type))
    for i in order:
        cand = m.candidates[i]
        if cand.text:  # the trade-off table says which encoders this row read
            from mlsd.features.text import describe_text, text_override

            result.notes[cand.name] = describe_text(
                text_override(design.features.text, cand.text, f"models.candidates[{i}].text")
            )
        if cand.search is None:
            fit_evaluate(cand.name, cand, candidate_model(design, i, feature_pipeline, member_params=chosen))
            continue
        untuned = fit_evaluate(cand.name + UNTUNED_SUFFIX, cand, candidate_model(design, i, feature_pipeline))
        tuning = search_candidate(design, i, split.train, y_train, feature_pipeline, progress=progress)
        params = {**cand.params, **tuning.params}
        keep_untuned = not tuning.params  # trial 0, the untuned model, was the best trial
        if not keep_untuned:
            tuned = fit_evaluate(cand.name, cand, candidate_model(design, i, feature_pipeline, params=params))
            a, b = tuned.value(metric, "valid"), untuned.value(metric, "valid")
            tuning.valid_value, tuning.untuned_valid_value = a, b
            # the folds preferred the search's parameters; if the validation split does not, the
            # row keeps the untuned model, so tuning never loses to the untuned candidate on valid
            keep_untuned = tuning.kept_untuned = bool((a < b) if greater else (a > b))
            if keep_untuned:
                evaluations.remove(tuned)
        if keep_untuned:  # the row is the untuned model: fitted once, evaluated under both names
            params = dict(cand.params)
            evaluate(cand.name, result.fitted[untuned.name], "candidate", untuned.train_seconds, latency_rows)
        chosen[cand.name] = params
        result.tuning[cand.name] = tuning
        result.notes[cand.name] = "; ".join(filter(None, [result.notes.get(cand.name), tuning.summary()]))
        progress.note(f"search {cand.name}: {tuning.summary()}")
    rank = {n: k for k, c in enumerate(m.candidates) for n in (c.name + UNTUNED_SUFFIX, c.name)}
    evaluations.sort(key=lambda e: (e.kind != "baseline", rank.get(e.name, -1)))
    result.table = TradeOffTable(evaluations)
    return result


def search_metric(design: Design) -> tuple[str, bool]:
    """The metric a search optimises, and whether larger is better: the decision's (models.select)."""
    sel = design.models.select
    assert sel is not None  # Design fills it from goals.metric
    return (str(sel.maximize), True) if sel.maximize is not None else (str(sel.minimize), False)


def search_candidate(
    design: Design,
    index: int,
    train: Any,
    y_train: Any,
    feature_pipeline: Pipeline,
    *,
    progress: Progress = QUIET,
) -> Any:
    """Run candidate ``index``'s ``search`` on inner folds of ``train``.

    Returns a :class:`~mlsd.modeling.tuning.TuningResult`.

    The inner folds follow the outer split: by time (expanding windows in ``data.time`` order) when
    the design splits by time, by group for ``by: group``, stratified otherwise.
    """
    from mlsd.modeling.tuning import inner_folds, resolve_space, tune

    task, m = design.goals.task, design.models
    cand = m.candidates[index]
    spec = cand.search
    assert spec is not None
    field = f"models.candidates[{index}]"
    space = resolve_space(cand.type, task, spec.space, field=field)
    split = design.data.split
    time_column = design.data.time
    order = None
    if "time" in split.by and time_column and time_column in train:
        order = train[time_column].rank(method="first").to_numpy()
    groups = train[split.column].to_numpy() if split.by == "group" and split.column in train else None
    folds = inner_folds(y_train, task=task, folds=spec.folds, seed=m.seed, order=order, groups=groups)
    untuned = make_candidate(
        cand.type, task, cand.params, class_weight_for(design, index), m.seed, field=field
    ).get_params(deep=False)
    limits = [f"{spec.trials} trials"] if spec.trials is not None else []
    limits += [f"{spec.budget_s:g} s"] if spec.budget_s is not None else []
    bound = " and ".join(limits)
    return tune(
        lambda p: candidate_model(design, index, feature_pipeline, params={**cand.params, **p}),
        train,
        y_train,
        space=space,
        task=task,
        metric=search_metric(design)[0],
        folds=folds,
        untuned=untuned,
        trials=spec.trials,
        budget_s=spec.budget_s,
        seed=m.seed,
        progress=progress,
        label=f"search {cand.name} ({cand.type}): at most {bound}, {spec.folds} inner folds of train",
    )

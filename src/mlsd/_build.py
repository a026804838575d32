"""``mlsd build``: segments 1-4 offline, one stage library call per step.

split -> schema -> leakage checks -> feature pipeline -> baselines and candidates ->
trade-off table -> decision -> cost-optimal threshold -> slices -> registry -> design document.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from mlsd.design import Design

if TYPE_CHECKING:
    from mlsd.system import BuildResult, PreparedData, System

__all__ = ["make_feature_pipeline", "run_build"]


def make_feature_pipeline(design: Design) -> Pipeline:
    """The design's feature spec as one unfitted pipeline over raw rows (derived columns first)."""
    from mlsd.features import build_feature_pipeline
    from mlsd.features.derived import DeriveColumns

    f = design.features
    features = build_feature_pipeline(
        numeric=f.numeric,
        categorical=f.categorical,
        hashed=f.hashed,
        cyclical=f.cyclical,
        time_column=design.data.time if f.time_parts else None,
        time_parts=f.time_parts,
        crosses=f.crosses,
        rare_min_frequency=f.rare_min_frequency,
    )
    return Pipeline([("derive", DeriveColumns(dict(design.data.derive) or None)), ("features", features)])


def split_data(design: Design, frame: pd.DataFrame) -> Any:
    """The design's split: by time, by group, stratified by the label, or random."""
    from mlsd.data import (
        train_valid_test_split_by_group,
        train_valid_test_split_by_time,
        train_valid_test_split_random,
        train_valid_test_split_stratified,
    )

    s = design.data.split
    sizes = {"valid_size": s.valid_size, "test_size": s.test_size, "seed": s.seed}
    if s.by == "time":
        return train_valid_test_split_by_time(frame, design.data.time, s.valid_from, s.test_from)
    if s.by == "group":
        return train_valid_test_split_by_group(frame, s.column, **sizes)
    if s.by == "stratified" and design.goals.task != "regression":
        return train_valid_test_split_stratified(frame, design.goals.target, **sizes)
    return train_valid_test_split_random(frame, **sizes)


def leakage_checks(design: Design) -> list[str]:
    """The leakage checks a build of ``design`` runs (the document lists each, findings or not)."""
    checks = ["forbidden_feature", "duplicate_rows", "target_leakage"]
    return [*checks, "time_order"] if design.data.split.by == "time" else checks


def run_leakage_checks(design: Design, prepared: PreparedData, split: Any) -> Any:
    """Every leakage check of :func:`leakage_checks`, over the columns the features really read."""
    from mlsd.data import (
        LeakageReport,
        check_duplicates_across_splits,
        check_forbidden_features,
        check_time_order,
        find_target_leakage,
    )

    target = design.goals.target
    feature_cols = prepared.feature_columns
    checks = leakage_checks(design)
    # A derived feature leaks whatever its expression reads, so forbid by source column too.
    read = list(dict.fromkeys(feature_cols + prepared.input_columns))
    findings = list(check_forbidden_features(read, design.features.forbidden))
    if "time_order" in checks:
        findings += check_time_order(split, design.data.time)
    dup_cols = [c for c in dict.fromkeys([*prepared.input_columns, target]) if c in split.train.columns]
    findings += check_duplicates_across_splits(split, dup_cols)
    cols = [c for c in feature_cols if c not in design.features.forbidden]
    findings += find_target_leakage(
        split.train[cols],
        split.train[target],
        split.valid[cols],
        split.valid[target],
        task=design.goals.task,
        threshold=_leakage_threshold(design),
        min_uplift=design.data.leakage.min_uplift,
        seed=design.models.seed,
    )
    return LeakageReport(findings=findings)


def _leakage_threshold(design: Design) -> float:
    spec = design.data.leakage
    return spec.max_single_feature_r2 if design.goals.task == "regression" else spec.max_single_feature_auc


def run_build(system: System) -> BuildResult:
    from mlsd._document import assemble_document
    from mlsd.data import infer_schema
    from mlsd.goals import CostMatrix, expected_cost_per_1000, optimal_threshold
    from mlsd.modeling import select_model
    from mlsd.report import render_design_document
    from mlsd.store import ModelRegistry, PackagedModel
    from mlsd.system import BuildResult

    start = time.perf_counter()
    design, progress = system.design, system.progress
    prepared = system.prepare_data()
    target = design.goals.target
    with progress.stage("splitting"):
        split = split_data(design, prepared.frame)
    # Hashed columns are high-cardinality by design: new values are expected, so no allowed list.
    categorical = [*design.features.categorical, *(c for cross in design.features.crosses for c in cross)]
    schema = infer_schema(
        split.train,
        columns=prepared.input_columns,
        categorical=[c for c in dict.fromkeys(categorical) if c in prepared.input_columns],
    )

    with progress.stage("leakage checks"):
        leakage = run_leakage_checks(design, prepared, split)
    for finding in leakage.findings:
        progress.note(f"leakage [{finding.check}] {', '.join(finding.columns)}: {finding.detail}")
    _save_json(system.reports_dir / "leakage.json", leakage.to_dict())
    failing = leakage.failing(set(design.data.leakage.fail_on))
    if failing:
        _raise_leakage(failing)

    thresholds, fitted, table = _fit_and_evaluate(system, prepared, split)
    sel = design.models.select
    constraints = {**design.goals.constraints, **sel.subject_to}
    decision = select_model(table, maximize=sel.maximize, minimize=sel.minimize, subject_to=constraints)
    progress.note(f"decision: {decision.reason}")
    winner = fitted[decision.winner]
    threshold = thresholds[decision.winner]

    y_valid, y_test = split.valid[target].to_numpy(), split.test[target].to_numpy()
    threshold_choice, costs, test_cost = None, None, None
    if design.goals.task == "binary" and design.goals.costs is not None:
        costs = CostMatrix.from_spec(design.goals.costs)
        threshold_choice = optimal_threshold(y_valid, _scores(winner, split.valid, "binary"), costs)
        test_pred = (_scores(winner, split.test, "binary") >= threshold).astype(int)
        test_cost = float(expected_cost_per_1000(y_test, test_pred, costs))

    # The document is assembled before anything is registered: a build that fails late must not
    # leave a new champion behind.
    with progress.stage("writing the design document"):
        document = assemble_document(
            system,
            prepared=prepared,
            split=split,
            schema=schema,
            leakage=leakage,
            leakage_checks=leakage_checks(design),
            table=table,
            decision=decision,
            fitted=fitted,
            thresholds=thresholds,
            threshold_choice=threshold_choice,
            costs=costs,
            test_cost=test_cost,
            seconds=time.perf_counter() - start,
        )
    metrics = _winner_metrics(table, decision.winner, threshold, test_cost)
    packaged = PackagedModel(
        pipeline=winner,
        task=design.goals.task,
        threshold=threshold,
        input_columns=prepared.input_columns,
        schema=schema.model_dump(mode="json"),
        classes=[c.item() if isinstance(c, np.generic) else c for c in getattr(winner, "classes_", [])],
        metadata={
            "design": design.name,
            "winner": decision.winner,
            "primary_metric": design.goals.metric,
            "metrics": metrics,
        },
    )
    with progress.stage("reference statistics for monitoring"):
        reference = reference_statistics(design, schema, split, packaged, table[decision.winner])
    document.monitoring.reference = _reference_summary(reference)
    with progress.stage("registering the champion"):
        registry = ModelRegistry(system.workspace)
        with registry.start_run(experiment=design.name, run_name=f"build-{time.strftime('%Y%m%d-%H%M%S')}"):
            registry.log_params(_params(design))
            registry.log_metrics(metrics)
            registry.log_table("tradeoff", table.to_records())
            registry.log_table("leakage", leakage.to_dict().get("findings", []))
            info = registry.register(
                packaged, design.registry_name, alias="champion", description=decision.reason
            )
            document.models.registry = {
                "name": info.name,
                "version": info.version,
                "alias": "champion",
                "uri": info.uri,
            }
            # reference/ describes the champion monitoring compares against: written only once a
            # build has registered one, so a failed build never replaces the champion's reference
            _save_json(system.workspace / "reference" / "schema.json", schema.model_dump(mode="json"))
            reference.save(system.workspace / "reference")
            document.build_seconds = round(time.perf_counter() - start, 1)
            document.save(system.reports_dir / "design.json")
            path = render_design_document(document, system.reports_dir / "design.html")
            registry.log_artifact(path)
    return BuildResult(
        winner=decision.winner,
        registered_version=str(info.version),
        report_path=path,
        seconds=time.perf_counter() - start,
        document=document,
        leakage=leakage,
    )


def _fit_and_evaluate(system: System, prepared: PreparedData, split: Any) -> tuple[dict, dict, Any]:
    """Fit every baseline and candidate on train; evaluate each at its own cost-optimal threshold."""
    from mlsd.modeling import (
        TradeOffTable,
        baseline_name,
        calibrate,
        evaluate_model,
        make_baseline,
        make_candidate,
        predict_on_one_thread,
    )

    design, progress = system.design, system.progress
    task, target, m = design.goals.task, design.goals.target, design.models
    y_train = split.train[target].to_numpy()
    y_valid = split.valid[target].to_numpy()
    feature_pipeline = make_feature_pipeline(design)
    evaluations, fitted, thresholds = [], {}, {}

    def evaluate(name: str, model: Any, kind: str, seconds: float, latency_rows: Any) -> None:
        thresholds[name] = _cost_optimal_threshold(design, model, split.valid, y_valid)
        evaluations.append(
            evaluate_model(
                name,
                model,
                kind=kind,
                X_valid=split.valid,
                y_valid=y_valid,
                X_test=split.test,
                y_test=split.test[target].to_numpy(),
                task=task,
                metrics=design.goals.metrics,
                primary=design.goals.metric,
                n_bootstrap=m.bootstrap,
                seed=m.seed,
                train_seconds=seconds,
                latency_rows=latency_rows,
                threshold=thresholds[name],
            )
        )
        fitted[name] = model

    baselines = m.baselines()
    with progress.stage("baselines", total=len(baselines)) as advance:
        for i, spec in enumerate(baselines):
            where = f"models.baseline[{i}]" if isinstance(m.baseline, list) else "models.baseline"
            model = make_baseline(spec, task, seed=m.seed, field=where)
            t = time.perf_counter()
            model.fit(split.train, y_train)
            evaluate(baseline_name(spec), model, "baseline", time.perf_counter() - t, split.test.head(500))
            advance()
    latency_rows = split.test[prepared.input_columns].head(500)
    for i, cand in enumerate(m.candidates):
        with progress.stage(
            f"candidate {cand.name} ({cand.type}): fit, calibrate, evaluate", total=3
        ) as advance:
            est = make_candidate(
                cand.type,
                task,
                params=cand.params,
                class_weight=m.class_weight,
                seed=m.seed,
                field=f"models.candidates[{i}]",
            )
            model = Pipeline([*clone(feature_pipeline).steps, ("model", est)])
            t = time.perf_counter()
            model.fit(split.train, y_train)
            seconds = time.perf_counter() - t
            predict_on_one_thread(model)
            advance()
            if m.calibrate != "none" and task != "regression":
                model = calibrate(model, split.valid, y_valid, method=m.calibrate)
            advance()
            evaluate(cand.name, model, "candidate", seconds, latency_rows)
            advance()
    return thresholds, fitted, TradeOffTable(evaluations)


def monitored_columns(design: Design, schema: Any) -> tuple[list[str], list[str]]:
    """The raw input columns monitoring watches: (numeric, categorical).

    Datetimes are left out (time moves forward by nature; its parts are features and drift through
    them), and so are hashed columns, whose values are expected to be new.
    """
    skip = {design.data.time, *design.features.hashed}
    numeric, categorical = [], []
    for name, col in schema.columns.items():
        if name in skip or col.dtype == "datetime":
            continue
        is_categorical = col.allowed is not None or col.dtype in ("string", "boolean")
        (categorical if is_categorical else numeric).append(name)
    return numeric, categorical


def reference_statistics(design: Design, schema: Any, split: Any, packaged: Any, evaluation: Any) -> Any:
    """What monitoring compares each window against.

    Inputs and the label rate come from the training split (the world the model learnt from);
    the score distribution and the performance come from the validation split, where the scores
    are out of sample, so a healthy model's live scores should match them.
    """
    from mlsd.monitoring import ReferenceStatistics

    numeric, categorical = monitored_columns(design, schema)
    target, task = design.goals.target, design.goals.task
    valid_metrics = evaluation.metrics.get("valid", {})
    return ReferenceStatistics.from_frame(
        split.train,
        numeric=numeric,
        categorical=categorical,
        # the score exactly as the server logs it, so prediction drift compares like with like
        scores=packaged.predict_frame(split.valid)["score"].to_numpy(),
        # 1 for the positive class, so the label rate means the same whatever the labels are
        labels=(split.train[target] == packaged.positive_class).to_numpy(float) if task == "binary" else None,
        positive_class=packaged.positive_class,
        performance={name: float(est.value) for name, est in valid_metrics.items() if est.value is not None},
        seed=design.models.seed,
    )


def _reference_summary(reference: Any) -> dict[str, Any]:
    """What the design document says about the reference monitoring compares against."""
    from mlsd.monitoring import SCORE_COLUMN

    summary: dict[str, Any] = {
        "numeric features": ", ".join(c for c in reference.numeric if c != SCORE_COLUMN) or "-",
        "categorical features": ", ".join(reference.categorical) or "-",
        "training rows summarised": reference.n_rows,
        "score distribution": "validation split" if SCORE_COLUMN in reference.numeric else "-",
    }
    if reference.label_rate is not None:
        summary["training label rate"] = round(float(reference.label_rate), 4)
    summary |= {f"validation {k}": round(v, 4) for k, v in reference.performance.items() if v is not None}
    return summary


def _cost_optimal_threshold(design: Design, model: Any, x_valid: pd.DataFrame, y_valid: np.ndarray) -> float:
    """The decision threshold minimising the design's costs on valid (0.5 without costs)."""
    from mlsd.goals import CostMatrix, optimal_threshold

    if design.goals.task != "binary" or design.goals.costs is None:
        return 0.5
    costs = CostMatrix.from_spec(design.goals.costs)
    return float(optimal_threshold(y_valid, _scores(model, x_valid, "binary"), costs).threshold)


def _scores(model: Any, x: pd.DataFrame, task: str) -> np.ndarray:
    if task == "binary":
        return model.predict_proba(x)[:, 1]
    return np.asarray(model.predict(x))


def _params(design: Design) -> dict[str, Any]:
    d = design
    params: dict[str, Any] = {
        "task": d.goals.task,
        "metric": d.goals.metric,
        "source": d.data.source.uri,
        "label": d.data.label,
        "split": d.data.split.by,
        "calibrate": d.models.calibrate,
        "candidates": ",".join(f"{c.name}:{c.type}" for c in d.models.candidates),
        "features": ",".join(d.features.input_columns()),
    }
    if d.data.split.by == "time":
        params |= {"valid_from": str(d.data.split.valid_from), "test_from": str(d.data.split.test_from)}
    return params


def _winner_metrics(table: Any, winner: str, threshold: float, test_cost: float | None) -> dict[str, float]:
    """Flat numbers for MLflow: every metric of the winner per split, its latency, size and cost."""
    e = table[winner]
    out = {
        "threshold": threshold,
        "p50_latency_ms": e.p50_latency_ms,
        "p99_latency_ms": e.p99_latency_ms,
        "size_mb": e.size_mb,
        "train_seconds": e.train_seconds,
    }
    if test_cost is not None:
        out["test_cost_per_1000"] = test_cost
    for split, estimates in e.metrics.items():
        out |= {f"{split}_{name}": est.value for name, est in estimates.items()}
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


def _save_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default))
    tmp.replace(path)  # atomic: a crash never leaves a half-written file


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _raise_leakage(failing: list[Any]) -> None:
    from mlsd.errors import LeakageError

    names = "; ".join(f"{f.check}: {', '.join(f.columns)}" for f in failing)
    raise LeakageError(
        f"leakage checks failed ({names})",
        field="data.leakage.fail_on",
        expected="remove these columns from the features, or list them in features.forbidden",
    )

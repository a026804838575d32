"""Fill the design document from what a build measured (one function per segment)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mlsd.report import DesignDocument
    from mlsd.system import PreparedData, System

__all__ = ["assemble_document"]

_MAX_CURVE_ROWS = 20_000  # enough for smooth ROC/PR/reliability curves, small enough for the HTML
_MIN_SLICE_ROWS = 50
_MAX_SLICE_VALUES = 25
_MAX_COST_POINTS = 400


def assemble_document(
    system: System,
    *,
    prepared: PreparedData,
    split: Any,
    schema: Any,
    leakage: Any,
    leakage_checks: list[str],
    table: Any,
    decision: Any,
    fitted: dict[str, Any],
    thresholds: dict[str, float],
    threshold_choice: Any,
    costs: Any,
    test_cost: float | None,
    seconds: float,
) -> DesignDocument:
    from mlsd.report import DesignDocument

    design = system.design
    task = design.goals.task
    target = design.goals.target
    test = split.test
    y_test = test[target].to_numpy()
    rows = _curve_rows(len(test), design.models.seed)
    scores = {name: _scores(model, test, task) for name, model in fitted.items()}
    return DesignDocument(
        name=design.name,
        description=design.description,
        design_path=str(design.path or ""),
        build_seconds=round(seconds, 1),
        goals=_goals(
            design, thresholds, decision.winner, threshold_choice, costs, test_cost, table, fitted, split
        ),
        data=_data(design, prepared, split, schema, leakage, leakage_checks),
        features=_features(design, fitted[decision.winner]),
        models=_models(design, table, decision, fitted, scores, y_test, rows, test),
        monitoring={"plan": design.monitoring.model_dump(mode="json")},
    )


def _curve_rows(n: int, seed: int) -> np.ndarray:
    if n <= _MAX_CURVE_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, _MAX_CURVE_ROWS, replace=False))


def _scores(model: Any, frame: pd.DataFrame, task: str) -> np.ndarray:
    if task == "binary":
        return np.asarray(model.predict_proba(frame)[:, 1], dtype=float)
    if task == "regression":
        return np.asarray(model.predict(frame), dtype=float)
    return np.asarray(model.predict_proba(frame), dtype=float).max(axis=1)


# --- 1 goals ---------------------------------------------------------------------------------------


def _goals(
    design: Any,
    thresholds: dict[str, float],
    winner: str,
    choice: Any,
    costs: Any,
    test_cost: float | None,
    table: Any,
    fitted: dict[str, Any],
    split: Any,
) -> dict[str, Any]:
    g = design.goals
    out: dict[str, Any] = {
        "task": g.task,
        "objective": g.objective or "",
        "target": g.target,
        "metric": g.metric,
        "stakeholders": [s.model_dump() for s in g.stakeholders],
        "costs": g.costs.model_dump(exclude={"unit"}) if g.costs else {},
        "constraints": {**g.constraints, **design.models.select.subject_to},
        "threshold": thresholds[winner] if g.task == "binary" else None,
        "cost_per_1000": test_cost,
    }
    if choice is not None and costs is not None:
        t, c = (np.asarray(a) for a in choice.curve)
        keep = np.unique(np.linspace(0, len(t) - 1, min(len(t), _MAX_COST_POINTS)).astype(int))
        out["cost_curve"] = {"thresholds": t[keep], "cost_per_1000": c[keep]}
        out["baseline_cost_per_1000"] = _best_baseline_cost(table, fitted, thresholds, split, design, costs)
    return out


def _best_baseline_cost(
    table: Any, fitted: dict[str, Any], thresholds: dict[str, float], split: Any, design: Any, costs: Any
) -> float | None:
    """The cheapest baseline on test, each at its own cost-optimal threshold (chosen on valid)."""
    from mlsd.goals import expected_cost_per_1000

    target = design.goals.target
    best = None
    for e in table.baselines:
        pred = (_scores(fitted[e.name], split.test, "binary") >= thresholds[e.name]).astype(int)
        cost = float(expected_cost_per_1000(split.test[target].to_numpy(), pred, costs))
        best = cost if best is None else min(best, cost)
    return best


# --- 2 data ----------------------------------------------------------------------------------------


def _data(
    design: Any, prepared: PreparedData, split: Any, schema: Any, leakage: Any, leakage_checks: list[str]
) -> dict[str, Any]:
    d, target = design.data, design.goals.target
    frame = prepared.frame
    fail_on = set(d.leakage.fail_on)
    params = d.split.model_dump(mode="json", exclude_none=True, exclude={"by"})
    out: dict[str, Any] = {
        "sources": prepared.sources,
        "label": d.label,
        "filter": d.filter,
        "n_rows": len(frame),
        "label_rate": _label_rate(frame[target], design.goals.task),
        "split": {"by": d.split.by, "sizes": split.sizes(), "params": params},
        "timeline": _timeline(split, d.time, target, design.goals.task) if d.time else [],
        "schema": [
            {
                "column": name,
                "dtype": c.dtype,
                "missing_rate": c.missing_rate,
                "min": _plain(c.min),
                "max": _plain(c.max),
                "n_unique": c.n_unique,
            }
            for name, c in schema.columns.items()
        ],
        "leakage": [
            {
                "check": f.check,
                "columns": list(f.columns),
                "detail": f.detail,
                "score": f.score,
                "failed": f.check in fail_on,
            }
            for f in leakage.findings
        ],
        "leakage_checks": leakage_checks,
        "quality": [
            {"split": name, **v.model_dump(mode="json")}
            for name in ("valid", "test")
            for v in schema.validate_frame(getattr(split, name)[prepared.input_columns])
        ],
    }
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, int | float | str):
        return value
    return str(value)


def _label_rate(y: pd.Series, task: str) -> float | None:
    return float(y.mean()) if task == "binary" else None


def _timeline(split: Any, time_column: str, target: str, task: str) -> list[dict[str, Any]]:
    rows = []
    for name in ("train", "valid", "test"):
        part = getattr(split, name)
        when = pd.to_datetime(part[time_column], utc=True, errors="coerce")
        period = when.dt.strftime("%Y-%m")
        grouped = part.groupby(period.to_numpy())[target]
        counts = grouped.size()
        rates = grouped.mean() if task == "binary" else pd.Series(np.nan, index=counts.index)
        rows += [
            {
                "period": str(p),
                "split": name,
                "rows": int(n),
                "label_rate": None if pd.isna(rates[p]) else float(rates[p]),
            }
            for p, n in counts.items()
        ]
    return rows


# --- 3 features ------------------------------------------------------------------------------------


def _features(design: Any, winner: Any) -> dict[str, Any]:
    from mlsd.features import FeaturePipeline, describe_features

    pipeline = _find(winner, FeaturePipeline)
    records = describe_features(pipeline) if pipeline is not None else []
    for column in design.data.derive:
        for r in records:
            if r["column"] == column:
                r["transform"] = f"derived: {design.data.derive[column]}; {r['transform']}"
    return {
        "records": [{k: r.get(k) for k in ("column", "kind", "transform", "n_outputs")} for r in records],
        "n_output_features": getattr(pipeline, "n_features_out_", None),
        "forbidden": design.features.forbidden,
    }


def _find(model: Any, kind: type, depth: int = 0) -> Any:
    """The first ``kind`` inside a (calibrated, frozen, pipelined) model."""
    if isinstance(model, kind):
        return model
    if depth > 6:
        return None
    children = [step for _, step in getattr(model, "steps", [])]
    children += [getattr(model, a) for a in ("estimator", "base_estimator") if hasattr(model, a)]
    for cal in getattr(model, "calibrated_classifiers_", [])[:1]:
        children.append(cal.estimator)
    for child in children:
        found = _find(child, kind, depth + 1)
        if found is not None:
            return found
    return None


# --- 4 models --------------------------------------------------------------------------------------


def _models(
    design: Any,
    table: Any,
    decision: Any,
    fitted: dict[str, Any],
    scores: dict[str, np.ndarray],
    y_test: np.ndarray,
    rows: np.ndarray,
    test: pd.DataFrame,
) -> dict[str, Any]:
    task = design.goals.task
    types = {c.name: c.type for c in design.models.candidates}
    tradeoff = []
    for e in table:
        rejected = decision.rejected.get(e.name, "")
        tradeoff.append(
            {
                "name": e.name,
                "kind": e.kind,
                "type": types.get(e.name, "baseline"),
                "valid": _intervals(e, "valid"),
                "test": _intervals(e, "test"),
                "ece": _metric(e, "ece"),
                "brier": _metric(e, "brier"),
                "p50_ms": e.p50_latency_ms,
                "p99_ms": e.p99_latency_ms,
                "throughput_rps": e.throughput_rows_per_s,
                "size_mb": e.size_mb,
                "train_seconds": e.train_seconds,
                "passed": e.kind == "candidate" and not rejected,
                "reason": "winner" if e.name == decision.winner else rejected,
            }
        )
    sel = design.models.select
    bounds = ", ".join(
        f"{k} {'>=' if k.startswith('min_') else '<='} {v:g}"
        for k, v in {**design.goals.constraints, **sel.subject_to}.items()
    )
    rule = f"{'maximise' if sel.maximize else 'minimise'} {sel.maximize or sel.minimize} on {sel.split}"
    rule += f" subject to {bounds}" if bounds else ""
    out: dict[str, Any] = {
        "tradeoff": tradeoff,
        "decision": {"winner": decision.winner, "reason": decision.reason, "rule": rule},
        "curves": {
            name: (
                {"y_true": y_test[rows], "score": s[rows]}
                if task == "binary"
                else {"y_true": y_test[rows], "value": s[rows]}
            )
            for name, s in scores.items()
            if task in ("binary", "regression")
        },
        "slices": _slices(design, scores[decision.winner], y_test, test),
        "deployment": design.deployment.model_dump(mode="json"),
    }
    if task == "binary":
        calibration: dict[str, Any] = {"y_true": y_test[rows], "score": scores[decision.winner][rows]}
        inner = _uncalibrated(fitted[decision.winner])
        if inner is not None:
            calibration |= {
                "uncalibrated": _scores(inner, test, task)[rows],
                "method": design.models.calibrate,
            }
        out["calibration"] = calibration
    return out


def _intervals(e: Any, split: str) -> dict[str, dict[str, float | None]]:
    return {
        m: {k: v for k, v in est.to_dict().items() if k in ("value", "low", "high")}
        for m, est in e.metrics.get(split, {}).items()
    }


def _metric(e: Any, name: str) -> float | None:
    est = e.metrics.get("test", {}).get(name)
    return None if est is None or est.value is None or np.isnan(est.value) else float(est.value)


def _uncalibrated(model: Any) -> Any:
    cals = getattr(model, "calibrated_classifiers_", None)
    if not cals:
        return None
    inner = cals[0].estimator
    return getattr(inner, "estimator", inner)  # FrozenEstimator wraps the fitted pipeline


def _slices(design: Any, score: np.ndarray, y: np.ndarray, test: pd.DataFrame) -> list[dict[str, Any]]:
    """The primary metric per value of each slice column (values with enough rows, largest first)."""
    from mlsd.goals import compute_metric, get_metric

    task, metric_name = design.goals.task, design.goals.metric
    metric = get_metric(metric_name)
    out = []
    for column in design.models.slices:
        values = test[column].astype(str).to_numpy()
        counts = pd.Series(values).value_counts()
        for value, n in counts[counts >= _MIN_SLICE_ROWS].head(_MAX_SLICE_VALUES).items():
            mask = values == value
            y_s, s_s = y[mask], score[mask]
            try:
                mv = float(compute_metric(metric, y_s, s_s))
            except (ValueError, ZeroDivisionError):
                mv = None  # e.g. AUC of a slice with one class only
            if mv is not None and not np.isfinite(mv):
                mv = None
            out.append(
                {
                    "column": column,
                    "value": value,
                    "n": int(n),
                    "label_rate": float(y_s.mean()) if task == "binary" else None,
                    "metric": metric_name,
                    "metric_value": mv,
                }
            )
    return out

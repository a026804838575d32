"""Fill the design document from the result objects of a build's stages (one function per segment).

Nothing here computes a metric: every number is read from what a stage measured (the
evaluations, the decision, the assessment of the decided models, the leakage report, the
schema). This module only chooses what the document shows and in which shape.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mlsd.data import PreparedData, label_timeline, leakage_checks
from mlsd.design import SPLIT_KEYS, Design
from mlsd.report import DesignDocument

__all__ = ["assemble_document", "quality_findings", "split_params"]

_MAX_COST_POINTS = 400
# the SplitSpec fields each kind of split reads (a time split has no sizes, a random one no dates)
_SPLIT_FIELDS = SPLIT_KEYS


def assemble_document(
    design: Design,
    *,
    prepared: PreparedData,
    split: Any,
    schema: Any,
    leakage: Any,
    modeling: Any,
    decision: Any,
    assessment: Any,
    seconds: float,
    behaviour: Any = None,
    compression: Any = None,
    explanations: dict[str, Any] | None = None,
) -> DesignDocument:
    """The design document of one build, from its stages' results."""
    document = DesignDocument(
        name=design.name,
        description=design.description,
        design_path=str(design.path or ""),
        build_seconds=round(seconds, 1),
        goals=_goals(design, modeling, decision, assessment),
        data=_data(design, prepared, split, schema, leakage),
        features=_features(design, modeling.fitted[decision.winner]),
        models=_models(design, modeling, decision, assessment, behaviour),
        monitoring={"plan": design.monitoring.model_dump(mode="json")},
    )
    if compression is not None:
        _compression(design, document, compression)
    document.models.explanations = explanations  # models.explain (docs/explanations.md)
    return document


# --- models.compress (docs/compression.md) ---------------------------------------------------------


def _compression(design: Design, document: DesignDocument, compression: Any) -> None:
    """The compressed rows named by what they came from, and the ONNX tolerance check."""
    teacher_type = {c.name: c.type for c in design.models.candidates}.get(compression.teacher, "")
    variant_of = {name: variant for variant, name in compression.rows.items()}
    for row in document.models.tradeoff:
        if row.name in variant_of:
            row.type = f"{teacher_type} → {variant_of[row.name]}"
            size = compression.sizes_bytes.get(row.name)
            row.training = f"compressed from {compression.teacher}" + (
                f"; ONNX graph {size:,} bytes" if size else ""
            )
    document.models.compression = compression.to_dict()


# --- end models.compress


# --- 1 goals ---------------------------------------------------------------------------------------


def _goals(design: Design, modeling: Any, decision: Any, assessment: Any) -> dict[str, Any]:
    g, winner = design.goals, decision.winner
    sel = design.models.select
    out: dict[str, Any] = {
        "task": g.task,
        "objective": g.objective or "",
        "target": g.target,
        "metric": g.metric,
        "stakeholders": [s.model_dump() for s in g.stakeholders],
        "costs": g.costs.model_dump(exclude={"unit"}) if g.costs else {},
        "cost_unit": g.costs.unit if g.costs else "cost units",
        "constraints": {**g.constraints, **(sel.subject_to if sel else {})},
        "threshold": modeling.thresholds[winner] if g.task == "binary" else None,
        # the same figure as the confusion matrix's: both come from the champion's test scores
        "cost_per_1000": assessment.confusion["cost_per_1000"] if assessment.confusion else None,
    }
    choice = modeling.threshold_choices.get(winner)
    if choice is not None:
        t, c = (np.asarray(a) for a in choice.curve)
        keep = np.unique(np.linspace(0, len(t) - 1, min(len(t), _MAX_COST_POINTS)).astype(int))
        out["cost_curve"] = {"thresholds": t[keep], "cost_per_1000": c[keep]}
        out["baseline_cost_per_1000"] = modeling.best_baseline_cost()
    return out


# --- 2 data ----------------------------------------------------------------------------------------


def _data(design: Design, prepared: PreparedData, split: Any, schema: Any, leakage: Any) -> dict[str, Any]:
    d, target, task = design.data, design.goals.target, design.goals.task
    frame = prepared.frame
    fail_on = set(d.leakage.fail_on)
    return {
        "sources": prepared.sources,
        "sample": prepared.sample.to_dict() if prepared.sample is not None else None,
        "privacy": prepared.privacy.to_dict() if prepared.privacy is not None else None,
        "label": d.label,
        "filter": d.filter,
        "n_rows": len(frame),
        "label_rate": float(frame[target].mean()) if task == "binary" else None,
        "split": {
            "by": d.split.by,
            "sizes": split.sizes(),
            "params": split_params(design),
        },
        "timeline": label_timeline(split, d.time, target, task) if d.time else [],
        "schema": [
            {
                "column": name,
                "dtype": c.dtype,
                "missing_rate": c.missing_rate,
                "min": _plain(c.min),
                "max": _plain(c.max),
                "n_unique": c.n_unique,
                "range_check": _range_rule(c, design.deployment.range_tolerance),
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
        "leakage_checks": leakage_checks(design),
        "quality": quality_findings(design, schema, split, prepared.input_columns),
    }


def split_params(design: Design) -> dict[str, Any]:
    """The split's settings the document lists: only those its kind of split reads."""
    spec = design.data.split
    shown = _SPLIT_FIELDS[spec.by] | ({"dedupe"} if spec.dedupe else set())
    shown |= {"dedupe_text"} if spec.dedupe_text is not None else set()
    return spec.model_dump(mode="json", exclude_none=True, include=set(shown))


def quality_findings(
    design: Design, schema: Any, split: Any, input_columns: list[str]
) -> list[dict[str, Any]]:
    """The valid and test rows checked against the schema with the server's own rules
    (tolerance, unseen categories), so the table shows what the server would refuse."""
    dep = design.deployment
    return [
        {"split": name, **v.model_dump(mode="json")}
        for name in ("valid", "test")
        for v in schema.validate_frame(
            getattr(split, name)[input_columns],
            range_tolerance=dep.range_tolerance,
            allow_unseen_categories=not dep.reject_unseen_categories,
        )
    ]


def _range_rule(col: Any, tolerance: float) -> str | None:
    """How the server checks the column's range, and why (None: a column without a range)."""
    if col.min is None:
        return None
    if col.range_check == "none":
        rule = "none"
    else:
        t = tolerance if col.range_tolerance is None else col.range_tolerance
        rule = f"tolerance {t:g}" + (", no upper bound" if col.range_check == "growing" else "")
    return f"{rule} ({col.range_note})" if col.range_note else rule


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, int | float | str):
        return value
    return str(value)


# --- 3 features ------------------------------------------------------------------------------------


def _features(design: Design, winner: Any) -> dict[str, Any]:
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
    children += [getattr(model, a) for a in ("estimator", "base_estimator", "pipeline_") if hasattr(model, a)]
    children += [m for m in getattr(model, "estimators_", []) if hasattr(m, "get_params")]  # stacking, voting
    for cal in getattr(model, "calibrated_classifiers_", [])[:1]:
        children.append(cal.estimator)
    for child in children:
        found = _find(child, kind, depth + 1)
        if found is not None:
            return found
    return None


# --- 4 models --------------------------------------------------------------------------------------


def _models(design: Design, modeling: Any, decision: Any, assessment: Any, behaviour: Any) -> dict[str, Any]:
    from mlsd.modeling.training import training_note

    types = {c.name: c.type for c in design.models.candidates}
    notes = {c.name: training_note(design, i) for i, c in enumerate(design.models.candidates)}
    # models.candidates[].search: the untuned row of each searched candidate, and what the search did
    for c in design.models.candidates:
        if c.search is not None:
            types[f"{c.name}_untuned"], notes[f"{c.name}_untuned"] = c.type, notes[c.name]
    for name, note in getattr(modeling, "notes", {}).items():
        notes[name] = "; ".join(filter(None, [notes.get(name, ""), note]))
    tradeoff = [_tradeoff_row(e, types, notes, modeling, decision) for e in modeling.table]
    tested = behaviour.to_dict()["results"] if behaviour is not None else []
    for row in tradeoff:
        row["behaviour"] = [r for r in tested if r["model"] == row["name"]]
    sel = design.models.select
    assert sel is not None  # Design fills it from goals.metric
    bounds = ", ".join(
        f"{k} {'>=' if k.startswith('min_') else '<='} {v:g}"
        for k, v in {**design.goals.constraints, **sel.subject_to}.items()
    )
    rule = f"{'maximise' if sel.maximize else 'minimise'} {sel.maximize or sel.minimize} on {sel.split}"
    rule += f" subject to {bounds}" if bounds else ""
    methods = {e.latency_method for e in modeling.table.candidates} - {""}
    return {
        "tradeoff": tradeoff,
        "decision": {"winner": decision.winner, "reason": decision.reason, "rule": rule},
        "curves": assessment.curves,
        "calibration": assessment.calibration,
        "confusion": assessment.confusion,
        "latency_method": " ".join(sorted(methods)),
        "slices": assessment.slices,
        "slice_finding": getattr(assessment, "slice_finding", None),
        "simpson": getattr(assessment, "simpson", []),
        "deployment": design.deployment.model_dump(mode="json"),
        "augment": _augment(design, modeling),
        "behaviour": tested,
    }


def _augment(design: Design, modeling: Any) -> dict[str, Any] | None:
    """What ``data.augment`` added to each candidate's training rows (read from the fitted sampler)."""
    if design.data.augment is None:
        return None
    from mlsd.data.augment import Augmenter

    fitted = {e.name: _find(modeling.fitted[e.name], Augmenter) for e in modeling.table.candidates}
    added = {name: (a.n_in_, a.n_added_) for name, a in fitted.items() if a is not None}
    first = next(iter(added.values()), (None, None))
    return {
        **design.data.augment.resolved(),
        "rows_in": first[0],
        "rows_added": first[1],
        "per_candidate": {name: n for name, (_, n) in added.items()},
    }


def _tradeoff_row(
    e: Any, types: dict[str, str], notes: dict[str, str], modeling: Any, decision: Any
) -> dict[str, Any]:
    cost = modeling.test_cost_intervals.get(e.name)
    rejected = decision.rejected.get(e.name, "")
    if e.kind == "baseline":
        role = "baseline"
    elif e.name == decision.winner:
        role = "champion"
    else:
        role = "rejected" if rejected else "passed"
    return {
        "name": e.name,
        "kind": e.kind,
        "role": role,
        "type": types.get(e.name, "baseline"),
        "training": notes.get(e.name, ""),
        "valid": _intervals(e, "valid"),
        "test": _intervals(e, "test"),
        "ece": _metric(e, "ece"),
        "brier": _metric(e, "brier"),
        "p50_ms": e.p50_latency_ms,
        "p99_ms": e.p99_latency_ms,
        "p50_wall_ms": e.p50_wall_ms,
        "p99_wall_ms": e.p99_wall_ms,
        "throughput_rps": e.throughput_rows_per_s,
        "size_mb": e.size_mb,
        "train_seconds": e.train_seconds,
        "cost_per_1000": modeling.test_costs.get(e.name),
        "cost_interval": None
        if cost is None
        else {k: v for k, v in cost.to_dict().items() if k in ("value", "low", "high")},
        "gates": _gates(decision, e.name) if e.kind == "candidate" else [],
        "passed": role in ("champion", "passed"),
        "reason": "winner" if role == "champion" else rejected,
    }


def _gates(decision: Any, name: str) -> list[dict[str, Any]]:
    """The decision's gate outcomes for one model, as the document's :class:`Gate` rows."""
    return [dataclasses.asdict(g) for g in decision.gates.get(name, [])]


def _intervals(e: Any, split: str) -> dict[str, dict[str, float | None]]:
    return {
        m: {k: v for k, v in est.to_dict().items() if k in ("value", "low", "high")}
        for m, est in e.metrics.get(split, {}).items()
    }


def _metric(e: Any, name: str) -> float | None:
    est = e.metrics.get("test", {}).get(name)
    return None if est is None or est.value is None or np.isnan(est.value) else float(est.value)

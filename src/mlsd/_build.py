"""``mlsd build``: segments 1-4 offline, each stage called once and its result passed on.

prepare data -> split -> schema -> leakage checks -> feature pipeline -> baselines and
candidates (each evaluated once) -> decision -> assessment of the decided models -> design
document -> reference statistics -> registry. This module only wires the stages; each
computes in its own package and returns a result object.

The whole build is one MLflow run. It ends FAILED when the build raises or is interrupted
(SIGINT, or SIGTERM, which is turned into :class:`BuildInterrupted` for the build's duration);
a model logged but not registered is deleted then. What a build killed outright (SIGKILL)
leaves behind, the next build cleans and lists as build notes.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd._progress import QUIET, Progress
from mlsd.design import Design

__all__ = ["BuildInterrupted", "BuildResult", "RetrainInput", "monitored_columns", "run_build"]


@dataclasses.dataclass
class BuildResult:
    """What a build decided and where it put it."""

    winner: str
    registered_version: str
    report_path: Path
    seconds: float
    document: Any = dataclasses.field(repr=False)
    leakage: Any = dataclasses.field(repr=False, default=None)
    alias: str = "champion"  # the registry alias the winner was registered under
    # what the build tidied before it started (runs of killed builds, unregistered models)
    notes: list[str] = dataclasses.field(default_factory=list)


class BuildInterrupted(KeyboardInterrupt):
    """SIGTERM during a build: raised like Ctrl-C, so the run ends FAILED and nothing half-registers."""


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    # Python turns SIGINT into KeyboardInterrupt already; SIGTERM would end the process without
    # unwinding, leaving the run RUNNING. Handlers can only be set from the main thread.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise BuildInterrupted(f"build stopped by signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclasses.dataclass
class RetrainInput:
    """What ``mlsd retrain`` adds to a build: labelled traffic and the champion to beat on its
    newest part (:class:`~mlsd.data.traffic.LabelledTraffic`, docs/retraining.md)."""

    traffic: Any  # LabelledTraffic: .train joins the training split, .holdout judges both models
    champion: Any  # the PackagedModel serving now
    champion_version: int
    trigger: str
    reason: str
    spec: Any = None  # the design's RetrainSpec (monitoring.retrain)

    @property
    def finetune(self) -> bool:
        return self.spec is not None and self.spec.mode == "finetune"


def run_build(
    design: Design,
    *,
    alias: str = "champion",
    progress: Progress = QUIET,
    retrain: RetrainInput | None = None,
    data_until: Any = None,
) -> BuildResult:
    """Run segments 1-4 offline and register the winner under ``alias`` (``champion`` by default).

    Another alias (``challenger``) leaves the champion, its reference/ for monitoring and its
    design document (reports/design.html) in place: the challenger's document is
    reports/design-<alias>.html. With ``retrain``, the training split gains the older labelled
    traffic and the winner is registered only if it beats the champion on the newest.
    ``data_until`` (a UTC timestamp) keeps only the design's rows whose ``data.time`` is earlier:
    ``mlsd simulate`` builds as if the build ran at that moment (docs/simulation.md).
    """
    from mlsd.store import ModelRegistry

    start = time.perf_counter()
    registry = ModelRegistry(design.workspace_dir())
    notes = [
        f"the workspace moved from {old}: MLflow's artefact locations now point here"
        for old in registry.relocated_from
    ]
    notes += registry.clean_interrupted(design.name)
    for note in notes:
        progress.note(note)
    with (
        _terminate_as_interrupt(),
        registry.start_run(experiment=design.name, run_name=f"build-{time.strftime('%Y%m%d-%H%M%S')}"),
    ):
        registry.log_params(_params(design))
        from mlsd.features import embedding_cache  # text embeddings by content (docs/text-features.md)

        with embedding_cache.caching(design.workspace_dir() / "cache" / "embeddings.sqlite", progress):
            result = _run_stages(design, registry, start, progress, alias, retrain, data_until)
    result.notes = notes
    return result


def _run_stages(
    design: Design,
    registry: Any,
    start: float,
    progress: Progress,
    alias: str,
    retrain: RetrainInput | None,
    data_until: Any = None,
) -> BuildResult:
    """Every stage once, inside the build's run (``registry`` has it active)."""
    from mlsd._annotated_labels import annotated_labels
    from mlsd._document import assemble_document
    from mlsd._weak_labels import compare_training, weak_labelling
    from mlsd.data import check_leakage, prepare_data, split_prepared
    from mlsd.data.request_schema import design_schema
    from mlsd.features import feature_pipeline_for
    from mlsd.modeling import assess, select_model, train_and_evaluate
    from mlsd.store import write_json_atomic

    reports = design.workspace_dir() / "reports"
    prepared = prepare_data(design, progress=progress)
    unlabelled = None  # data.labels.active: the queue's answers label the pool; the rest self-trains
    if design.data.labels.active is not None:
        from mlsd._labelling import apply_answers

        prepared, unlabelled = apply_answers(design, prepared, progress)
    if data_until is not None:
        prepared = _until(design, prepared, data_until, progress)
    with progress.stage("splitting"):
        split = split_prepared(design, prepared.frame)
    if retrain is not None:  # mlsd retrain: the labelled traffic older than the holdout trains too
        split = _with_traffic(design, split, retrain.traffic, progress)
    # data.labels.annotations / .quality (docs/annotators-and-label-quality.md): the training labels
    split, labelling = annotated_labels(design, prepared, split, progress)
    # what the model reads and how: no allowed list for hashed columns, no upper bound for growing ones
    schema = design_schema(design, split.train, prepared.input_columns)
    with progress.stage("leakage checks"):
        leakage = check_leakage(design, prepared, split)
    for finding in leakage.findings:
        progress.note(f"leakage [{finding.check}] {', '.join(finding.columns)}: {finding.detail}")
    write_json_atomic(reports / "leakage.json", leakage.to_dict())
    failing = leakage.failing(set(design.data.leakage.fail_on))
    if failing:
        _raise_leakage(failing)
    adversarial = _adversarial(design, split, prepared.input_columns, reports, progress)

    weak = weak_labelling(design, split, progress)  # data.labels.functions (docs/weak-supervision.md)
    split = weak.split
    modeling = train_and_evaluate(
        design,
        split,
        feature_pipeline_for(design),
        prepared.input_columns,
        progress=progress,
        unlabelled=unlabelled,
    )
    if modeling.tuning:  # models.candidates[].search: every trial of every search (docs/tuning.md)
        write_json_atomic(reports / "tuning.json", {n: t.to_dict() for n, t in modeling.tuning.items()})
    # --- models.compress (docs/compression.md): compressed rows of the best candidate, before the decision
    compression = None
    if design.models.compress is not None:
        from mlsd.modeling.compression import compress_best

        chosen = design.models.select
        assert chosen is not None  # Design fills it from goals.metric
        with progress.stage("compressing the best candidate (models.compress)"):
            compression = compress_best(
                design,
                split,
                modeling,
                feature_pipeline_for(design),
                prepared.input_columns,
                metric=str(chosen.maximize or chosen.minimize),
                greater=chosen.maximize is not None,
            )
        for variant, why in compression.skipped.items():
            progress.note(f"compress [{variant}] skipped: {why}")
        for check in compression.checks:
            progress.note(f"compress [{check['model']}] max |Δscore| on test {check['max_abs_diff']:.3g}")
        compression.raise_if_beyond_tolerance()
    # --- end models.compress
    finetuned = None
    if retrain is not None and retrain.finetune:
        finetuned = _finetune_champion(design, split, modeling, retrain, prepared.input_columns, progress)
    behaviour = _behaviour(design, split, modeling, progress)
    sel = design.models.select
    assert sel is not None  # Design fills it from goals.metric
    decision = select_model(
        modeling.table,
        maximize=sel.maximize,
        minimize=sel.minimize,
        subject_to={**design.goals.constraints, **sel.subject_to},
        variants=compression.variants() if compression is not None else None,
    )
    progress.note(f"decision: {decision.reason}")
    # the winner refitted on each label source, judged on gold test (docs/weak-supervision.md)
    weak_labels = compare_training(
        design, weak, modeling, decision.winner, feature_pipeline_for(design), progress
    )
    if behaviour is not None:
        write_json_atomic(reports / "behaviour.json", behaviour.to_dict())
        _raise_behaviour(design, behaviour, decision.winner)
    target = design.goals.target
    assessment = assess(
        modeling,
        decision.winner,
        split.test,
        split.test[target].to_numpy(),
        task=design.goals.task,
        metric=design.goals.metric,
        slices=design.models.slices,
        calibration_method=design.models.calibrate,
        seed=design.models.seed,
        slice_finding=design.models.slice_finding,
        slice_columns=_slice_columns(design, split.test),
    )
    explanations, explain_metadata = _explain(design, split, modeling, decision, prepared, progress)
    # The document is assembled before anything is registered: a build that fails late must not
    # leave a new champion behind.
    with progress.stage("writing the design document"):
        document = assemble_document(
            design,
            prepared=prepared,
            split=split,
            schema=schema,
            leakage=leakage,
            modeling=modeling,
            decision=decision,
            assessment=assessment,
            seconds=time.perf_counter() - start,
            behaviour=behaviour,
            compression=compression,
            explanations=explanations,
        )
    if adversarial is not None:
        document.data.adversarial = adversarial.to_dict()
    document.data.labelling = labelling
    document.data.weak_labels = weak_labels
    if retrain is not None:
        document.models.retrain = _judge_on_holdout(design, modeling, decision, retrain, progress)
        if finetuned is not None:
            document.models.retrain["finetune"] = finetuned
    packaged = _package(design, prepared, schema, modeling, decision)
    if design.models.abstain is not None:  # docs/abstention.md: the bound travels with the model
        packaged.metadata["abstain"], document.models.abstention = _abstention(
            design, split, modeling, decision
        )
        progress.note(f"abstention: {_abstention_note(document.models.abstention)}")
    if explain_metadata is not None:  # what POST /v1/explain needs (a linear model's feature means)
        packaged.metadata["explain"] = explain_metadata
    with progress.stage("reference statistics for monitoring"):
        reference = reference_statistics(design, schema, split, packaged, modeling.table[decision.winner])
    document.monitoring.reference = _reference_summary(reference)
    with progress.stage(f"registering the {alias}"):
        info, path = _register(
            design, registry, packaged, modeling, decision, leakage, schema, reference, document, start, alias
        )
    return BuildResult(
        winner=decision.winner,
        registered_version=str(info.version),
        alias=alias,
        report_path=path,
        seconds=time.perf_counter() - start,
        document=document,
        leakage=leakage,
    )


def _until(design: Design, prepared: Any, until: Any, progress: Progress) -> Any:
    """The design's rows older than ``until`` (by ``data.time``): the data a build at that moment had."""
    import pandas as pd

    from mlsd.errors import DesignError

    time_column = design.data.time
    if not time_column:
        raise DesignError(
            "building as of a moment needs the design's event time",
            field="data.time",
            received=None,
            expected="the column that says when each row happened",
        )
    keep = (pd.to_datetime(prepared.frame[time_column], utc=True) < until).to_numpy()
    progress.note(f"data as of {until:%Y-%m-%d %H:%M}: {int(keep.sum()):,} of {len(keep):,} rows")
    raw = prepared.raw_inputs
    return dataclasses.replace(
        prepared, frame=prepared.frame[keep], raw_inputs=None if raw is None else raw[keep]
    )


def _with_traffic(design: Design, split: Any, traffic: Any, progress: Progress) -> Any:
    """The build's split for ``mlsd retrain``: every design row older than the traffic, plus the
    older traffic, trains; the traffic's two newest windows are valid (choice, thresholds) and test
    (the comparison with the champion). Design rows from the traffic's valid window on are dropped:
    a replayed test split would otherwise train on the very rows it is judged on."""
    import pandas as pd

    from mlsd.data.traffic import cast_like

    frames = [split.train, split.valid, split.test]
    design_rows = pd.concat(frames, ignore_index=True)
    time_column = design.data.time
    dropped = 0
    if time_column and time_column in design_rows:
        times = pd.to_datetime(design_rows[time_column], utc=True)
        keep = (times < traffic.valid_from).to_numpy()
        dropped, design_rows = int((~keep).sum()), design_rows[keep]
    columns = list(split.train.columns)

    def shaped(rows: Any) -> Any:
        return cast_like(rows, split.train).reindex(columns=columns)

    train = pd.concat([design_rows, shaped(traffic.train)], ignore_index=True)
    progress.note(
        f"retrain: training on {len(design_rows):,} design rows and {len(traffic.train):,} labelled traffic "
        f"rows; choosing on {len(traffic.valid):,} from {traffic.valid_from:%Y-%m-%d %H:%M}, judging on "
        f"{len(traffic.holdout):,} from {traffic.holdout_from:%Y-%m-%d %H:%M}"
        + (f" ({dropped:,} design rows as recent as the traffic left out)" if dropped else "")
    )
    return dataclasses.replace(split, train=train, valid=shaped(traffic.valid), test=shaped(traffic.holdout))


def _finetune_champion(
    design: Design,
    split: Any,
    modeling: Any,
    retrain: RetrainInput,
    input_columns: list[str],
    progress: Progress,
) -> dict[str, Any]:
    """``monitoring.retrain.mode: finetune``: the champion continued on the older labelled traffic,
    a row beside the candidates trained from scratch (docs/retraining.md)."""
    from mlsd.data.traffic import cast_like
    from mlsd.modeling.finetune import finetune
    from mlsd.modeling.training import add_fitted_row

    rows = cast_like(retrain.traffic.train, split.train)
    with progress.stage("fine-tuning the champion on the labelled traffic"):
        start = time.perf_counter()
        model, why = finetune(
            retrain.champion.pipeline, rows[input_columns], rows[design.goals.target],
            rounds=retrain.spec.finetune_rounds,
        )  # fmt: skip
        if model is None:
            progress.note(f"retrain: no fine-tuned row: {why}")
            return {"skipped": why}
        name = "champion_finetuned"
        add_fitted_row(
            design, split, modeling, name, model, train_seconds=time.perf_counter() - start,
            latency_rows=split.test[input_columns].head(500),
        )  # fmt: skip
    progress.note(
        f"retrain: {name}: champion version {retrain.champion_version} continued on {len(rows):,} rows"
    )
    return {"row": name, "rows": len(rows), "rounds": retrain.spec.finetune_rounds}


def _judge_on_holdout(
    design: Design, modeling: Any, decision: Any, retrain: RetrainInput, progress: Progress
) -> Any:
    """The winner against the serving champion on the newest labelled traffic; GateError if it
    does not beat it (the build then ends before anything is registered)."""
    from mlsd.errors import GateError
    from mlsd.modeling.holdout import compare_on_holdout, model_scores

    g, champion, holdout = design.goals, retrain.champion, retrain.traffic.holdout
    spec = design.monitoring.retrain
    rows, y = holdout[champion.input_columns], holdout[g.target].to_numpy()
    winner = modeling.fitted[decision.winner]
    classes = list(champion.classes) or None
    scores = (
        model_scores(winner, rows, g.task, classes),
        model_scores(champion.pipeline, rows, g.task, classes),
    )
    comparison = compare_on_holdout(
        y,
        *scores,
        metric=g.metric,
        task=g.task,
        min_improvement=spec.min_improvement if spec is not None else 0.0,
        n_resamples=design.models.bootstrap,
        seed=design.models.seed,
        classes=classes,
        thresholds=(modeling.thresholds.get(decision.winner, 0.5), float(champion.threshold or 0.5)),
    )
    progress.note(f"retrain: {comparison.describe()}")
    summary = {
        "trigger": retrain.trigger,
        "reason": retrain.reason,
        "champion_version": retrain.champion_version,
        "traffic": retrain.traffic.summary(),
        "holdout": comparison.to_dict(),
    }
    if not comparison.passed:
        raise GateError(
            f"not registered: {comparison.describe()}",
            field="monitoring.retrain.min_improvement",
            received=round(comparison.gain, 6),
            expected=f"a gain of at least {comparison.min_improvement:g} in {g.metric}",
        )
    costly = _holdout_cost_gate(design, champion, y, scores, modeling.thresholds.get(decision.winner, 0.5))
    if costly is not None:
        progress.note(f"retrain: {costly.describe()}")
        summary["holdout_cost"] = costly.to_dict()
        if not costly.passed:
            raise GateError(
                f"not registered: {costly.describe()}",
                field="deployment.max_degradation",
                received=round(costly.upper, 6),
                expected=f"extra cost per decision at most {costly.margin:g}, the canary's margin",
            )
    return summary


def _holdout_cost_gate(
    design: Design, champion: Any, y: Any, scores: tuple[Any, Any], threshold: float
) -> Any:
    """With goals.costs on a binary canary: the canary's cost rule on the holdout (None otherwise),
    so that what retrain registers is what the canary can advance (modeling/holdout.py).
    ``scores``: the challenger's and the champion's positive-class probabilities."""
    from mlsd.modeling.holdout import compare_decision_costs

    g, d = design.goals, design.deployment
    if g.task != "binary" or g.costs is None or d.strategy != "canary":
        return None
    classes = list(champion.classes) or None
    positive = y == classes[-1] if classes else y.astype(bool)
    costs = g.costs
    return compare_decision_costs(
        positive,
        *scores,
        thresholds=(threshold, float(champion.threshold or 0.5)),
        costs=costs,
        margin=d.max_degradation * max(abs(costs.false_positive), abs(costs.false_negative)),
        confidence=d.confidence,
    )


# --- models.adversarial (docs/splits-and-leakage.md) -------------------------------------------


def _adversarial(
    design: Design, split: Any, input_columns: list[str], reports: Path, progress: Progress
) -> Any:
    """Train against test on the model's input columns (not data.time: the time axis separates a
    time split by construction); GateError above ``fail_above``, before any model is trained."""
    from mlsd.errors import GateError
    from mlsd.modeling.adversarial import adversarial_validation
    from mlsd.store import write_json_atomic

    spec = design.models.adversarial
    if spec is None or not spec.enabled:
        return None
    columns = [c for c in input_columns if c != design.data.time]
    with progress.stage("adversarial validation (train vs test)"):
        result = adversarial_validation(
            split.train,
            split.test,
            columns,
            sample=spec.sample,
            folds=spec.folds,
            n_estimators=spec.n_estimators,
            seed=design.models.seed,
            fail_above=spec.fail_above,
        )
    progress.note(f"adversarial validation: {result.describe()}")
    write_json_atomic(reports / "adversarial.json", result.to_dict())
    if result.failed:
        top = ", ".join(f"{f['feature']} ({f['importance']:.0%})" for f in result.features[:3])
        raise GateError(
            f"a classifier tells the test rows from the training rows (AUC {result.auc:.3f} "
            f"[{result.auc_low:.3f}, {result.auc_high:.3f}]), mostly by {top or 'no single feature'}: "
            "the test split does not look like the training split; nothing was trained or registered",
            field="models.adversarial.fail_above",
            received=round(result.auc, 4),
            expected=f"a train-vs-test AUC of at most {spec.fail_above:g}",
            file=str(design.path) if design.path else None,
            line=design.line_of("models.adversarial.fail_above"),
        )
    return result


# --- end models.adversarial


# --- models.abstain (docs/abstention.md) -------------------------------------------------------


def _abstention(
    design: Design, split: Any, modeling: Any, decision: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The champion's abstention policy (saved with the packaged model) and its document section."""
    from mlsd.modeling.abstention import abstention_report
    from mlsd.modeling.training import costs_of

    spec, g, winner = design.models.abstain, design.goals, decision.winner
    assert spec is not None
    scores = modeling.table[winner].scores
    classes = list(getattr(modeling.fitted[winner], "classes_", []))
    policy, report = abstention_report(
        spec,
        g.task,
        valid=(split.valid[g.target].to_numpy(), scores["valid"]),
        test=(split.test[g.target].to_numpy(), scores["test"]),
        threshold=modeling.thresholds.get(winner) if g.task == "binary" else None,
        classes=classes,
        costs=costs_of(design),
    )
    return policy.to_dict(), report


def _abstention_note(report: dict[str, Any]) -> str:
    test = report["test"]
    bound = report["policy"]["min_confidence"]
    return (
        f"confidence below {bound:.3f} abstains; on test {test['abstained']:,} of {test['n_rows']:,} rows "
        f"abstained (coverage {test['coverage']:.3f})"
    )


# --- end models.abstain


def _package(design: Design, prepared: Any, schema: Any, modeling: Any, decision: Any) -> Any:
    from mlsd.store import PackagedModel

    winner = modeling.fitted[decision.winner]
    threshold = modeling.thresholds[decision.winner]
    return PackagedModel(
        pipeline=winner,
        task=design.goals.task,  # type: ignore[arg-type]  # GoalsSpec refuses ranking
        threshold=threshold,
        input_columns=prepared.input_columns,
        schema=schema.model_dump(mode="json"),
        classes=[c.item() if isinstance(c, np.generic) else c for c in getattr(winner, "classes_", [])],
        metadata={
            "design": design.name,
            "winner": decision.winner,
            "primary_metric": design.goals.metric,
            "metrics": _winner_metrics(modeling, decision.winner),
        },
    )


def _register(
    design: Design,
    registry: Any,
    packaged: Any,
    modeling: Any,
    decision: Any,
    leakage: Any,
    schema: Any,
    reference: Any,
    document: Any,
    start: float,
    alias: str,
) -> tuple[Any, Path]:
    from mlsd.report import render_design_document
    from mlsd.store import write_json_atomic

    workspace = design.workspace_dir()
    reports = workspace / "reports"
    registry.log_metrics(_winner_metrics(modeling, decision.winner))
    registry.log_table("tradeoff", modeling.table.to_records())
    registry.log_table("leakage", leakage.to_dict().get("findings", []))
    info = registry.register(packaged, design.registry_name, alias=alias, description=decision.reason)
    document.models.registry = {
        "name": info.name,
        "version": info.version,
        "alias": alias,
        "uri": info.uri,
    }
    stem = "design"
    if alias == "champion":
        # reference/ describes the champion monitoring compares against: written only once a
        # build has registered one, so a failed build never replaces the champion's reference
        write_json_atomic(workspace / "reference" / "schema.json", schema.model_dump(mode="json"))
        reference.save(workspace / "reference")
    else:
        # a challenger is not yet what serves: the champion's reference and document stay
        stem = f"design-{alias}"
    document.build_seconds = round(time.perf_counter() - start, 1)
    document.save(reports / f"{stem}.json")
    path = render_design_document(document, reports / f"{stem}.html")
    registry.log_artifact(path)
    return info, path


def monitored_columns(design: Design, frame: Any) -> tuple[list[str], list[str]]:
    """The columns monitoring watches, (numeric, categorical): the features the model reads,
    derived ones included, without helper columns (:func:`mlsd.monitoring.columns.watched_columns`)."""
    from mlsd.monitoring.columns import watched_columns

    kinds = watched_columns(design, frame)
    datetimes = {c for c in kinds if c in frame.columns and pd.api.types.is_datetime64_any_dtype(frame[c])}
    numeric = [c for c, k in kinds.items() if k == "numeric" and c not in datetimes]
    categorical = [c for c, k in kinds.items() if k == "categorical" and c not in datetimes]
    return numeric, categorical


def reference_statistics(design: Design, schema: Any, split: Any, packaged: Any, evaluation: Any) -> Any:
    """What monitoring compares each window against.

    Inputs and the label rate come from the training split (the world the model learnt from);
    the score distribution and the performance come from the validation split, where the scores
    are out of sample, so a healthy model's live scores should match them.
    """
    from mlsd.monitoring import ReferenceStatistics

    numeric, categorical = monitored_columns(design, split.train)
    target, task = design.goals.target, design.goals.task
    valid_metrics = evaluation.metrics.get("valid", {})
    scores = np.asarray(evaluation.scores["valid"], dtype=float)
    if scores.ndim == 2:  # multiclass: the server logs the top-class probability
        scores = scores.max(axis=1)
    reference = ReferenceStatistics.from_frame(
        split.train,
        numeric=numeric,
        categorical=categorical,
        # the score exactly as the server logs it (positive-class or top-class probability, or the
        # value), so prediction drift compares like with like
        scores=scores,
        # 1 for the positive class, so the label rate means the same whatever the labels are
        labels=(split.train[target] == packaged.positive_class).to_numpy(float) if task == "binary" else None,
        positive_class=packaged.positive_class,
        performance={name: float(est.value) for name, est in valid_metrics.items() if est.value is not None},
        seed=design.models.seed,
    )
    from mlsd.monitoring.text import text_references  # features.text columns (docs/text-features.md)

    reference.text = text_references(
        split.train, packaged.pipeline, list(design.features.text), seed=design.models.seed
    )
    return reference


def _reference_summary(reference: Any) -> dict[str, Any]:
    """What the design document says about the reference monitoring compares against."""
    from mlsd.monitoring import SCORE_COLUMN

    summary: dict[str, Any] = {
        "numeric features": ", ".join(c for c in reference.numeric if c != SCORE_COLUMN) or "-",
        "categorical features": ", ".join(reference.categorical) or "-",
        "training rows summarised": reference.n_rows,
        "score distribution": "validation split" if SCORE_COLUMN in reference.numeric else "-",
    }
    if reference.text:  # features.text columns: docs/text-features.md
        watched = (f"{c} (length, out-of-vocabulary rate, mmd)" for c in reference.text)
        summary["text columns"] = ", ".join(watched)
    if reference.label_rate is not None:
        summary["training label rate"] = round(float(reference.label_rate), 4)
    summary |= {f"validation {k}": round(v, 4) for k, v in reference.performance.items() if v is not None}
    return summary


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
    if d.data.split.uses_time:
        params |= {"valid_from": str(d.data.split.valid_from), "test_from": str(d.data.split.test_from)}
    return params


def _winner_metrics(modeling: Any, winner: str) -> dict[str, float]:
    """Flat numbers for MLflow: every metric of the winner per split, its latency, size and cost."""
    e = modeling.table[winner]
    out = {
        "threshold": modeling.thresholds[winner],
        "p50_latency_ms": e.p50_latency_ms,
        "p99_latency_ms": e.p99_latency_ms,
        "size_mb": e.size_mb,
        "train_seconds": e.train_seconds,
    }
    if winner in modeling.test_costs:
        out["test_cost_per_1000"] = modeling.test_costs[winner]
    for split, estimates in e.metrics.items():
        out |= {f"{split}_{name}": est.value for name, est in estimates.items()}
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


def _explain(
    design: Design, split: Any, modeling: Any, decision: Any, prepared: Any, progress: Progress
) -> tuple[Any, dict[str, Any] | None]:
    """``models.explain`` on the champion: the document's report and the packaged model's metadata."""
    from mlsd.features import feature_pipeline_for
    from mlsd.modeling.explain import explain_champion

    if not design.models.explain.enabled:
        return None, None
    with progress.stage("explaining the champion (models.explain)"):
        report, metadata = explain_champion(
            design,
            split,
            modeling.fitted[decision.winner],
            name=decision.winner,
            input_columns=prepared.input_columns,
            threshold=modeling.thresholds.get(decision.winner, 0.5),
            features=feature_pipeline_for,
        )
    if report.shap_skipped:
        progress.note(f"explain: no SHAP values for {decision.winner}: {report.shap_skipped}")
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    progress.note(f"explain: {report.rows:,} test rows ({timing})")
    return report.to_dict(), metadata


def _behaviour(design: Design, split: Any, modeling: Any, progress: Progress) -> Any:
    """``models.tests`` run on every candidate (not the baselines), or ``None`` without tests."""
    from mlsd.modeling.behaviour import run_behaviour_tests

    if not design.models.tests:
        return None
    names = [e.name for e in modeling.table.candidates]
    with progress.stage("behavioural tests"):
        report = run_behaviour_tests(
            design.models.tests,
            {n: modeling.fitted[n] for n in names},
            split.test,
            split.train,
            task=design.goals.task,
            thresholds=modeling.thresholds,
            seed=design.models.seed,
        )
    for r in report.results:
        if not r.passed:
            progress.note(f"behaviour [{r.test}] {r.model}: {r.metric_name} {r.metric:.4g} > {r.bound:.4g}")
    return report


def _raise_behaviour(design: Design, report: Any, winner: str) -> None:
    from mlsd.errors import GateError

    failing = report.blocking(winner)
    if not failing:
        return
    first = failing[0]
    index = [t.name for t in design.models.tests].index(first.test)
    names = ", ".join(r.test for r in failing)
    raise GateError(
        f"behavioural test{'s' if len(failing) > 1 else ''} {names} failed for the chosen candidate "
        f"{winner} ({first.test}: {first.metric_name} {first.metric:.4g} > {first.bound:.4g}); "
        "nothing was registered",
        field=f"models.tests[{index}]",
        received=round(first.metric, 6),
        expected=f"at most {first.bound:g}, or fail_build: false to only report it",
        file=str(design.path) if design.path else None,
        line=design.line_of(f"models.tests[{index}]"),
    )


def _raise_leakage(failing: list[Any]) -> None:
    from mlsd.errors import LeakageError

    names = "; ".join(f"{f.check}: {', '.join(f.columns)}" for f in failing)
    raise LeakageError(
        f"leakage checks failed ({names})",
        field="data.leakage.fail_on",
        expected="remove these columns from the features, or list them in features.forbidden",
    )


def _slice_columns(design: Design, test: Any) -> list[str]:
    """What SliceLine slices by: models.slice_finding.columns, else models.slices and the numeric and
    categorical features (those in the test frame; derived columns included)."""
    spec = design.models.slice_finding
    named = spec.columns or [*design.models.slices, *design.features.numeric, *design.features.categorical]
    return [c for c in dict.fromkeys(named) if c in test.columns]

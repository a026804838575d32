"""What :class:`mlsd.system.System` does with the traffic it served: monitoring, experiment
analysis, log export (a mixin of ``System``, in a module of its own so each stays short).

Each method wires stage libraries (:mod:`mlsd.monitoring`, :mod:`mlsd.experiments`,
:mod:`mlsd.report`) over the design's prediction log and writes its reports under
``reports/``; none holds ML logic of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlsd.errors import DataError, DesignError
from mlsd.store.files import private_files

if TYPE_CHECKING:
    from mlsd.design import Design

__all__ = ["ExperimentRun", "MonitorRun", "Watching", "parse_timestamp"]


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


class Watching:
    """``System``'s monitoring, experiment and log-export commands."""

    if TYPE_CHECKING:  # what System provides
        design: Design

        @property
        def workspace(self) -> Path: ...

        @property
        def reports_dir(self) -> Path: ...

        def prediction_log(self, url: str | None = None) -> Any: ...

        def verify_champion(self, alias: str = "champion") -> Any: ...

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
        since_ts, until_ts = parse_timestamp(since, "since"), parse_timestamp(until, "until")
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

        since_ts, until_ts = parse_timestamp(since, "since"), parse_timestamp(until, "until")
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
            return int(
                log.export(Path(path), parse_timestamp(since, "since"), parse_timestamp(until, "until"))
            )


def parse_timestamp(value: Any, field_name: str) -> pd.Timestamp | None:
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

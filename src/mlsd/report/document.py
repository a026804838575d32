"""The design document's content: what the build measured, segment by segment.

The orchestrator fills a :class:`DesignDocument` from the artefacts of each stage;
:func:`mlsd.report.render_design_document` turns it into one offline HTML file. Every field
is a plain JSON-ready type (lists, dicts, numbers, strings), so a document can be saved at
build time and rendered again later (:meth:`DesignDocument.save` / :meth:`DesignDocument.load`).
Unknown keys are rejected so that a typo in the orchestrator fails loudly, not silently.

>>> doc = DesignDocument(name="flight-delay", goals=Goals(task="binary", target="delayed", metric="roc_auc"))
>>> doc.goals.costs, doc.models.decision is None
({}, True)
>>> DesignDocument.model_validate_json(doc.model_dump_json()) == doc
True
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "BehaviourRow",
    "Calibration",
    "ConfusionMatrix",
    "CostCurve",
    "Curve",
    "Data",
    "Decision",
    "DesignDocument",
    "Feature",
    "Features",
    "Gate",
    "Goals",
    "Interval",
    "LeakageFinding",
    "Models",
    "Monitoring",
    "Points",
    "Privacy",
    "PrivacyColumn",
    "QualityFinding",
    "Reliability",
    "SchemaColumn",
    "SliceRow",
    "Source",
    "Split",
    "Stakeholder",
    "TimelineRow",
    "TradeoffRow",
]


def _to_list(value: Any) -> Any:
    # numpy arrays and pandas Series are welcome as input; the document stores plain lists.
    return value.tolist() if hasattr(value, "tolist") else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- 1 goals & metrics --------------------------------------------------------------------------


class Stakeholder(_Model):
    name: str
    needs: list[str] = Field(default_factory=list)


class CostCurve(_Model):
    """Expected cost per 1,000 predictions at each threshold (valid split)."""

    thresholds: list[float]
    cost_per_1000: list[float]

    _lists = field_validator("thresholds", "cost_per_1000", mode="before")(_to_list)


class Goals(_Model):
    task: str
    objective: str = ""
    target: str = ""
    metric: str = ""
    stakeholders: list[Stakeholder] = Field(default_factory=list)
    costs: dict[str, float] = Field(default_factory=dict)
    constraints: dict[str, Any] = Field(default_factory=dict)
    threshold: float | None = None
    cost_unit: str = "cost units"
    cost_per_1000: float | None = None  # champion, test split (equals models.confusion.cost_per_1000)
    baseline_cost_per_1000: float | None = None
    cost_curve: CostCurve | None = None


# -- 2 data & labels ----------------------------------------------------------------------------


class Source(_Model):
    uri: str
    rows: int | None = None
    columns: int | None = None


class Sample(_Model):
    """``data.sample``: which method, what it kept, and what it does to estimates."""

    method: str
    rows_before: int
    rows_kept: int
    effect: str
    by: str | None = None
    per_value: dict[str, int] | None = None
    effective_sample_size: float | None = None
    target_rows: int | None = None
    domain_auc: float | None = None


class PrivacyColumn(_Model):
    column: str
    treatment: str  # drop | pseudonymise | generalise | keep
    detail: str = ""  # the intervals, the characters kept, or the reason to keep
    values_changed: int = 0
    detected: str | None = None  # what detection saw in it (never a value)


class Privacy(_Model):
    """``data.privacy``: each personal column and its treatment; no value of any of them."""

    key_env: str
    key_check: str  # a fingerprint of the key (not the key): the server refuses another key
    rows: int = 0
    columns: list[PrivacyColumn] = Field(default_factory=list)


class Split(_Model):
    by: str = ""
    sizes: dict[str, int] = Field(default_factory=dict)  # train / valid / test
    params: dict[str, Any] = Field(default_factory=dict)


class TimelineRow(_Model):
    period: str  # e.g. '2013-01'
    split: str
    rows: int
    label_rate: float | None = None


class SchemaColumn(_Model):
    column: str
    dtype: str
    missing_rate: float | None = None
    min: float | str | None = None
    max: float | str | None = None
    n_unique: int | None = None
    range_check: str | None = None  # how the server checks the range, and why


class LeakageFinding(_Model):
    check: str
    columns: list[str] = Field(default_factory=list)
    detail: str = ""
    score: float | None = None
    failed: bool = False


class QualityFinding(_Model):
    """A later split checked against the schema inferred on the training split."""

    split: str
    column: str
    kind: str
    n_rows: int
    received: list[Any] = Field(default_factory=list)
    expected: str = ""
    severity: str = "warning"


class Data(_Model):
    sources: list[Source] = Field(default_factory=list)
    sample: Sample | None = None
    privacy: Privacy | None = None
    label: str = ""
    filter: str | None = None
    n_rows: int | None = None
    label_rate: float | None = None
    split: Split = Field(default_factory=Split)
    timeline: list[TimelineRow] = Field(default_factory=list)
    schema_: list[SchemaColumn] = Field(default_factory=list, alias="schema")
    leakage: list[LeakageFinding] = Field(default_factory=list)
    leakage_checks: list[str] = Field(default_factory=list)  # every check that ran, findings or not
    quality: list[QualityFinding] = Field(default_factory=list)
    # models.adversarial: the train-vs-test classifier's AUC, its interval and the separating features
    adversarial: dict[str, Any] | None = None
    # data.labels.annotations / .quality: aggregation, agreement, label issues (_annotated_labels.py)
    labelling: dict[str, Any] | None = None
    # data.labels.functions: LF analysis, gold vs label model vs majority vote (docs/weak-supervision.md)
    weak_labels: dict[str, Any] | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


# -- 3 features ---------------------------------------------------------------------------------


class Feature(_Model):
    column: str
    kind: str
    transform: str = ""
    n_outputs: int | None = None


class Features(_Model):
    records: list[Feature] = Field(default_factory=list)
    n_output_features: int | None = None
    forbidden: list[str] = Field(default_factory=list)


# -- 4 models & deployment ----------------------------------------------------------------------


class Interval(_Model):
    """A metric value with its (bootstrap) confidence interval."""

    value: float | None = None
    low: float | None = None
    high: float | None = None


class Gate(_Model):
    """One constraint of the decision rule, as measured for one model."""

    constraint: str  # e.g. p99_latency_ms
    value: float | None = None
    bound: float
    op: Literal["<=", ">="] = "<="
    passed: bool = False
    margin: float | None = None  # relative distance to the bound; > 0 inside, < 0 outside
    close: bool = False  # passed or failed by a small margin


class BehaviourRow(_Model):
    """One behavioural test (``models.tests``) of one candidate: metric against bound, failing rows."""

    test: str
    kind: str
    model: str
    metric_name: str
    metric: float
    bound: float
    passed: bool
    fail_build: bool = False
    rows: int = 0
    examples: list[dict[str, Any]] = Field(default_factory=list)  # before, after, score_before, score_after


class TradeoffRow(_Model):
    """One model in the trade-off table; ``valid``/``test`` map metric name -> interval.

    ``role`` is what the decision made of it: a baseline (for reference, never gated), the
    champion, a candidate that passed the gates, or one that was rejected (``reason`` says why).
    """

    name: str
    kind: Literal["baseline", "candidate"] = "candidate"
    role: Literal["baseline", "champion", "passed", "rejected"] = "passed"
    type: str = ""
    valid: dict[str, Interval] = Field(default_factory=dict)
    test: dict[str, Interval] = Field(default_factory=dict)
    ece: float | None = None
    brier: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    p50_wall_ms: float | None = None
    p99_wall_ms: float | None = None
    throughput_rps: float | None = None
    size_mb: float | None = None
    train_seconds: float | None = None
    cost_per_1000: float | None = None  # test split, at the model's own cost-optimal threshold
    cost_interval: Interval | None = None  # the same, with its 95% bootstrap interval over test rows
    training: str = ""  # how the candidate faces class imbalance (models.imbalance, class_weight)
    gates: list[Gate] = Field(default_factory=list)
    passed: bool = True
    reason: str = ""
    behaviour: list[BehaviourRow] = Field(default_factory=list)  # models.tests of this candidate


class Decision(_Model):
    winner: str
    reason: str = ""
    rule: str = ""


class Points(_Model):
    """A curve the evaluation computed on every row of a split, thinned for drawing only."""

    x: list[float]
    y: list[float]

    _lists = field_validator("x", "y", mode="before")(_to_list)


class Curve(_Model):
    """One model's curves on the test split, computed by the evaluation on all of its rows.

    Classification: ``roc`` (x false-positive rate, y true-positive rate) and ``pr`` (x recall,
    y precision), with their areas. Regression: ``y_true``/``value`` pairs for a scatter, which
    may be a sample (``n_sampled`` of ``n_rows``; the caption must say so).
    """

    split: str = "test"
    n_rows: int = 0
    roc: Points | None = None
    roc_auc: float | None = None
    pr: Points | None = None
    average_precision: float | None = None
    y_true: list[float] | None = None
    value: list[float] | None = None
    n_sampled: int | None = None

    _lists = field_validator("y_true", "value", mode="before")(_to_list)


class Reliability(_Model):
    """Reliability bins: mean score, observed positive rate and row count per bin."""

    mean_score: list[float]
    fraction_positive: list[float]
    count: list[int]
    ece: float | None = None

    _lists = field_validator("mean_score", "fraction_positive", "count", mode="before")(_to_list)


class Calibration(_Model):
    """The champion's reliability on the test split after (and, if calibrated, before) calibration."""

    split: str = "test"
    n_rows: int = 0
    n_bins: int = 10
    method: str | None = None
    calibrated: Reliability
    uncalibrated: Reliability | None = None


class ConfusionMatrix(_Model):
    """The champion's decisions on every row of a split at its threshold, with each cell's cost.

    ``counts`` and ``cell_costs`` are ``[[TN, FP], [FN, TP]]``; ``cost_per_1000`` is the figure the
    goals segment shows for the same split.
    """

    split: str = "test"
    threshold: float
    counts: list[list[int]]
    cell_costs: list[list[float]]
    total_cost: float
    cost_per_1000: float
    n_rows: int


class SliceRow(_Model):
    column: str
    value: str
    n: int
    label_rate: float | None = None
    metric: str = ""
    metric_value: float | None = None

    @field_validator("value", mode="before")
    @classmethod
    def _str_value(cls, value: Any) -> str:
        return str(value)


class Models(_Model):
    tradeoff: list[TradeoffRow] = Field(default_factory=list)
    decision: Decision | None = None
    curves: dict[str, Curve] = Field(default_factory=dict)
    calibration: Calibration | None = None
    confusion: ConfusionMatrix | None = None
    latency_method: str = ""  # how the gated latency was measured (clock, calls, repetitions, estimator)
    slices: list[SliceRow] = Field(default_factory=list)
    # SliceLine's worst slices of the champion (``mlsd.modeling.slices.worst_slices``) and the
    # Simpson check of each comparison (champion vs best baseline, vs runner-up); docs/slices.md
    slice_finding: dict[str, Any] | None = None
    simpson: list[dict[str, Any]] = Field(default_factory=list)
    registry: dict[str, Any] = Field(default_factory=dict)  # name, version, alias, uri
    deployment: dict[str, Any] = Field(default_factory=dict)  # strategy, steps, ...
    # data.augment, when used: method, settings, training rows received and synthetic rows added
    augment: dict[str, Any] | None = None
    behaviour: list[BehaviourRow] = Field(default_factory=list)  # every models.tests x candidate
    # models.compress: teacher, rows added, variants skipped and why, |Δscore| checks (docs/compression.md)
    compression: dict[str, Any] | None = None
    # mlsd retrain: the trigger, the labelled traffic used and the holdout comparison (docs/retraining.md)
    retrain: dict[str, Any] | None = None
    # models.abstain: the policy, its effect on valid and test, the test coverage–risk curve
    # (docs/abstention.md)
    abstention: dict[str, Any] | None = None
    # models.explain: mean |SHAP| and permutation importance per input column of the champion, the
    # ablation when asked (``ExplanationReport.to_dict()``, docs/explanations.md)
    explanations: dict[str, Any] | None = None


# -- 5 monitoring & validation ------------------------------------------------------------------

_MONITORING_TEXT = (
    "Monitoring compares live traffic with the reference statistics saved at build time "
    "(feature distributions, label rate, score distribution). Measurements appear here once "
    "the system has served traffic."
)


class DriftRow(_Model):
    """One feature's drift over the monitored windows."""

    column: str
    kind: str
    method: str
    max_effect_size: float | None = None
    drifted_windows: int = 0
    windows: int = 0


class MonitoringRun(_Model):
    """What the latest `mlsd monitor` measured on the served traffic."""

    report: str  # the monitoring report, relative to the design document
    generated_at: str
    period: str
    window: str
    windows: int
    predictions: int
    labelled: int
    alerts: list[str] = Field(default_factory=list)
    drift: list[DriftRow] = Field(default_factory=list)
    performance: dict[str, Any] = Field(default_factory=dict)  # over all windows: AUC, ECE, label rate
    service: dict[str, Any] = Field(default_factory=dict)  # from the request log: latency, errors
    #: a rollout's per-variant comparison, the plain dict of ``VariantReport.to_dict()`` (the
    #: document keeps at most the last 50 rollout events); None for a single model
    variants: dict[str, Any] | None = None


class Monitoring(_Model):
    plan: dict[str, Any] = Field(default_factory=dict)  # window, drift method, correction, alerts
    reference: dict[str, Any] = Field(default_factory=dict)  # what the build saved to compare with
    latest: MonitoringRun | None = None
    #: "experiments and updates": the latest ``mlsd simulate`` run's summary (docs/simulation.md):
    #: report (relative link), period, served_vs_frozen, policies, events
    updates: dict[str, Any] | None = None
    text: str = _MONITORING_TEXT


# -- the document -------------------------------------------------------------------------------


class DesignDocument(_Model):
    """Everything the design document shows; one sub-model per segment of the design."""

    name: str
    description: str = ""
    design_path: str = ""
    generated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    build_seconds: float | None = None
    goals: Goals
    data: Data = Field(default_factory=Data)
    features: Features = Field(default_factory=Features)
    models: Models = Field(default_factory=Models)
    monitoring: Monitoring = Field(default_factory=Monitoring)

    @field_validator("generated_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # The page prints the time as UTC; a naive time is taken to be UTC already.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def save(self, path: str | Path) -> Path:
        """Write the document as JSON (to render it again without rebuilding)."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.model_dump_json(indent=1))
        return out

    @classmethod
    def load(cls, path: str | Path) -> DesignDocument:
        """Read a document written by :meth:`save`."""
        return cls.model_validate_json(Path(path).read_text())

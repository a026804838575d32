"""Segment 4 of the design, the models: candidates, search, selection, slices, behavioural tests,
distillation and compression, abstention, adversarial checks, explanations.

A part of :mod:`mlsd.design` (which re-exports every name), in a module of its own so the
design file stays readable; the rules that need other segments live on :class:`mlsd.design.Design`.

>>> spec = ModelsSpec.model_validate({"candidates": [{"name": "logreg", "type": "logistic_regression"}]})
>>> [c.name for c in spec.candidates], spec.select is None
(['logreg'], True)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from mlsd._labels_active_spec import SelfTrainingSpec
from mlsd._spec import StrictSpec

__all__ = [
    "AbstainSpec",
    "AdversarialSpec",
    "BehaviourTestSpec",
    "CandidateSpec",
    "ClassWeight",
    "CompressSpec",
    "DistillSpec",
    "ExplainSpec",
    "ImbalanceMethod",
    "ModelsSpec",
    "SearchRange",
    "SearchSpec",
    "SelectSpec",
    "SliceFindingSpec",
]

_NAME = r"^[A-Za-z][A-Za-z0-9_.-]*$"
_Spec = StrictSpec
_Share = Annotated[float, Field(ge=0, le=1)]


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

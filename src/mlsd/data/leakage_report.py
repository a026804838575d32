"""The result of the leakage checks: findings and the report that collects them.

>>> report = LeakageReport(findings=[LeakageFinding(check="time_order", columns=["t"], detail="3 rows")])
>>> [f.check for f in report.failing({"time_order"})]
['time_order']
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from mlsd.errors import LeakageError

__all__ = ["LeakageFinding", "LeakageReport"]


class LeakageFinding(BaseModel):
    """One suspicious thing: which check, which columns, a sentence, a score and the numbers behind it."""

    check: str
    columns: list[str] = Field(default_factory=list)
    detail: str
    score: float | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)


class LeakageReport(BaseModel):
    """All findings of one run of the checks."""

    findings: list[LeakageFinding] = Field(default_factory=list)

    def by_check(self) -> dict[str, list[LeakageFinding]]:
        out: dict[str, list[LeakageFinding]] = {}
        for f in self.findings:
            out.setdefault(f.check, []).append(f)
        return out

    def failing(self, fail_on: Iterable[str]) -> list[LeakageFinding]:
        """The findings whose check is in ``fail_on`` (e.g. ``{"forbidden_feature", "target_leakage"}``)."""
        fail_on = set(fail_on)
        return [f for f in self.findings if f.check in fail_on]

    def raise_for(self, fail_on: Iterable[str]) -> None:
        """Raise :class:`LeakageError` if any finding is failing."""
        bad = self.failing(fail_on)
        if bad:
            raise LeakageError(
                f"{len(bad)} leakage findings: " + "; ".join(f"{f.check}: {f.detail}" for f in bad),
                field=bad[0].check,
                received=bad[0].columns,
                expected="features known at prediction time and disjoint, time-ordered splits",
            )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

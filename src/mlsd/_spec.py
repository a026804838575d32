"""The strict base of every design spec (a module of its own so the spec modules share it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictSpec"]


class StrictSpec(BaseModel):
    """Strict base: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

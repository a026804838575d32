"""Checks of a design against the registries of the stage libraries, before any data is read.

Filled in by the validation work of issue 7 (see tests/test_registries.py).
"""

from __future__ import annotations

from mlsd.design import Design

__all__ = ["check_design"]


def check_design(design: Design) -> None:
    """Raise :class:`~mlsd.errors.DesignError` (file, line, field) for a name no registry knows."""

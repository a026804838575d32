"""How long work reports where it is, without knowing who draws it.

Stage entry points take a :class:`Progress`; the CLI passes one drawn with rich, the Python API
a silent one. Living in the base layer, it lets stage libraries report progress without
importing rich or the CLI.

>>> with QUIET.stage("fitting", total=2) as advance:
...     advance()
>>> QUIET.note("nothing is shown")
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

__all__ = ["QUIET", "Progress"]


class Progress(Protocol):
    """What a long build reports (the CLI draws it with rich)."""

    def stage(
        self, name: str, total: int | None = None
    ) -> contextlib.AbstractContextManager[Callable[[], None]]:
        """Enter a named stage; the yielded callable advances it by one step of ``total``."""
        ...

    def note(self, message: str) -> None:
        """A one-line finding worth showing as it happens (a leakage finding, a rejection)."""
        ...


class _Quiet:
    @contextlib.contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[], None]]:
        yield lambda: None

    def note(self, message: str) -> None:
        pass


QUIET: Progress = _Quiet()

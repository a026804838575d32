"""What every ``mlsd`` command shares: the Typer app, the consoles, the progress display, failing.

The commands live in :mod:`mlsd.cli` and its siblings (:mod:`mlsd._cli_serve`, :mod:`mlsd._cli_log`),
which all register on :data:`app`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mlsd.errors import MlsdError

__all__ = ["DesignPath", "LogUrl", "RichProgress", "app", "err", "fail", "out", "system_of"]

app = typer.Typer(
    name="mlsd",
    help="An ML system design, executable: design.yaml -> data, features, models, registry, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Wide enough for the trade-off table when output goes to a file or CI log rather than a terminal.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DesignPath = Annotated[Path, typer.Argument(help="The design file (design.yaml).", show_default=False)]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"mlsd {version('mlsd')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """An ML system design, executable: design.yaml -> data, features, models, registry, report."""


class RichProgress:
    """Draws each build stage as a line with a spinner, a bar where steps are known, and its time.

    Without a terminal (CI logs, files) each stage prints one line when it starts and one when it
    ends, so a long build still shows where it is.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live = console.is_terminal
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.completed}/{task.total}", style="dim"),
            TimeElapsedColumn(),
            console=console,
            disable=not self._live,
        )

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[], None]]:
        start = time.perf_counter()
        if not self._live:
            self.console.print(f"… {escape(name)}", highlight=False)
        task = self._progress.add_task(escape(name), total=total or 1)
        yield lambda: self._progress.advance(task)
        self._progress.update(task, completed=total or 1, description=f"[green]✓[/] {escape(name)}")
        if not self._live:
            self.console.print(
                f"[green]✓[/] {escape(name)} ({time.perf_counter() - start:.1f} s)", highlight=False
            )

    def note(self, message: str) -> None:
        # notes carry data and design text ("leakage [duplicate_rows] ..."): never read as markup
        self.console.print(f"  [dim]·[/] {escape(message)}", highlight=False)


def fail(exc: MlsdError) -> None:
    err.print(f"[bold red]error[/]: {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def system_of(path: Path, progress: RichProgress | None = None):
    from mlsd.system import System

    return System(path, progress=progress)


LogUrl = Annotated[
    str | None,
    typer.Option(
        help="SQLAlchemy URL of the prediction log the event is written to (default: deployment.log_url)."
    ),
]

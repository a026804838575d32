"""The ``mlsd`` command: a thin layer over :class:`mlsd.System`.

Exit codes: 0 success, 1 a failed gate (leakage check, no candidate passing), 2 misuse (bad
design file, missing column, unreadable data). Errors print as one line, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlsd.errors import MlsdError

__all__ = ["app", "main"]

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
            self.console.print(f"… {name}", highlight=False)
        task = self._progress.add_task(name, total=total or 1)
        yield lambda: self._progress.advance(task)
        self._progress.update(task, completed=total or 1, description=f"[green]✓[/] {name}")
        if not self._live:
            self.console.print(f"[green]✓[/] {name} ({time.perf_counter() - start:.1f} s)", highlight=False)

    def note(self, message: str) -> None:
        self.console.print(f"  [dim]·[/] {message}", highlight=False)


def _fail(exc: MlsdError) -> None:
    err.print(f"[bold red]error[/]: {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _system(path: Path, progress: RichProgress | None = None):
    from mlsd.system import System

    return System(path, progress=progress)


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Name of the system; a folder of that name is created.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to create the folder.")] = Path("."),
    force: Annotated[bool, typer.Option(help="Overwrite an existing design.yaml.")] = False,
) -> None:
    """Scaffold a commented design.yaml with the five segments (runs as is on bundled data)."""
    import re

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", name):
        _fail(
            MlsdError(
                "not a valid system name",
                field="NAME",
                received=name,
                expected="letters, digits, _ . - starting with a letter",
            )
        )
    target = directory / name / "design.yaml"
    if target.exists() and not force:
        _fail(
            MlsdError(
                "a design already exists there",
                field="NAME",
                received=str(target),
                expected="a new name, or --force to overwrite",
            )
        )
    text = resources.files("mlsd").joinpath("templates/design.yaml.tmpl").read_text(encoding="utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.format(name=name), encoding="utf-8")
    out.print(f"wrote [bold]{target}[/]; next: [cyan]mlsd validate {target}[/]")


@app.command()
def validate(
    design: DesignPath,
    data: Annotated[bool, typer.Option(help="Also load the data and check every named column.")] = True,
) -> None:
    """Check a design file: keys, types, values, and (with --data) that named columns exist."""
    try:
        system = _system(design)
        prepared = system.validate(check_data=data)
    except MlsdError as exc:
        _fail(exc)
    d = system.design
    line = f"[green]✓[/] {design}: {d.name} ({d.goals.task}, metric {d.goals.metric}, "
    line += f"{len(d.models.candidates)} candidates)"
    if prepared is not None:
        line += f"; data: {len(prepared.frame):,} labelled rows, {len(prepared.input_columns)} input columns"
    out.print(line, highlight=False, soft_wrap=True)


@app.command()
def build(design: DesignPath) -> None:
    """Build segments 1-4 offline: data, split, leakage checks, features, candidates, decision, registry."""
    try:
        with RichProgress(err) as progress:
            result = _system(design, progress).build()
    except MlsdError as exc:
        _fail(exc)
    doc = result.document
    out.print(
        f"[bold green]champion[/]: {result.winner} (version {result.registered_version}) "
        f"in {result.seconds:.0f} s",
        highlight=False,
    )
    _print_tradeoff(doc)
    out.print(f"design document: [bold]{result.report_path}[/]", highlight=False)


def _print_tradeoff(doc) -> None:
    metric = doc.goals.metric
    table = Table(title="trade-off table", title_style="bold")
    for col in ("model", f"{metric} valid", f"{metric} test", "ECE", "p99 ms", "MB", "train s", "decision"):
        table.add_column(col, justify="left" if col in ("model", "decision") else "right")
    winner = doc.models.decision.winner if doc.models.decision else None
    for r in doc.models.tradeoff:
        verdict = (
            "[bold green]champion[/]"
            if r.name == winner
            else (r.reason or ("baseline" if r.kind == "baseline" else "passed"))
        )
        table.add_row(
            r.name,
            _ci(r.valid.get(metric)),
            _ci(r.test.get(metric)),
            _num(r.ece, 3),
            _num(r.p99_ms, 2),
            _num(r.size_mb, 2),
            _num(r.train_seconds, 1),
            verdict,
        )
    out.print(table)


def _num(value: object, digits: int) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.{digits}f}"


def _ci(interval) -> str:
    if interval is None or interval.value is None:
        return "-"
    if interval.low is not None and interval.high is not None:
        return f"{interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}]"
    return f"{interval.value:.3f}"


@app.command()
def report(design: DesignPath) -> None:
    """Write reports/design.html, the design document, from the last build's measurements."""
    try:
        path = _system(design).report()
    except MlsdError as exc:
        _fail(exc)
    out.print(f"design document: [bold]{path}[/]", highlight=False)


@app.command()
def models(design: DesignPath) -> None:
    """List the registered versions of the design's model and their aliases."""
    try:
        system = _system(design)
        versions = system.models()
    except MlsdError as exc:
        _fail(exc)
    table = Table(title=f"{system.design.registry_name} in {system.workspace / 'mlflow.db'}")
    for col in ("version", "aliases", "created", "run", "metrics"):
        table.add_column(col)
    metric = system.design.goals.metric
    shown = (f"valid_{metric}", f"test_{metric}", "threshold", "test_cost_per_1000", "p99_latency_ms")
    for v in versions:
        values = v.metrics or {}
        metrics = ", ".join(f"{k} {values[k]:.3f}" for k in shown if k in values)
        table.add_row(
            str(v.version),
            ", ".join(v.aliases) or "-",
            str(v.created_at)[:19],
            str(v.run_id)[:8],
            metrics or "-",
        )
    out.print(table)


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # MLflow probes for git; stay silent
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()

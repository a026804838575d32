"""Text from the data and the design reaches the terminal as written, never read as rich markup."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mlsd import cli
from mlsd.cli import RichProgress, app


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200, force_terminal=False, color_system=None), buffer


def test_build_notes_keep_square_brackets() -> None:
    console, buffer = _console()
    progress = RichProgress(console)
    progress.note("leakage [duplicate_rows] carrier, origin: 12 rows in train and test")
    progress.note("decision: [/bold] closes nothing")  # a stray closing tag would raise MarkupError
    with progress.stage("fitting [b]rf[/b]"):
        pass
    text = buffer.getvalue()
    assert "leakage [duplicate_rows] carrier, origin" in text
    assert "decision: [/bold] closes nothing" in text
    assert "fitting [b]rf[/b]" in text


def test_an_error_naming_a_bracketed_value_prints_it(tmp_path: Path) -> None:
    design = tmp_path / "[draft]" / "design.yaml"
    result = CliRunner().invoke(app, ["validate", str(design)])
    assert result.exit_code == 2
    assert "[draft]" in result.output


def test_tradeoff_names_and_reasons_are_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    console, buffer = _console()
    monkeypatch.setattr(cli, "out", console)
    row = SimpleNamespace(
        name="rule: carrier.isin([ua])",
        role="rejected",
        reason="[red]p99_latency_ms[/] 3.1 > 2",
        gates=[],
        valid={},
        test={},
        p99_ms=1.0,
        cost_per_1000=None,
        behaviour=[SimpleNamespace(test="[bold]flip[/]", passed=False)],
    )
    doc = SimpleNamespace(
        goals=SimpleNamespace(metric="rmse", cost_unit="EUR"),
        models=SimpleNamespace(tradeoff=[row], latency_method="[best of 3]"),
    )
    cli._print_tradeoff(doc)
    text = buffer.getvalue()
    assert "carrier.isin([ua])" in text
    assert "[red]p99_latency_ms[/] 3.1 > 2" in text
    assert "tests 0/1 (failed [bold]flip[/])" in text
    assert "latency: [best of 3]" in text

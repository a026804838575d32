"""`mlsd --version` prints the installed version and exits 0."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from mlsd.cli import app


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"mlsd {version('mlsd')}"


def test_commands_still_run_after_the_callback() -> None:
    result = CliRunner().invoke(app, ["validate", "--help"])
    assert result.exit_code == 0 and "design" in result.output.lower()

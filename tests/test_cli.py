"""The command line: init, validate and their exit codes (build is covered end to end elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlsd.cli import app

EXAMPLE = Path(__file__).parents[1] / "examples" / "flights" / "design.yaml"
runner = CliRunner()


def test_init_scaffolds_a_design_that_validates_against_its_data(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "churn", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    design = tmp_path / "churn" / "design.yaml"
    text = design.read_text()
    for segment in ("goals:", "data:", "features:", "models:", "monitoring:"):
        assert segment in text
    result = runner.invoke(app, ["validate", str(design)])
    assert result.exit_code == 0, result.output
    assert "5,000 labelled rows" in " ".join(result.output.split())


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    assert runner.invoke(app, ["init", "churn", "--dir", str(tmp_path)]).exit_code == 0
    result = runner.invoke(app, ["init", "churn", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "--force" in result.output


def _bad_design(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text()
    assert old in text
    path = tmp_path / "design.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def _line(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        (
            "  calibrate: none",
            "  calibrate: none\n  calibrte: sigmoid",
            "models.calibrte",
            "calibrte:",
        ),
        (
            "numeric: [distance, temp,",
            "numeric: [distance, temperature,",
            "features.numeric[1]",
            "temperature",
        ),
        ('label: "arr_delay > 15"', 'label: "arr_delay >> > 15"', "data.label", "arr_delay >> >"),
        ("task: binary", "task: 3", "goals.task", "task: 3"),
    ],
)
def test_bad_designs_exit_2_naming_file_line_and_field(
    tmp_path: Path, old: str, new: str, field: str, needle: str
) -> None:
    path = _bad_design(tmp_path, old, new)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"{path.name}:{_line(path, needle)}: {field}" in message
    assert "Traceback" not in result.output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "no such design file" in result.output


def test_replay_without_a_server_exits_2_before_loading_data(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = runner.invoke(app, ["replay", str(EXAMPLE), "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 2
    assert "--url: no server answers there" in " ".join(result.output.split())


def test_monitor_and_log_of_a_design_never_built_say_what_to_run(tmp_path: Path) -> None:
    design = _bad_design(tmp_path, "name: flight-delay", "name: never-built")
    result = runner.invoke(app, ["monitor", str(design)])
    assert result.exit_code == 2 and "run `mlsd build` first" in " ".join(result.output.split())
    result = runner.invoke(app, ["log", str(design), "--export", str(tmp_path / "out.parquet")])
    assert result.exit_code == 2 and "no prediction log yet" in " ".join(result.output.split())
    assert not (tmp_path / ".mlsd" / "never-built" / "predictions.db").exists()  # reading created nothing

"""`mlsd build --alias`, `mlsd promote` and `mlsd rollback` on a tiny design (about a second a build).

A challenger is a second design file beside the first with the same ``name:``: it shares the
workspace (``.mlsd/<name>/``) and so the registry, and differs only in what it builds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.store import ModelRegistry, PredictionLog
from support import tiny_design, write_tiny_design

runner = CliRunner()


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def _challenger(folder: Path) -> Path:
    """The tiny design with another candidate (more features), in the same workspace."""
    design = tiny_design()
    design["features"] = {"numeric": ["mpg", "hp", "wt", "qsec", "drat"]}
    path = folder / "challenger.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path]:
    champion = write_tiny_design(tmp_path)
    code, output = _cli("build", str(champion))
    assert code == 0, output
    assert "champion: lr (version 1)" in output
    return champion, _challenger(tmp_path)


def _aliases(design: Path) -> dict[str, int]:
    return ModelRegistry(design.parent / ".mlsd" / "tiny").alias_versions("tiny")


def _events(design: Path):
    with PredictionLog.for_workspace(design.parent / ".mlsd" / "tiny") as log:
        return log.read_events()


@pytest.mark.slow  # builds with MLflow: about ten seconds each
def test_a_challenger_build_leaves_the_champion_and_its_reference(built: tuple[Path, Path]) -> None:
    champion, challenger = built
    workspace = champion.parent / ".mlsd" / "tiny"
    reference = _digest(workspace / "reference")
    document = (workspace / "reports" / "design.json").read_bytes()
    code, output = _cli("build", str(challenger), "--alias", "challenger")
    assert code == 0, output
    assert "challenger: lr (version 2)" in output
    assert (
        "registered as challenger" in output
        and "champion and its monitoring reference are unchanged" in output
    )
    assert _aliases(champion) == {"champion": 1, "challenger": 2}
    assert _digest(workspace / "reference") == reference
    assert (workspace / "reports" / "design.json").read_bytes() == document
    assert '"alias":"challenger"' in (workspace / "reports" / "design-challenger.json").read_text().replace(
        " ", ""
    )
    # a champion build does replace the reference: it describes what now serves
    code, output = _cli("build", str(challenger))
    assert code == 0, output
    assert _aliases(champion) == {"champion": 3, "challenger": 2}
    assert _digest(workspace / "reference") != reference


@pytest.mark.slow  # builds with MLflow: about ten seconds each
def test_promote_then_rollback_move_the_champion_and_log_events(built: tuple[Path, Path]) -> None:
    champion, challenger = built
    assert _cli("build", str(challenger), "--alias", "challenger")[0] == 0
    code, output = _cli("promote", str(champion))
    assert code == 0, output
    assert "champion: version 2 (was version 1), promoted from challenger" in output
    assert _aliases(champion) == {"champion": 2, "challenger": 2}
    code, output = _cli("rollback", str(champion))
    assert code == 0, output
    assert "rolled back from version 2 to version 1" in output
    assert _aliases(champion)["champion"] == 1
    events = _events(champion)
    assert list(events["kind"]) == ["promote", "rollback"]
    assert set(events["actor"]) == {"cli"}
    assert events["details"].iloc[0]["from"] == 1 and events["details"].iloc[0]["to"] == 2
    assert events["details"].iloc[1]["from"] == 2 and events["details"].iloc[1]["to"] == 1
    # nothing earlier than version 1 was ever champion: a clear refusal, exit 2, no new event
    code, output = _cli("rollback", str(champion))
    assert code == 2 and "error" in output and "Traceback" not in output, output
    assert len(_events(champion)) == 2


@pytest.mark.slow  # builds with MLflow: about ten seconds each
def test_promote_of_a_missing_alias_or_without_a_build_is_refused(
    tmp_path: Path, built: tuple[Path, Path]
) -> None:
    champion, _ = built
    code, output = _cli("promote", str(champion), "--alias", "nobody")
    assert code == 2 and "no nobody is registered" in output, output
    code, output = _cli("promote", str(champion), "--alias", "champion")
    assert code == 2 and "cannot be promoted" in output, output
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    code, output = _cli("rollback", str(write_tiny_design(fresh)))
    assert code == 2 and "run `mlsd build` first" in output, output
    assert not (fresh / ".mlsd" / "tiny" / "predictions.db").exists()  # no log created for a refusal


@pytest.mark.parametrize("alias", ["latest", "v2", "2fast", "with space"])
def test_a_reserved_or_malformed_alias_is_refused_before_building(tmp_path: Path, alias: str) -> None:
    design = write_tiny_design(tmp_path)
    code, output = _cli("build", str(design), "--alias", alias)
    assert code == 2 and "alias:" in output and "challenger" in output, output
    assert not (tmp_path / ".mlsd" / "tiny" / "mlflow.db").exists()


def test_the_flights_challenger_differs_from_the_design_only_in_its_candidates() -> None:
    from mlsd.design import load_design

    folder = Path(__file__).parents[1] / "examples" / "flights"
    champion, challenger = load_design(folder / "design.yaml"), load_design(folder / "challenger.yaml")
    assert challenger.workspace_dir() == champion.workspace_dir()  # one registry for both
    assert champion.deployment.strategy == "canary"
    a, b = champion.model_dump(exclude={"models"}), challenger.model_dump(exclude={"models"})
    assert a == b
    assert champion.models.model_dump(exclude={"candidates"}) == challenger.models.model_dump(
        exclude={"candidates"}
    )
    assert {c.name for c in challenger.models.candidates}.isdisjoint(
        c.name for c in champion.models.candidates
    )

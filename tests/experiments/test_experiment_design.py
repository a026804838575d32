"""`mlsd validate` refuses a deployment.experiment that `mlsd experiment` could not run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from support import tiny_design

runner = CliRunner()


def _validate(tmp_path: Path, experiment: dict, **deployment: object) -> tuple[int, str]:
    import yaml

    design = tiny_design()
    design["deployment"] = {"strategy": "ab", "traffic": {"champion": 50, "challenger": 50}, **deployment}
    design["deployment"]["experiment"] = experiment
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    result = runner.invoke(app, ["validate", "--no-data", str(path)])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(
    ("experiment", "field", "says"),
    [
        ({"metrics": ["cost"]}, "deployment.experiment.metrics[0]", "needs goals.costs"),
        ({"metrics": ["abs_error"]}, "deployment.experiment.metrics[0]", "regression"),
        ({"metrics": []}, "deployment.experiment.metrics", "no metric"),
        ({"cuped_covariate": "qsec"}, "deployment.experiment.cuped_covariate", "numeric input feature"),
        ({"baseline": "blue"}, "deployment.experiment.baseline", "not a variant"),
        ({"alpha": 0.5}, "deployment.experiment.alpha", "less than or equal"),
        ({"sequential": "pocock"}, "deployment.experiment.sequential", "msprt"),
        ({"tau2": 1}, "deployment.experiment.tau2", "unknown key"),
        ({"sequential": "obrien_fleming"}, "deployment.experiment.sequential", "needs the horizon"),
        ({"horizon": 5000}, "deployment.experiment.horizon", "read only by sequential: obrien_fleming"),
        ({"sequential": "obrien_fleming", "horizon": 500, "tau": 0.2}, "deployment.experiment.tau", "msprt"),
    ],
)
def test_validate_refuses(tmp_path: Path, experiment: dict, field: str, says: str) -> None:
    code, output = _validate(tmp_path, experiment)
    assert code == 2, output
    assert field in output and says in output, output


def test_validate_accepts_a_group_sequential_experiment(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, {"sequential": "obrien_fleming", "horizon": 20000})
    assert code == 0, output


def test_validate_accepts_a_full_experiment(tmp_path: Path) -> None:
    code, output = _validate(
        tmp_path,
        {
            "baseline": "champion",
            "metrics": ["accuracy", "latency_ms"],
            "cuped_covariate": "hp",
            "correction": "fdr_bh",
            "sequential": "msprt",
            "tau": 0.2,
            "checkpoints": 10,
            "power": 0.9,
        },
    )
    assert code == 0, output

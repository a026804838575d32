"""Drift over a big window: `mlsd monitor`'s statistics against Evidently's DataDriftPreset.

    make bench-monitor          # or: .venv/bin/python bench/monitor_drift.py [--rows 1000000]

A synthetic window of 1,000,000 rows x 50 features (40 numeric, 10 categorical with 5-200
values), and a reference of the same shape; 8 numeric and 2 categorical features are shifted.
Each tool runs in its own process on the same Parquet files and reports its wall time and its
peak memory above the loaded data (Linux's VmHWM after resetting it once the data is in memory):

- mlsd: ``ReferenceStatistics.from_frame`` (what the build saves, timed apart) then
  ``detect_drift`` on the window (what the monitor runs per window);
- Evidently 0.7 (its own venv, .venv-bench: it needs pandas<3 and plotly<6):
  ``Report([DataDriftPreset()]).run(current, reference)`` with the same column types.

Both the drifted features found and the timings are printed; results go to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BENCH_PY = ROOT / ".venv-bench" / "bin" / "python"
N_NUMERIC, N_CATEGORICAL = 40, 10
SHIFTED_NUMERIC = [f"num_{i:02d}" for i in range(8)]
SHIFTED_CATEGORICAL = ["cat_0", "cat_1"]


def synthetic(n: int, seed: int, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for i in range(N_NUMERIC):
        name = f"num_{i:02d}"
        shift = 0.25 if shifted and name in SHIFTED_NUMERIC else 0.0
        x = rng.normal(shift, 1.0, n) if i % 2 else rng.lognormal(shift, 0.5, n)
        x[rng.random(n) < 0.02] = np.nan
        data[name] = x
    for j in range(N_CATEGORICAL):
        name = f"cat_{j}"
        k = [5, 20, 50, 200][j % 4]
        p = 1 / np.arange(1, k + 1)
        if shifted and name in SHIFTED_CATEGORICAL:
            p = p[::-1] ** 0.3
        data[name] = pd.Categorical.from_codes(rng.choice(k, n, p=p / p.sum()), [f"v{c}" for c in range(k)])
    return pd.DataFrame(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "monitor_drift.json")
    args = parser.parse_args()
    if not BENCH_PY.exists():
        sys.exit(f"{BENCH_PY} is missing: run `make bench-monitor` (it creates .venv-bench with Evidently)")
    with tempfile.TemporaryDirectory() as tmp:
        reference, window = Path(tmp) / "reference.parquet", Path(tmp) / "window.parquet"
        synthetic(args.rows, 1, shifted=False).to_parquet(reference)
        synthetic(args.rows, 2, shifted=True).to_parquet(window)
        runs = {}
        for tool, python in (("mlsd", sys.executable), ("evidently", str(BENCH_PY))):
            print(f"running {tool} on {args.rows:,} x {N_NUMERIC + N_CATEGORICAL} ...", flush=True)
            proc = subprocess.run(
                [
                    python,
                    str(Path(__file__).with_name("_drift_runner.py")),
                    tool,
                    str(reference),
                    str(window),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                sys.exit(f"{tool} failed:\n{proc.stderr[-3000:]}")
            runs[tool] = json.loads(proc.stdout.strip().splitlines()[-1])
    truth = set(SHIFTED_NUMERIC + SHIFTED_CATEGORICAL)
    print(f"\n{'':28}{'mlsd':>12}{'evidently':>12}{'ratio':>10}")
    m, e = runs["mlsd"], runs["evidently"]
    print(
        f"{'drift seconds':28}{m['seconds']:>12.2f}{e['seconds']:>12.2f}{e['seconds'] / m['seconds']:>9.1f}x"
    )
    print(
        f"{'peak memory above data, MB':28}{m['peak_mb']:>12.0f}{e['peak_mb']:>12.0f}"
        f"{e['peak_mb'] / max(m['peak_mb'], 1):>9.1f}x"
    )
    print(f"{'reference build seconds':28}{m.get('reference_seconds', 0):>12.2f}{'-':>12}")
    for tool, run in runs.items():
        found = set(run["drifted"])
        print(
            f"{tool}: {len(found)} drifted; {len(found & truth)}/{len(truth)} shifted found, "
            f"{len(found - truth)} false alarms"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"rows": args.rows, "features": N_NUMERIC + N_CATEGORICAL, **runs}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

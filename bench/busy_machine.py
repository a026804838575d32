"""Decisions on a busy machine: the flights build and a LightGBM fit, quiet and with two busy loops.

    .venv/bin/python bench/busy_machine.py build   # mlsd build quiet, then busy: champion, gated p99
    .venv/bin/python bench/busy_machine.py fit     # one LightGBM fit per OpenMP setting, quiet and busy

"Busy" is two CPU-bound processes (a Python loop doing nothing) on the machine's cores,
started here, stopped when each measurement ends and by themselves after 600 s. Nothing else
should run meanwhile. ``docs/threads-and-timing.md`` reports what this printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[1]
DESIGN = ROOT / "examples" / "flights" / "design.yaml"
MLSD = Path(sys.executable).parent / "mlsd"


@contextlib.contextmanager
def busy(n: int = 2) -> Iterator[None]:
    # each loop also stops by itself after 600 s (killing a `timeout` wrapper would leave it running)
    spin = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end: pass"
    loops = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(n)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for p in loops:
            p.kill()
            p.wait()


def _build(label: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLSD_N_JOBS"}
    t = time.perf_counter()
    subprocess.run([str(MLSD), "build", str(DESIGN)], check=True, env=env, capture_output=True)
    seconds = time.perf_counter() - t
    doc = json.loads((DESIGN.parent / ".mlsd" / "flight-delay" / "reports" / "design.json").read_text())
    rows = {r["name"]: r for r in doc["models"]["tradeoff"] if r["kind"] == "candidate"}
    p99 = ", ".join(
        f"{n} {r['p99_ms']:.2f} ms ({r['role']}{', close' if any(g['close'] for g in r['gates']) else ''})"
        for n, r in rows.items()
    )
    winner = doc["models"]["decision"]["winner"]
    print(f"{label:5} build {seconds:5.0f} s  champion {winner}  gated p99: {p99}", flush=True)


_FIT = """
import os, time
import mlsd  # its thread defaults first, as the CLI does
from sklearn.base import clone
from mlsd.data import prepare_data, split_prepared
from mlsd.design import load_design
from mlsd.features import feature_pipeline_for
from mlsd.modeling import make_candidate
d = load_design({design!r})
split = split_prepared(d, prepare_data(d).frame)
y = split.train[d.goals.target].to_numpy()
X = clone(feature_pipeline_for(d)).fit_transform(split.train, y)
gbdt = next(c for c in d.models.candidates if c.type == "lightgbm")
est = make_candidate("lightgbm", "binary", gbdt.params)
t = time.perf_counter(); est.fit(X, y)
print(f"{{time.perf_counter() - t:.1f}} s on {{X.shape}}")
"""

_SETTINGS = {
    "spin (OpenMP default)": {"OMP_WAIT_POLICY": "ACTIVE"},
    "passive (mlsd default)": {},
    "MLSD_N_JOBS=1": {"MLSD_N_JOBS": "1"},
}


def _fit(label: str, extra: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MLSD_N_JOBS", "OMP_WAIT_POLICY")}
    env.update(extra)
    code = _FIT.format(design=str(DESIGN))
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    print(f"{label:5} {out.stdout.strip()}", flush=True)


def main(what: str) -> None:
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} before the first run")
    if what == "build":
        _build("quiet")
        with busy():
            _build("busy")
    elif what == "fit":
        for name, extra in _SETTINGS.items():
            print(f"-- LightGBM fit, {name}")
            _fit("quiet", extra)
            with busy():
                _fit("busy", extra)
    else:
        raise SystemExit("usage: busy_machine.py build|fit")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build")

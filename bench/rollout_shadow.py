"""What shadow scoring costs the answer: `mlsd serve` with strategy single vs shadow, driven by wrk.

    .venv/bin/python bench/rollout_shadow.py [--seconds 20] [--connections 1,16] [--rounds 2]

The flights champion and the registered challenger (``make demo`` registers
examples/flights/challenger.yaml, a deeper LightGBM; without one the bench builds the design again
under the alias ``challenger``) answer real test-split flights, one row per request.
The server is pinned to one core and ``wrk`` (Debian's package) to the other; each
configuration runs ``--rounds`` times, alternating, so the spread between rounds of the same
configuration shows the noise. One connection measures the answer's latency with the server
mostly idle; 16 saturate the server's core, where the shadow competes with the answers for it.
After each shadow round the bench counts the shadow rows the log holds against the predictions
it answered. Results go to bench/results/rollout_shadow.json;
docs/rollout.md and the closing note report them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DESIGN = ROOT / "examples" / "flights" / "design.yaml"
_LUA = """
local bodies = {%s}
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "/v1/predict", {["Content-Type"] = "application/json"}, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format("MLSD %%d %%d %%.3f %%.3f %%.3f\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.duration / 1e6))
end
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _design_copy(folder: Path, workspace: Path, strategy: str) -> Path:
    """The flights design with another strategy, reading and writing the flights workspace."""
    text = DESIGN.read_text()
    text = re.sub(r"(?ms)^deployment:.*?(?=^\S|\Z)", f"deployment: {{strategy: {strategy}}}\n\n", text)
    path = folder / f"{strategy}.yaml"
    path.write_text(text + f"\nworkspace: {workspace}\n")
    return path


def _wait_ready(url: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready after {seconds} s")


def _run(
    design: Path, lua: Path, args: argparse.Namespace, connections: int, scratch: Path, extra: list[str]
) -> dict:
    port = _free_port()
    log = scratch / f"log-{port}.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = ["taskset", "-c", "1", str(BIN / "mlsd"), "serve", str(design), "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--log-url", f"sqlite:///{log}", *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        wrk = ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{args.seconds}s"]
        subprocess.run([*wrk[:-1], "-d3s", "-s", str(lua), f"http://127.0.0.1:{port}"], capture_output=True)
        out = subprocess.run(
            [*wrk, "--latency", "-s", str(lua), f"http://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    line = next(x for x in out.splitlines() if x.startswith("MLSD "))
    requests, errors, p50, p99, seconds = line.split()[1:]
    with sqlite3.connect(log) as db:
        predictions = db.execute("SELECT count(*) FROM predictions").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        shadow = (
            db.execute("SELECT count(*) FROM shadow_predictions").fetchone()[0]
            if "shadow_predictions" in tables
            else 0
        )
    return {
        "requests": int(requests),
        "errors": int(errors),
        "requests_per_s": int(requests) / float(seconds),
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "logged_predictions": predictions,
        "shadow_rows": shadow,
        "shadow_coverage": shadow / predictions if predictions else None,
    }


def main() -> None:
    from mlsd.serving.replay import json_records
    from mlsd.system import System

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", default="1,16", help="comma-separated connection counts")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rollout_shadow.json")
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        raise SystemExit("needs wrk and taskset: apt-get install -y wrk util-linux")

    system = System(DESIGN)
    aliases = set()
    if (system.workspace / "mlflow.db").is_file():
        aliases = {a for v in system.models() for a in v.aliases}
    if "champion" not in aliases:
        print("building the flights champion (about a minute) ...", flush=True)
        subprocess.run([str(BIN / "mlsd"), "build", str(DESIGN)], check=True)
    if "challenger" not in aliases:
        print("building a challenger (the same design, alias challenger) ...", flush=True)
        subprocess.run([str(BIN / "mlsd"), "build", str(DESIGN), "--alias", "challenger"], check=True)
    rows, _ = system.replay_rows("test")
    bodies = [json.dumps({"inputs": r}) for r in json_records(rows.head(args.rows))]

    scratch = Path(tempfile.mkdtemp(prefix="mlsd-bench-shadow-"))
    try:
        lua = scratch / "rows.lua"
        lua.write_text(_LUA % ",".join(json.dumps(b) for b in bodies))
        copies = {name: _design_copy(scratch, system.workspace, name) for name in ("single", "shadow")}
        # shadow: its process shares the server's core; shadow-off-core: --shadow-cpus 0 puts it
        # on the other core (wrk's, which one connection or sixteen leave mostly idle)
        designs = {
            "single": (copies["single"], []),
            "shadow": (copies["shadow"], []),
            "shadow-off-core": (copies["shadow"], ["--shadow-cpus", "0"]),
        }
        counts = [int(c) for c in str(args.connections).split(",")]
        results: dict[str, list[dict]] = {f"{n}@{c}": [] for c in counts for n in designs}
        for connections in counts:
            for round_ in range(args.rounds):
                for name, (design, extra) in designs.items():
                    key = f"{name}@{connections}"
                    print(f"round {round_ + 1}: {key} ...", flush=True)
                    results[key].append(_run(design, lua, args, connections, scratch, extra))
                    print("   ", results[key][-1], flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    conditions = {
        "machine": f"{os.cpu_count()} cores; server pinned to core 1 (OMP_NUM_THREADS=1), wrk -t1 on core 0; "
        "shadow-off-core: mlsd serve --shadow-cpus 0 (the shadow process on wrk's core)",
        "load": f"wrk, {args.connections} keep-alive connections, {args.seconds} s per round, "
        f"one real flights test row per request ({len(bodies)} distinct rows)",
        "models": "flights champion and the registered challenger (make demo: a deeper LightGBM)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"conditions": conditions, "results": results}, indent=2))
    print(json.dumps(conditions, indent=2))
    for name, rounds in results.items():
        rps = [r["requests_per_s"] for r in rounds]
        p50 = [r["p50_ms"] for r in rounds]
        p99 = [r["p99_ms"] for r in rounds]
        cover = [r["shadow_coverage"] or 0.0 for r in rounds]
        print(
            f"{name:20s} requests/s {min(rps):6.0f}-{max(rps):<6.0f} p50 {min(p50):6.1f}-{max(p50):<6.1f} ms"
            f"  p99 {min(p99):6.1f}-{max(p99):<6.1f} ms  shadow rows {min(cover):.1%}-{max(cover):.1%}"
        )
    for connections in counts:
        single = results[f"single@{connections}"]
        for name in ("shadow", "shadow-off-core"):
            shadow = results[f"{name}@{connections}"]
            ratio = [b["requests_per_s"] / a["requests_per_s"] for a, b in zip(single, shadow, strict=True)]
            tail = [b["p99_ms"] / a["p99_ms"] for a, b in zip(single, shadow, strict=True)]
            print(
                f"{name} / single at {connections} connections: requests/s "
                f"x{min(ratio):.2f}-{max(ratio):.2f}, p99 x{min(tail):.2f}-{max(tail):.2f} (round by round)"
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

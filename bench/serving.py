"""Serving throughput and latency: `mlsd serve` against in-process prediction of the same pipeline
and against `mlflow models serve` of the same registered model.

    make bench-serving-client   # or: .venv/bin/python bench/serving.py [--rows 3000 --concurrency 16]

Needs the flights champion (`make demo`, or this script runs `mlsd build` first). The rows are
the first ``--rows`` test-month flights, as JSON records, one row per request:

- in-process: ``PackagedModel.predict_frame`` on a one-row frame built from each record, in a loop
  (the floor any server adds to);
- mlsd: ``mlsd serve`` (one uvicorn process, micro-batching, every prediction committed to the
  SQLite log before its response);
- mlflow: ``mlflow models serve -m models:/flight-delay@champion --env-manager local -w 1`` (one
  worker, the same pyfunc model, no prediction log), body ``{"dataframe_records": [row]}``.

Both servers get the same client: httpx, ``--concurrency`` requests in flight, client-side
latency; first one request at a time (500 requests: latency without queueing), then all rows with
``--concurrency`` in flight. Client and server share the machine, as a load test on one box
does. Results go to bench/results/serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "examples" / "flights" / "design.yaml"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}:\n{proc.stderr.read()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {seconds} s")


async def load(url: str, bodies: list[dict], concurrency: int) -> dict:
    latencies = np.full(len(bodies), np.nan)
    failures = 0
    next_i = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_i, failures
            while next_i < len(bodies):
                i = next_i
                next_i += 1
                t = time.perf_counter()
                r = await client.post(url, json=bodies[i])
                if r.status_code == 200:
                    latencies[i] = (time.perf_counter() - t) * 1000
                else:
                    failures += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    ok = latencies[~np.isnan(latencies)]
    return {
        "requests": len(bodies),
        "failures": failures,
        "seconds": seconds,
        "throughput_rps": len(bodies) / seconds,
        "p50_ms": float(np.percentile(ok, 50)),
        "p99_ms": float(np.percentile(ok, 99)),
    }


def measure(tool: str, url: str, bodies: list[dict], concurrency: int) -> dict[str, dict]:
    """One request at a time (latency without queueing), then ``concurrency`` in flight."""
    asyncio.run(load(url, bodies[:200], concurrency))  # warm-up
    return {
        f"{tool}, concurrency 1": asyncio.run(load(url, bodies[:500], 1)),
        f"{tool}, concurrency {concurrency}": asyncio.run(load(url, bodies, concurrency)),
    }


def in_process(model, records: list[dict]) -> dict:
    latencies = np.empty(len(records))
    start = time.perf_counter()
    for i, record in enumerate(records):
        t = time.perf_counter()
        model.predict_frame(pd.DataFrame([record]))
        latencies[i] = (time.perf_counter() - t) * 1000
    seconds = time.perf_counter() - start
    return {
        "requests": len(records),
        "failures": 0,
        "seconds": seconds,
        "throughput_rps": len(records) / seconds,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    with __import__("contextlib").suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> None:
    from mlsd.serving.replay import json_records
    from mlsd.system import System

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serving.json")
    args = parser.parse_args()

    system = System(DESIGN)
    try:
        model, name, version = system.champion()
    except Exception:
        print("no flights champion yet: building it (about a minute) ...", flush=True)
        subprocess.run([str(BIN / "mlsd"), "build", str(DESIGN)], check=True)
        model, name, version = system.champion()
    rows, _ = system.replay_rows("test")
    records = json_records(rows.head(args.rows))
    results = {}

    print(f"in-process predict_frame on {len(records):,} one-row frames ...", flush=True)
    results["in_process"] = in_process(model, records)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = free_port()
    print(f"mlsd serve on :{port}, {len(records):,} requests, concurrency {args.concurrency} ...", flush=True)
    # a scratch log: the benchmark's requests must not join the demo's traffic in the workspace log
    scratch = tempfile.mkdtemp(prefix="mlsd-bench-")
    command = [str(BIN / "mlsd"), "serve", str(DESIGN), "--port", str(port)]
    proc = start([*command, "--log-url", f"sqlite:///{scratch}/predictions.db"], env)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        bodies = [{"inputs": r} for r in records]
        results |= measure("mlsd_serve", f"http://127.0.0.1:{port}/v1/predict", bodies, args.concurrency)
    finally:
        stop(proc)
        shutil.rmtree(scratch, ignore_errors=True)

    port = free_port()
    db = f"sqlite:///{system.workspace / 'mlflow.db'}"
    print(f"mlflow models serve on :{port} ...", flush=True)
    proc = start(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{name}@champion",
            "--env-manager",
            "local",
            "-w",
            "1",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        # mlflow execs `uvicorn` from PATH: the venv's bin must come first
        {**env, "MLFLOW_TRACKING_URI": db, "MLFLOW_REGISTRY_URI": db, "PATH": f"{BIN}:{env.get('PATH', '')}"},
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", proc)
        bodies = [{"dataframe_records": [r]} for r in records]
        results |= measure("mlflow_serve", f"http://127.0.0.1:{port}/invocations", bodies, args.concurrency)
    finally:
        stop(proc)

    print(f"\n{'':28}{'rows/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'failures':>10}")
    for key, r in results.items():
        print(
            f"{key:28}{r['throughput_rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['failures']:>10}"
        )
    for level in (1, args.concurrency):
        m, f = results[f"mlsd_serve, concurrency {level}"], results[f"mlflow_serve, concurrency {level}"]
        print(
            f"concurrency {level}: mlsd serve vs mlflow models serve: "
            f"{m['throughput_rps'] / f['throughput_rps']:.1f}x throughput, "
            f"p50 {f['p50_ms'] / m['p50_ms']:.1f}x lower, p99 {f['p99_ms'] / m['p99_ms']:.1f}x lower"
        )
    results["model"] = {"name": name, "version": version}
    results["concurrency"] = args.concurrency
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

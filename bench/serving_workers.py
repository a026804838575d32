"""`mlsd serve --workers 1` against `--workers 2` on the flights champion, driven by wrk.

    .venv/bin/python bench/serving_workers.py [--flights-rows 40000 --seconds 10 --rounds 1]

The workspace, the request bodies, wrk's Lua script, the warm-up and the measured run are
bench/serving_wrk.py's (imported, not copied): the champion built on ``--flights-rows``
subsampled flights under the temporary folder, ``--rows`` distinct test flights cycling,
``wrk -t1 -c64`` pinned to core 1 after a 3 s warm-up. Strategy ``single``, each run on a fresh
SQLite prediction log that every answer is committed to first.

A 2-core machine cannot give wrk a core of its own *and* two cores to the workers, so there are
two placements, both reported:

- ``workers on 0,1``: the server (parent, workers) under ``taskset -c 0,1``, sharing core 1 with
  wrk; what a user of a small machine gets, wrk's own CPU (``wrk_cpu_share``) taken off it;
- ``workers on 0`` (control): the server on core 0 only, wrk alone on core 1; two workers on
  one core can only cost (context switches, two log writers on one file), so any gain in the
  first placement over this one comes from the second core.

For each run: requests/s, p50/p99 (wrk), non-2xx and socket errors, the server's CPU time per
answered request (user + system of every process of the server's session, from /proc, over
the predictions the log gained: warm-up included, so CPU and answers cover the same requests),
and the idle share of the machine and of each core (/proc/stat) during the measured run.
Written to bench/results/serving_workers.json and printed as a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving_wrk as wrk_bench  # its workspace, bodies, wrk runner and stop

ROOT = wrk_bench.ROOT
BIN = wrk_bench.BIN
PLACEMENTS = {"workers on 0,1": "0,1", "workers on 0": "0"}


def session_cpu_s(session: int) -> float:
    """User + system CPU seconds of the live processes of ``session`` (the server's)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[3]) == session:  # field 6 of stat(5): the session id
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def logged(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return con.execute("SELECT count(*) FROM predictions").fetchone()[0] if "predictions" in tables else 0


def rows_per_model_call_from(text: str) -> float | None:
    """The mean micro-batch (``mlsd_batch_size``, every worker summed) in a /metrics text.

    >>> rows_per_model_call_from("mlsd_batch_size_count 4.0\\nmlsd_batch_size_sum 10.0\\n")
    2.5
    """
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("mlsd_batch_size_"))
    count, total = float(values.get("mlsd_batch_size_count", 0)), float(values.get("mlsd_batch_size_sum", 0))
    return total / count if count else None


def rows_per_call(url: str) -> float | None:
    import httpx

    return rows_per_model_call_from(httpx.get(f"{url}/metrics", timeout=10).text)


def wait_for_other_builds(marker: str) -> None:
    """Another process building the bench's workspace (another bench run): wait, do not build too."""
    while True:
        busy = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().split(b"\0")
            except OSError:
                continue
            if b"build" in args and any(marker.encode() in a for a in args):
                busy.append(cmdline.parent.name)
        if not busy:
            return
        print(f"waiting for the build of the bench's workspace (pid {', '.join(busy)}) ...", flush=True)
        time.sleep(10)


def start(cmd: list[str], cores: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would block the server
        return subprocess.Popen(
            ["taskset", "-c", cores, *cmd],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="measured wrk run per configuration")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rows", type=int, default=2000, help="distinct test flights cycled by wrk")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--flights-rows", type=int, default=40000, help="serving_wrk.py's workspace")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serving_workers.json")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: wrk on core 1")

    scratch = Path(tempfile.mkdtemp(prefix="mlsd-bench-workers-"))
    try:
        results = _measure(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _report(args, results)


def _measure(args: argparse.Namespace, scratch: Path) -> list[dict[str, Any]]:
    from mlsd.serving.replay import json_records
    from mlsd.system import System

    wait_for_other_builds("mlsd-bench-serving-wrk")
    design, workspace = wrk_bench.ensure_models(args, scratch)
    served = wrk_bench.strategy_design(design, workspace, "single", scratch)
    rows, _ = System(design).replay_rows("test")
    bodies = scratch / "mlsd.jsonl"
    bodies.write_text(wrk_bench.body_lines(json_records(rows.head(args.rows)), "mlsd"))
    lua = scratch / "bodies.lua"
    lua.write_text(wrk_bench.LUA)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}

    results: list[dict[str, Any]] = []
    for round_ in range(1, args.rounds + 1):
        for placement, cores in PLACEMENTS.items():
            for workers in (1, 2):
                port = wrk_bench.free_port()
                db = scratch / f"log-{port}.db"
                cmd = [str(BIN / "mlsd"), "serve", str(served), "--host", "127.0.0.1", "--port", str(port)]
                cmd += ["--log-url", f"sqlite:///{db}", "--workers", str(workers)]
                label = f"{placement}, --workers {workers}"
                print(f"round {round_}: {label} on 127.0.0.1:{port} ...", flush=True)
                server_log = scratch / f"server-{port}.log"
                proc = start(cmd, cores, env, server_log)
                url = f"http://127.0.0.1:{port}"
                try:
                    wrk_bench.wait_ready(url + "/readyz", proc, server_log)
                    cpu, answers = session_cpu_s(proc.pid), logged(db)
                    result = wrk_bench.run_wrk(url, "/v1/predict", bodies, lua, args, proc.pid)
                    cpu, answers = session_cpu_s(proc.pid) - cpu, logged(db) - answers
                    result["server_cpu_ms_per_request"] = 1000 * cpu / max(answers, 1)
                    result["server_cpu_share"] = cpu / (result["wrk"]["duration_us"] / 1e6 + 3)
                    result["rows_per_model_call"] = rows_per_call(url)
                except (RuntimeError, subprocess.CalledProcessError) as exc:
                    result = {"failed": str(exc)[-2000:]}
                finally:
                    wrk_bench.stop(proc)
                result["logged"] = logged(db)
                row = {"round": round_, "placement": placement, "server_cores": cores, "workers": workers}
                results.append(row | result)
                print("   ", {k: v for k, v in result.items() if k != "wrk"}, flush=True)
    return results


def _report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    conditions = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "load": f"wrk -t1 -c{args.connections} on core {wrk_bench.WRK_CORE}, keep-alive, 3 s warm-up, "
        f"{args.seconds} s measured; {args.rows} distinct flights, one row a request; strategy single, "
        "SQLite log; OMP_NUM_THREADS=1",
        "loadavg_before": os.getloadavg()[0],
        "note": "2 cores: under 'workers on 0,1' wrk shares core 1 with the server; "
        "'workers on 0' is the control",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"conditions": conditions, "results": results}, indent=2, default=str))
    print(
        f"\n{'placement':<16}{'workers':>8}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'non2xx':>7}{'sockerr':>8}"
        f"{'cpu ms/req':>11}{'rows/call':>10}{'idle':>6}{'idle c0':>8}{'idle c1':>8}{'wrk cpu':>8}"
    )
    for r in results:
        if "failed" in r:
            print(f"{r['placement']:<16}{r['workers']:>8}  failed: {r['failed'][:200]}")
            continue
        print(
            f"{r['placement']:<16}{r['workers']:>8}{r['requests_per_s']:>9.0f}{r['p50_ms']:>8.1f}"
            f"{r['p99_ms']:>8.1f}{r['non_2xx']:>7}{r['socket_errors']:>8}{r['server_cpu_ms_per_request']:>11.2f}"
            f"{r['rows_per_model_call'] or float('nan'):>10.1f}"
            f"{r['idle_share']:>6.0%}{r['idle_share_server_core']:>8.0%}{r['idle_share_wrk_core']:>8.0%}"
            f"{r['wrk_cpu_share']:>8.0%}"
        )
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()

"""Serving measured from outside the server: `mlsd serve` (single, shadow, canary) against
`mlflow models serve` (and BentoML, when it installs) on the same registered flights champion,
all driven by wrk.

    make bench-serving      # or: .venv/bin/python bench/serving_wrk.py [--flights-rows 40000]
                            #     [--seconds 20 --connections 64 --rows 2000 --rounds 1]

The load generator is Debian's ``wrk`` (``apt-get install -y wrk``), a C client on its own core:
``taskset -c 1 wrk -t1 -c64 --latency``, while every server runs under ``taskset -c 0`` (its
worker processes and, for ``shadow``, the shadow's scoring process inherit that core). A Python
client on the same cores would measure itself as much as the server (bench/serving.py does that).

Each request is one real test-split flight, ``--rows`` distinct flights cycling (one JSON body a
line, read by the Lua script): ``{"inputs": row}`` to mlsd's and BentoML's ``/v1/predict`` and
``/predict``, ``{"dataframe_records": [row]}`` to MLflow's ``/invocations``. Before each run one
body is sent with httpx and must be answered 200; then a 3 s wrk warm-up, then the measured run.

- ``mlsd serve``: the flights design with ``deployment.strategy`` ``single``, ``shadow`` (100 %
  of requests also scored by the challenger in its own process) and ``canary`` (the design's own:
  10 % of tailnums to the challenger in the first step), each with a fresh SQLite prediction log
  in a scratch folder that every prediction is committed to before its answer;
- ``mlsd serve`` ``single`` with ``--batch-rows`` (100) consecutive flights in each request's
  ``inputs``: its throughput in rows is what the log must take (``rows_per_s``);
- ``mlflow models serve -m models:/flight-delay@champion --env-manager local -w 1`` on the
  workspace's registry (no validation, no log);
- BentoML 1.4 (``@bentoml.service(workers=1)`` calling the same ``PackagedModel.predict_frame``),
  in its own venv (``--bentoml-venv``, created with ``pip install 'bentoml==1.4.*'`` when missing;
  ``--no-bentoml`` skips it, and so does a failed install, with the reason).

``--flights-rows N`` builds the champion and the challenger (examples/flights/challenger.yaml,
``--alias challenger``) on a seeded subsample of N labelled flights in a workspace of the bench's
own under the temporary folder (reused by the next run); ``0`` uses the example's workspace
(``make demo``), building it when it has no champion or challenger.

For each run: requests/s, p50/p99/max latency as wrk measures it, non-2xx answers and socket
errors, the idle share of the whole machine and of each core from /proc/stat before and after
the run, and the server's own CPU time (utime + stime of its process group, /proc/PID/stat) per
request: on a shared machine the least disturbed measure of what one request costs. Ratios are
mlsd / MLflow within the same round. One table is printed at the end and all
of it is written to bench/results/serving_wrk.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DESIGN = ROOT / "examples" / "flights" / "design.yaml"
CHALLENGER = ROOT / "examples" / "flights" / "challenger.yaml"
SERVER_CORE, WRK_CORE = "0", "1"
STRATEGIES = {
    "single": "deployment: {strategy: single}\n\n",
    "shadow": "deployment: {strategy: shadow, shadow_percent: 100}\n\n",
    "canary": None,  # the design's own deployment block (canary, steps 10 / 50 / 100, sticky by tailnum)
}

# wrk's Lua: every thread reads the bodies (one JSON document a line) and sends them in turn; the
# main state's done() prints one machine-readable line (latencies in microseconds)
LUA = r"""
local bodies, path, i = {}, "/", 0
local headers = {["Content-Type"] = "application/json"}
init = function(args)
  path = args[2]
  for line in io.lines(args[1]) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
end
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", path, headers, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("MLSD_WRK %d %d %d %d %d %d %d %d %d %d %d\n", summary.requests,
    summary.duration, e.status, e.connect, e.read, e.write, e.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max))
end
"""
_WRK_FIELDS = (
    "requests",
    "duration_us",
    "non_2xx",
    "connect_errors",
    "read_errors",
    "write_errors",
    "timeouts",
    "p50_us",
    "p90_us",
    "p99_us",
    "max_us",
)

BENTO_SERVICE = '''
"""The flights champion behind BentoML: the same PackagedModel.predict_frame mlsd and MLflow call."""
import os
from typing import Any

import bentoml
import pandas as pd


@bentoml.service(workers=1, traffic={"timeout": 60})
class Flights:
    def __init__(self) -> None:
        from mlsd.store import ModelRegistry

        self.model = ModelRegistry(os.environ["MLSD_BENCH_WORKSPACE"]).load(os.environ["MLSD_BENCH_MODEL"])

    @bentoml.api
    def predict(self, inputs: dict[str, Any]) -> dict[str, Any]:
        out = self.model.predict_frame(pd.DataFrame([inputs]))
        return {"score": float(out["score"].iloc[0]), "decision": bool(out["decision"].iloc[0])}
'''


# --- bodies ------------------------------------------------------------------------------------


def body_lines(records: list[dict[str, Any]], server: str) -> str:
    """One JSON request body a line for ``server`` (``mlsd``, ``bentoml`` or ``mlflow``).

    >>> print(body_lines([{"carrier": "UA", "distance": 1400.0}], "mlflow"), end="")
    {"dataframe_records": [{"carrier": "UA", "distance": 1400.0}]}
    >>> json.loads(body_lines([{"a": None}, {"a": 1}], "mlsd").splitlines()[1])
    {'inputs': {'a': 1}}
    """
    wrap = (lambda r: {"dataframe_records": [r]}) if server == "mlflow" else (lambda r: {"inputs": r})
    # allow_nan=False: a NaN would be invalid JSON (json_records already made missing values null)
    return "".join(json.dumps(wrap(r), allow_nan=False, separators=(", ", ": ")) + "\n" for r in records)


def batch_lines(records: list[dict[str, Any]], size: int) -> str:
    """One ``{"inputs": [size rows]}`` body a line, consecutive flights, as many as ``records`` fill.

    >>> [len(json.loads(x)["inputs"]) for x in batch_lines([{"a": i} for i in range(7)], 3).splitlines()]
    [3, 3]
    """
    return "".join(
        json.dumps({"inputs": records[i : i + size]}, allow_nan=False, separators=(", ", ": ")) + "\n"
        for i in range(0, len(records) - size + 1, size)
    )


# --- the machine -------------------------------------------------------------------------------


def group_cpu_ticks(pgid: int) -> int:
    """utime + stime (clock ticks) of every live process in process group ``pgid`` or below its
    leader (the server, its workers, the shadow's scoring process; BentoML starts its worker in a
    session of its own), from /proc/PID/stat."""
    stats: dict[int, tuple[int, int, int]] = {}  # pid -> (ppid, pgrp, ticks)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # fields[0] is the state
            stats[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), int(fields[11]) + int(fields[12]))
    counted = {pid for pid, (_, pgrp, _) in stats.items() if pgrp == pgid}
    while True:  # descendants of anything counted, whatever their group
        more = {pid for pid, (ppid, _, _) in stats.items() if ppid in counted and pid not in counted}
        if not more:
            break
        counted |= more
    return sum(stats[pid][2] for pid in counted)


def cpu_times() -> dict[str, list[int]]:
    """/proc/stat's ``cpu`` and ``cpuN`` lines: user nice system idle iowait irq softirq steal."""
    lines = Path("/proc/stat").read_text().splitlines()
    return {
        p[0]: [int(x) for x in p[1:9]] for p in (line.split() for line in lines) if p[0].startswith("cpu")
    }


def idle_shares(before: dict[str, list[int]], after: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Share of each CPU's time that was idle (idle + iowait) and stolen by the hypervisor."""
    out = {}
    for cpu, start in before.items():
        delta = [b - a for a, b in zip(start, after[cpu], strict=True)]
        total = sum(delta) or 1
        out[cpu] = {"idle": (delta[3] + delta[4]) / total, "steal": delta[7] / total}
    return out


# --- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    # output to a file, not a pipe: a server that logs every request would block on a full pipe
    with log.open("wb") as out:
        return subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *cmd],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (its workers too), SIGKILL after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # workers that outlived their parent (same group) are ended too
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_ready(url: str, proc: subprocess.Popen, log: Path, seconds: float = 240) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {seconds} s:\n{log.read_text()[-3000:]}")


def run_wrk(
    url: str, path: str, bodies: Path, lua: Path, args: argparse.Namespace, server_pid: int, rows: int = 1
) -> dict[str, Any]:
    """A 3 s warm-up, then the measured run, with /proc/stat and the server's CPU time read around it.

    ``rows`` per request: the throughput in rows (what the log receives) is requests x rows."""
    import httpx

    first = bodies.read_text().splitlines()[0]
    answer = httpx.post(url + path, content=first, headers={"Content-Type": "application/json"}, timeout=30)
    if answer.status_code != 200:
        raise RuntimeError(f"{url}{path} answered {answer.status_code} to a flight: {answer.text[:500]}")
    base = ["taskset", "-c", WRK_CORE, "wrk", "-t1", f"-c{args.connections}", "--timeout", "10s"]
    script = ["-s", str(lua), url, "--", str(bodies), path]
    subprocess.run([*base, "-d3s", *script], capture_output=True, check=True)
    load_before = os.getloadavg()
    before = cpu_times()
    # wrk's own CPU time (a waited-for child): what of its core the load generator itself used
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = group_cpu_ticks(server_pid)
    out = subprocess.run(
        [*base, f"-d{args.seconds}s", "--latency", *script], capture_output=True, text=True, check=True
    ).stdout
    shares = idle_shares(before, cpu_times())
    server_cpu_s = (group_cpu_ticks(server_pid) - server_before) / os.sysconf("SC_CLK_TCK")
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (used.ru_utime - usage.ru_utime) + (used.ru_stime - usage.ru_stime)
    line = next(x for x in out.splitlines() if x.startswith("MLSD_WRK "))
    raw = dict(zip(_WRK_FIELDS, (int(v) for v in line.split()[1:]), strict=True))
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "requests_per_s": raw["requests"] / seconds,
        "rows_per_request": rows,
        "rows_per_s": raw["requests"] * rows / seconds,
        # what the machine's load disturbs least: the server's own CPU per request (and per row)
        "server_cpu_share": server_cpu_s / seconds,
        "server_cpu_us_per_request": server_cpu_s * 1e6 / max(raw["requests"], 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "non_2xx": raw["non_2xx"],
        "socket_errors": errors,
        "wrk": raw,
        "idle_share": shares["cpu"]["idle"],
        "idle_share_server_core": shares[f"cpu{SERVER_CORE}"]["idle"],
        "idle_share_wrk_core": shares[f"cpu{WRK_CORE}"]["idle"],
        "wrk_cpu_share": wrk_cpu / (raw["duration_us"] / 1e6),
        "steal_share": shares["cpu"]["steal"],
        "loadavg_1m_before": load_before[0],
    }


def log_counts(db: Path) -> dict[str, Any]:
    """What the scratch prediction log holds after the run: answers by variant, shadow rows, events."""
    import sqlite3

    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        out: dict[str, Any] = {
            "logged_by_variant": dict(
                con.execute("SELECT variant, count(*) FROM predictions GROUP BY variant")
            ),
        }
        if "shadow_predictions" in tables:
            out["shadow_rows"] = con.execute("SELECT count(*) FROM shadow_predictions").fetchone()[0]
        if "rollout_events" in tables:
            events = con.execute("SELECT kind, reason FROM rollout_events ORDER BY id").fetchall()
            out["rollout_events"] = [f"{kind}: {reason}" for kind, reason in events]
    return out


# --- the workspace -----------------------------------------------------------------------------


def design_text(source: Path, rows: int, workspace: Path | None) -> str:
    """``source`` on a seeded subsample of ``rows`` flights (0: all), in ``workspace`` if given."""
    text = source.read_text()
    if rows:
        text = text.replace("  label: ", f"  sample: {{n: {rows}, seed: 0}}\n  label: ", 1)
    return text + (f"\nworkspace: {workspace}\n" if workspace else "")


def ensure_models(args: argparse.Namespace, scratch: Path) -> tuple[Path, Path]:
    """The champion and challenger are registered: (design to serve, its workspace)."""
    from mlsd.system import System

    if args.flights_rows:
        workspace = Path(tempfile.gettempdir()) / "mlsd-bench-serving-wrk" / f"flights-{args.flights_rows}"
        workspace.mkdir(parents=True, exist_ok=True)
        design = workspace.parent / f"design-{args.flights_rows}.yaml"
        challenger = workspace.parent / f"challenger-{args.flights_rows}.yaml"
        design.write_text(design_text(DESIGN, args.flights_rows, workspace))
        challenger.write_text(design_text(CHALLENGER, args.flights_rows, workspace))
    else:
        design, challenger = DESIGN, CHALLENGER
    system = System(design)
    aliases: set[str] = set()
    if (system.workspace / "mlflow.db").is_file():
        aliases = {a for v in system.models() for a in v.aliases}
    for alias, path, extra in (
        ("champion", design, []),
        ("challenger", challenger, ["--alias", "challenger"]),
    ):
        if alias not in aliases:
            print(f"building the flights {alias} ({path.name}) ...", flush=True)
            subprocess.run(
                [str(BIN / "mlsd"), "build", str(path), *extra], check=True, stdout=subprocess.DEVNULL
            )
    return design, system.workspace


def strategy_design(design: Path, workspace: Path, strategy: str, scratch: Path) -> Path:
    text = design.read_text()
    if STRATEGIES[strategy] is not None:
        text = re.sub(r"(?ms)^deployment:.*?(?=^\S|\Z)", STRATEGIES[strategy], text)
    text = re.sub(r"(?m)^workspace: .*\n?", "", text)
    path = scratch / f"{strategy}.yaml"
    path.write_text(text + f"\nworkspace: {workspace}\n")
    return path


def bentoml_python(args: argparse.Namespace) -> tuple[Path | None, str]:
    """BentoML's venv (created when missing) with mlsd importable, or None and why not."""
    if args.no_bentoml:
        return None, "skipped (--no-bentoml)"
    venv = args.bentoml_venv
    python = venv / "bin" / "python"
    if not (venv / "bin" / "bentoml").is_file():
        print(f"installing BentoML 1.4 into {venv} (at most 300 s) ...", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "bentoml==1.4.*"],
                check=True,
                timeout=300,
                capture_output=True,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            return None, f"skipped: pip install bentoml==1.4.* failed ({type(exc).__name__})"
    # mlsd and its model libraries from this venv, after BentoML's own packages (a .pth file is
    # appended to sys.path behind site-packages, so BentoML keeps the versions it installed)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "mlsd_bench.pth").write_text(f"{ROOT / 'src'}\n{ours}\n")
    version = subprocess.run(
        [str(python), "-c", "import bentoml; print(bentoml.__version__)"], capture_output=True, text=True
    )
    if version.returncode:
        return None, f"skipped: bentoml does not import: {version.stderr.strip()[-300:]}"
    return python, version.stdout.strip()


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    from mlsd.serving.replay import json_records
    from mlsd.system import System

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20, help="measured wrk run per configuration")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rows", type=int, default=2000, help="distinct test flights cycled by wrk")
    parser.add_argument(
        "--rounds", type=int, default=1, help="each configuration this many times, alternating"
    )
    parser.add_argument("--flights-rows", type=int, default=0, help="build on a subsample (0: the example)")
    parser.add_argument(
        "--batch-rows", type=int, default=100, help="rows per request of the batch configuration"
    )
    parser.add_argument("--no-bentoml", action="store_true")
    parser.add_argument(
        "--bentoml-venv", type=Path, default=Path(tempfile.gettempdir()) / "mlsd-bentoml-venv"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serving_wrk.json")
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        raise SystemExit("needs wrk and taskset: apt-get install -y wrk util-linux")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: the server on core 0, wrk on core 1")

    scratch = Path(tempfile.mkdtemp(prefix="mlsd-bench-wrk-"))
    try:
        design, workspace = ensure_models(args, scratch)
        system = System(design)
        _, name, version = system.champion()
        rows, _ = system.replay_rows("test")
        records = json_records(rows.head(args.rows))
        lua = scratch / "bodies.lua"
        lua.write_text(LUA)
        bodies = {}
        for server in ("mlsd", "mlflow", "bentoml"):
            bodies[server] = scratch / f"{server}.jsonl"
            bodies[server].write_text(body_lines(records, server))
        bento, bento_note = bentoml_python(args)
        if bento is not None:
            (scratch / "service.py").write_text(BENTO_SERVICE)
        print(f"BentoML: {bento_note}", flush=True)

        env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        db = f"sqlite:///{workspace / 'mlflow.db'}"
        configs: dict[str, dict[str, Any]] = {
            "mlflow models serve": {
                "cmd": [
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
                    "{port}",
                ],
                "env": {**env, "MLFLOW_TRACKING_URI": db, "MLFLOW_REGISTRY_URI": db},
                "ready": "/ping",
                "path": "/invocations",
                "bodies": bodies["mlflow"],
            }
        }
        bodies["mlsd-batch"] = scratch / "mlsd-batch.jsonl"
        bodies["mlsd-batch"].write_text(batch_lines(records, args.batch_rows))
        for strategy in [*STRATEGIES, "single-batch"]:
            batch = strategy == "single-batch"
            served = strategy_design(design, workspace, "single" if batch else strategy, scratch)
            label = f"mlsd serve single, {args.batch_rows} rows/req" if batch else f"mlsd serve {strategy}"
            configs[label] = {
                "rows": args.batch_rows if batch else 1,
                "cmd": [
                    str(BIN / "mlsd"),
                    "serve",
                    str(served),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "{port}",
                    "--log-url",
                    f"sqlite:///{scratch}/{strategy}-{{port}}.db",
                ],
                "env": env,
                "ready": "/readyz",
                "path": "/v1/predict",
                "bodies": bodies["mlsd-batch" if batch else "mlsd"],
                "log": scratch / f"{strategy}-{{port}}.db",
            }
        if bento is not None:
            configs["bentoml serve"] = {
                "cmd": [
                    str(bento.parent / "bentoml"),
                    "serve",
                    "service:Flights",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "{port}",
                ],
                "env": {
                    **env,
                    "MLSD_BENCH_WORKSPACE": str(workspace),
                    "MLSD_BENCH_MODEL": name,
                    "BENTOML_HOME": str(scratch / "bentoml-home"),
                    "BENTOML_DO_NOT_TRACK": "True",
                },
                "ready": "/readyz",
                "path": "/predict",
                "bodies": bodies["bentoml"],
                "cwd": scratch,
            }

        results: list[dict[str, Any]] = []
        for round_ in range(1, args.rounds + 1):
            for label, config in configs.items():
                port = free_port()
                cmd = [c.replace("{port}", str(port)) for c in config["cmd"]]
                server_log = scratch / f"server-{port}.log"
                print(f"round {round_}: {label} on 127.0.0.1:{port} ...", flush=True)
                proc = start(cmd, config["env"], server_log, config.get("cwd"))
                url = f"http://127.0.0.1:{port}"
                try:
                    wait_ready(url + config["ready"], proc, server_log)
                    result = run_wrk(
                        url, config["path"], config["bodies"], lua, args, proc.pid, config.get("rows", 1)
                    )
                except (RuntimeError, subprocess.CalledProcessError) as exc:
                    result = {"failed": str(exc)[-2000:]}
                finally:
                    stop(proc)
                if "log" in config and "failed" not in result:
                    result |= log_counts(Path(str(config["log"]).replace("{port}", str(port))))
                results.append({"round": round_, "server": label, **result})
                print("   ", {k: v for k, v in result.items() if k != "wrk"}, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    for r in results:
        mlflow = next(
            (x for x in results if x["round"] == r["round"] and x["server"] == "mlflow models serve"), None
        )
        # one row per request on both sides only: a 100-row request is not one of MLflow's
        single_row = r.get("rows_per_request", 1) == 1
        if mlflow and "failed" not in mlflow and "failed" not in r and r is not mlflow and single_row:
            r["vs_mlflow"] = {
                "requests_per_s": r["requests_per_s"] / mlflow["requests_per_s"],
                "p50": r["p50_ms"] / mlflow["p50_ms"],
                "p99": r["p99_ms"] / mlflow["p99_ms"],
            }
    conditions = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "pinning": f"server (and its workers / shadow process) taskset -c {SERVER_CORE}, OMP_NUM_THREADS=1; "
        f"wrk -t1 taskset -c {WRK_CORE}",
        "load": f"wrk -c{args.connections} keep-alive connections, --timeout 10s, 3 s warm-up, "
        f"{args.seconds} s measured, {len(records)} distinct test flights cycling, one row per request "
        f"(the batch configuration: {args.batch_rows} consecutive flights per request)",
        "rounds": args.rounds,
        "build": f"data.sample n={args.flights_rows}, seed 0" if args.flights_rows else "all flights",
        "model": {"name": name, "champion_version": version},
        "bentoml": bento_note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"conditions": conditions, "results": results}, indent=2) + "\n")

    print("\n" + json.dumps(conditions, indent=2))
    head = f"{'':>2} {'server':34}{'req/s':>8}{'rows/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'cpu us/req':>11}"
    head += f"{'non-2xx':>8}{'errors':>7}"
    print(
        head
        + f"{'idle':>6}{'idle c0':>8}{'idle c1':>8}{'req/s x':>9}{'p50 x':>7}{'p99 x':>7}   (x: / MLflow)"
    )
    for r in results:
        if "failed" in r:
            print(f"{r['round']:>2} {r['server']:34} failed: {r['failed'].splitlines()[0][:80]}")
            continue
        ratio = r.get("vs_mlflow")
        tail = f"{ratio['requests_per_s']:>9.2f}{ratio['p50']:>7.2f}{ratio['p99']:>7.2f}" if ratio else ""
        print(
            f"{r['round']:>2} {r['server']:34}{r['requests_per_s']:>8.0f}{r['rows_per_s']:>8.0f}"
            f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['server_cpu_us_per_request']:>11.0f}"
            f"{r['non_2xx']:>8}{r['socket_errors']:>7}{r['idle_share']:>6.0%}{r['idle_share_server_core']:>8.0%}"
            f"{r['idle_share_wrk_core']:>8.0%}{tail}"
        )
    for round_ in sorted({r["round"] for r in results}):
        by = {r["server"]: r for r in results if r["round"] == round_ and "failed" not in r}
        ours = by.get("mlsd serve single")
        if ours is None:
            continue
        line = f"round {round_}: mlsd serve single {ours['requests_per_s']:.0f} req/s"
        line += f", p99 {ours['p99_ms']:.1f} ms"
        for other in ("mlflow models serve", "bentoml serve"):
            if other in by:
                theirs = by[other]
                line += (
                    f"; {other} {theirs['requests_per_s']:.0f} req/s, p99 {theirs['p99_ms']:.1f} ms"
                    f" (mlsd {ours['requests_per_s'] / theirs['requests_per_s']:.1f}x its req/s)"
                )
        print(line)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

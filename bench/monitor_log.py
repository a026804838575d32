"""`mlsd monitor` end to end over a big prediction log: read, drift, quality, performance, report.

    make bench-monitor-log      # or: .venv/bin/python bench/monitor_log.py [--predictions 1000000]
                                # (make bench-monitor runs it too, before the drift bench)

The log is a real SQLite prediction log filled through :class:`mlsd.store.PredictionLog` (the
writer the server uses, group commits of ``--batch`` rows) with the flights champion's test
flights cycled: each logged row is a real flight's raw inputs as a client sends them, scored by
the champion, with an event time spread evenly over 52 weeks (so 1-week windows hold ~19,000
rows each) and an outcome for 80 % of them (the flight's real label), written straight into the
feedback table in one transaction (the bench measures monitoring, not feedback).

Then ``mlsd monitor --window 1w`` runs as a child process pinned to one core
(``taskset -c 0``, ``OMP_NUM_THREADS=1``), timed by ``/usr/bin/time``-style ``wait4`` rusage:
wall seconds, CPU seconds, peak resident memory; ``--profile`` adds a py-spy profile of the
same run, summarised by the function that spends the time (where the time goes).

The champion comes from the serving bench's workspace (bench/serving_wrk.py ``--flights-rows``;
built when missing). Results: bench/results/monitor_log.json.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "bench"))


def fill_log(design: Path, db: Path, n: int, batch: int) -> dict[str, Any]:
    """``n`` predictions of real flights in a fresh log at ``db``; what writing them cost."""
    import sqlalchemy as sa

    from mlsd.serving.replay import json_records
    from mlsd.store import PredictionLog, PredictionRecord
    from mlsd.store._log_tables import feedback
    from mlsd.system import System

    system = System(design)
    model, name, version = system.champion()
    rows, labels = system.replay_rows("test")
    time_column = system.design.data.time
    inputs = [{k: v for k, v in r.items() if k != time_column} for r in json_records(rows)]
    scores = np.asarray(model.predict_frame(rows)["score"], float)
    outcome = labels.to_numpy()
    start = dt.datetime(2014, 1, 6, tzinfo=dt.UTC)
    step = dt.timedelta(weeks=52) / n
    db.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    t0 = time.perf_counter()
    with PredictionLog(url, max_batch=batch) as log:  # group commits of up to ``batch`` rows
        pending = []
        for lo in range(0, n, batch):
            records = []
            for i in range(lo, min(n, lo + batch)):
                j = i % len(inputs)
                when = start + i * step
                records.append(
                    PredictionRecord(
                        request_id=f"{i:032x}",
                        logged_at=when,
                        event_time=when,
                        model_name=name,
                        model_version=version,
                        variant="champion",
                        inputs=inputs[j],
                        score=float(scores[j]),
                        decision=bool(scores[j] >= 0.5),
                        latency_ms=3.0,
                        scoring_ms=1.0,
                    )
                )
            pending.append(log.submit(records))
            if len(pending) > 64:
                pending.pop(0).result()
        for future in pending:
            future.result()
    write_s = time.perf_counter() - t0
    labelled = np.flatnonzero(np.random.default_rng(1).random(n) < 0.8)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        received = int((start + dt.timedelta(weeks=53)).timestamp() * 1e6)
        conn.execute(
            feedback.insert(),
            [
                {
                    "request_id": f"{i:032x}",
                    "outcome": json.dumps(bool(outcome[i % len(outcome)])),
                    "received_at": received,
                }
                for i in labelled
            ],
        )
    engine.dispose()
    return {"predictions": n, "labelled": len(labelled), "write_s": round(write_s, 1), "batch": batch,
            "rows_per_s_written": round(n / write_s), "db_mb": round(db.stat().st_size / 2**20)}  # fmt: skip


def log_design(design: Path, db: Path) -> Path:
    """``design`` with its workspace made absolute and ``deployment.log_url`` set to ``db``."""
    from ruamel.yaml import YAML  # YAML 1.2 round trip, as mlsd reads designs (`on:` stays a key)

    from mlsd.system import System

    yaml = YAML()
    spec = yaml.load(design.read_text())
    spec["workspace"] = str(System(design).workspace)
    spec.setdefault("deployment", {})["log_url"] = f"sqlite:///{db}"
    path = db.with_suffix(".yaml")
    with path.open("w") as out:
        yaml.dump(spec, out)
    return path


def run_monitor(design: Path, profile: Path | None) -> dict[str, Any]:
    cmd = [str(BIN / "mlsd"), "monitor", str(design), "--window", "1w"]
    if profile is not None:
        cmd = [str(BIN / "py-spy"), "record", "-r", "100", "-f", "raw", "-o", str(profile), "--", *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    pinned = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(pinned, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU time and peak memory
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):  # 1: alerts fired, the monitor still ran
        raise SystemExit(f"mlsd monitor failed ({code}):\n{out.decode()[-3000:]}")
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "exit": code,
            "tail": out.decode()[-1200:]}  # fmt: skip


def where_time_goes(profile: Path, top: int = 25) -> list[tuple[str, float]]:
    """Inclusive share of samples per mlsd function (the stage that spends the time)."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        for frame in {f for f in stack.split(";") if "mlsd/" in f}:
            inclusive[frame] += n
    return [(f, round(c / total, 3)) for f, c in inclusive.most_common(top)]


def main() -> None:
    from serving_wrk import ensure_models

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="rows per group commit when filling")
    parser.add_argument("--flights-rows", type=int, default=40000, help="the champion's build sample")
    parser.add_argument("--profile", action="store_true", help="also run once under py-spy")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "monitor_log.json")
    args = parser.parse_args()
    if not shutil.which("taskset"):
        raise SystemExit("needs taskset (util-linux)")
    scratch = Path(tempfile.gettempdir()) / "mlsd-bench-monitor-log"
    scratch.mkdir(exist_ok=True)
    design, _ = ensure_models(argparse.Namespace(flights_rows=args.flights_rows), Path(tempfile.mkdtemp()))
    db = scratch / f"log-{args.predictions}.db"
    design = log_design(design, db)
    result: dict[str, Any] = {"date": pd.Timestamp.now("UTC").strftime("%Y-%m-%d %H:%M UTC"),
                              "loadavg_1m_before": os.getloadavg()[0]}  # fmt: skip
    if not db.is_file():
        result["fill"] = fill_log(design, db, args.predictions, args.batch)
        print("filled:", result["fill"], flush=True)
    result["monitor"] = run_monitor(design, None)
    print("monitor:", {k: v for k, v in result["monitor"].items() if k != "tail"}, flush=True)
    if args.profile:
        profile = scratch / "monitor.pyspy.txt"
        run_monitor(design, profile)
        result["where_time_goes"] = where_time_goes(profile)
        for frame, share in result["where_time_goes"]:
            print(f"{share:6.1%} {frame}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

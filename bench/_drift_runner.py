"""One side of bench/monitor_drift.py, run in its own process: prints one JSON line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd


def _status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> float:
    # writing 5 to clear_refs resets VmHWM (Linux), so the peak counts only the work that follows
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS:")


def run_mlsd(reference: pd.DataFrame, window: pd.DataFrame) -> dict:
    from mlsd.monitoring import ReferenceStatistics, detect_drift

    numeric = [c for c in reference.columns if c.startswith("num_")]
    categorical = [c for c in reference.columns if c.startswith("cat_")]
    t = time.perf_counter()
    stats = ReferenceStatistics.from_frame(reference, numeric=numeric, categorical=categorical)
    reference_seconds = time.perf_counter() - t
    del reference
    base = _reset_peak()
    t = time.perf_counter()
    result = detect_drift(stats, window)
    seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "reference_seconds": reference_seconds,
        "peak_mb": _status("VmHWM:") - base,
        "drifted": [f.column for f in result.features if f.drifted],
    }


def run_evidently(reference: pd.DataFrame, window: pd.DataFrame) -> dict:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [c for c in reference.columns if c.startswith("num_")]
    categorical = [c for c in reference.columns if c.startswith("cat_")]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    base = _reset_peak()
    t = time.perf_counter()
    ref = Dataset.from_pandas(reference, data_definition=definition)
    cur = Dataset.from_pandas(window, data_definition=definition)
    snapshot = Report([DataDriftPreset()]).run(cur, ref)
    seconds = time.perf_counter() - t
    drifted = []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config") or {}
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        # Evidently's drift score is a p-value for its tests (drift below the threshold) and a
        # distance for the others (drift at or above it)
        value, threshold = float(metric["value"]), float(config["threshold"])
        if (value < threshold) if "p_value" in config["method"] else (value >= threshold):
            drifted.append(config["column"])
    return {"seconds": seconds, "peak_mb": _status("VmHWM:") - base, "drifted": drifted}


def main() -> None:
    tool, reference_path, window_path = sys.argv[1:4]
    reference, window = pd.read_parquet(reference_path), pd.read_parquet(window_path)
    run = run_mlsd if tool == "mlsd" else run_evidently
    print(json.dumps(run(reference, window)))


if __name__ == "__main__":
    main()

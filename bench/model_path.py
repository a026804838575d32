"""The model call's per-row CPU in process: validate, features, booster, the whole predict_frame.

    .venv/bin/python bench/model_path.py [--design /tmp/mlsd-bench-serving-wrk/design-40000.yaml]
                                          [--sizes 1 32 100 1000]

Loads the design's registered champion (a workspace bench/serving_wrk.py builds, or any built
design) and the test split's rows as JSON records (what a client sends, parsed by orjson), then per
batch size times, as the calling thread's CPU (``time.thread_time``, best of many calls: the least
disturbed figure on a shared machine):

- ``validate``: ``RowValidator.check`` on the rows (the server's options: lenient categories, the
  design's time column);
- ``features``: the packaged model's feature steps on the checked frame, as ``predict_frame``
  runs them (the columns path where the steps have it, else each step's ``transform``);
- ``booster``: LightGBM's ``Booster.predict`` on the feature matrix (``num_threads=1``);
- ``predict``: the whole ``PackagedModel.predict_frame``; ``v+pred``: check then predict.

Figures are microseconds per row. Nothing is written; the serving benches measure the server.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from itertools import cycle
from typing import Any


def _best(fn: Callable[[], Any], reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--design", default="/tmp/mlsd-bench-serving-wrk/design-40000.yaml")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 32, 100, 1000])
    parser.add_argument("--rows", type=int, default=3000, help="test rows to cycle through")
    args = parser.parse_args()

    import orjson

    from mlsd.data import Schema
    from mlsd.serving.replay import json_records
    from mlsd.serving.validation import RowValidator
    from mlsd.system import System

    system = System(args.design)
    model, name, version = system.champion()
    rows, _ = system.replay_rows("test")
    records = orjson.loads(orjson.dumps(json_records(rows.head(args.rows))))
    validator = RowValidator(
        Schema.from_dict(model.schema), model.input_columns, time_column=system.design.data.time
    )
    found = model._direct_booster()
    if found is None:
        raise SystemExit(f"{name} v{version} does not end in a LightGBM booster: nothing to split")
    steps, booster = found
    try:  # the columns path (this branch on); before it, predict_frame ran each step's transform
        from mlsd.store.packaged import _through_columns
    except ImportError:
        _through_columns = None

    def features(frame: Any) -> Any:
        if _through_columns is not None:
            matrix = _through_columns(steps, frame, model.input_columns)
            if matrix is not None:
                return matrix
        matrix = frame
        for step in steps:
            matrix = step.transform(matrix)
        return matrix

    print(f"{name} v{version}, {len(records)} test rows; us of thread CPU per row, best call")
    print(f"{'batch':>6} {'validate':>9} {'features':>9} {'booster':>9} {'predict':>9} {'v+pred':>9} {'per call':>10}")
    gc.disable()  # a collection inside one timed call is not the call's cost
    for n in args.sizes:
        reps = max(30, 20_000 // n)
        batches = [records[i : i + n] for i in range(0, len(records) - n + 1, n)][:20]
        frames = [validator.check(b).frame for b in batches]
        matrices = [features(f) for f in frames]
        b, f, m = cycle(batches), cycle(frames), cycle(matrices)
        cost = [
            _best(lambda: validator.check(next(b)), reps),
            _best(lambda: features(next(f)), reps),
            _best(lambda: booster.predict(next(m), num_threads=1), reps),
            _best(lambda: model.predict_frame(next(f)), reps),
            _best(lambda: model.predict_frame(validator.check(next(b)).frame), reps),
        ]
        print(f"{n:>6} " + " ".join(f"{c / n * 1e6:9.1f}" for c in cost) + f" {cost[-1] * 1e6:10.0f}")
        gc.collect()


if __name__ == "__main__":
    main()

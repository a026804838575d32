"""Bad data: every problem a build would stop on is a DataError naming the column, seen by validate.

Each case writes a small CSV and a tiny design into ``tmp_path`` and runs ``mlsd validate`` (which
loads the data) in-process; the answer is exit 2 and one line ``file:line: field: message`` that
names the column. A few run ``mlsd build`` to show the build stops the same way, before training.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.data import check_frame, check_split, feature_fields, split_prepared
from mlsd.design import load_design
from mlsd.errors import DataError, MlsdError

runner = CliRunner()
N = 120

DESIGN = """\
name: tiny
goals: {{task: {task}, metric: {metric}}}
data:
  source: data.csv
  label: "{label}"
  time: t
  split: {split}
  {extra}
features:
  numeric: [a, b]
  categorical: [c]
  {features}
models:
  baseline: {baseline}
  candidates: [{{name: m, type: {model}}}]
"""

TIME_SPLIT = "{by: time, valid_from: 2020-03-01, test_from: 2020-04-01}"


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "t": pd.date_range("2020-01-01", periods=N, freq="D").strftime("%Y-%m-%d"),
            "a": rng.normal(size=N),
            "b": rng.normal(size=N),
            "c": rng.choice(["x", "y", "z"], N),
            "h": rng.choice(["p", "q", "r", "s"], N),
            "d": rng.uniform(0, 24, N),
            "y": np.tile([-1.0, 1.0], N // 2),
            "k": rng.choice(["u", "v", "w"], N),
        }
    )


def _write(
    tmp_path: Path,
    edit: Callable[[pd.DataFrame], pd.DataFrame | None] | None = None,
    *,
    task: str = "binary",
    label: str = "y > 0",
    split: str = TIME_SPLIT,
    extra: str = "",
    features: str = "",
    csv: bytes | None = None,
) -> Path:
    df = _frame()
    if edit is not None:
        df = edit(df) if edit(df.copy()) is not None else df
    if csv is None:
        df.to_csv(tmp_path / "data.csv", index=False)
    else:
        (tmp_path / "data.csv").write_bytes(csv)
    metric = "rmse" if task == "regression" else ("roc_auc" if task == "binary" else "accuracy")
    model = "linear_regression" if task == "regression" else "logistic_regression"
    baseline = "mean" if task == "regression" else "majority"
    text = DESIGN.format(
        task=task,
        metric=metric,
        label=label,
        split=split,
        extra=extra,
        features=features,
        model=model,
        baseline=baseline,
    )
    path = tmp_path / "design.yaml"
    path.write_text(text)
    return path


def _set(col: str, values: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df[col] = values
        return df

    return edit


def _at(col: str, rows: slice | list[int], value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df[col] = df[col].astype(object)
        df.loc[rows, col] = value
        return df

    return edit


def _late_positives(df: pd.DataFrame) -> pd.DataFrame:
    df["y"] = np.where(np.arange(N) >= 70, 1.0, -1.0)  # positives only from March 11: none in training
    return df


def _late_feature(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[:59, "b"] = np.nan  # b filled from March only: nothing in the training months
    return df


# (id, design/data options, the field the error names, what the message says)
CASES: list[tuple[str, dict, str, str]] = [
    (
        "numeric-all-nan",
        {"edit": _set("a", np.nan)},
        "features.numeric[0]",
        "column 'a' is missing on every row",
    ),
    (
        "numeric-inf",
        {"edit": _at("a", [3], np.inf)},
        "features.numeric[0]",
        "column 'a' holds infinite values",
    ),
    (
        "numeric-minus-inf",
        {"edit": _at("b", [5, 6], -np.inf)},
        "features.numeric[1]",
        "column 'b' holds infinite",
    ),
    (
        "numeric-text",
        {"edit": _at("a", [7], "oops")},
        "features.numeric[0]",
        "column 'a' is a numeric feature but holds text",
    ),
    (
        "numeric-constant",
        {"edit": _set("b", 3.0)},
        "features.numeric[1]",
        "column 'b' has the same value on every row",
    ),
    (
        "categorical-all-nan",
        {"edit": _set("c", np.nan)},
        "features.categorical[0]",
        "column 'c' is missing on every row",
    ),
    (
        "categorical-constant",
        {"edit": _set("c", "x")},
        "features.categorical[0]",
        "column 'c' has the same value",
    ),
    (
        "hashed-all-nan",
        {"edit": _set("h", np.nan), "features": "hashed: {h: 8}"},
        "features.hashed.h",
        "column 'h' is missing",
    ),
    (
        "cyclical-text",
        {"edit": _at("d", [0], "noon"), "features": "cyclical: {d: 24}"},
        "features.cyclical.d",
        "column 'd' is a numeric feature",
    ),
    (
        "derived-inf",
        {"extra": 'derive: {r: "a / 0"}', "features": "cyclical: {r: 24}"},
        "features.cyclical.r",
        "column 'r' holds infinite",
    ),
    ("label-one-class", {"edit": _set("y", -1.0)}, "data.label", "the label has one class only"),
    (
        "label-all-nan",
        {"edit": _set("y", np.nan)},
        "data.label",
        "the label reads column 'y', which is missing on every row",
    ),
    (
        "label-text-regression",
        {"task": "regression", "label": "k"},
        "data.label",
        "the label is not a number on any row",
    ),
    (
        "label-inf-regression",
        {"task": "regression", "label": "y", "edit": _at("y", [2], np.inf)},
        "data.label",
        "the label holds infinite",
    ),
    (
        "label-one-class-multiclass",
        {"task": "multiclass", "label": "k", "edit": _set("k", "u")},
        "data.label",
        "one class only",
    ),
    ("train-one-class", {"edit": _late_positives}, "data.split", "the train split has one class"),
    (
        "feature-empty-in-train",
        {"edit": _late_feature},
        "features.numeric[1]",
        "missing on every row of the training split",
    ),
    (
        "split-after-data",
        {"split": "{by: time, valid_from: 2021-03-01, test_from: 2021-04-01}"},
        "data.split.valid_from",
        "split is empty",
    ),
    (
        "split-before-data",
        {"split": "{by: time, valid_from: 2019-03-01, test_from: 2019-04-01}"},
        "data.split.valid_from",
        "the train split is empty",
    ),
    (
        "split-test-after-data",
        {"split": "{by: time, valid_from: 2020-03-01, test_from: 2021-04-01}"},
        "data.split.test_from",
        "the test split is empty",
    ),
    ("rows-without-time", {"edit": _at("t", [1, 2], np.nan)}, "data.time", "column 't': 2 rows have no time"),
    ("time-not-a-date", {"edit": _at("t", [4], "not a date")}, "data.time", "not dates/times"),
    (
        "sample-larger-than-data",
        {"extra": "sample: {n: 100000}"},
        "data.sample.n",
        "the sample is larger than the data",
    ),
    ("filter-keeps-nothing", {"extra": 'filter: "a > 1000"'}, "data.filter", "the filter keeps no rows"),
    ("header-only-csv", {"csv": b"t,a,b,c,y\n"}, "data.source", "the data has no rows"),
    ("binary-csv", {"csv": b"\x00\x01\x02\xff" * 64}, "data.source", "cannot read"),
    (
        "group-split-one-group",
        {"split": "{by: group, column: k}", "edit": _set("k", "u")},
        "data.split.column",
        "column 'k': a group split needs at least 3 groups",
    ),
]

LOCATED = re.compile(r"^error: \S*design\.yaml:\d+: (?P<field>[^:]+): ")


@pytest.mark.parametrize(("options", "field", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validate_names_the_column_and_the_design_line(
    options: dict, field: str, says: str, tmp_path: Path
) -> None:
    path = _write(tmp_path, **options)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    m = LOCATED.match(lines[0])
    assert m and m.group("field") == field, lines[0]
    assert says in lines[0], lines[0]
    line = int(lines[0].split("design.yaml:")[1].split(":")[0])
    assert line == load_design(path).line_of(field)


def test_the_good_data_validates(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(_write(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "120 labelled rows" in result.output


@pytest.mark.parametrize(
    ("options", "says"),
    [({"edit": _set("a", np.nan)}, "column 'a' is missing"), ({"edit": _at("a", [3], np.inf)}, "infinite")],
    ids=["all-nan", "inf"],
)
def test_build_stops_on_the_same_data_error(options: dict, says: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["build", str(_write(tmp_path, **options))])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert LOCATED.match(last) and says in last, last


def test_checks_are_data_errors_with_the_design_line(tmp_path: Path) -> None:
    design = load_design(_write(tmp_path))
    frame = _frame()
    frame["label"] = (frame["y"] > 0).astype(int)
    check_frame(design, frame, feature_fields(design))  # the good frame passes
    frame["a"] = np.inf
    with pytest.raises(DataError) as info:
        check_frame(design, frame, feature_fields(design))
    assert info.value.field == "features.numeric[0]" and info.value.line == design.line_of(
        "features.numeric[0]"
    )
    assert info.value.file == str(design.path)


def test_split_checks_run_on_the_training_split(tmp_path: Path) -> None:
    design = load_design(_write(tmp_path))
    frame = _late_positives(_frame())
    frame["label"] = (frame["y"] > 0).astype(int)
    check_frame(design, frame, feature_fields(design))  # the whole table has both classes
    with pytest.raises(MlsdError, match="the train split has one class"):
        split_prepared(design, frame)
    split = split_prepared(design, frame.assign(label=np.tile([0, 1], N // 2)))
    check_split(design, split, feature_fields(design))


def test_one_value_and_missing_ones_is_informative(tmp_path: Path) -> None:
    # a flag that is 1 or missing: the pipeline's missing-value indicator is the signal
    design = _write(tmp_path, _set("b", np.where(np.arange(N) % 3 == 0, 1.0, np.nan)))
    result = runner.invoke(app, ["validate", str(design)])
    assert result.exit_code == 0, result.output

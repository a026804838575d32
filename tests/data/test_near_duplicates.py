"""Near-duplicates across splits, ``dedupe`` and ``by: [time, group]`` on real flights.

Near-duplicates are planted by copying real rows with tiny float noise, changed case and extra
white space into another split; the counts the checks report are compared with what was planted.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.data.leakage import (
    check_duplicates_across_splits,
    check_group_overlap,
    check_near_duplicates_across_splits,
    check_time_order,
    run_leakage_checks,
)
from mlsd.data.near_duplicates import (
    link_components,
    near_duplicate_keys,
    normalise_rows,
    round_significant,
)
from mlsd.data.splits import (
    DataSplit,
    train_valid_test_split_by_group,
    train_valid_test_split_by_time,
    train_valid_test_split_by_time_and_group,
    train_valid_test_split_random,
)
from mlsd.design import SplitSpec, load_design
from mlsd.errors import DataError, DesignError

# what a model of flights could read: numbers with and without missing values, text, integers
COLUMNS = [
    "carrier",
    "origin",
    "dest",
    "tailnum",
    "month",
    "day",
    "flight",
    "dep_delay",
    "air_time",
    "distance",
]
VALID_FROM, TEST_FROM = "2013-09-01", "2013-11-01"


@pytest.fixture(scope="module")
def sample(flights_all: pd.DataFrame) -> pd.DataFrame:
    """5,000 real flights (cancelled ones included: their delays and air times are missing)."""
    return flights_all.sample(5_000, random_state=3).reset_index(drop=True)


def _noisy_copies(rows: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The rows again, not exactly equal: floats off by ~1e-9 relative, text in another case with
    padding. Every copy is a near-duplicate of its row and none is an exact duplicate."""
    rng = np.random.default_rng(seed)
    out = rows.copy()
    for col in ("dep_delay", "air_time"):
        out[col] = out[col] * (1 + rng.uniform(-1e-9, 1e-9, len(out)))
    out["carrier"] = out["carrier"].str.lower()
    out["origin"] = "  " + out["origin"] + " "
    out["dest"] = out["dest"].str.swapcase()
    return out


def _planted(sample: pd.DataFrame, n: int = 40) -> tuple[pd.DataFrame, pd.Index]:
    """``sample`` plus ``n`` noisy copies of its first rows (including cancelled flights) at the end;
    returns the frame and the copies' index."""
    cancelled = sample.index[sample["dep_delay"].isna()][:5]
    originals = sample.loc[cancelled.union(sample.index[: n - len(cancelled)])]
    copies = _noisy_copies(originals).set_axis(np.arange(len(sample), len(sample) + len(originals)))
    return pd.concat([sample, copies]), copies.index


def _in_split(split: DataSplit) -> pd.Series:
    return pd.concat([pd.Series(name, index=part.index) for name, part in split.parts().items()])


# --- normalisation and hashing ---------------------------------------------------------------------


def test_rounding_matches_decimal_formatting() -> None:
    """Against Python's own decimal formatting of each value (a slow loop, the reference)."""
    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 8, 3_000) * rng.choice([-1, 1], 3_000)
    for digits in (1, 3, 6, 10):
        reference = np.array([float(f"{v:.{digits - 1}e}") for v in x])
        assert np.array_equal(round_significant(x, digits), reference), digits
    assert round_significant(np.array([-0.0, np.inf, np.nan]), 6).tolist()[:2] == [0.0, np.inf]
    with pytest.raises(DesignError, match="significant digits"):
        round_significant(x, 0)


def test_hashing_partitions_rows_as_a_groupby_of_the_normalised_values(sample: pd.DataFrame) -> None:
    frame, _ = _planted(sample, 200)
    keys = near_duplicate_keys(frame, COLUMNS)
    normal = normalise_rows(frame, COLUMNS)
    # the slow reference: pandas groups the normalised rows (missing values as a group of their own)
    groups = normal.groupby(COLUMNS, dropna=False, sort=False).ngroup().to_numpy()
    pairs = pd.DataFrame({"key": keys, "group": groups}).drop_duplicates()
    assert len(pairs) == pd.Series(keys).nunique() == pd.Series(groups).nunique()
    assert pd.Series(groups).nunique() == len(sample) - sample[COLUMNS].duplicated().sum()
    assert normal.loc[len(sample), "origin"] == normal.loc[0, "origin"] == sample.loc[0, "origin"].casefold()


def test_missing_is_a_value_and_text_is_not_a_number() -> None:
    df = pd.DataFrame({"s": [None, np.nan, "", "1", 1], "x": [np.nan, np.nan, 0.0, 1.0, 1.0]})
    keys = near_duplicate_keys(df, ["s", "x"])
    assert keys[0] == keys[1]  # None and NaN are both missing
    assert len(set(keys[1:4])) == 3  # missing, empty text and "1" differ
    assert keys[3] == keys[4]  # text "1" and the object 1 are the same text


def test_link_components_joins_chains() -> None:
    groups = np.array(["a", "a", "b", "c", "d"])
    keys = np.array([1, 2, 2, 3, 4])
    assert link_components(groups, keys).tolist() == [0, 0, 0, 1, 2]


# --- the check -------------------------------------------------------------------------------------


def test_planted_near_duplicates_across_train_test_are_counted(sample: pd.DataFrame) -> None:
    base = train_valid_test_split_random(sample, seed=1)
    assert check_near_duplicates_across_splits(base, COLUMNS) == []  # real flights: none to begin with
    copies = _noisy_copies(base.train.iloc[:40]).set_axis(np.arange(10_000, 10_040))
    split = DataSplit(train=base.train, valid=base.valid, test=pd.concat([base.test, copies]), by="random")

    [found] = check_near_duplicates_across_splits(split, COLUMNS)
    assert found.evidence["pair"] == ["train", "test"]
    assert found.evidence["rows"] == 40 and found.evidence["rows_train"] == 40
    assert found.evidence["not_exact"] == 40
    first = found.evidence["examples"][0]
    assert first == {"train": int(base.train.index[0]), "test": 10_000}
    assert "40 test rows have a near-duplicate among 40 train rows" in found.detail
    # the exact check misses them all: that is why the near check exists
    assert check_duplicates_across_splits(split, COLUMNS) == []
    # and at 1 significant digit, the real flights have near-duplicates of their own
    assert check_near_duplicates_across_splits(base, ["carrier", "origin", "distance"], digits=1)


def test_the_runner_reports_near_duplicates_with_its_digits(sample: pd.DataFrame) -> None:
    base = train_valid_test_split_random(sample, seed=1)
    copies = _noisy_copies(base.train.iloc[:10]).set_axis(np.arange(10_000, 10_010))
    split = DataSplit(train=base.train, valid=pd.concat([base.valid, copies]), test=base.test, by="random")
    report = run_leakage_checks(split, features=COLUMNS, target_leakage=False, near_duplicate_digits=8)
    assert report.by_check()["near_duplicates"][0].evidence["rows"] == 10
    # 1e-9 relative noise shows at 12 significant digits: the copies are no longer equal
    report = run_leakage_checks(split, features=COLUMNS, target_leakage=False, near_duplicate_digits=12)
    assert "near_duplicates" not in report.by_check()


# --- dedupe ----------------------------------------------------------------------------------------


def test_dedupe_on_a_random_split_moves_copies_to_their_originals_split(sample: pd.DataFrame) -> None:
    frame, copies = _planted(sample)
    plain = train_valid_test_split_random(frame, seed=2)
    assert check_near_duplicates_across_splits(plain, COLUMNS)  # the plant crosses splits

    split = train_valid_test_split_random(frame, seed=2, link=near_duplicate_keys(frame, COLUMNS))
    assert check_near_duplicates_across_splits(split, COLUMNS) == []
    assert sum(split.sizes().values()) == len(frame)  # moved, none dropped
    before, after = _in_split(plain), _in_split(split)
    originals = _originals_of(frame, copies)
    expected = int((before.loc[copies].to_numpy() != before.loc[originals].to_numpy()).sum())
    [moved] = split.adjustments
    assert moved.check == "dedupe" and moved.evidence["moved"] == expected > 0
    assert (after.loc[copies].to_numpy() == after.loc[originals].to_numpy()).all()
    assert f"{expected} rows moved" in moved.detail and "none dropped" in moved.detail


def _originals_of(frame: pd.DataFrame, copies: pd.Index) -> pd.Index:
    """The row each copy was made from: the first row with the same near-duplicate key."""
    keys = pd.Series(near_duplicate_keys(frame, COLUMNS), index=frame.index)
    first = keys.reset_index().groupby(0)["index"].first()
    return pd.Index(first.loc[keys.loc[copies]].to_numpy())


def test_dedupe_on_a_time_split_holds_later_copies_out(sample: pd.DataFrame) -> None:
    # copies of January flights dated in December: the same flight features in the test period
    january = sample[sample["month"] == 1].iloc[:30]
    copies = _noisy_copies(january).assign(time_hour="2013-12-15T12:00:00Z")
    frame = pd.concat([sample, copies.set_axis(np.arange(10_000, 10_030))])
    plain = train_valid_test_split_by_time(frame, "time_hour", VALID_FROM, TEST_FROM)
    assert check_near_duplicates_across_splits(plain, COLUMNS)[0].evidence["rows"] == 30

    split = train_valid_test_split_by_time(
        frame, "time_hour", VALID_FROM, TEST_FROM, link=near_duplicate_keys(frame, COLUMNS)
    )
    assert check_near_duplicates_across_splits(split, COLUMNS) == []
    assert check_time_order(split, "time_hour") == []  # nothing from December went into training
    [held] = split.adjustments
    assert held.evidence["held_out"] == 30 and held.evidence["by_pair"] == {"train->test": 30}
    assert sum(split.sizes().values()) + 30 == len(frame)
    assert split.sizes()["train"] == plain.sizes()["train"]


def test_dedupe_on_a_group_split_keeps_groups_and_copies_together(sample: pd.DataFrame) -> None:
    frame, copies = _planted(sample)
    # each copy flies a tail number of its own, so only its near-duplicate key ties it to the original
    frame.loc[copies, "tailnum"] = "COPY" + pd.Series(copies.astype(str), index=copies)
    columns = [c for c in COLUMNS if c != "tailnum"]
    plain = train_valid_test_split_by_group(frame, "tailnum", seed=0)
    assert check_near_duplicates_across_splits(plain, columns)

    split = train_valid_test_split_by_group(
        frame, "tailnum", seed=0, link=near_duplicate_keys(frame, columns)
    )
    assert check_group_overlap(split, "tailnum") == []
    assert check_near_duplicates_across_splits(split, columns) == []
    assert sum(split.sizes().values()) == len(frame)
    placed, before = _in_split(split), _in_split(plain)
    [moved] = split.adjustments
    assert moved.evidence["moved"] == int((placed.loc[frame.index] != before.loc[frame.index]).sum()) > 0


# --- by: [time, group] -----------------------------------------------------------------------------


def test_time_and_group_split_on_real_flights(flights_all: pd.DataFrame) -> None:
    df = flights_all.sample(20_000, random_state=5)
    plain = train_valid_test_split_by_time(df, "time_hour", VALID_FROM, TEST_FROM)
    assert check_group_overlap(plain, "tailnum")  # a time split alone shares aircraft everywhere

    split = train_valid_test_split_by_time_and_group(df, "time_hour", "tailnum", VALID_FROM, TEST_FROM)
    assert split.by == "time+group" and split.group_column == "tailnum"
    assert check_group_overlap(split, "tailnum") == []  # every aircraft in one split
    assert check_time_order(split, "time_hour") == []  # and time still runs forwards
    # each aircraft is in the split of the period it first flies in (missing tail numbers: one group)
    period = np.select([df["time_hour"] < VALID_FROM, df["time_hour"] < TEST_FROM], [0, 1], 2)
    first = pd.Series(period, index=df.index).groupby(df["tailnum"].fillna("<NA>")).min()
    placed = _in_split(split).map({"train": 0, "valid": 1, "test": 2})
    assert (placed.to_numpy() == first.loc[df.loc[placed.index, "tailnum"].fillna("<NA>")].to_numpy()).all()
    [note] = split.adjustments
    assert note.check == "group_time_split"
    assert note.evidence["held_out"] == len(df) - len(placed) > 0
    report = run_leakage_checks(split, features=["distance"], time_column="time_hour", target_leakage=False)
    assert "group_overlap" not in report.by_check() and "group_time_split" in report.by_check()


def test_time_and_group_split_errors(sample: pd.DataFrame) -> None:
    with pytest.raises(DesignError, match="group column 'nope'"):
        train_valid_test_split_by_time_and_group(sample, "time_hour", "nope", VALID_FROM, TEST_FROM)
    with pytest.raises(DesignError, match="valid_from must be earlier"):
        train_valid_test_split_by_time_and_group(sample, "time_hour", "tailnum", TEST_FROM, VALID_FROM)
    # carriers fly all year: a later period holds no carrier of its own, so it is empty
    with pytest.raises(
        DataError, match=r"the (valid|test) split is empty: all [\d,]+ rows of its period belong to groups"
    ):
        train_valid_test_split_by_time_and_group(sample, "time_hour", "carrier", VALID_FROM, TEST_FROM)


# --- the design keys -------------------------------------------------------------------------------

TIME = {"valid_from": VALID_FROM, "test_from": TEST_FROM}


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"by": ["time", "group"], **TIME}, "a time+group split needs `column`"),
        ({"by": ["time", "stratified"], **TIME}, "combines time and group only"),
        ({"by": "time", "column": "tailnum", **TIME}, "`column` does nothing in a time split"),
        ({"by": ["time", "group"], "column": "t", **TIME, "seed": 3}, "`seed` does nothing"),
        ({"by": "random", "valid_from": VALID_FROM}, "`valid_from` does nothing in a random split"),
        ({"by": ["time", "group"], "column": "t"}, "needs `valid_from` and `test_from`"),
        ({"by": "random", "dedupe": "near"}, "valid boolean"),
    ],
)
def test_split_spec_refuses_bad_combinations(spec: dict, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        SplitSpec.model_validate(spec)


def test_split_spec_reads_time_and_group() -> None:
    spec = SplitSpec.model_validate({"by": ["group", "time"], "column": "tailnum", **TIME, "dedupe": True})
    assert (spec.by, spec.uses_time, spec.dedupe) == ("time+group", True, True)
    assert SplitSpec.model_validate(spec.model_dump()).by == "time+group"  # the dump reads back


def _design(tmp_path: Path, split: dict, **leakage: object) -> Path:
    design = {
        "name": "dedupe",
        "goals": {"task": "binary", "target": "late", "metric": "roc_auc"},
        "data": {
            "source": str(tmp_path / "missing.csv"),  # never read: validate refuses the design first
            "label": "arr_delay > 15",
            "time": "time_hour",
            "split": split,
            **({"leakage": leakage} if leakage else {}),
        },
        "features": {"numeric": ["distance"]},
        "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]},
    }
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("split", "leakage", "says"),
    [
        (
            {"by": "time", "column": "tailnum", **TIME},
            {},
            "data.split: `column` does nothing in a time split",
        ),
        (
            {"by": "random"},
            {"fail_on": ["group_overlap"]},
            "`leakage.fail_on: group_overlap` needs a group split",
        ),
        ({"by": "random"}, {"near_duplicate_digits": 0}, "data.leakage.near_duplicate_digits"),
    ],
)
def test_validate_refuses_before_reading_data(tmp_path: Path, split: dict, leakage: dict, says: str) -> None:
    path = _design(tmp_path, split, **leakage)
    with pytest.raises(DesignError):
        load_design(path)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert says in result.output and "missing.csv" not in result.output, result.output


def test_time_and_group_design_loads(tmp_path: Path) -> None:
    split = {"by": ["time", "group"], "column": "tailnum", **TIME, "dedupe": True}
    design = load_design(_design(tmp_path, split, fail_on=["group_overlap", "near_duplicates"]))
    assert design.data.split.by == "time+group" and design.data.leakage.fail_on == [
        "group_overlap",
        "near_duplicates",
    ]


# --- end to end: the design keys drive the build and the document says what they did ----------------


def _flights_design(tmp_path: Path, frame: pd.DataFrame, split: dict, fail_on: list[str]) -> Path:
    csv = tmp_path / "flights.csv"
    frame.to_csv(csv, index=False)
    design = {
        "name": "dedupe-e2e",
        "goals": {"task": "binary", "target": "late", "metric": "roc_auc"},
        "data": {
            "source": str(csv),
            "label": "arr_delay > 15",
            "filter": "arr_delay.notna()",
            "time": "time_hour",
            "split": split,
            "leakage": {"fail_on": fail_on},
        },
        "features": {
            "numeric": ["distance", "dep_delay"],
            "categorical": ["carrier", "origin", "dest"],
            "forbidden": [],
        },
        "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}], "bootstrap": 10},
    }
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("split", "says"),
    [
        ({"by": "random", "dedupe": True}, "rows moved to keep near-duplicates in one split"),
        ({"by": ["time", "group"], "column": "tailnum", **TIME, "dedupe": True}, "rows held out"),
    ],
)
def test_build_with_dedupe_finds_no_near_duplicates(
    sample: pd.DataFrame, tmp_path: Path, split: dict, says: str
) -> None:
    from mlsd.system import System

    frame, _ = _planted(sample[sample["arr_delay"].notna()].reset_index(drop=True), 60)
    fail_on = ["near_duplicates", "duplicate_rows", "time_order"] + (
        ["group_overlap"] if "column" in split else []
    )
    path = _flights_design(tmp_path, frame, split, fail_on)
    System(load_design(path)).build()  # a near-duplicate or a shared aircraft would fail it
    reports = tmp_path / ".mlsd" / "dedupe-e2e" / "reports"
    leakage = yaml.safe_load((reports / "leakage.json").read_text())
    checks = {f["check"] for f in leakage["findings"]}
    assert "near_duplicates" not in checks and "group_overlap" not in checks
    [dedupe] = [f for f in leakage["findings"] if f["check"] == "dedupe"]
    html = (reports / "design.html").read_text()
    assert says in dedupe["detail"] and dedupe["detail"] in html
    assert "near_duplicates: no finding" in html


@pytest.mark.slow
def test_build_without_dedupe_fails_on_planted_near_duplicates(sample: pd.DataFrame, tmp_path: Path) -> None:
    from mlsd.errors import LeakageError
    from mlsd.system import System

    frame, _ = _planted(sample[sample["arr_delay"].notna()].reset_index(drop=True), 60)
    path = _flights_design(tmp_path, frame, {"by": "random"}, ["near_duplicates"])
    with pytest.raises(LeakageError, match="near_duplicates"):
        System(load_design(path)).build()

